"""The payload sources of an install: a local file, an HTTPS URL with its hash, or the channel."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from switchos.efi.channel import CHANNEL_URL_VARIABLE, fetch_release, resolve_channel_url
from switchos.efi.download import Downloader
from switchos.efi.payload import VerifiedPayload, download_payload, download_release, verify_local_payload
from switchos.errors import InvalidInputError
from switchos.installer.config import InstallOptions


def default_cache_dir() -> Path:
    """Return the download cache: $XDG_CACHE_HOME/switchos, else ~/.cache/switchos."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "switchos"


def check_payload_source(options: InstallOptions) -> None:
    """Raise InvalidInputError when the options name no usable payload source, without fetching anything."""
    if options.payload is not None and options.payload_url is not None:
        raise InvalidInputError("--payload and --payload-url both name a payload", hint="pass only one of them")
    if options.payload is not None:
        return
    if options.payload_url is not None:
        if urlsplit(options.payload_url).scheme.lower() != "https":
            raise InvalidInputError(
                f"invalid --payload-url {options.payload_url}: only https URLs are allowed",
                hint="use an https:// URL, or download the file yourself and pass --payload PATH",
            )
        if options.payload_sha256 is None:
            raise InvalidInputError(
                "--payload-url needs the expected hash", hint="pass --payload-sha256 HEX as well"
            )
        return
    if not (options.channel or os.environ.get(CHANNEL_URL_VARIABLE)):
        raise InvalidInputError(
            f"no payload given and no release channel configured (--channel URL or ${CHANNEL_URL_VARIABLE})",
            hint="pass --payload PATH, --payload-url URL with --payload-sha256 HEX, or --channel URL",
        )


def acquire_payload(options: InstallOptions, *, cache_dir: Path | None = None) -> VerifiedPayload:
    """Return the verified payload named by ``--payload``, ``--payload-url``/``--payload-sha256`` or the channel.

    Without a file or URL, the release channel (``--channel`` or
    SWITCHOS_CHANNEL_URL) names the payload. Raises InvalidInputError when
    the options name no usable source (see check_payload_source).
    """
    check_payload_source(options)
    if options.payload is not None:
        return verify_local_payload(options.payload)
    if options.payload_url is not None:
        downloader = Downloader(cache_dir or default_cache_dir())
        return download_payload(downloader, options.payload_url, options.payload_sha256 or "")
    release = fetch_release(resolve_channel_url(options.channel))
    return download_release(Downloader(cache_dir or default_cache_dir()), release)
