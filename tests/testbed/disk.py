"""GPT disk images with a FAT32 ESP, read and written with sgdisk and mtools."""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

SECTOR = 512
MIB = 1024 * 1024
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"


def _run(*argv: str | os.PathLike[str], input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, LC_ALL="C", MTOOLS_SKIP_CHECK="1")
    return subprocess.run(
        [os.fspath(arg) for arg in argv], input=input, capture_output=True, env=env, check=False
    )


def run(*argv: str | os.PathLike[str], input: bytes | None = None) -> str:
    """Run a command with a C locale; raise with its stderr when it fails."""
    result = _run(*argv, input=input)
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(map(str, argv))} failed ({result.returncode}): "
            f"{result.stderr.decode(errors='replace').strip()}"
        )
    return result.stdout.decode(errors="replace")


@dataclass(frozen=True)
class Partition:
    """A GPT partition as the firmware's HD() device path node describes it."""

    number: int
    start_lba: int
    size_lba: int
    guid: uuid.UUID
    type_guid: str


def make_sparse_image(path: Path, size: int) -> Path:
    """Create an empty sparse image file of ``size`` bytes."""
    with open(path, "wb") as image:
        image.truncate(size)
    return path


def read_partition(image: Path, number: int) -> Partition:
    """Read one partition's geometry and GUIDs with ``sgdisk -i``."""
    info = run("sgdisk", "-i", str(number), image)
    fields = dict(re.findall(r"^([^:\n]+):\s*(.*)$", info, re.MULTILINE))
    start = int(fields["First sector"].split()[0])
    last = int(fields["Last sector"].split()[0])
    return Partition(
        number=number,
        start_lba=start,
        size_lba=last - start + 1,
        guid=uuid.UUID(fields["Partition unique GUID"]),
        type_guid=fields["Partition GUID code"].split()[0],
    )


def make_esp_image(path: Path, *, size: int, esp_size: int) -> Partition:
    """Create a GPT disk image whose first partition is a FAT32 ESP of ``esp_size`` bytes."""
    make_sparse_image(path, size)
    run(
        "sgdisk",
        "--clear",
        f"--new=1:2048:+{esp_size // 1024}K",
        "--typecode=1:EF00",
        "--change-name=1:EFI System Partition",
        path,
    )
    esp = read_partition(path, 1)
    # FAT32 needs at least 65525 clusters, counted after the reserved sectors and
    # the FATs; take the largest cluster size that stays clear of that limit.
    sectors_per_cluster = next(
        (size for size in (8, 4, 2, 1) if esp.size_lba // size > 70000), None
    )
    if sectors_per_cluster is None:
        raise ValueError(f"an ESP of {esp_size} bytes is too small for FAT32; use at least 36 MiB")
    run(
        "mkfs.fat",
        "-F",
        "32",
        "-s",
        str(sectors_per_cluster),
        "-n",
        "ESP",
        f"--offset={esp.start_lba}",
        path,
        str(esp.size_lba * SECTOR // 1024),
    )
    return esp


class FatVolume:
    """The FAT file system of one partition inside a disk image, through mtools."""

    def __init__(self, image: Path, partition: Partition) -> None:
        self.image = image
        self.partition = partition

    @property
    def _drive(self) -> str:
        return f"{self.image}@@{self.partition.start_lba * SECTOR}"

    def _target(self, path: str) -> str:
        parts = PureWindowsPath(path).parts
        return "::/" + "/".join(part for part in parts if part not in ("\\", "/"))

    def make_folders(self, path: str) -> None:
        parts = [part for part in PureWindowsPath(path).parts if part not in ("\\", "/")]
        for depth in range(1, len(parts) + 1):
            folder = "\\".join(parts[:depth])
            if not self.exists(folder):
                run("mmd", "-i", self._drive, self._target(folder))

    def exists(self, path: str) -> bool:
        return _run("mdir", "-b", "-i", self._drive, self._target(path)).returncode == 0

    def write(self, path: str, data: bytes | Path) -> None:
        """Write a file at a backslash path like ``\\EFI\\systemd\\x.efi``, creating folders."""
        parent = str(PureWindowsPath(path).parent)
        if parent not in ("\\", "."):
            self.make_folders(parent)
        if isinstance(data, Path):
            run("mcopy", "-o", "-i", self._drive, data, self._target(path))
        else:
            run("mcopy", "-o", "-i", self._drive, "-", self._target(path), input=data)

    def read(self, path: str) -> bytes:
        result = _run("mcopy", "-i", self._drive, self._target(path), "-")
        if result.returncode != 0:
            stderr = result.stderr.decode(errors="replace").strip()
            raise RuntimeError(f"reading {path} from {self.image} failed: {stderr}")
        return result.stdout

    def delete(self, path: str) -> None:
        run("mdel", "-i", self._drive, self._target(path))

    def listing(self) -> list[str]:
        """Return every file path on the volume, recursively, as mtools prints it."""
        output = run("mdir", "-/", "-b", "-i", self._drive, "::/")
        return [line.strip() for line in output.splitlines() if line.strip()]
