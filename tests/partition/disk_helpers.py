"""Helpers for the partition tests: sparse images, loop devices, mounts, swap and checks with sgdisk."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

MIB = 1024 * 1024
GIB = 1024 * MIB
TIB = 1024 * GIB


def sh(*argv: str | os.PathLike[str], check: bool = True) -> str:
    """Run a tool we did not write, with a C locale; return stdout, raise with stderr on failure."""
    result = subprocess.run(
        [os.fspath(arg) for arg in argv], capture_output=True, env=dict(os.environ, LC_ALL="C"), check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, argv))} failed ({result.returncode}): {result.stderr.decode(errors='replace')}"
        )
    return result.stdout.decode(errors="replace")


def make_sparse(path: Path, size: int) -> Path:
    with open(path, "wb") as image:
        image.truncate(size)
    return path


def sgdisk_verify(path: Path) -> str:
    """Run ``sgdisk -v`` and fail unless it reports no problems."""
    output = sh("sgdisk", "-v", path)
    assert "No problems found" in output, output
    return output


def sgdisk_partitions(path: Path) -> list[tuple[int, int, int, str, str]]:
    """Return ``sgdisk -p`` partition rows as (number, start, end, code, name)."""
    rows = []
    for line in sh("sgdisk", "-p", path).splitlines():
        match = re.match(r"^\s+(\d+)\s+(\d+)\s+(\d+)\s+\S+ \S+\s+(\S+)\s+(.*)$", line)
        if match:
            rows.append((int(match[1]), int(match[2]), int(match[3]), match[4], match[5].strip()))
    return rows


def file_digest(path: Path, *, offset: int = 0, length: int | None = None) -> str:
    """SHA-256 of a byte range, reading sparse holes as zeros (kept small in tests)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        handle.seek(offset)
        remaining = length
        while remaining is None or remaining > 0:
            chunk = handle.read(MIB if remaining is None else min(MIB, remaining))
            if not chunk:
                break
            digest.update(chunk)
            if remaining is not None:
                remaining -= len(chunk)
    return digest.hexdigest()


def allocated_bytes(path: Path) -> int:
    return os.stat(path).st_blocks * 512


@contextlib.contextmanager
def attached_loop(image: Path, *, sector_size: int = 512, read_only: bool = False) -> Iterator[Path]:
    """Attach ``image`` to a loop device with partition scanning and detach it afterwards."""
    argv = ["losetup", "--find", "--show", "--partscan", "--sector-size", str(sector_size)]
    if read_only:
        argv.append("--read-only")
    device = Path(sh(*argv, image).strip())
    try:
        yield device
    finally:
        sh("losetup", "--detach", device, check=False)


@contextlib.contextmanager
def mounted(device: Path, mount_point: Path) -> Iterator[Path]:
    mount_point.mkdir(parents=True, exist_ok=True)
    sh("mount", device, mount_point)
    try:
        yield mount_point
    finally:
        sh("umount", mount_point, check=False)


@contextlib.contextmanager
def swap_on(device: Path) -> Iterator[Path]:
    sh("mkswap", device)
    sh("swapon", device)
    try:
        yield device
    finally:
        sh("swapoff", device, check=False)


def device_mapper_available() -> bool:
    """Return whether this kernel has device-mapper; ``dmsetup version`` fails without the kernel driver."""
    try:
        result = subprocess.run(["dmsetup", "version"], capture_output=True, check=False)
    except FileNotFoundError:
        return False
    return result.returncode == 0


@contextlib.contextmanager
def dm_linear(name: str, device: Path, sectors: int) -> Iterator[Path]:
    sh("dmsetup", "create", name, "--table", f"0 {sectors} linear {device} 0")
    try:
        yield Path("/dev/mapper") / name
    finally:
        sh("dmsetup", "remove", name, check=False)


def make_disk(
    sys_root: Path,
    device_dir: str,
    name: str,
    *,
    sectors: int = 2097152,
    logical: int = 512,
    physical: int | None = None,
    partitions: tuple[tuple[int, int, int], ...] = (),
    attributes: dict[str, str] | None = None,
    device_number: str = "254:0",
) -> Path:
    """Create ``sys_root/devices/<device_dir>`` with a block device and link it from ``sys_root/block``.

    ``partitions`` are (number, start, size) in 512-byte units, as sysfs shows them.
    """
    block = sys_root / "devices" / device_dir
    (block / "queue").mkdir(parents=True)
    (block / "holders").mkdir()
    (block / "slaves").mkdir()
    (block / "size").write_text(f"{sectors}\n")
    (block / "dev").write_text(f"{device_number}\n")
    (block / "ro").write_text("0\n")
    (block / "removable").write_text("0\n")
    (block / "queue" / "logical_block_size").write_text(f"{logical}\n")
    (block / "queue" / "physical_block_size").write_text(f"{physical or logical}\n")
    (block / "queue" / "rotational").write_text("1\n")
    for key, value in (attributes or {}).items():
        (block / key).parent.mkdir(parents=True, exist_ok=True)
        (block / key).write_text(value + "\n")
    major = device_number.split(":")[0]
    for number, start, size in partitions:
        part = block / (f"{name}p{number}" if name[-1].isdigit() else f"{name}{number}")
        (part / "holders").mkdir(parents=True)
        (part / "partition").write_text(f"{number}\n")
        (part / "start").write_text(f"{start}\n")
        (part / "size").write_text(f"{size}\n")
        (part / "dev").write_text(f"{major}:{number}\n")
    (sys_root / "block").mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.relpath(block, sys_root / "block"), sys_root / "block" / name)
    return block
