"""Payload sources: a local file, an HTTPS URL with its hash, or the release channel.

Every source ends in a VerifiedPayload: a file whose SHA-256 has been computed
from its bytes (and, for downloads, compared with the expected one) and whose
PE image passed every check. Placement accepts nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from switchos.efi.channel import Release
from switchos.efi.download import Downloader, ProgressCallback, sha256_file
from switchos.efi.pe import PeImageInfo, check_payload_image
from switchos.errors import InvalidInputError


@dataclass(frozen=True)
class VerifiedPayload:
    """A payload file that passed the hash and PE checks."""

    path: Path
    sha256: str
    size: int
    image: PeImageInfo

    @property
    def version(self) -> str | None:
        return self.image.metadata.version


def verify_local_payload(path: Path) -> VerifiedPayload:
    """Check a payload given as a local file; raise InvalidInputError or PayloadCheckError."""
    if not path.is_file():
        raise InvalidInputError(
            f"payload {path} does not exist or is not a file",
            hint="pass the path of the payload's .efi file with --payload",
        )
    image = check_payload_image(path)
    return VerifiedPayload(path=path, sha256=sha256_file(path), size=path.stat().st_size, image=image)


def download_payload(
    downloader: Downloader,
    url: str,
    sha256: str,
    *,
    expected_size: int | None = None,
    progress: ProgressCallback | None = None,
) -> VerifiedPayload:
    """Download the payload into the cache, then check it as a local file."""
    path = downloader.fetch(url, sha256, expected_size=expected_size, progress=progress)
    return verify_local_payload(path)


def download_release(
    downloader: Downloader, release: Release, *, progress: ProgressCallback | None = None
) -> VerifiedPayload:
    """Download the payload named by a channel release."""
    return download_payload(
        downloader, release.url, release.sha256, expected_size=release.size, progress=progress
    )
