"""Finding the EFI System Partition: mounted on a live Linux system, or inside a disk image.

Live discovery reads ``/proc/self/mountinfo``, sysfs and udev's database,
whose roots are parameters so tests can point them at a fake tree. It
records what a HD() device path needs: partition number, start, size and
the partition's unique GUID.
"""

from __future__ import annotations

import dataclasses
import os
import re
import struct
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from switchos.efi.gpt import ESP_TYPE_GUID, GptError, PartitionTable, detect_gpt, read_gpt
from switchos.errors import InvalidInputError, SwitchOSError

# Mount points distributions use for the ESP, in order of preference.
ESP_MOUNT_POINTS = (Path("/efi"), Path("/boot/efi"), Path("/boot"))

# MBR partition type of an ESP (UEFI 2.10, section 5.2.2).
MBR_ESP_TYPE = 0xEF
MBR_ENTRIES_OFFSET = 446
MBR_SIGNATURE_OFFSET = 440
# BootIndicator, StartCHS, OSType, EndCHS, StartingLBA, SizeInLBA.
MBR_ENTRY_FORMAT = "<B3sB3sII"
MBR_ENTRY_SIZE = 16

# sysfs reports partition start and size in 512-byte units whatever the
# logical sector size, as the kernel's block layer counts in 512-byte sectors.
SYSFS_SECTOR = 512

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


class EspNotFoundError(SwitchOSError):
    """No usable ESP was found, or several were and none was chosen."""


@dataclass(frozen=True)
class MountEntry:
    """One line of /proc/<pid>/mountinfo (proc(5))."""

    mount_id: int
    parent_id: int
    major: int
    minor: int
    root: str
    mount_point: Path
    fstype: str
    source: str

    @classmethod
    def parse(cls, line: str) -> MountEntry:
        fields = line.split()
        separator = fields.index("-")
        major, minor = fields[2].split(":")
        return cls(
            mount_id=int(fields[0]),
            parent_id=int(fields[1]),
            major=int(major),
            minor=int(minor),
            root=_unescape(fields[3]),
            mount_point=Path(_unescape(fields[4])),
            fstype=fields[separator + 1],
            source=_unescape(fields[separator + 2]),
        )


