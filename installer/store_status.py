"""Finding the snapshot store an install record names, and reading its health."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from switchos.efi.gpt import GptError, detect_gpt
from switchos.installer.model import Target, TargetMode
from switchos.partition.blockdev import list_block_devices
from switchos.partition.store import SlotState, StoreError, StoreReport, read_store


@dataclass(frozen=True)
class RecordedStore:
    """The location of a recorded store: a device or image file and its byte range (size None: to the end)."""

    path: Path
    offset: int
    size: int | None


def locate_recorded_store(target: Target, partuuid: uuid.UUID) -> RecordedStore | None:
    """Find the partition with unique GUID ``partuuid``; None when no disk of the target has it.

    Offline, the GPTs of the given disk images are read. Live, the partition
    node is found through /dev/disk/by-partuuid, which udev maintains, or
    else by reading the GPT of every disk in sysfs.
    """
    if target.mode is TargetMode.LIVE:
        link = target.roots.dev / "disk" / "by-partuuid" / str(partuuid)
        if link.exists():
            return RecordedStore(Path(os.path.realpath(link)), 0, None)
        # Without udev there are no by-partuuid links: read every disk's GPT.
        paths = [device.device_path(target.roots.dev) for device in list_block_devices(sys_root=target.roots.sys)]
    else:
        paths = [disk.path for disk in target.disks]
    for path in paths:
        try:
            with path.open("rb") as file:
                table = detect_gpt(file)
        except (GptError, OSError):
            continue
        for partition in table.partitions:
            if partition.partition_guid == partuuid:
                return RecordedStore(
                    path,
                    partition.first_lba * table.sector_size,
                    partition.sector_count * table.sector_size,
                )
    return None


def locate_whole_disk_store(target: Target) -> RecordedStore | None:
    """Find a disk whose first bytes are a store superblock; None when no disk of the target has one.

    The install record names no disk for a whole-disk store, so offline the
    given snapshot images are read, and live every disk in sysfs.
    """
    if target.mode is TargetMode.LIVE:
        paths = [device.device_path(target.roots.dev) for device in list_block_devices(sys_root=target.roots.sys)]
    else:
        paths = [disk.path for disk in target.disks]
    for path in paths:
        try:
            read_store(path)
        except (StoreError, OSError):
            continue
        return RecordedStore(path, 0, None)
    return None


def read_recorded_store(location: RecordedStore) -> StoreReport | None:
    """Read the store's headers; None when the location cannot be read at all."""
    try:
        return read_store(location.path, offset=location.offset, size=location.size)
    except StoreError:
        return None


def count_used_slots(report: StoreReport) -> int:
    """Return how many slots are not free (valid, pending, damaged or unreadable)."""
    used = 0
    for slot in report.slots:
        if slot.entry is None or slot.entry.state != SlotState.FREE:
            used += 1
    return used
