"""HTTPS download of a payload into a cache folder keyed by its SHA-256.

A file in the cache is complete and matches the hash in its name. The
downloader returns only such files, so a body that fails any check never
leaves the cache folder. Partial data is kept in ``<sha256>.part`` next to it,
so a later attempt resumes with ``Range``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from switchos.errors import InvalidInputError, SwitchOSError

log = logging.getLogger(__name__)

# Called with (bytes received so far, total bytes or None when unknown).
ProgressCallback = Callable[[int, int | None], None]

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 30.0
DEFAULT_ATTEMPTS = 5
DEFAULT_BACKOFF = 1.0
MAX_BACKOFF = 30.0
MAX_REDIRECTS = 10
CHUNK_SIZE = 256 * 1024

SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
CONTENT_RANGE_PATTERN = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
UNSATISFIED_RANGE_PATTERN = re.compile(r"bytes \*/(\d+)")
# Starts of an HTML document, for servers that send error pages without a
# text/html Content-Type.
HTML_STARTS = (b"<!doctype html", b"<html")


class DownloadError(SwitchOSError):
    """A download failed, or its body did not pass a check."""


class DownloadConnectionError(DownloadError):
    """The server could not be reached, or did not respond in time."""


class _RetryableError(Exception):
    """An attempt failed in a way that another attempt may fix."""


@dataclass(frozen=True)
class DownloadOptions:
    """Limits and settings of one download.

    ``verify`` is passed to requests: True for the system CA store, or the
    path of a CA bundle.
    """

    max_bytes: int = DEFAULT_MAX_BYTES
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    attempts: int = DEFAULT_ATTEMPTS
    backoff: float = DEFAULT_BACKOFF
    verify: bool | str = True


def normalize_sha256(value: str) -> str:
    """Return the lowercase hex digest, or raise InvalidInputError."""
    digest = value.strip().lower()
    if not SHA256_PATTERN.fullmatch(digest):
        raise InvalidInputError(
            f"invalid SHA-256 {value!r}", hint="give the 64 hexadecimal digits of the digest"
        )
    return digest


def require_https(url: str) -> None:
    """Raise DownloadError unless ``url`` is an https URL with a host."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "https" or not parts.hostname:
        raise DownloadError(
            f"refusing to download from {url}: only https URLs are allowed",
            hint="use an https:// URL, or download the file yourself and pass --payload PATH",
        )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(CHUNK_SIZE), b""):
            digest.update(block)
    return digest.hexdigest()


