"""Block device discovery from sysfs, and the bus address the payload needs after S3.

Every function takes the sysfs root as a parameter, so tests point it at a
tree they built. Sizes in sysfs (``size``, a partition's ``start``) count
512-byte units whatever the logical sector size; this module returns bytes.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from pathlib import Path, PurePosixPath

SYSFS_UNIT = 512

_PCI_ADDRESS = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
_VIRTIO = re.compile(r"^virtio\d+$")
_NVME_CONTROLLER = re.compile(r"^nvme\d+$")
_NVME_NAMESPACE = re.compile(r"^nvme\d+(?:c\d+)?n(\d+)$")
_ATA_PORT = re.compile(r"^ata(\d+)$")
_USB = re.compile(r"^usb\d+$")
_SCSI_DEVICE = re.compile(r"^(\d+):(\d+):(\d+):(\d+)$")


class Bus(enum.Enum):
    """How a disk is attached, spelled as the CLI and the JSON output spell it."""

    VIRTIO_BLK = "virtio-blk"
    NVME = "nvme"
    SATA = "sata"
    SCSI = "scsi"
    USB = "usb"
    LOOP = "loop"
    VIRTUAL = "virtual"
    UNKNOWN = "unknown"


@dataclasses.dataclass(frozen=True)
class DiskAddress:
    """Where a disk sits, as the payload finds it again after S3.

    ``pci_address`` is the controller's PCI function (``0000:00:04.0``) and
    ``pci_path`` the chain of PCI functions from the root bus to it, bridges
    first. ``nvme_namespace`` is the namespace id, ``sata_port`` the AHCI port
    (0-based, as in a UEFI SATA device path node), ``scsi_address`` the
    host:channel:target:lun of SCSI and SATA disks.
    """

    bus: Bus
    sysfs_path: str
    pci_address: str | None = None
    pci_path: tuple[str, ...] = ()
    nvme_namespace: int | None = None
    sata_port: int | None = None
    scsi_address: tuple[int, int, int, int] | None = None

    def describe(self) -> str:
        """Return a one-line summary such as ``nvme 0000:00:05.0 ns 1``."""
        parts = [self.bus.value]
        if self.pci_address:
            parts.append(self.pci_address)
        if self.nvme_namespace is not None:
            parts.append(f"ns {self.nvme_namespace}")
        if self.sata_port is not None:
            parts.append(f"port {self.sata_port}")
        return " ".join(parts)


@dataclasses.dataclass(frozen=True)
class PartitionInfo:
    """One partition of a disk as sysfs shows it; ``start`` and ``size`` in bytes."""

    name: str
    number: int
    device_number: str
    start: int
    size: int
    read_only: bool
    holders: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class BlockDevice:
    """One whole disk from ``/sys/block`` with its partitions."""

    name: str
    device_number: str
    size: int
    logical_sector_size: int
    physical_sector_size: int
    rotational: bool
    removable: bool
    read_only: bool
    model: str
    holders: tuple[str, ...]
    slaves: tuple[str, ...]
    partitions: tuple[PartitionInfo, ...]
    address: DiskAddress
    backing_file: str | None = None

    def device_path(self, dev_root: Path = Path("/dev")) -> Path:
        return dev_root / self.name

    def find_partition(self, number: int) -> PartitionInfo | None:
        return next((part for part in self.partitions if part.number == number), None)


def _read(path: Path, default: str = "") -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return default


def _read_int(path: Path, default: int = 0) -> int:
    text = _read(path)
    try:
        return int(text)
    except ValueError:
        return default


def _list_dir(path: Path) -> tuple[str, ...]:
    try:
        return tuple(sorted(entry.name for entry in path.iterdir()))
    except OSError:
        return ()


def list_block_devices(*, sys_root: Path = Path("/sys")) -> list[BlockDevice]:
    """Return every whole disk under ``sys_root/block``, sorted by name.

    Leaves out hidden devices (the per-path nodes of NVMe multipath) and loop
    devices with no backing file attached.
    """
    devices = []
    for name in _list_dir(sys_root / "block"):
        device = read_block_device(name, sys_root=sys_root)
        if device is not None:
            devices.append(device)
    return devices


def read_block_device(name: str, *, sys_root: Path = Path("/sys")) -> BlockDevice | None:
    """Return the disk ``name`` from sysfs, or None when it is hidden or an unattached loop device."""
    block = sys_root / "block" / name
    if _read(block / "hidden") == "1":
        return None
    backing_file = None
    if name.startswith("loop"):
        backing_file = _read(block / "loop" / "backing_file") or None
        if backing_file is None:
            return None
    queue = block / "queue"
    logical = _read_int(queue / "logical_block_size", SYSFS_UNIT)
    model = _read(block / "device" / "model") or _read(block / "device" / "vendor")
    return BlockDevice(
        name=name,
        device_number=_read(block / "dev"),
        size=_read_int(block / "size") * SYSFS_UNIT,
        logical_sector_size=logical,
        physical_sector_size=_read_int(queue / "physical_block_size", logical),
        rotational=_read(queue / "rotational") == "1",
        removable=_read(block / "removable") == "1",
        read_only=_read(block / "ro") == "1",
        model=model,
        holders=_list_dir(block / "holders"),
        slaves=_list_dir(block / "slaves"),
        partitions=_read_partitions(block),
        address=read_disk_address(name, sys_root=sys_root),
        backing_file=backing_file,
    )


def _read_partitions(block: Path) -> tuple[PartitionInfo, ...]:
    partitions = []
    for entry in _list_dir(block):
        part = block / entry
        if not (part / "partition").is_file():
            continue
        partitions.append(
            PartitionInfo(
                name=entry,
                number=_read_int(part / "partition"),
                device_number=_read(part / "dev"),
                start=_read_int(part / "start") * SYSFS_UNIT,
                size=_read_int(part / "size") * SYSFS_UNIT,
                read_only=_read(part / "ro") == "1",
                holders=_list_dir(part / "holders"),
            )
        )
    return tuple(sorted(partitions, key=lambda part: part.number))


def read_disk_address(name: str, *, sys_root: Path = Path("/sys")) -> DiskAddress:
    """Return the bus and address of disk ``name`` from its resolved sysfs device path.

    The path looks like ``/sys/devices/pci0000:00/0000:00:04.0/virtio1/block/vda``
    for virtio-blk, ``.../0000:00:05.0/nvme/nvme0/nvme0n1`` for NVMe and
    ``.../0000:00:1f.2/ata3/host2/target2:0:0/2:0:0:0/block/sda`` for AHCI.
    """
    block = sys_root / "block" / name
    resolved = block.resolve()
    try:
        relative = PurePosixPath(resolved.relative_to(sys_root.resolve()))
    except ValueError:
        relative = PurePosixPath(resolved)
    parts = relative.parts
    sysfs_path = "/sys/" + str(relative)
    pci_path = tuple(part for part in parts if _PCI_ADDRESS.match(part))
    pci_address = pci_path[-1] if pci_path else None

    if "virtual" in parts and "nvme-subsystem" in parts:
        return _read_nvme_subsystem_address(name, block, sysfs_path, sys_root)
    if "virtual" in parts:
        bus = Bus.LOOP if name.startswith("loop") else Bus.VIRTUAL
        return DiskAddress(bus=bus, sysfs_path=sysfs_path)
    if any(_USB.match(part) for part in parts):
        return DiskAddress(bus=Bus.USB, sysfs_path=sysfs_path, pci_address=pci_address, pci_path=pci_path)
    if any(_NVME_CONTROLLER.match(part) for part in parts) and "nvme" in parts:
        return DiskAddress(
            bus=Bus.NVME, sysfs_path=sysfs_path, pci_address=pci_address, pci_path=pci_path,
            nvme_namespace=_read_nvme_namespace(name, block),
        )
    scsi_address = _find_scsi_address(parts)
    ata_index = next((index for index, part in enumerate(parts) if _ATA_PORT.match(part)), None)
    if ata_index is not None:
        port = _read_ata_port(sys_root / PurePosixPath(*parts[: ata_index + 1]), parts[ata_index])
        return DiskAddress(
            bus=Bus.SATA, sysfs_path=sysfs_path, pci_address=pci_address, pci_path=pci_path,
            sata_port=port, scsi_address=scsi_address,
        )
    if parts[-3:-2] and _VIRTIO.match(parts[-3]) and parts[-2] == "block":
        return DiskAddress(bus=Bus.VIRTIO_BLK, sysfs_path=sysfs_path, pci_address=pci_address, pci_path=pci_path)
    if scsi_address is not None:
        return DiskAddress(
            bus=Bus.SCSI, sysfs_path=sysfs_path, pci_address=pci_address, pci_path=pci_path,
            scsi_address=scsi_address,
        )
    return DiskAddress(bus=Bus.UNKNOWN, sysfs_path=sysfs_path, pci_address=pci_address, pci_path=pci_path)


def _find_scsi_address(parts: tuple[str, ...]) -> tuple[int, int, int, int] | None:
    for part in parts:
        match = _SCSI_DEVICE.match(part)
        if match:
            host, channel, target, lun = (int(group) for group in match.groups())
            return host, channel, target, lun
    return None


def _read_nvme_namespace(name: str, block: Path) -> int | None:
    nsid = _read(block / "nsid")
    if nsid.isdigit():
        return int(nsid)
    match = _NVME_NAMESPACE.match(name)
    return int(match.group(1)) if match else None


def _read_nvme_subsystem_address(name: str, block: Path, sysfs_path: str, sys_root: Path) -> DiskAddress:
    """Address of an NVMe multipath head node, which sysfs puts under the subsystem.

    The PCI address comes from the first controller of the subsystem
    (``nvme-subsys0/nvme0`` links to ``.../0000:00:05.0/nvme/nvme0``).
    """
    subsystem = block.resolve().parent
    pci_path: tuple[str, ...] = ()
    for entry in _list_dir(subsystem):
        if _NVME_CONTROLLER.match(entry):
            controller = (subsystem / entry).resolve().parts
            pci_path = tuple(part for part in controller if _PCI_ADDRESS.match(part))
            if pci_path:
                break
    return DiskAddress(
        bus=Bus.NVME, sysfs_path=sysfs_path, pci_address=pci_path[-1] if pci_path else None,
        pci_path=pci_path, nvme_namespace=_read_nvme_namespace(name, block),
    )


def _read_ata_port(ata_dir: Path, ata_name: str) -> int | None:
    """Return the 0-based port of ``ataN`` on its AHCI controller.

    The kernel numbers ata ports globally from 1; ``ata_port/ataN/port_no``
    contains the 1-based port on the controller. Without that file the port is
    the position of ``ataN`` among the controller's ata ports.
    """
    port_no = _read(ata_dir / "ata_port" / ata_name / "port_no")
    if port_no.isdigit() and int(port_no) >= 1:
        return int(port_no) - 1
    siblings = sorted(
        int(match.group(1)) for entry in _list_dir(ata_dir.parent) if (match := _ATA_PORT.match(entry))
    )
    own = _ATA_PORT.match(ata_name)
    if own is None or not siblings:
        return None
    return siblings.index(int(own.group(1)))


def partition_device_name(disk_name: str, number: int) -> str:
    """Return the kernel's name for partition ``number``: ``sda1``, but ``nvme0n1p1`` and ``loop0p1``."""
    separator = "p" if disk_name[-1:].isdigit() else ""
    return f"{disk_name}{separator}{number}"
