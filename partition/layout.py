"""Snapshot disk layouts: where the store goes and how the partition table is changed.

Four layouts, each idempotent (a disk that already contains a healthy store of
the requested geometry is left untouched):

- ``new-table``: a fresh GPT with one SwitchOS partition; destroys the disk.
- ``free-space``: one SwitchOS partition in free space of an existing GPT.
- ``existing-partition``: re-type a partition the user names; destroys its content.
- ``whole-disk``: no partition table, the store starts at byte 0 (protocol-0 payloads).

The functions accept a disk image file as well as a block device; only block
devices get a kernel re-read of the partition table and a partition node.
"""

from __future__ import annotations

import dataclasses
import enum
import errno
import fcntl
import os
import re
import stat
import time
import uuid
from pathlib import Path

import _ped
import parted

from switchos.errors import ExitCode, InvalidInputError, SwitchOSError
from switchos.partition.blockdev import partition_device_name
from switchos.partition.store import (
    MIB,
    StoreTooSmallError,
    Superblock,
    format_size,
    initialize_store,
    read_store,
    required_store_size,
)
from switchos.process import run

SWITCHOS_TYPE_GUID = uuid.UUID("4998007f-9e45-4e0b-9f9e-036b9e078094")
SWITCHOS_PARTITION_NAME = "SwitchOS snapshots"

# <linux/fs.h>: _IO(0x12, 95), re-read the partition table, and _IO(0x12, 97),
# flush and drop the device's buffer cache.
BLKRRPART = 0x125F
BLKFLSBUF = 0x1261
PARTITION_NODE_TIMEOUT = 10.0

# MBR partition types that a protective MBR may contain; anything else makes it hybrid.
_PROTECTIVE_MBR_TYPES = frozenset({0x00, 0xEE})


class LayoutKind(enum.Enum):
    """The layouts, spelled as the CLI spells them."""

    NEW_TABLE = "new-table"
    FREE_SPACE = "free-space"
    EXISTING_PARTITION = "existing-partition"
    WHOLE_DISK = "whole-disk"


class TypeGuidWriter(enum.Enum):
    """The tool that writes the partition type GUID."""

    PYPARTED = "pyparted"
    SGDISK = "sgdisk"


class LayoutError(SwitchOSError):
    """The disk cannot be laid out as requested."""


class WipeNotConfirmedError(InvalidInputError):
    """A layout that destroys data was requested without ``wipe=True``."""


class NoStoreOnDeviceError(LayoutError):
    """The device contains no snapshot store, so there is nothing to inspect or repair."""

    exit_code = ExitCode.NOTHING_TO_DO


class DeviceNotFoundError(InvalidInputError):
    """The disk, partition or image file given does not exist."""


class DeviceBusyError(LayoutError):
    """The kernel reports the device in use (mounted, swap, or held by another device)."""


@dataclasses.dataclass(frozen=True)
class StoreGeometry:
    """The slots a store must hold: their size in bytes (a MiB multiple) and count."""

    slot_size: int
    slot_count: int

    @property
    def required_size(self) -> int:
        return required_store_size(self.slot_size, self.slot_count)


@dataclasses.dataclass(frozen=True)
class LayoutResult:
    """The outcome of a layout, or the store found in place when ``changed`` is false.

    ``offset`` and ``size`` locate the store on the disk in bytes.
    ``partition_number``, ``partition_guid`` and ``type_writer`` are None for
    the whole-disk layout; ``partition_path`` is None for image files too.
    """

    kind: LayoutKind
    device: Path
    offset: int
    size: int
    superblock: Superblock
    changed: bool
    logical_sector_size: int
    partition_number: int | None = None
    partition_guid: uuid.UUID | None = None
    partition_path: Path | None = None
    type_writer: TypeGuidWriter | None = None


@dataclasses.dataclass(frozen=True)
class GptPartitionIds:
    """The type GUID, unique GUID and name of one GPT partition, as ``sgdisk -i`` prints them."""

    type_guid: uuid.UUID
    unique_guid: uuid.UUID
    name: str


def libparted_sets_type_guid() -> bool:
    """Return whether this pyparted build can set GPT type GUIDs (needs libparted newer than 3.5)."""
    return hasattr(_ped.Partition, "set_type_uuid")