def _unescape(field: str) -> str:
    # The kernel writes space, tab, newline and backslash as \ooo octal escapes.
    return _OCTAL_ESCAPE.sub(lambda match: chr(int(match.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[MountEntry]:
    """Parse mountinfo text into entries, in the kernel's order."""
    return [MountEntry.parse(line) for line in text.splitlines() if line.strip()]


@dataclass(frozen=True)
class EspLocation:
    """An ESP and the data a HD() device path needs (UEFI 2.10, section 10.3.5.1).

    ``start`` and ``size`` count logical sectors of ``sector_size`` bytes.
    ``partition_signature`` is the GPT unique partition GUID, or for MBR the
    udev-style ``<disk signature>-<partition number>``.
    """

    device: str
    disk: str
    partition_number: int
    start: int
    size: int
    sector_size: int
    scheme: str
    partition_signature: str
    mount_point: Path | None = None

    @property
    def offset_bytes(self) -> int:
        return self.start * self.sector_size

    @property
    def size_bytes(self) -> int:
        return self.size * self.sector_size

    def describe(self) -> str:
        where = f" mounted at {self.mount_point}" if self.mount_point else ""
        return (
            f"{self.device} (partition {self.partition_number} of {self.disk}, "
            f"PARTUUID {self.partition_signature}){where}"
        )


@dataclass(frozen=True)
class SystemRoots:
    """The roots of the live system's pseudo file systems."""

    proc: Path = Path("/proc")
    sys: Path = Path("/sys")
    run: Path = Path("/run")
    dev: Path = Path("/dev")


@dataclass(frozen=True)
class _PartitionType:
    scheme: str
    type_id: str
    signature: str

    @property
    def is_esp(self) -> bool:
        if self.scheme == "gpt":
            return self.type_id == str(ESP_TYPE_GUID)
        return self.scheme == "dos" and self.type_id == f"0x{MBR_ESP_TYPE:x}"


def find_live_esp(roots: SystemRoots = SystemRoots(), *, esp_path: Path | None = None) -> EspLocation:
    """Find the mounted ESP, or check the one at ``esp_path``.

    Raises EspNotFoundError when none is mounted, when ``esp_path`` is not a
    FAT mount of a whole ESP, or when several ESPs are mounted and
    ``esp_path`` does not choose one.
    """
    entries = parse_mountinfo((roots.proc / "self" / "mountinfo").read_text())
    # A later mount on the same point hides the earlier one.
    visible: dict[Path, MountEntry] = {}
    for entry in entries:
        visible[entry.mount_point] = entry

    if esp_path is not None:
        return _check_chosen_mount(visible, Path(os.path.normpath(esp_path)), roots)

    found: list[EspLocation] = []
    rejected: list[str] = []
    for mount_point in ESP_MOUNT_POINTS:
        candidate = visible.get(mount_point)
        if candidate is not None and candidate.fstype == "autofs":
            # systemd-gpt-auto-generator puts the ESP behind an automount on
            # /efi or /boot; the vfat mount appears on top only once accessed.
            # NOTE: discovery does not access the path itself, because it
            # only reads the system through the roots it was given.
            rejected.append(f"{mount_point} is an automount that is not mounted yet (run ls {mount_point})")
            continue
        if candidate is None or candidate.fstype != "vfat" or candidate.root != "/":
            continue
        location, partition_type = _describe_partition(candidate, roots)
        if not partition_type.is_esp:
            rejected.append(
                f"{mount_point} is FAT but its partition type is {partition_type.type_id}"
            )
            continue
        if all((other.device != location.device) for other in found):
            found.append(location)

    if not found:
        detail = f" ({'; '.join(rejected)})" if rejected else ""
        raise EspNotFoundError(
            f"no EFI System Partition is mounted at /efi, /boot/efi or /boot{detail}",
            hint="mount the ESP at /boot/efi or pass --esp-path MOUNTPOINT",
        )
    if len(found) > 1:
        listing = "; ".join(location.describe() for location in found)
        raise EspNotFoundError(
            f"found {len(found)} EFI System Partitions: {listing}",
            hint="choose the one the firmware boots from with --esp-path MOUNTPOINT",
        )
    return found[0]


def _check_chosen_mount(
    visible: dict[Path, MountEntry], esp_path: Path, roots: SystemRoots
) -> EspLocation:
    entry = visible.get(esp_path)
    if entry is None:
        raise InvalidInputError(
            f"--esp-path {esp_path} is not a mount point",
            hint="pass the folder the ESP is mounted on, such as /boot/efi",
        )
    if entry.fstype != "vfat":
        raise InvalidInputError(
            f"--esp-path {esp_path} has file system type {entry.fstype}, not FAT (vfat)",
            hint="pass the folder the ESP is mounted on",
        )
    if entry.root != "/":
        raise InvalidInputError(
            f"--esp-path {esp_path} mounts only the folder {entry.root} of {entry.source}",
            hint="pass a mount of the whole ESP file system",
        )
    location, partition_type = _describe_partition(entry, roots)
    if not partition_type.is_esp:
        raise InvalidInputError(
            f"{entry.source} at {esp_path} has partition type {partition_type.type_id}, "
            "not the EFI System Partition type",
            hint=f"firmware looks for boot files only on ESPs; set the type with "
            f"sgdisk --typecode={location.partition_number}:ef00 /dev/{location.disk}",
        )
    return location


def _describe_partition(entry: MountEntry, roots: SystemRoots) -> tuple[EspLocation, _PartitionType]:
    number = f"{entry.major}:{entry.minor}"
    partition_dir = Path(os.path.realpath(roots.sys / "dev" / "block" / number))
    if not (partition_dir / "partition").is_file():
        raise EspNotFoundError(
            f"{entry.source} at {entry.mount_point} (device {number}) is not a partition",
            hint="the ESP must be a partition of a disk the firmware can see",
        )
    disk_dir = partition_dir.parent
    partition_number = int((partition_dir / "partition").read_text())
    start_512 = int((partition_dir / "start").read_text())
    size_512 = int((partition_dir / "size").read_text())
    sector_size = int((disk_dir / "queue" / "logical_block_size").read_text())
    location = EspLocation(
        device=partition_dir.name,
        disk=disk_dir.name,
        partition_number=partition_number,
        start=start_512 * SYSFS_SECTOR // sector_size,
        size=size_512 * SYSFS_SECTOR // sector_size,
        sector_size=sector_size,
        scheme="",
        partition_signature="",
        mount_point=entry.mount_point,
    )
    partition_type = _read_udev_type(roots, number) or _read_table_type(roots, location)
    location = dataclasses.replace(
        location, scheme=partition_type.scheme, partition_signature=partition_type.signature
    )
    return location, partition_type


def _read_udev_type(roots: SystemRoots, number: str) -> _PartitionType | None:
    # udev's database lines look like "E:ID_PART_ENTRY_TYPE=<value>".
    path = roots.run / "udev" / "data" / f"b{number}"
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    properties = dict(
        line[2:].split("=", 1) for line in text.splitlines() if line.startswith("E:") and "=" in line
    )
    scheme = properties.get("ID_PART_ENTRY_SCHEME")
    type_id = properties.get("ID_PART_ENTRY_TYPE")
    signature = properties.get("ID_PART_ENTRY_UUID")
    if not (scheme and type_id and signature):
        return None
    return _PartitionType(scheme, type_id.lower(), signature.lower())


def _read_table_type(roots: SystemRoots, location: EspLocation) -> _PartitionType:
    # Without udev data, read the partition table of the parent disk itself.
    disk_path = roots.dev / location.disk
    try:
        with disk_path.open("rb") as disk:
            try:
                table = read_gpt(disk, sector_size=location.sector_size)
            except GptError:
                return _read_mbr_type(disk, location)
    except OSError as error:
        raise EspNotFoundError(
            f"cannot read the partition table of {disk_path}: {error.strerror}",
            hint="run as root, or start udev so its database describes the partitions",
        ) from None
    for partition in table.partitions:
        if partition.number == location.partition_number:
            return _PartitionType("gpt", str(partition.type_guid), str(partition.partition_guid))
    raise EspNotFoundError(
        f"partition {location.partition_number} is not in the GPT of {disk_path}"
    )


def _read_mbr_type(disk: BinaryIO, location: EspLocation) -> _PartitionType:
    disk.seek(0)
    sector = disk.read(512)
    if len(sector) < 512 or sector[510:512] != b"\x55\xaa":
        raise EspNotFoundError(f"/dev/{location.disk} has neither a GPT nor an MBR")
    if not 1 <= location.partition_number <= 4:
        raise EspNotFoundError(
            f"{location.device} is a logical MBR partition; an ESP must be a primary partition"
        )
    (signature,) = struct.unpack_from("<I", sector, MBR_SIGNATURE_OFFSET)
    offset = MBR_ENTRIES_OFFSET + (location.partition_number - 1) * MBR_ENTRY_SIZE
    _boot, _chs, os_type, _chs_end, _lba, _size = struct.unpack_from(MBR_ENTRY_FORMAT, sector, offset)
    return _PartitionType(
        "dos", f"0x{os_type:x}", f"{signature:08x}-{location.partition_number:02x}"
    )


def find_image_esp(image: Path, *, partition_number: int | None = None) -> EspLocation:
    """Find the ESP in the GPT of a disk image file.

    Raises EspNotFoundError when the image has none, or several and
    ``partition_number`` does not choose one.
    """
    with image.open("rb") as file:
        table = detect_gpt(file)
    return _choose_table_esp(table, image, partition_number)


def _choose_table_esp(
    table: PartitionTable, image: Path, partition_number: int | None
) -> EspLocation:
    if partition_number is not None:
        chosen = [p for p in table.partitions if p.number == partition_number]
        if not chosen:
            raise EspNotFoundError(f"{image} has no partition {partition_number}")
        if chosen[0].type_guid != ESP_TYPE_GUID:
            raise EspNotFoundError(
                f"partition {partition_number} of {image} has type {chosen[0].type_guid}, "
                "not the EFI System Partition type"
            )
    else:
        chosen = [p for p in table.partitions if p.type_guid == ESP_TYPE_GUID]
    if not chosen:
        raise EspNotFoundError(
            f"{image} has no EFI System Partition (type {ESP_TYPE_GUID})",
            hint="create one with sgdisk --new=1:0:+260M --typecode=1:ef00",
        )
    if len(chosen) > 1:
        numbers = ", ".join(str(p.number) for p in chosen)
        raise EspNotFoundError(
            f"{image} has {len(chosen)} EFI System Partitions (partitions {numbers})",
            hint="choose one with its partition number",
        )
    partition = chosen[0]
    return EspLocation(
        device=f"{image}#{partition.number}",
        disk=str(image),
        partition_number=partition.number,
        start=partition.first_lba,
        size=partition.sector_count,
        sector_size=table.sector_size,
        scheme="gpt",
        partition_signature=str(partition.partition_guid),
    )


def partuuid(location: EspLocation) -> uuid.UUID | None:
    """Return the GPT unique partition GUID, or None for an MBR partition."""
    if location.scheme != "gpt":
        return None
    return uuid.UUID(location.partition_signature)
