"""Placing the payload at \\EFI\\SwitchOS\\switchos-x64.efi, on a mounted ESP or in an image.

Every file is written under a temporary name, flushed, then renamed over
the target. On a mounted ESP rename(2) makes the switch atomic, so the
target is always either the old or the new file. In an image, mtools
rewrites the directory entry in place, which is not crash-safe but needs
no care because no running system uses the image. The
previous payload stays as ``switchos-x64.efi.bak`` until the caller has
registered the new one and calls commit_placement (or discard_placement to
put the old one back).
"""

from __future__ import annotations

import enum
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from switchos.efi.esp import EspLocation
from switchos.efi.fatimage import FatImage
from switchos.efi.payload import VerifiedPayload
from switchos.errors import SwitchOSError

PAYLOAD_DIR = PurePosixPath("EFI/SwitchOS")
PAYLOAD_PATH = PAYLOAD_DIR / "switchos-x64.efi"
BACKUP_PATH = PAYLOAD_DIR / "switchos-x64.efi.bak"
TEMP_SUFFIX = ".new"

# Room kept free beyond the files themselves: FAT allocates whole clusters
# (up to 64 KiB) and may need a new cluster for the folder's entries.
FREE_SPACE_MARGIN = 256 * 1024


class PlacementError(SwitchOSError):
    """Writing to the ESP failed, or there is no room."""


class EspFiles(Protocol):
    """File operations on an ESP; paths are relative to its root with ``/`` separators."""

    def read_bytes(self, path: PurePosixPath) -> bytes | None:
        """Return the file's contents, or None when it does not exist."""
        ...

    def write_bytes(self, path: PurePosixPath, data: bytes) -> None:
        """Create or overwrite a file and flush it to the disk."""
        ...

    def replace(self, source: PurePosixPath, target: PurePosixPath) -> None:
        """Rename ``source`` over ``target`` and flush the folder."""
        ...

    def delete(self, path: PurePosixPath) -> None:
        """Delete a file; a missing file is not an error."""
        ...

    def make_dirs(self, path: PurePosixPath) -> None: ...

    def free_bytes(self) -> int: ...

    def check(self) -> None:
        """Raise when the file system is damaged; a no-op where it cannot be checked."""
        ...


class MountedEsp:
    """An ESP mounted on this system."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, path: PurePosixPath) -> Path:
        return self.root.joinpath(*path.parts)

    def read_bytes(self, path: PurePosixPath) -> bytes | None:
        try:
            return self._path(path).read_bytes()
        except FileNotFoundError:
            return None

    def write_bytes(self, path: PurePosixPath, data: bytes) -> None:
        with self._path(path).open("wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())

    def replace(self, source: PurePosixPath, target: PurePosixPath) -> None:
        # rename(2) on vfat replaces an existing target in one step.
        os.replace(self._path(source), self._path(target))
        self._sync_dir(target.parent)

    def delete(self, path: PurePosixPath) -> None:
        try:
            self._path(path).unlink()
        except FileNotFoundError:
            return
        self._sync_dir(path.parent)

    def make_dirs(self, path: PurePosixPath) -> None:
        self._path(path).mkdir(parents=True, exist_ok=True)

    def free_bytes(self) -> int:
        stat = os.statvfs(self.root)
        return stat.f_bavail * stat.f_frsize

    def check(self) -> None:
        # fsck.fat on a mounted file system may read metadata the kernel has
        # not written back yet, so its result would not be trustworthy.
        return None

    def _sync_dir(self, path: PurePosixPath) -> None:
        descriptor = os.open(self._path(path), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


class ImageEsp:
    """The ESP inside a disk image, written through mtools and checked with fsck.fat."""

    def __init__(self, fat: FatImage) -> None:
        self.fat = fat

    @classmethod
    def open(cls, image: Path, location: EspLocation) -> ImageEsp:
        return cls(FatImage(image, location.offset_bytes, location.size_bytes))

    def read_bytes(self, path: PurePosixPath) -> bytes | None:
        return self.fat.read_bytes(path)

    def write_bytes(self, path: PurePosixPath, data: bytes) -> None:
        self.fat.write_bytes(path, data)

    def replace(self, source: PurePosixPath, target: PurePosixPath) -> None:
        self.fat.replace(source, target)

    def delete(self, path: PurePosixPath) -> None:
        self.fat.delete(path)

    def make_dirs(self, path: PurePosixPath) -> None:
        self.fat.make_dirs(path)

    def free_bytes(self) -> int:
        return self.fat.free_bytes()

    def check(self) -> None:
        self.fat.check()


class PlacementAction(enum.Enum):
    """Outcome of place_payload."""

    CREATED = "created"
    REPLACED = "replaced"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class Placement:
    """The result of place_payload; ``backup`` is set when a previous payload was kept."""

    path: PurePosixPath
    action: PlacementAction
    sha256: str
    backup: PurePosixPath | None

    @property
    def firmware_path(self) -> str:
        """The path as a load option's file path node spells it."""
        return to_firmware_path(self.path)


def to_firmware_path(path: PurePosixPath) -> str:
    return "\\" + "\\".join(path.parts)


def write_file_atomic(esp: EspFiles, path: PurePosixPath, data: bytes) -> bool:
    """Write ``data`` to ``path`` through a temporary name; return False when already identical."""
    if esp.read_bytes(path) == data:
        return False
    temporary = path.with_name(path.name + TEMP_SUFFIX)
    esp.write_bytes(temporary, data)
    esp.replace(temporary, path)
    return True


def place_payload(esp: EspFiles, payload: VerifiedPayload) -> Placement:
    """Install the payload file on the ESP, keeping the previous one as a backup.

    Raises PlacementError when the payload file changed since it was
    verified or the ESP lacks room, and the ESP's own errors when a write
    fails. The ESP is checked after writing.
    """
    data = payload.path.read_bytes()
    if hashlib.sha256(data).hexdigest() != payload.sha256:
        raise PlacementError(
            f"{payload.path} changed after it was verified",
            hint="run the command again so the payload is verified anew",
        )
    esp.make_dirs(PAYLOAD_DIR)
    existing = esp.read_bytes(PAYLOAD_PATH)
    if existing == data:
        return Placement(PAYLOAD_PATH, PlacementAction.UNCHANGED, payload.sha256, None)

    needed = len(data) + (len(existing) if existing is not None else 0) + FREE_SPACE_MARGIN
    available = esp.free_bytes()
    if available < needed:
        raise PlacementError(
            f"the ESP has {available} bytes free, but placing the payload needs {needed}",
            hint="delete unused boot loaders or kernels from the ESP and run the command again",
        )

    backup: PurePosixPath | None = None
    if existing is not None:
        write_file_atomic(esp, BACKUP_PATH, existing)
        backup = BACKUP_PATH
    write_file_atomic(esp, PAYLOAD_PATH, data)
    esp.check()
    action = PlacementAction.REPLACED if existing is not None else PlacementAction.CREATED
    return Placement(PAYLOAD_PATH, action, payload.sha256, backup)


def commit_placement(esp: EspFiles, placement: Placement) -> None:
    """Delete the backup once the new payload is registered with the firmware."""
    if placement.backup is not None:
        esp.delete(placement.backup)
        esp.check()


def discard_placement(esp: EspFiles, placement: Placement) -> None:
    """Undo place_payload: put the backup back, or delete a newly created payload."""
    if placement.action is PlacementAction.REPLACED and placement.backup is not None:
        esp.replace(placement.backup, placement.path)
    elif placement.action is PlacementAction.CREATED:
        esp.delete(placement.path)
    esp.check()
