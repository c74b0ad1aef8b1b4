"""Which disks may become the snapshot disk, and why the others may not.

A disk is a candidate only when nothing on this machine uses it. It has no
mounted file system, no swap and no holder (device-mapper, RAID), and it is
neither the disk of the root file system nor that of the ESP. It must also be
writable, large enough, and on a bus the payload can drive. Every reason that
applies is reported, not only the first.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

from switchos.partition.blockdev import BlockDevice, Bus, list_block_devices
from switchos.partition.store import format_size

# The buses the payload drives when its metadata does not say otherwise.
DEFAULT_PAYLOAD_BUSES = frozenset({Bus.VIRTIO_BLK, Bus.NVME, Bus.SATA})

# Mount points whose file systems make their disk the system disk or the ESP disk.
# Whatever is mounted at /boot/efi or /efi is taken as the ESP; /boot only when
# it is FAT, since it is the ESP on some systems and a Linux file system on others.
SYSTEM_MOUNT_POINTS = ("/", "/usr", "/boot")
ESP_MOUNT_POINTS = ("/boot/efi", "/efi")
ESP_FILESYSTEMS = ("vfat", "msdos")


class ExclusionReason(enum.Enum):
    """Reason a disk cannot be the snapshot disk, spelled as the CLI and JSON output spell it."""

    MOUNTED = "mounted"
    SWAP = "swap"
    HOLDER = "holder"
    SYSTEM_DISK = "system-disk"
    ESP_DISK = "esp-disk"
    READ_ONLY = "read-only"
    TOO_SMALL = "too-small"
    UNSUPPORTED_BUS = "unsupported-bus"


@dataclasses.dataclass(frozen=True)
class Exclusion:
    """One reason with its detail, for example ``mounted``: ``loop0p1 on /mnt``."""

    reason: ExclusionReason
    detail: str


@dataclasses.dataclass(frozen=True)
class Mount:
    """One line of ``/proc/self/mountinfo``."""

    device_number: str
    mount_point: str
    fs_type: str
    source: str


@dataclasses.dataclass(frozen=True)
class Swap:
    """One line of ``/proc/swaps``, with the device number of the swap device or of the file's file system."""

    filename: str
    kind: str
    device_number: str | None


@dataclasses.dataclass(frozen=True)
class SystemUsage:
    """The mounts and swap areas of this machine."""

    mounts: tuple[Mount, ...]
    swaps: tuple[Swap, ...]


@dataclasses.dataclass(frozen=True)
class DiskCandidate:
    """A disk with every reason that excludes it; no reasons means it may be used."""

    device: BlockDevice
    exclusions: tuple[Exclusion, ...]

    @property
    def eligible(self) -> bool:
        return not self.exclusions

    @property
    def reasons(self) -> frozenset[ExclusionReason]:
        return frozenset(exclusion.reason for exclusion in self.exclusions)


def _unescape_octal(text: str) -> str:
    r"""Undo the kernel's octal escapes (``\040`` for a space) in mountinfo and swaps fields."""
    if "\\" not in text:
        return text
    out = bytearray()
    raw = text.encode()
    index = 0
    while index < len(raw):
        chunk = raw[index : index + 4]
        if len(chunk) == 4 and chunk[:1] == b"\\" and chunk[1:].isdigit():
            out.append(int(chunk[1:], 8))
            index += 4
        else:
            out.append(raw[index])
            index += 1
    return out.decode(errors="surrogateescape")


