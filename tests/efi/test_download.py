"""Downloads from real HTTPS and HTTP servers on 127.0.0.1."""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import pytest

from switchos.efi.download import DownloadError, Downloader, DownloadOptions, normalize_sha256
from switchos.errors import InvalidInputError

from .conftest import Handler, Servers

BODY = os.urandom(300_000)
BODY_SHA256 = hashlib.sha256(BODY).hexdigest()


def make_downloader(tmp_path: Path, servers: Servers, **options: object) -> tuple[Downloader, list[float]]:
    sleeps: list[float] = []
    settings = {"verify": str(servers.ca_file), "backoff": 0.01, "attempts": 4,
                "read_timeout": 5.0, "connect_timeout": 5.0, **options}
    downloader = Downloader(tmp_path / "cache", DownloadOptions(**settings), sleep=sleeps.append)
    return downloader, sleeps


def serve_file(handler: Handler) -> None:
    handler.send_body(BODY)


def test_download_verified_into_cache(tmp_path: Path, servers: Servers) -> None:
    servers.https.routes["/payload.efi"] = serve_file
    downloader, _sleeps = make_downloader(tmp_path, servers)
    progress: list[tuple[int, int | None]] = []

    path = downloader.fetch(servers.https.url("/payload.efi"), BODY_SHA256, progress=lambda done, total: progress.append((done, total)))

    assert path == tmp_path / "cache" / BODY_SHA256
    assert path.read_bytes() == BODY
    assert progress[-1] == (len(BODY), len(BODY))
    assert not (tmp_path / "cache" / f"{BODY_SHA256}.part").exists()


def test_download_uses_cache_second_time(tmp_path: Path, servers: Servers) -> None:
    servers.https.routes["/payload.efi"] = serve_file
    downloader, _sleeps = make_downloader(tmp_path, servers)
    url = servers.https.url("/payload.efi")
    downloader.fetch(url, BODY_SHA256)
    downloader.fetch(url, BODY_SHA256.upper())
    assert len(servers.https.paths_requested("/payload.efi")) == 1


def test_download_replaces_corrupt_cache_entry(tmp_path: Path, servers: Servers) -> None:
    servers.https.routes["/payload.efi"] = serve_file
    downloader, _sleeps = make_downloader(tmp_path, servers)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / BODY_SHA256).write_bytes(b"not the payload")
    path = downloader.fetch(servers.https.url("/payload.efi"), BODY_SHA256)
    assert path.read_bytes() == BODY


def test_download_plain_http_rejected(tmp_path: Path, servers: Servers) -> None:
    servers.http.routes["/payload.efi"] = serve_file
    downloader, _sleeps = make_downloader(tmp_path, servers)
    with pytest.raises(DownloadError) as error:
        downloader.fetch(servers.http.url("/payload.efi"), BODY_SHA256)
    assert "only https URLs are allowed" in error.value.message
    assert servers.http.requests == []


def test_download_follows_https_redirect(tmp_path: Path, servers: Servers) -> None:
    servers.https.routes["/payload.efi"] = serve_file

    def redirect(handler: Handler) -> None:
        handler.send_response(302)
        handler.send_header("Location", "/payload.efi")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    servers.https.routes["/latest"] = redirect
    downloader, _sleeps = make_downloader(tmp_path, servers)
    path = downloader.fetch(servers.https.url("/latest"), BODY_SHA256)
    assert path.read_bytes() == BODY


def test_download_redirect_to_http_rejected(tmp_path: Path, servers: Servers) -> None:
    servers.http.routes["/payload.efi"] = serve_file
    target = servers.http.url("/payload.efi")

    def redirect(handler: Handler) -> None:
        handler.send_response(301)
        handler.send_header("Location", target)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    servers.https.routes["/latest"] = redirect
    downloader, _sleeps = make_downloader(tmp_path, servers)
    with pytest.raises(DownloadError) as error:
        downloader.fetch(servers.https.url("/latest"), BODY_SHA256)
    assert target in error.value.message
    assert servers.http.requests == []


def test_download_redirect_loop_stops(tmp_path: Path, servers: Servers) -> None:
    def redirect(handler: Handler) -> None:
        handler.send_response(302)
        handler.send_header("Location", "/loop")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    servers.https.routes["/loop"] = redirect
    downloader, _sleeps = make_downloader(tmp_path, servers)
    with pytest.raises(DownloadError, match="redirects"):
        downloader.fetch(servers.https.url("/loop"), BODY_SHA256)


def test_download_retries_server_errors(tmp_path: Path, servers: Servers) -> None:
    calls = []

    def flaky(handler: Handler) -> None:
        calls.append(1)
        if len(calls) <= 2:
            handler.send_body(b"busy", content_type="text/plain", status=503, honour_range=False)
        else:
            handler.send_body(BODY)

    servers.https.routes["/payload.efi"] = flaky
    downloader, sleeps = make_downloader(tmp_path, servers)
    path = downloader.fetch(servers.https.url("/payload.efi"), BODY_SHA256)
    assert path.read_bytes() == BODY
    assert len(calls) == 3
    # Exponential backoff: base, then twice the base.
    assert sleeps == [0.01, 0.02]


