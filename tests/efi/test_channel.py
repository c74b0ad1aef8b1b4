"""The release channel index, and a payload fetched through it end to end."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import pytest

from switchos.efi.channel import (
    CHANNEL_URL_VARIABLE,
    ChannelError,
    Release,
    check_installer_version,
    fetch_release,
    parse_index,
    resolve_channel_url,
)
from switchos.efi.download import Downloader, DownloadOptions
from switchos.efi.pe import PayloadCheckError, PayloadKind
from switchos.efi.payload import download_release

from .conftest import DRIVER_METADATA, Handler, PeBuilder, Route, Servers

INDEX = {
    "version": "2.0.1",
    "url": "https://127.0.0.1/payload.efi",
    "sha256": "ab" * 32,
    "size": 4096,
    "minimum_installer_version": "0.1.0",
}


def serve_json(document: object) -> Route:
    def route(handler: Handler) -> None:
        handler.send_body(json.dumps(document).encode(), content_type="application/json")

    return route


def test_index_parsed() -> None:
    assert parse_index(INDEX, source="test") == Release("2.0.1", INDEX["url"], "ab" * 32, 4096, "0.1.0")


def test_index_lists_every_problem() -> None:
    document = {"version": "two", "url": "http://example.invalid/p.efi", "sha256": "AB",
                "size": 0, "minimum_installer_version": True}
    with pytest.raises(ChannelError) as error:
        parse_index(document, source="test")
    message = error.value.message
    for fragment in ("version 'two' is not a dotted version number", "is not an https URL",
                     "sha256 is not 64 lowercase", "size 0 is not positive",
                     "minimum_installer_version is missing or not a str"):
        assert fragment in message


def test_installer_too_old() -> None:
    release = parse_index({**INDEX, "minimum_installer_version": "0.10.0"}, source="test")
    with pytest.raises(ChannelError) as error:
        check_installer_version(release, "0.9.5")
    assert "needs switchos 0.10.0 or newer; this is 0.9.5" in error.value.message
    check_installer_version(release, "0.10.0")


def test_no_channel_configured() -> None:
    with pytest.raises(ChannelError) as error:
        resolve_channel_url(None, {})
    assert "--payload PATH" in (error.value.hint or "")
    assert resolve_channel_url(None, {CHANNEL_URL_VARIABLE: "https://a/index.json"}) == "https://a/index.json"
    assert resolve_channel_url("https://b/index.json", {CHANNEL_URL_VARIABLE: "https://a"}) == "https://b/index.json"


def test_channel_unreachable_hints_payload() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    with pytest.raises(ChannelError) as error:
        fetch_release(f"https://127.0.0.1:{port}/index.json")
    assert "is not reachable" in error.value.message
    assert "--payload PATH" in (error.value.hint or "")


def test_channel_plain_http_rejected(servers: Servers) -> None:
    servers.http.routes["/index.json"] = serve_json(INDEX)
    with pytest.raises(ChannelError, match="only https URLs are allowed"):
        fetch_release(servers.http.url("/index.json"))
    assert servers.http.requests == []


def redirect_to(target: str) -> Route:
    def route(handler: Handler) -> None:
        handler.send_response(302)
        handler.send_header("Location", target)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return route


def test_channel_follows_https_redirect(servers: Servers) -> None:
    servers.https.routes["/index.json"] = serve_json(INDEX)
    servers.https.routes["/stable"] = redirect_to("/index.json")
    release = fetch_release(servers.https.url("/stable"), options=DownloadOptions(verify=str(servers.ca_file)))
    assert release.version == "2.0.1"


def test_channel_redirect_to_http_rejected(servers: Servers) -> None:
    servers.http.routes["/index.json"] = serve_json(INDEX)
    servers.https.routes["/stable"] = redirect_to(servers.http.url("/index.json"))
    with pytest.raises(ChannelError) as error:
        fetch_release(servers.https.url("/stable"), options=DownloadOptions(verify=str(servers.ca_file)))
    assert "only https URLs are allowed" in error.value.message
    assert "--payload PATH" in (error.value.hint or "")
    assert servers.http.requests == []


def test_channel_not_json(servers: Servers) -> None:
    servers.https.routes["/index.json"] = lambda handler: handler.send_body(b"<html>", content_type="text/html")
    with pytest.raises(ChannelError, match="is not valid JSON"):
        fetch_release(servers.https.url("/index.json"), options=DownloadOptions(verify=str(servers.ca_file)))


def test_channel_index_too_large(servers: Servers) -> None:
    servers.https.routes["/index.json"] = lambda handler: handler.send_body(b" " * 70_000)
    with pytest.raises(ChannelError, match="larger than 65536 bytes"):
        fetch_release(servers.https.url("/index.json"), options=DownloadOptions(verify=str(servers.ca_file)))


def test_release_downloaded_and_checked(servers: Servers, pe_builder: PeBuilder, tmp_path: Path) -> None:
    payload = pe_builder.build("channel-driver", subsystem=11, metadata=DRIVER_METADATA).read_bytes()
    servers.https.routes["/payload.efi"] = lambda handler: handler.send_body(payload)
    index = {**INDEX, "url": servers.https.url("/payload.efi"),
             "sha256": hashlib.sha256(payload).hexdigest(), "size": len(payload)}
    servers.https.routes["/index.json"] = serve_json(index)
    options = DownloadOptions(verify=str(servers.ca_file))

    release = fetch_release(servers.https.url("/index.json"), options=options)
    verified = download_release(Downloader(tmp_path / "cache", options), release)

    assert verified.sha256 == index["sha256"]
    assert verified.image.kind is PayloadKind.DRIVER
    assert verified.version == "2.0.1"
    assert verified.path.parent == tmp_path / "cache"


def test_release_not_a_pe_rejected(servers: Servers, tmp_path: Path) -> None:
    body = b"MZ but not really a payload" * 10
    servers.https.routes["/payload.efi"] = lambda handler: handler.send_body(body)
    release = Release("1.0", servers.https.url("/payload.efi"), hashlib.sha256(body).hexdigest(), len(body), "0.1")
    with pytest.raises(PayloadCheckError):
        download_release(Downloader(tmp_path / "cache", DownloadOptions(verify=str(servers.ca_file))), release)