def read_gpt_partition_ids(device: Path, number: int) -> GptPartitionIds:
    """Read partition ``number``'s GUIDs and name with ``sgdisk -i``."""
    output = run(["sgdisk", f"--info={number}", device]).stdout.decode(errors="replace")
    type_match = re.search(r"^Partition GUID code: ([0-9A-Fa-f-]{36})", output, re.MULTILINE)
    unique_match = re.search(r"^Partition unique GUID: ([0-9A-Fa-f-]{36})", output, re.MULTILINE)
    name_match = re.search(r"^Partition name: '(.*)'$", output, re.MULTILINE)
    if not type_match or not unique_match:
        raise LayoutError(f"sgdisk shows no partition {number} on {device}")
    return GptPartitionIds(
        uuid.UUID(type_match.group(1)), uuid.UUID(unique_match.group(1)), name_match.group(1) if name_match else ""
    )


def _is_block_device(path: Path) -> bool:
    try:
        return stat.S_ISBLK(os.stat(path).st_mode)
    except OSError as error:
        raise LayoutError(f"cannot open {path}: {error.strerror}") from error


def _require_unused(path: Path) -> None:
    """Raise DeviceBusyError when the kernel has the block device claimed.

    An exclusive open fails with EBUSY while the device or, for a whole disk,
    any of its partitions is mounted, used as swap or held by device-mapper.
    """
    if not _is_block_device(path):
        return
    try:
        fd = os.open(path, os.O_RDONLY | os.O_EXCL | os.O_CLOEXEC)
    except OSError as error:
        if error.errno == errno.EBUSY:
            raise DeviceBusyError(
                f"{path} is in use (mounted, swap, or held by device-mapper or RAID)",
                hint="choose another disk, or stop using this one first",
            ) from error
        raise LayoutError(f"cannot open {path}: {error.strerror}") from error
    os.close(fd)


def _require_wipe(wipe: bool, what: str) -> None:
    if not wipe:
        raise WipeNotConfirmedError(
            f"{what} destroys its content and needs an explicit wipe confirmation",
            hint="pass --wipe (or confirm in the wizard) after checking that nothing on it is needed",
        )


def _open_device(path: Path) -> parted.Device:
    """Probe ``path`` afresh with libparted.

    libparted caches each device by path, with its size and sector size, for
    the life of the process. A loop device detached and attached again with
    another sector size would keep the stale values, so the cached entry is
    dropped and the device probed again.
    """
    try:
        parted.getDevice(os.fspath(path)).removeFromCache()
        return parted.getDevice(os.fspath(path))
    except (parted.IOException, parted.DeviceException, _ped.IOException, _ped.DeviceException) as error:
        raise LayoutError(f"cannot open {path} with libparted: {error}") from error


def _read_gpt(path: Path, device: parted.Device) -> parted.Disk:
    try:
        disk = parted.newDisk(device)
    except (parted.DiskException, _ped.DiskException, _ped.DiskLabelException, parted.IOException) as error:
        raise LayoutError(
            f"{path} has no readable partition table: {error}",
            hint="use the new-table layout to create one (this wipes the disk)",
        ) from error
    if disk.type != "gpt":
        raise LayoutError(
            f"{path} has a {disk.type} partition table, SwitchOS needs GPT",
            hint="use the new-table layout (this wipes the disk)",
        )
    return disk


def find_hybrid_mbr_types(path: Path) -> list[int]:
    """Return the MBR partition types other than protective (0xEE) found in sector 0.

    libparted replaces a hybrid MBR with a protective one when it writes a GPT,
    which can make the other operating system unbootable, so layouts that keep
    the table reject such disks.
    """
    with open(path, "rb") as image:
        sector = image.read(512)
    if len(sector) < 512 or sector[510:512] != b"\x55\xaa":
        return []
    types = [sector[446 + 16 * index + 4] for index in range(4)]
    return [kind for kind in types if kind not in _PROTECTIVE_MBR_TYPES]