def test_download_gives_up_after_attempts(tmp_path: Path, servers: Servers) -> None:
    def broken(handler: Handler) -> None:
        handler.send_body(b"down", content_type="text/plain", status=500, honour_range=False)

    servers.https.routes["/payload.efi"] = broken
    downloader, sleeps = make_downloader(tmp_path, servers, attempts=3)
    with pytest.raises(DownloadError) as error:
        downloader.fetch(servers.https.url("/payload.efi"), BODY_SHA256)
    assert "after 3 attempts" in error.value.message
    assert "HTTP 500" in error.value.message
    assert len(sleeps) == 2
    assert not (tmp_path / "cache" / BODY_SHA256).exists()


def test_download_not_found_not_retried(tmp_path: Path, servers: Servers) -> None:
    downloader, sleeps = make_downloader(tmp_path, servers)
    with pytest.raises(DownloadError, match="HTTP 404"):
        downloader.fetch(servers.https.url("/missing.efi"), BODY_SHA256)
    assert sleeps == []


def drop_midway(handler: Handler, calls: list[int]) -> None:
    """First request: announce the full length, send half, close the connection."""
    calls.append(1)
    if len(calls) == 1:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.send_header("Content-Length", str(len(BODY)))
        handler.end_headers()
        handler.wfile.write(BODY[: len(BODY) // 2])
        handler.wfile.flush()
        handler.close_connection = True
        handler.connection.shutdown(socket.SHUT_RDWR)
        return


def test_download_resumes_with_range(tmp_path: Path, servers: Servers) -> None:
    calls: list[int] = []

    def route(handler: Handler) -> None:
        drop_midway(handler, calls)
        if len(calls) > 1:
            handler.send_body(BODY)

    servers.https.routes["/payload.efi"] = route
    downloader, _sleeps = make_downloader(tmp_path, servers)
    path = downloader.fetch(servers.https.url("/payload.efi"), BODY_SHA256)
    assert path.read_bytes() == BODY
    requests = servers.https.paths_requested("/payload.efi")
    assert len(requests) == 2
    assert "Range" not in requests[0]
    assert requests[1]["Range"] == f"bytes={len(BODY) // 2}-"


def test_download_restarts_when_range_ignored(tmp_path: Path, servers: Servers) -> None:
    calls: list[int] = []

    def route(handler: Handler) -> None:
        drop_midway(handler, calls)
        if len(calls) > 1:
            handler.send_body(BODY, honour_range=False)

    servers.https.routes["/payload.efi"] = route
    downloader, _sleeps = make_downloader(tmp_path, servers)
    path = downloader.fetch(servers.https.url("/payload.efi"), BODY_SHA256)
    assert path.read_bytes() == BODY
    assert "Range" in servers.https.paths_requested("/payload.efi")[1]


def test_download_rejects_wrong_content_range(tmp_path: Path, servers: Servers) -> None:
    calls: list[int] = []

    def route(handler: Handler) -> None:
        drop_midway(handler, calls)
        if len(calls) > 1:
            handler.send_response(206)
            handler.send_header("Content-Range", f"bytes 0-{len(BODY) - 1}/{len(BODY)}")
            handler.send_header("Content-Length", str(len(BODY)))
            handler.end_headers()
            handler.wfile.write(BODY)

    servers.https.routes["/payload.efi"] = route
    downloader, _sleeps = make_downloader(tmp_path, servers)
    with pytest.raises(DownloadError, match="Content-Range"):
        downloader.fetch(servers.https.url("/payload.efi"), BODY_SHA256)
    assert not (tmp_path / "cache" / BODY_SHA256).exists()


def test_download_truncated_body_never_cached(tmp_path: Path, servers: Servers) -> None:
    # Every request gets half the body, so no attempt completes.
    servers.https.routes["/payload.efi"] = lambda handler: drop_midway(handler, [])
    downloader, _sleeps = make_downloader(tmp_path, servers, attempts=2)
    with pytest.raises(DownloadError) as error:
        downloader.fetch(servers.https.url("/payload.efi"), BODY_SHA256)
    assert "after 2 attempts" in error.value.message
    assert "broke after" in error.value.message
    assert not (tmp_path / "cache" / BODY_SHA256).exists()


def test_download_html_error_page_rejected(tmp_path: Path, servers: Servers) -> None:
    page = b"<html><body>Please log in</body></html>"
    servers.https.routes["/payload.efi"] = lambda handler: handler.send_body(
        page, content_type="text/html; charset=utf-8"
    )
    downloader, _sleeps = make_downloader(tmp_path, servers)
    with pytest.raises(DownloadError) as error:
        downloader.fetch(servers.https.url("/payload.efi"), hashlib.sha256(page).hexdigest())
    assert "HTML page" in error.value.message
    assert list((tmp_path / "cache").iterdir()) == []


def test_download_html_without_content_type(tmp_path: Path, servers: Servers) -> None:
    page = b"\n<!DOCTYPE html>\n<html><body>404</body></html>"
    servers.https.routes["/payload.efi"] = lambda handler: handler.send_body(page)
    downloader, _sleeps = make_downloader(tmp_path, servers)
    with pytest.raises(DownloadError, match="HTML page"):
        downloader.fetch(servers.https.url("/payload.efi"), hashlib.sha256(page).hexdigest())
    assert list((tmp_path / "cache").iterdir()) == []


def test_download_complete_partial_not_fetched_again(tmp_path: Path, servers: Servers) -> None:
    # An earlier run received every byte but stopped before renaming the file.
    servers.https.routes["/payload.efi"] = serve_file
    downloader, _sleeps = make_downloader(tmp_path, servers)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / f"{BODY_SHA256}.part").write_bytes(BODY)
    path = downloader.fetch(servers.https.url("/payload.efi"), BODY_SHA256)
    assert path.read_bytes() == BODY
    (request,) = servers.https.paths_requested("/payload.efi")
    assert request["Range"] == f"bytes={len(BODY)}-"


def test_download_overlong_partial_restarted(tmp_path: Path, servers: Servers) -> None:
    servers.https.routes["/payload.efi"] = serve_file
    downloader, sleeps = make_downloader(tmp_path, servers)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / f"{BODY_SHA256}.part").write_bytes(BODY + b"junk")
    path = downloader.fetch(servers.https.url("/payload.efi"), BODY_SHA256)
    assert path.read_bytes() == BODY
    assert len(sleeps) == 1