def parse_mountinfo(text: str) -> tuple[Mount, ...]:
    """Parse ``/proc/self/mountinfo``; fields after the ``-`` separator are file system type and source."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields or len(fields) < 7:
            continue
        separator = fields.index("-")
        if separator + 2 >= len(fields):
            continue
        mounts.append(
            Mount(
                device_number=fields[2],
                mount_point=_unescape_octal(fields[4]),
                fs_type=fields[separator + 1],
                source=_unescape_octal(fields[separator + 2]),
            )
        )
    return tuple(mounts)


def _device_number_of(path: str, *, dev_root: Path) -> str | None:
    """Return ``major:minor`` of a block device node, or of the file system that holds a file."""
    # Paths in /proc name nodes under the real /dev; look them up under dev_root.
    local = dev_root / os.path.relpath(path, "/dev") if path.startswith("/dev/") else Path(path)
    try:
        info = os.stat(local)
    except OSError:
        return None
    number = info.st_rdev if stat.S_ISBLK(info.st_mode) else info.st_dev
    return f"{os.major(number)}:{os.minor(number)}"


def parse_swaps(text: str, *, dev_root: Path = Path("/dev")) -> tuple[Swap, ...]:
    """Parse ``/proc/swaps``, skipping its header line."""
    swaps = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 2:
            continue
        filename = _unescape_octal(fields[0])
        swaps.append(Swap(filename, fields[1], _device_number_of(filename, dev_root=dev_root)))
    return tuple(swaps)


def read_system_usage(*, proc_root: Path = Path("/proc"), dev_root: Path = Path("/dev")) -> SystemUsage:
    """Read the mounts and swap areas of this machine from ``proc_root``."""
    mountinfo = (proc_root / "self" / "mountinfo").read_text()
    try:
        swaps_text = (proc_root / "swaps").read_text()
    except FileNotFoundError:
        swaps_text = ""
    return SystemUsage(parse_mountinfo(mountinfo), parse_swaps(swaps_text, dev_root=dev_root))


class _DeviceIndex:
    """Maps device numbers and names of disks, partitions and stacked devices to the disks below them."""

    def __init__(self, devices: Sequence[BlockDevice]) -> None:
        self.devices = {device.name: device for device in devices}
        self.number_to_name: dict[str, str] = {}
        self.disk_of: dict[str, str] = {}
        for device in devices:
            self.number_to_name[device.device_number] = device.name
            self.disk_of[device.name] = device.name
            for part in device.partitions:
                self.number_to_name[part.device_number] = part.name
                self.disk_of[part.name] = device.name

    def name_for(self, device_number: str | None, source: str = "") -> str | None:
        if device_number and device_number in self.number_to_name:
            return self.number_to_name[device_number]
        # Btrfs and some other file systems report an anonymous device number;
        # their mount source still names the node.
        base = os.path.basename(source)
        return base if source.startswith("/dev/") and base in self.disk_of else None

    def disks_below(self, name: str, seen: frozenset[str] = frozenset()) -> set[str]:
        """Return the whole disks under ``name``, following device-mapper and RAID slaves down."""
        disk = self.disk_of.get(name)
        if disk is None or disk in seen:
            return set()
        device = self.devices[disk]
        if not device.slaves:
            return {disk}
        below: set[str] = set()
        for slave in device.slaves:
            below |= self.disks_below(slave, seen | {disk})
        return below


def assess_disks(
    devices: Sequence[BlockDevice],
    usage: SystemUsage,
    *,
    required_size: int | None = None,
    supported_buses: Iterable[Bus] = DEFAULT_PAYLOAD_BUSES,
    esp_disks: Iterable[str] = (),
) -> list[DiskCandidate]:
    """Return each disk of ``devices`` with every reason that excludes it.

    ``required_size`` is the store size in bytes (None skips the size check);
    ``esp_disks`` names disks known to hold the ESP beyond those found from mounts.
    """
    index = _DeviceIndex(devices)
    buses = frozenset(supported_buses)
    system_disks: dict[str, str] = {}
    esp: dict[str, str] = {name: "holds the ESP" for name in esp_disks}
    mounted: dict[str, list[str]] = {}
    swapped: dict[str, list[str]] = {}

    for mount in usage.mounts:
        name = index.name_for(mount.device_number, mount.source)
        if name is None:
            continue
        for disk in index.disks_below(name):
            mounted.setdefault(disk, []).append(f"{name} on {mount.mount_point}")
            if mount.mount_point in SYSTEM_MOUNT_POINTS:
                system_disks.setdefault(disk, f"holds {mount.mount_point} ({name})")
            if mount.mount_point in ESP_MOUNT_POINTS or (
                mount.mount_point == "/boot" and mount.fs_type in ESP_FILESYSTEMS
            ):
                esp.setdefault(disk, f"holds the ESP ({name} on {mount.mount_point})")
    for swap in usage.swaps:
        name = index.name_for(swap.device_number, swap.filename)
        if name is None:
            continue
        for disk in index.disks_below(name):
            swapped.setdefault(disk, []).append(f"{swap.filename} ({swap.kind})")

    candidates = []
    for device in devices:
        exclusions: list[Exclusion] = []
        if device.name in mounted:
            exclusions.append(Exclusion(ExclusionReason.MOUNTED, ", ".join(mounted[device.name])))
        if device.name in swapped:
            exclusions.append(Exclusion(ExclusionReason.SWAP, ", ".join(swapped[device.name])))
        holders = list(device.holders) + [holder for part in device.partitions for holder in part.holders]
        if holders:
            exclusions.append(Exclusion(ExclusionReason.HOLDER, "held by " + ", ".join(sorted(set(holders)))))
        if device.name in system_disks:
            exclusions.append(Exclusion(ExclusionReason.SYSTEM_DISK, system_disks[device.name]))
        if device.name in esp:
            exclusions.append(Exclusion(ExclusionReason.ESP_DISK, esp[device.name]))
        if device.read_only:
            exclusions.append(Exclusion(ExclusionReason.READ_ONLY, "the kernel marks it read-only"))
        if required_size is not None and device.size < required_size:
            exclusions.append(
                Exclusion(
                    ExclusionReason.TOO_SMALL,
                    f"needs {format_size(required_size)}, has {format_size(device.size)}",
                )
            )
        if device.address.bus not in buses:
            supported = ", ".join(sorted(bus.value for bus in buses)) or "none"
            exclusions.append(
                Exclusion(
                    ExclusionReason.UNSUPPORTED_BUS,
                    f"{device.address.bus.value} is not among the payload's buses ({supported})",
                )
            )
        candidates.append(DiskCandidate(device, tuple(exclusions)))
    return candidates


def find_candidates(
    *,
    sys_root: Path = Path("/sys"),
    proc_root: Path = Path("/proc"),
    dev_root: Path = Path("/dev"),
    required_size: int | None = None,
    supported_buses: Iterable[Bus] = DEFAULT_PAYLOAD_BUSES,
    esp_disks: Iterable[str] = (),
) -> list[DiskCandidate]:
    """Discover the disks of this machine (or of the given roots) and assess each one."""
    devices = list_block_devices(sys_root=sys_root)
    usage = read_system_usage(proc_root=proc_root, dev_root=dev_root)
    return assess_disks(
        devices, usage, required_size=required_size, supported_buses=supported_buses, esp_disks=esp_disks
    )