def _require_no_hybrid_mbr(path: Path) -> None:
    hybrid = find_hybrid_mbr_types(path)
    if hybrid:
        listed = ", ".join(f"{kind:#04x}" for kind in hybrid)
        raise LayoutError(
            f"{path} has a hybrid MBR (partition types {listed}); writing the GPT would replace it",
            hint="use another disk, or remove the hybrid MBR with gdisk first if nothing boots through it",
        )


def _aligned_start(device: parted.Device, geometry: parted.Geometry) -> int | None:
    """Return the first sector of ``geometry`` that is 1 MiB aligned and optimally aligned for the device."""
    mib_sectors = MIB // device.sectorSize
    alignment = device.optimumAlignment.intersect(parted.Alignment(offset=0, grainSize=mib_sectors))
    try:
        start = alignment.alignUp(geometry, geometry.start)
    except ArithmeticError:
        # libparted finds no aligned sector inside the region (a small gap).
        return None
    return start if start >= 0 else None


def _find_fitting_region(device: parted.Device, disk: parted.Disk, length: int) -> tuple[int, int]:
    """Return (start, largest) in sectors: the first aligned sector of the first free region with
    room for ``length`` sectors (or -1), and the largest aligned room found."""
    largest = 0
    for region in disk.getFreeSpaceRegions():
        start = _aligned_start(device, region)
        if start is None or start > region.end:
            continue
        room = region.end - start + 1
        if room >= length:
            return start, room
        largest = max(largest, room)
    return -1, largest


def _add_switchos_partition(
    disk: parted.Disk, device: parted.Device, start: int, length: int, writer: TypeGuidWriter
) -> parted.Partition:
    geometry = parted.Geometry(device=device, start=start, length=length)
    partition = parted.Partition(disk=disk, type=parted.PARTITION_NORMAL, geometry=geometry)
    disk.addPartition(partition, constraint=parted.Constraint(exactGeom=geometry))
    partition.name = SWITCHOS_PARTITION_NAME
    if writer is TypeGuidWriter.PYPARTED:
        # libparted takes the GUID in RFC 4122 byte order and stores it mixed-endian.
        partition.type_uuid = SWITCHOS_TYPE_GUID.bytes
    return partition


def _choose_writer(writer: TypeGuidWriter | None) -> TypeGuidWriter:
    if writer is None:
        return TypeGuidWriter.PYPARTED if libparted_sets_type_guid() else TypeGuidWriter.SGDISK
    if writer is TypeGuidWriter.PYPARTED and not libparted_sets_type_guid():
        raise LayoutError(
            "this libparted cannot set partition type GUIDs (it needs a version newer than 3.5)",
            hint="let SwitchOS choose the writer, which falls back to sgdisk",
        )
    return writer


def _commit(disk: parted.Disk, path: Path) -> None:
    try:
        disk.commit()
    except (parted.DiskException, parted.IOException, _ped.DiskException, _ped.IOException) as error:
        raise LayoutError(f"libparted could not write the partition table of {path}: {error}") from error
    if _is_block_device(path):
        _flush_buffer_cache(path)


def _flush_buffer_cache(path: Path) -> None:
    """Drop the cached blocks of block device ``path`` (BLKFLSBUF), so that
    tools reading through the buffer cache, like sgdisk, see what libparted wrote."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, BLKFLSBUF)
    finally:
        os.close(fd)


def _set_type_with_sgdisk(path: Path, number: int) -> None:
    run(["sgdisk", f"--typecode={number}:{SWITCHOS_TYPE_GUID}", path])


def reread_partition_table(path: Path) -> None:
    """Make the kernel's partitions of block device ``path`` match its partition table.

    BLKRRPART makes the kernel parse the table itself. It fails with EBUSY
    while a partition is open, and a kernel built without the GPT parser drops
    every partition instead. ``partx --update`` parses the table in user space
    and adds, resizes or removes the kernel's partitions one by one (BLKPG), so
    it works in both cases and leaves partitions in use alone.
    """
    _ioctl_reread(path)
    run(["partx", "--update", path])


def forget_partitions(path: Path, *, sys_root: Path = Path("/sys")) -> None:
    """Remove the kernel's partitions of ``path`` after its partition table was overwritten."""
    _ioctl_reread(path)
    name = _disk_name(path, sys_root)
    if _list_partitions(sys_root, name):
        run(["partx", "--delete", path], check=False)
    remaining = _list_partitions(sys_root, name)
    if remaining:
        raise LayoutError(
            f"the kernel still shows partitions {', '.join(remaining)} of {path}",
            hint="a partition is still in use; stop using it, then run: partx --delete " + os.fspath(path),
        )


