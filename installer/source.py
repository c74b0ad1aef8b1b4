"""The payload sources of an install: a local file, an HTTPS URL with its hash, or the channel."""

from __future__ import annotations

import os
from pathlib import Path

from switchos.efi.channel import fetch_release, resolve_channel_url
from switchos.efi.download import Downloader
from switchos.efi.payload import VerifiedPayload, download_payload, download_release, verify_local_payload
from switchos.errors import InvalidInputError
from switchos.installer.config import InstallOptions


def default_cache_dir() -> Path:
    """Return the download cache: $XDG_CACHE_HOME/switchos, else ~/.cache/switchos."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "switchos"


def acquire_payload(options: InstallOptions, *, cache_dir: Path | None = None) -> VerifiedPayload:
    """Return the verified payload named by ``--payload``, ``--payload-url``/``--payload-sha256`` or the channel.

    Without a file or URL, the release channel (``--channel`` or
    SWITCHOS_CHANNEL_URL) names the payload. When no channel is configured or
    reachable, ChannelError's hint tells the user to pass ``--payload``. Raises
    InvalidInputError when both a file and a URL are given.
    """
    if options.payload is not None and options.payload_url is not None:
        raise InvalidInputError("--payload and --payload-url both name a payload", hint="pass only one of them")
    if options.payload is not None:
        return verify_local_payload(options.payload)
    if options.payload_url is not None:
        if options.payload_sha256 is None:
            raise InvalidInputError(
                "--payload-url needs the expected hash", hint="pass --payload-sha256 HEX as well"
            )
        downloader = Downloader(cache_dir or default_cache_dir())
        return download_payload(downloader, options.payload_url, options.payload_sha256)
    release = fetch_release(resolve_channel_url(options.channel))
    return download_release(Downloader(cache_dir or default_cache_dir()), release)