def test_download_wrong_hash_rejected(tmp_path: Path, servers: Servers) -> None:
    servers.https.routes["/payload.efi"] = serve_file
    downloader, _sleeps = make_downloader(tmp_path, servers)
    expected = "0" * 64
    with pytest.raises(DownloadError) as error:
        downloader.fetch(servers.https.url("/payload.efi"), expected)
    assert BODY_SHA256 in error.value.message
    assert expected in error.value.message
    assert list((tmp_path / "cache").iterdir()) == []


def test_download_too_big_by_length(tmp_path: Path, servers: Servers) -> None:
    servers.https.routes["/payload.efi"] = serve_file
    downloader, _sleeps = make_downloader(tmp_path, servers, max_bytes=100_000)
    with pytest.raises(DownloadError, match="more than the limit of 100000 bytes"):
        downloader.fetch(servers.https.url("/payload.efi"), BODY_SHA256)
    assert list((tmp_path / "cache").iterdir()) == []


def test_download_too_big_without_length(tmp_path: Path, servers: Servers) -> None:
    def unbounded(handler: Handler) -> None:
        # HTTP/1.1 without Content-Length or chunking: the body ends when the
        # connection closes, so only the byte count can enforce the limit.
        handler.send_response(200)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.close_connection = True
        handler.wfile.write(BODY)

    servers.https.routes["/payload.efi"] = unbounded
    downloader, _sleeps = make_downloader(tmp_path, servers, max_bytes=100_000)
    with pytest.raises(DownloadError, match="sent more than the limit"):
        downloader.fetch(servers.https.url("/payload.efi"), BODY_SHA256)
    assert list((tmp_path / "cache").iterdir()) == []


def test_download_expected_size_checked(tmp_path: Path, servers: Servers) -> None:
    servers.https.routes["/payload.efi"] = serve_file
    downloader, _sleeps = make_downloader(tmp_path, servers)
    with pytest.raises(DownloadError, match=f"expected {len(BODY) + 1}"):
        downloader.fetch(servers.https.url("/payload.efi"), BODY_SHA256, expected_size=len(BODY) + 1)


def test_download_untrusted_certificate(tmp_path: Path, servers: Servers) -> None:
    servers.https.routes["/payload.efi"] = serve_file
    downloader, sleeps = make_downloader(tmp_path, servers, verify=True)
    with pytest.raises(DownloadError, match="TLS verification"):
        downloader.fetch(servers.https.url("/payload.efi"), BODY_SHA256)
    assert sleeps == []


def test_download_connection_refused_retried(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    downloader = Downloader(tmp_path, DownloadOptions(attempts=3, backoff=0.01), sleep=lambda _: None)
    with pytest.raises(DownloadError, match="after 3 attempts"):
        downloader.fetch(f"https://127.0.0.1:{port}/payload.efi", BODY_SHA256)


def test_download_honours_no_proxy(tmp_path: Path, servers: Servers, monkeypatch: pytest.MonkeyPatch) -> None:
    servers.https.routes["/payload.efi"] = serve_file
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    dead_proxy = f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()
    monkeypatch.setenv("HTTPS_PROXY", dead_proxy)

    downloader, _sleeps = make_downloader(tmp_path, servers, attempts=1)
    with pytest.raises(DownloadError, match="after 1 attempts"):
        downloader.fetch(servers.https.url("/payload.efi"), BODY_SHA256)

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    downloader, _sleeps = make_downloader(tmp_path, servers, attempts=1)
    assert downloader.fetch(servers.https.url("/payload.efi"), BODY_SHA256).read_bytes() == BODY


@pytest.mark.parametrize("value", ["", "abc", "g" * 64, "0" * 63])
def test_normalize_sha256_rejects(value: str) -> None:
    with pytest.raises(InvalidInputError):
        normalize_sha256(value)