def _ioctl_reread(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, BLKRRPART)
    except OSError as error:
        # EBUSY: a partition is open; EINVAL: the device cannot have partitions
        # (a loop device without partition scanning). partx handles the rest.
        if error.errno not in (errno.EBUSY, errno.EINVAL):
            raise LayoutError(f"the kernel could not re-read the partition table of {path}: {error.strerror}") from error
    finally:
        os.close(fd)


def _list_partitions(sys_root: Path, disk_name: str) -> list[str]:
    block = sys_root / "block" / disk_name
    try:
        return sorted(entry.name for entry in block.iterdir() if (entry / "partition").is_file())
    except OSError:
        return []


def _disk_name(path: Path, sys_root: Path) -> str:
    number = os.stat(path).st_rdev
    link = sys_root / "dev" / "block" / f"{os.major(number)}:{os.minor(number)}"
    return link.resolve().name


def wait_for_partition_node(
    path: Path, number: int, *, sys_root: Path = Path("/sys"), dev_root: Path = Path("/dev"),
    timeout: float = PARTITION_NODE_TIMEOUT,
) -> Path:
    """Wait until partition ``number`` of block device ``path`` has a node in ``dev_root``; return it."""
    name = partition_device_name(_disk_name(path, sys_root), number)
    node = dev_root / name
    deadline = time.monotonic() + timeout
    while True:
        try:
            if stat.S_ISBLK(os.stat(node).st_mode):
                return node
        except FileNotFoundError:
            pass
        if time.monotonic() >= deadline:
            raise LayoutError(
                f"the partition node {node} did not appear within {timeout:.0f} s",
                hint="check that the kernel sees the partition (cat /proc/partitions), then retry",
            )
        time.sleep(0.05)


def _find_partition_node(path: Path, number: int, *, sys_root: Path, dev_root: Path) -> Path | None:
    """Return the node of partition ``number``, asking the kernel to re-read the table when it has none.

    Returns None for image files.
    """
    if not _is_block_device(path):
        return None
    node = dev_root / partition_device_name(_disk_name(path, sys_root), number)
    if not node.exists():
        reread_partition_table(path)
    return wait_for_partition_node(path, number, sys_root=sys_root, dev_root=dev_root)


def _finish_partition(
    kind: LayoutKind, path: Path, device: parted.Device, number: int, start: int, length: int,
    geometry: StoreGeometry, writer: TypeGuidWriter | None, *, sys_root: Path, dev_root: Path,
) -> LayoutResult:
    """Set the type with sgdisk where needed, make the kernel see the table, and write the store."""
    if writer is TypeGuidWriter.SGDISK:
        _set_type_with_sgdisk(path, number)
    node = None
    if _is_block_device(path):
        reread_partition_table(path)
        node = wait_for_partition_node(path, number, sys_root=sys_root, dev_root=dev_root)
    ids = read_gpt_partition_ids(path, number)
    if ids.type_guid != SWITCHOS_TYPE_GUID:
        raise LayoutError(f"partition {number} of {path} has type {ids.type_guid} after writing {SWITCHOS_TYPE_GUID}")
    sector = device.sectorSize
    superblock = initialize_store(
        path, offset=start * sector, size=length * sector,
        slot_size=geometry.slot_size, slot_count=geometry.slot_count,
    )
    return LayoutResult(
        kind=kind, device=path, offset=start * sector, size=length * sector, superblock=superblock,
        changed=True, logical_sector_size=sector, partition_number=number, partition_guid=ids.unique_guid,
        partition_path=node, type_writer=writer,
    )


def _store_matches(path: Path, offset: int, size: int, geometry: StoreGeometry) -> Superblock | None:
    """Return the superblock when a healthy store of ``geometry`` is at ``offset``, else None."""
    try:
        report = read_store(path, offset=offset, size=size)
    except SwitchOSError:
        return None
    superblock = report.primary
    if not report.healthy or superblock is None:
        return None
    if (superblock.slot_size, superblock.slot_count) != (geometry.slot_size, geometry.slot_count):
        return None
    return superblock


