#!/usr/bin/env python3
"""Time the payload downloader against curl on the same 64 MiB file from a local HTTPS server.

Both clients fetch the same random file, in the same run, from one
http.server with a throw-away trustme certificate on 127.0.0.1. The server
is Python too, so both numbers include its cost; the ratio compares the
clients. Run it with the project's virtual environment (it needs the test
extra for trustme):

    .venv/bin/python scripts/bench_download.py [--size-mib 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import trustme

from switchos.efi.download import Downloader, DownloadOptions


class FileHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    body_path: Path

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        size = self.body_path.stat().st_size
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        with self.body_path.open("rb") as file:
            shutil.copyfileobj(file, self.wfile, 1024 * 1024)

    def log_message(self, format: str, *args: object) -> None:
        return None


def time_downloader(url: str, sha256: str, size: int, ca_file: Path, cache: Path) -> float:
    shutil.rmtree(cache, ignore_errors=True)
    downloader = Downloader(cache, DownloadOptions(verify=str(ca_file), max_bytes=size))
    start = time.perf_counter()
    downloader.fetch(url, sha256, expected_size=size)
    return time.perf_counter() - start


def time_curl(url: str, sha256: str, ca_file: Path, output: Path) -> tuple[float, float]:
    """Return curl's transfer time, and that time plus hashing the file it wrote."""
    output.unlink(missing_ok=True)
    start = time.perf_counter()
    subprocess.run(["curl", "--silent", "--show-error", "--fail", "--cacert", str(ca_file),
                    "--output", str(output), url], check=True)
    transfer = time.perf_counter() - start
    # The downloader hashes what it writes, so the compared time hashes curl's file too.
    digest = hashlib.sha256(output.read_bytes()).hexdigest()
    elapsed = time.perf_counter() - start
    if digest != sha256:
        raise SystemExit(f"curl downloaded a file with SHA-256 {digest}, expected {sha256}")
    return transfer, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=64, help="file size in MiB (default 64)")
    parser.add_argument("--rounds", type=int, default=3, help="downloads per client; the best counts")
    arguments = parser.parse_args()
    if shutil.which("curl") is None:
        print("curl is not installed: apt-get install curl", file=sys.stderr)
        return 1

    with tempfile.TemporaryDirectory(prefix="switchos-bench-") as folder_name:
        folder = Path(folder_name)
        size = arguments.size_mib * 1024 * 1024
        body = folder / "payload.bin"
        body.write_bytes(os.urandom(size))
        sha256 = hashlib.sha256(body.read_bytes()).hexdigest()

        ca = trustme.CA()
        ca_file = folder / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        FileHandler.body_path = body
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FileHandler)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        url = f"https://127.0.0.1:{server.server_address[1]}/payload.bin"
        try:
            ours = [time_downloader(url, sha256, size, ca_file, folder / "cache")
                    for _ in range(arguments.rounds)]
            curls = [time_curl(url, sha256, ca_file, folder / "curl.bin")
                     for _ in range(arguments.rounds)]
        finally:
            server.shutdown()
            server.server_close()

    best_ours = min(ours)
    best_transfer = min(transfer for transfer, _total in curls)
    best_curl = min(total for _transfer, total in curls)
    mib = arguments.size_mib
    print(f"file: {mib} MiB over HTTPS from 127.0.0.1, best of {arguments.rounds}, "
          "download plus SHA-256 check")
    print(f"switchos downloader: {best_ours:.3f} s ({mib / best_ours:.1f} MiB/s)")
    print(f"curl plus sha256:    {best_curl:.3f} s ({mib / best_curl:.1f} MiB/s)")
    print(f"curl transfer only:  {best_transfer:.3f} s ({mib / best_transfer:.1f} MiB/s)")
    print(f"ratio (switchos / curl plus sha256): {best_ours / best_curl:.2f}")
    print(f"ratio (switchos / curl transfer only): {best_ours / best_transfer:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