class Downloader:
    """Downloads files over HTTPS into ``cache_dir``.

    The session keeps requests' trust_env, so HTTPS_PROXY, NO_PROXY and
    REQUESTS_CA_BUNDLE from the environment apply.
    """

    def __init__(
        self,
        cache_dir: Path,
        options: DownloadOptions = DownloadOptions(),
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.cache_dir = cache_dir
        self.options = options
        self.session = session or requests.Session()
        self._sleep = sleep

    def cached_path(self, sha256: str) -> Path:
        return self.cache_dir / sha256

    def fetch(
        self,
        url: str,
        sha256: str,
        *,
        expected_size: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> Path:
        """Download ``url`` and return the cached file whose content hashes to ``sha256``.

        Retries connection errors, timeouts, truncated bodies and 5xx responses
        with exponential backoff, resuming from the partial file. Raises
        DownloadError on anything else, and after the last attempt.
        """
        sha256 = normalize_sha256(sha256)
        require_https(url)
        if expected_size is not None and expected_size > self.options.max_bytes:
            raise DownloadError(
                f"{url} is {expected_size} bytes, more than the limit of "
                f"{self.options.max_bytes} bytes"
            )
        final = self.cached_path(sha256)
        if final.is_file():
            if sha256_file(final) == sha256:
                log.info("using cached %s", final)
                return final
            log.warning("cached %s does not match its hash; downloading again", final)
            final.unlink()

        self.cache_dir.mkdir(parents=True, exist_ok=True)
        partial = final.with_name(f"{sha256}.part")
        last_error = ""
        actual = ""
        for attempt in range(self.options.attempts):
            if attempt:
                delay = min(self.options.backoff * 2 ** (attempt - 1), MAX_BACKOFF)
                log.info("retrying %s in %.1f s after: %s", url, delay, last_error)
                self._sleep(delay)
            try:
                actual = self._attempt(url, partial, expected_size, progress)
                break
            except _RetryableError as error:
                last_error = str(error)
        else:
            raise DownloadError(
                f"download of {url} failed after {self.options.attempts} attempts: {last_error}",
                hint="check the network connection and proxy settings, then run the command "
                "again: it resumes where it stopped",
            )

        if actual != sha256:
            partial.unlink()
            raise DownloadError(
                f"{url} has SHA-256 {actual}, expected {sha256}",
                hint="the file on the server differs from the one you expect: check the URL "
                "and the hash",
            )
        size = partial.stat().st_size
        if expected_size is not None and size != expected_size:
            partial.unlink()
            raise DownloadError(f"{url} is {size} bytes, expected {expected_size}")
        os.replace(partial, final)
        return final

    def _attempt(
        self,
        url: str,
        partial: Path,
        expected_size: int | None,
        progress: ProgressCallback | None,
    ) -> str:
        """Run one request (following redirects), append the body to ``partial``.

        Returns the SHA-256 of the whole partial file, computed while writing.
        """
        offset = partial.stat().st_size if partial.exists() else 0
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        response = self._open(url, headers)
        with response:
            if response.status_code == 416 and offset:
                # "bytes */N" with N equal to the partial file's size means the
                # earlier attempt had received everything but the end of the body.
                match = UNSATISFIED_RANGE_PATTERN.fullmatch(response.headers.get("Content-Range", ""))
                if match and int(match.group(1)) == offset:
                    return sha256_file(partial)
                # The partial file is longer than the resource or the server
                # did not send the resource length, so start over on the next attempt.
                partial.unlink()
                raise _RetryableError("server rejected the resume range (416); restarting")
            if response.status_code >= 500:
                raise _RetryableError(f"HTTP {response.status_code} from {response.url}")
            if response.status_code not in (200, 206):
                raise DownloadError(
                    f"HTTP {response.status_code} {response.reason} from {response.url}"
                )
            _reject_html(response)
            total = self._check_length(response, offset, expected_size)
            if response.status_code == 200 and offset:
                log.info("server ignored the Range header; downloading from the start")
                offset = 0
            return self._write_body(response, partial, offset, total, progress)

    def _open(self, url: str, headers: dict[str, str]) -> requests.Response:
        try:
            return open_https(self.session, url, headers=headers, options=self.options)
        except DownloadConnectionError as error:
            raise _RetryableError(error.message) from None

    def _check_length(
        self, response: requests.Response, offset: int, expected_size: int | None
    ) -> int | None:
        """Return the full resource size when the server states it; enforce the size cap."""
        total: int | None = None
        if response.status_code == 206:
            match = CONTENT_RANGE_PATTERN.fullmatch(response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != offset:
                raise DownloadError(
                    f"{response.url} returned Content-Range "
                    f"{response.headers.get('Content-Range')!r} for a resume request, "
                    f"expected bytes {offset}-"
                )
            if match.group(3) != "*":
                total = int(match.group(3))
        elif "Content-Length" in response.headers:
            total = int(response.headers["Content-Length"])
        if total is not None and total > self.options.max_bytes:
            raise DownloadError(
                f"{response.url} is {total} bytes, more than the limit of "
                f"{self.options.max_bytes} bytes"
            )
        if total is not None and expected_size is not None and total != expected_size:
            raise DownloadError(f"{response.url} is {total} bytes, expected {expected_size}")
        return total

    def _write_body(
        self,
        response: requests.Response,
        partial: Path,
        offset: int,
        total: int | None,
        progress: ProgressCallback | None,
    ) -> str:
        received = offset
        digest = hashlib.sha256()
        with partial.open("r+b" if offset else "wb") as file:
            # A resumed download hashes the bytes it already has, then the new ones.
            while file.tell() < offset:
                block = file.read(min(CHUNK_SIZE, offset - file.tell()))
                if not block:
                    break
                digest.update(block)
            file.seek(offset)
            file.truncate()
            chunks = _iter_body(response)
            while True:
                try:
                    chunk = next(chunks, b"")
                except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as error:
                    # Keep what arrived so the next attempt resumes after it.
                    file.flush()
                    os.fsync(file.fileno())
                    raise _RetryableError(
                        f"connection to {response.url} broke after {received} bytes: {error}"
                    ) from None
                if not chunk:
                    break
                if received == 0 and chunk.lstrip()[:16].lower().startswith(HTML_STARTS):
                    file.close()
                    partial.unlink()
                    raise _html_error(response)
                received += len(chunk)
                if received > self.options.max_bytes:
                    file.close()
                    partial.unlink()
                    raise DownloadError(
                        f"{response.url} sent more than the limit of "
                        f"{self.options.max_bytes} bytes"
                    )
                file.write(chunk)
                digest.update(chunk)
                if progress:
                    progress(received, total)
            file.flush()
            os.fsync(file.fileno())
        if total is not None and received < total:
            raise _RetryableError(f"{response.url} ended after {received} of {total} bytes")
        return digest.hexdigest()


def open_https(
    session: requests.Session,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    options: DownloadOptions = DownloadOptions(),
) -> requests.Response:
    """Send a streaming GET to ``url``, following redirects that stay on https.

    Redirects are followed here rather than by requests, so that every hop is
    checked. Raises DownloadConnectionError when a server cannot be reached,
    and DownloadError for a TLS failure, a non-https hop or a redirect loop.
    """
    for _ in range(MAX_REDIRECTS + 1):
        require_https(url)
        try:
            response = session.get(
                url,
                headers=headers,
                stream=True,
                allow_redirects=False,
                timeout=(options.connect_timeout, options.read_timeout),
                verify=options.verify,
            )
        except requests.exceptions.SSLError as error:
            raise DownloadError(
                f"TLS verification of {url} failed: {error}",
                hint="the server's certificate is not trusted; set REQUESTS_CA_BUNDLE "
                "if you use a private CA",
            ) from None
        except (requests.ConnectionError, requests.Timeout) as error:
            raise DownloadConnectionError(f"cannot connect to {url}: {error}") from None
        if not response.is_redirect:
            return response
        location = response.headers["Location"]
        response.close()
        url = urljoin(url, location)
    raise DownloadError(f"more than {MAX_REDIRECTS} redirects starting at {url}")


def _iter_body(response: requests.Response) -> Iterator[bytes]:
    """Yield the body as it arrives.

    urllib3 2's read1() returns whatever has arrived, so bytes received
    before a connection breaks reach the partial file. iter_content() would
    lose up to a whole chunk, because urllib3's read(amt) raises
    IncompleteRead without returning the bytes it already holds.
    """
    raw = response.raw
    if not hasattr(raw, "read1"):
        yield from response.iter_content(CHUNK_SIZE)
        return
    while chunk := raw.read1(CHUNK_SIZE):
        yield chunk


def _reject_html(response: requests.Response) -> None:
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type in ("text/html", "application/xhtml+xml"):
        raise _html_error(response)


def _html_error(response: requests.Response) -> DownloadError:
    return DownloadError(
        f"{response.url} returned an HTML page instead of an EFI image",
        hint="the URL probably points to a web page (a login, error or download page); "
        "use the direct link to the .efi file",
    )