def find_switchos_partition(
    path: Path, geometry: StoreGeometry, *, sys_root: Path = Path("/sys"), dev_root: Path = Path("/dev")
) -> LayoutResult | None:
    """Return the disk's SwitchOS partition when it is large enough and contains a healthy store of ``geometry``."""
    device = _open_device(path)
    try:
        disk = parted.newDisk(device)
    except (parted.DiskException, _ped.DiskException, _ped.DiskLabelException, parted.IOException):
        return None
    if disk.type != "gpt":
        return None
    sector = device.sectorSize
    for partition in disk.partitions:
        if partition.name != SWITCHOS_PARTITION_NAME:
            continue
        ids = read_gpt_partition_ids(path, partition.number)
        size = partition.geometry.length * sector
        if ids.type_guid != SWITCHOS_TYPE_GUID or size < geometry.required_size:
            continue
        offset = partition.geometry.start * sector
        superblock = _store_matches(path, offset, size, geometry)
        if superblock is None:
            continue
        node = _find_partition_node(path, partition.number, sys_root=sys_root, dev_root=dev_root)
        return LayoutResult(
            kind=LayoutKind.NEW_TABLE, device=path, offset=offset, size=size, superblock=superblock,
            changed=False, logical_sector_size=sector, partition_number=partition.number,
            partition_guid=ids.unique_guid, partition_path=node,
        )
    return None


def prepare_new_table(
    path: Path,
    geometry: StoreGeometry,
    *,
    wipe: bool,
    type_writer: TypeGuidWriter | None = None,
    sys_root: Path = Path("/sys"),
    dev_root: Path = Path("/dev"),
) -> LayoutResult:
    """Write a fresh GPT with one SwitchOS partition and an empty store on ``path``.

    Destroys every partition on the disk, so ``wipe`` must be true. Leaves a
    disk untouched (``changed`` false) when its SwitchOS partition already
    holds a healthy store of ``geometry``.
    """
    existing = find_switchos_partition(path, geometry, sys_root=sys_root, dev_root=dev_root)
    if existing is not None:
        return dataclasses.replace(existing, kind=LayoutKind.NEW_TABLE)
    _require_wipe(wipe, f"a new partition table on {path}")
    _require_unused(path)
    writer = _choose_writer(type_writer)

    device = _open_device(path)
    disk = parted.freshDisk(device, "gpt")
    length = geometry.required_size // device.sectorSize
    start, largest = _find_fitting_region(device, disk, length)
    if start < 0:
        raise StoreTooSmallError(
            f"{path} is too small: the store needs {format_size(geometry.required_size)}, "
            f"the disk has {format_size(largest * device.sectorSize)} of aligned space",
            hint="use a larger disk, fewer slots (--slots), or a smaller --memory for offline images",
        )
    partition = _add_switchos_partition(disk, device, start, length, writer)
    _commit(disk, path)
    return _finish_partition(
        LayoutKind.NEW_TABLE, path, device, partition.number, start, length, geometry, writer,
        sys_root=sys_root, dev_root=dev_root,
    )


def prepare_free_space(
    path: Path,
    geometry: StoreGeometry,
    *,
    type_writer: TypeGuidWriter | None = None,
    sys_root: Path = Path("/sys"),
    dev_root: Path = Path("/dev"),
) -> LayoutResult:
    """Add a SwitchOS partition in the first free region of the GPT on ``path`` that fits the store.

    Other partitions keep their entries and content. Rejects disks without a
    GPT and disks with a hybrid MBR.
    """
    existing = find_switchos_partition(path, geometry, sys_root=sys_root, dev_root=dev_root)
    if existing is not None:
        return dataclasses.replace(existing, kind=LayoutKind.FREE_SPACE)
    device = _open_device(path)
    disk = _read_gpt(path, device)
    _require_no_hybrid_mbr(path)
    writer = _choose_writer(type_writer)

    length = geometry.required_size // device.sectorSize
    start, largest = _find_fitting_region(device, disk, length)
    if start < 0:
        raise StoreTooSmallError(
            f"no free region on {path} is large enough for the store: "
            f"it needs {format_size(geometry.required_size)}, "
            f"the largest aligned free region has {format_size(largest * device.sectorSize)}",
            hint="free space on the disk, use fewer slots (--slots), or choose another layout",
        )
    partition = _add_switchos_partition(disk, device, start, length, writer)
    _commit(disk, path)
    return _finish_partition(
        LayoutKind.FREE_SPACE, path, device, partition.number, start, length, geometry, writer,
        sys_root=sys_root, dev_root=dev_root,
    )


