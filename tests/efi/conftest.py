"""Fixtures of the efi tests: HTTPS and plain HTTP servers on 127.0.0.1, and PE images.

The HTTPS server uses a throw-away certificate authority from trustme; the
downloader is pointed at its CA file with ``verify=``. No test talks to any
other host.
"""

from __future__ import annotations

import http.server
import os
import shutil
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme

Route = Callable[["Handler"], None]


class Handler(http.server.BaseHTTPRequestHandler):
    """Dispatches GET requests to the server's routes and logs every request."""

    server: TestServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        path = self.path.split("?", 1)[0]
        self.server.requests.append((path, dict(self.headers.items())))
        route = self.server.routes.get(path)
        if route is None:
            self.send_error(404)
            return
        route(self)

    def log_message(self, format: str, *args: object) -> None:
        return None

    def send_body(self, body: bytes, *, content_type: str = "application/octet-stream",
                  status: int = 200, honour_range: bool = True) -> None:
        """Send ``body``; with ``honour_range``, a ``Range: bytes=N-`` request gets a 206 response."""
        range_header = self.headers.get("Range")
        if honour_range and range_header and range_header.startswith("bytes="):
            start = int(range_header[len("bytes="):].split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            body = body[start:]
        else:
            self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class TestServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, context: ssl.SSLContext | None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        if context is not None:
            self.socket = context.wrap_socket(self.socket, server_side=True)
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.scheme = "https" if context else "http"

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server_address[1]}{path}"

    def paths_requested(self, path: str) -> list[dict[str, str]]:
        return [headers for requested, headers in self.requests if requested == path]


@dataclass
class Servers:
    https: TestServer
    http: TestServer
    ca_file: Path
    threads: list[threading.Thread] = field(default_factory=list)


@pytest.fixture(scope="session")
def certificate_authority(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path]:
    ca = trustme.CA()
    ca_file = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return ca, ca_file


@pytest.fixture
def servers(certificate_authority: tuple[trustme.CA, Path]) -> Iterator[Servers]:
    ca, ca_file = certificate_authority
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    https = TestServer(context)
    plain = TestServer(None)
    result = Servers(https=https, http=plain, ca_file=ca_file)
    for server in (https, plain):
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        result.threads.append(thread)
    try:
        yield result
    finally:
        for server in (https, plain):
            server.shutdown()
            server.server_close()


# --- PE images -------------------------------------------------------------

MINGW = "x86_64-w64-mingw32-gcc"
SYSTEMD_BOOT = Path("/usr/lib/systemd/boot/efi/systemd-bootx64.efi")

# A minimal EFI entry point with a pointer in .data, so the linker emits a
# base relocation for it.
ENTRY_SOURCE = """
static volatile int counter = 3;
static volatile int *volatile pointer = &counter;
unsigned long long efi_main(void *image, void *system_table) { return *pointer; }
"""


def metadata_source(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return (
        f'__attribute__((section(".swos"), used)) static const char swos[] = "{escaped}";\n'
        + ENTRY_SOURCE
    )


DRIVER_METADATA = (
    "protocol=1\nname=test-payload\nversion=2.0.1\nkind=driver\n"
    "store=partition\ndisks=virtio-blk,nvme\n"
)


class PeBuilder:
    """Builds small PE images with mingw into one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def build(self, name: str, *, subsystem: int = 10, metadata: str | None = None,
              extra: tuple[str, ...] = ()) -> Path:
        if shutil.which(MINGW) is None:
            pytest.fail(f"{MINGW} is missing: apt-get install gcc-mingw-w64-x86-64")
        source = self.folder / f"{name}.c"
        source.write_text(metadata_source(metadata) if metadata is not None else ENTRY_SOURCE)
        output = self.folder / f"{name}.efi"
        subprocess.run(
            [MINGW, "-nostdlib", "-ffreestanding", "-fno-stack-protector", "-O1",
             f"-Wl,--subsystem,{subsystem}", "-e", "efi_main", *extra,
             "-o", str(output), str(source)],
            check=True, capture_output=True,
        )
        return output


@pytest.fixture(scope="session")
def pe_builder(tmp_path_factory: pytest.TempPathFactory) -> PeBuilder:
    return PeBuilder(tmp_path_factory.mktemp("pe"))


@pytest.fixture(autouse=True)
def no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's proxy variables from routing 127.0.0.1 requests elsewhere."""
    for key in list(os.environ):
        if key.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
            monkeypatch.delenv(key)
