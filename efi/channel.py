"""The release channel: a small JSON index naming the current payload.

The index is one JSON object:

    {
      "version": "1.4.0",
      "url": "https://example.org/switchos-x64-1.4.0.efi",
      "sha256": "<64 hex digits>",
      "size": 123456,
      "minimum_installer_version": "0.1.0"
    }
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests
import urllib3

from switchos import __version__
from switchos.efi.download import (
    DownloadConnectionError,
    DownloadError,
    DownloadOptions,
    open_https,
    require_https,
)
from switchos.errors import SwitchOSError

# Environment variable that sets the channel URL when no option does.
CHANNEL_URL_VARIABLE = "SWITCHOS_CHANNEL_URL"

# An index is a few hundred bytes; anything much larger is not an index.
MAX_INDEX_BYTES = 64 * 1024

VERSION_PATTERN = re.compile(r"\d+(\.\d+)*")
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")

NO_CHANNEL_HINT = (
    "pass the payload yourself with --payload PATH, or --payload-url URL "
    "--payload-sha256 HEX"
)


class ChannelError(SwitchOSError):
    """The release channel is not configured, not reachable, or its index is invalid."""


@dataclass(frozen=True)
class Release:
    """One payload release named by the channel index."""

    version: str
    url: str
    sha256: str
    size: int
    minimum_installer_version: str


def resolve_channel_url(explicit: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """Return the channel URL from the option or the environment, or raise ChannelError."""
    url = explicit or environ.get(CHANNEL_URL_VARIABLE)
    if not url:
        raise ChannelError(
            f"no release channel is configured (--channel-url or {CHANNEL_URL_VARIABLE})",
            hint=NO_CHANNEL_HINT,
        )
    return url


def parse_version(text: str) -> tuple[int, ...]:
    """Parse a dotted numeric version such as ``1.4.0`` into a tuple of integers."""
    if not VERSION_PATTERN.fullmatch(text):
        raise ValueError(f"invalid version {text!r}")
    return tuple(int(part) for part in text.split("."))


def parse_index(document: Any, *, source: str) -> Release:
    """Validate a decoded index; raise ChannelError listing every problem found."""
    if not isinstance(document, dict):
        raise ChannelError(f"release index {source} is not a JSON object")
    problems: list[str] = []

    def field(name: str, expected: type) -> Any:
        value = document.get(name)
        if not isinstance(value, expected) or isinstance(value, bool):
            problems.append(f"{name} is missing or not a {expected.__name__}")
            return None
        return value

    version = field("version", str)
    url = field("url", str)
    sha256 = field("sha256", str)
    size = field("size", int)
    minimum = field("minimum_installer_version", str)
    for name, value in (("version", version), ("minimum_installer_version", minimum)):
        if value is not None and not VERSION_PATTERN.fullmatch(value):
            problems.append(f"{name} {value!r} is not a dotted version number")
    if url is not None:
        try:
            require_https(url)
        except DownloadError:
            problems.append(f"url {url!r} is not an https URL")
    if sha256 is not None and not SHA256_PATTERN.fullmatch(sha256):
        problems.append("sha256 is not 64 lowercase hexadecimal digits")
    if size is not None and size <= 0:
        problems.append(f"size {size} is not positive")
    if problems:
        raise ChannelError(f"release index {source} is invalid: " + "; ".join(problems))
    return Release(version, url, sha256, size, minimum)


def check_installer_version(release: Release, installer_version: str = __version__) -> None:
    """Raise ChannelError when this installer is older than the release needs."""
    if parse_version(installer_version) < parse_version(release.minimum_installer_version):
        raise ChannelError(
            f"payload {release.version} needs switchos {release.minimum_installer_version} "
            f"or newer; this is {installer_version}",
            hint="update switchos, or pass an older payload with --payload PATH",
        )


def fetch_release(
    channel_url: str,
    *,
    options: DownloadOptions = DownloadOptions(),
    session: requests.Session | None = None,
    installer_version: str = __version__,
) -> Release:
    """Fetch and validate the channel index at ``channel_url``.

    Raises ChannelError, with a hint to pass --payload, when the channel
    cannot be reached or its index is invalid or too new.
    """
    session = session or requests.Session()
    try:
        response = open_https(session, channel_url, options=options)
        with response:
            if response.status_code != 200:
                raise ChannelError(
                    f"release channel {channel_url} returned HTTP {response.status_code}",
                    hint=NO_CHANNEL_HINT,
                )
            body = response.raw.read(MAX_INDEX_BYTES + 1, decode_content=True)
    except DownloadConnectionError as error:
        raise ChannelError(
            f"release channel {channel_url} is not reachable: {error.message}",
            hint=NO_CHANNEL_HINT,
        ) from None
    except DownloadError as error:
        raise ChannelError(error.message, hint=NO_CHANNEL_HINT) from None
    except (requests.RequestException, urllib3.exceptions.HTTPError) as error:
        raise ChannelError(
            f"reading the release index {channel_url} failed: {error}", hint=NO_CHANNEL_HINT
        ) from None
    if len(body) > MAX_INDEX_BYTES:
        raise ChannelError(
            f"release index {channel_url} is larger than {MAX_INDEX_BYTES} bytes",
            hint=NO_CHANNEL_HINT,
        )
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ChannelError(
            f"release index {channel_url} is not valid JSON: {error}", hint=NO_CHANNEL_HINT
        ) from None
    release = parse_index(document, source=channel_url)
    check_installer_version(release, installer_version)
    return release