def prepare_existing_partition(
    path: Path,
    number: int,
    geometry: StoreGeometry,
    *,
    wipe: bool,
    type_writer: TypeGuidWriter | None = None,
    sys_root: Path = Path("/sys"),
    dev_root: Path = Path("/dev"),
) -> LayoutResult:
    """Re-type partition ``number`` of the GPT on ``path`` as the SwitchOS partition and write a store in it.

    Destroys the partition's content, so ``wipe`` must be true, unless it
    already contains a healthy store of ``geometry`` (then nothing changes).
    """
    device = _open_device(path)
    disk = _read_gpt(path, device)
    partition = next((part for part in disk.partitions if part.number == number), None)
    if partition is None:
        numbers = ", ".join(str(part.number) for part in disk.partitions) or "none"
        raise InvalidInputError(f"{path} has no partition {number}", hint=f"existing partitions: {numbers}")
    sector = device.sectorSize
    start, length = partition.geometry.start, partition.geometry.length
    if (start * sector) % 4096:
        raise LayoutError(
            f"partition {number} of {path} starts at byte {start * sector}, not on a 4096-byte boundary",
            hint="create an aligned partition, or use the free-space layout",
        )
    if length * sector < geometry.required_size:
        raise StoreTooSmallError(
            f"partition {number} of {path} is too small: the store needs {format_size(geometry.required_size)}, "
            f"the partition has {format_size(length * sector)}",
            hint="choose a larger partition or use fewer slots (--slots)",
        )
    ids = read_gpt_partition_ids(path, number)
    if ids.type_guid == SWITCHOS_TYPE_GUID and ids.name == SWITCHOS_PARTITION_NAME:
        superblock = _store_matches(path, start * sector, length * sector, geometry)
        if superblock is not None:
            node = _find_partition_node(path, number, sys_root=sys_root, dev_root=dev_root)
            return LayoutResult(
                kind=LayoutKind.EXISTING_PARTITION, device=path, offset=start * sector, size=length * sector,
                superblock=superblock, changed=False, logical_sector_size=sector, partition_number=number,
                partition_guid=ids.unique_guid, partition_path=node,
            )
    _require_wipe(wipe, f"partition {number} of {path}")
    _require_no_hybrid_mbr(path)
    node = _find_partition_node(path, number, sys_root=sys_root, dev_root=dev_root)
    if node is not None:
        _require_unused(node)
    writer = _choose_writer(type_writer)

    partition.name = SWITCHOS_PARTITION_NAME
    if writer is TypeGuidWriter.PYPARTED:
        partition.type_uuid = SWITCHOS_TYPE_GUID.bytes
    _commit(disk, path)
    return _finish_partition(
        LayoutKind.EXISTING_PARTITION, path, device, number, start, length, geometry, writer,
        sys_root=sys_root, dev_root=dev_root,
    )


def prepare_whole_disk(
    path: Path, geometry: StoreGeometry, *, wipe: bool, sys_root: Path = Path("/sys")
) -> LayoutResult:
    """Write a store over the whole of ``path``, with no partition table (protocol-0 payloads).

    The first MiB of the store overwrites the MBR and the primary GPT and the
    backup superblock overwrites the backup GPT header in the last sector, so
    partitioning tools no longer see a table. Destroys the disk, so ``wipe``
    must be true, unless it already contains a healthy store of ``geometry``.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)
    sector = _logical_sector_size(path)
    existing = _store_matches(path, 0, size, geometry)
    if existing is not None:
        return LayoutResult(
            kind=LayoutKind.WHOLE_DISK, device=path, offset=0, size=size, superblock=existing,
            changed=False, logical_sector_size=sector,
        )
    _require_wipe(wipe, f"the whole-disk layout on {path}")
    _require_unused(path)
    superblock = initialize_store(path, offset=0, size=size, slot_size=geometry.slot_size, slot_count=geometry.slot_count)
    _clear_tail(path, superblock.store_size, size)
    if _is_block_device(path):
        forget_partitions(path, sys_root=sys_root)
    return LayoutResult(
        kind=LayoutKind.WHOLE_DISK, device=path, offset=0, size=size, superblock=superblock,
        changed=True, logical_sector_size=sector,
    )


def _clear_tail(path: Path, store_size: int, size: int) -> None:
    """Zero the bytes after the store, which exist when the disk size is no 4096 multiple.

    They contain the last sector, and with it any backup GPT header, which
    partitioning tools would otherwise use to restore the old table.
    """
    if size == store_size:
        return
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.pwrite(fd, bytes(size - store_size), store_size)
        os.fsync(fd)
    finally:
        os.close(fd)


def _logical_sector_size(path: Path) -> int:
    if not _is_block_device(path):
        return 512
    return int(_open_device(path).sectorSize)


def prepare_layout(
    kind: LayoutKind,
    path: Path,
    geometry: StoreGeometry,
    *,
    wipe: bool = False,
    partition_number: int | None = None,
    type_writer: TypeGuidWriter | None = None,
    sys_root: Path = Path("/sys"),
    dev_root: Path = Path("/dev"),
) -> LayoutResult:
    """Apply the layout ``kind``; see the prepare_* functions for each one's contract."""
    if kind is LayoutKind.NEW_TABLE:
        return prepare_new_table(path, geometry, wipe=wipe, type_writer=type_writer, sys_root=sys_root, dev_root=dev_root)
    if kind is LayoutKind.FREE_SPACE:
        return prepare_free_space(path, geometry, type_writer=type_writer, sys_root=sys_root, dev_root=dev_root)
    if kind is LayoutKind.EXISTING_PARTITION:
        if partition_number is None:
            raise InvalidInputError("the existing-partition layout needs a partition number")
        return prepare_existing_partition(
            path, partition_number, geometry, wipe=wipe, type_writer=type_writer, sys_root=sys_root, dev_root=dev_root
        )
    return prepare_whole_disk(path, geometry, wipe=wipe, sys_root=sys_root)


@dataclasses.dataclass(frozen=True)
class StoreLocation:
    """The location of a store on a device or image: byte offset, size, and the partition number."""

    path: Path
    offset: int
    size: int
    partition_number: int | None


def locate_store(path: Path) -> StoreLocation:
    """Find the snapshot store on ``path``: at byte 0 (a partition node or a whole-disk store)
    or in the disk's SwitchOS partition.

    Raises DeviceNotFoundError when ``path`` does not exist, and LayoutError
    when it cannot be opened. Raises NoStoreOnDeviceError when there is neither
    a superblock at byte 0 or at the end nor a partition with the SwitchOS
    type GUID.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as error:
        raise DeviceNotFoundError(
            f"{path} does not exist",
            hint="give the disk, its SwitchOS partition or an image file that contains the snapshot store",
        ) from error
    except OSError as error:
        raise LayoutError(f"cannot open {path}: {error.strerror}") from error
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)
    try:
        report = read_store(path, offset=0, size=size)
    except SwitchOSError:
        report = None
    if report is not None and report.superblock is not None:
        return StoreLocation(path, 0, size, None)

    device = _open_device(path)
    try:
        disk = parted.newDisk(device)
    except (parted.DiskException, _ped.DiskException, _ped.DiskLabelException, parted.IOException):
        disk = None
    if disk is not None and disk.type == "gpt":
        sector = device.sectorSize
        for partition in disk.partitions:
            if read_gpt_partition_ids(path, partition.number).type_guid == SWITCHOS_TYPE_GUID:
                geometry = partition.geometry
                return StoreLocation(path, geometry.start * sector, geometry.length * sector, partition.number)
    raise NoStoreOnDeviceError(
        f"no snapshot store found on {path}: no store superblock at its start or end "
        f"and no partition of type {SWITCHOS_TYPE_GUID}",
        hint="give the SwitchOS partition or the disk that holds it",
    )
