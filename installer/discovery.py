"""Discovery: build a Target from the running system or from offline files."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from switchos.boot_entries.efivarfs import EFIVARFS_ROOT, EfivarfsStore
from switchos.boot_entries.ovmf_vars import OvmfVarsStore
from switchos.boot_entries.store import VariableStoreUnavailableError
from switchos.efi import esp as esp_module
from switchos.efi.esp import EspNotFoundError, find_image_esp, find_live_esp
from switchos.efi.pe import DiskKind
from switchos.efi.placement import ImageEsp, MountedEsp
from switchos.efi.placement import EspFiles
from switchos.efi.record import InstallRecord, InstallRecordError, read_install_record
from switchos.errors import InvalidInputError
from switchos.installer.model import SnapshotDisk, SystemRoots, Target, TargetMode
from switchos.partition.blockdev import Bus
from switchos.partition.candidates import find_candidates
from switchos.partition.store import format_size

# The payload metadata names disk controllers; sysfs discovery names buses.
DISK_KIND_BUSES = {
    DiskKind.VIRTIO_BLK: Bus.VIRTIO_BLK,
    DiskKind.NVME: Bus.NVME,
    DiskKind.AHCI: Bus.SATA,
    DiskKind.SCSI: Bus.SCSI,
    DiskKind.USB: Bus.USB,
}


def discover_offline(
    image: Path, vars_path: Path, *, snapshot_image: Path | None = None, esp_partition: int | None = None
) -> Target:
    """Open a disk image with an ESP and an OVMF variables file as the target.

    ``esp_partition`` chooses the ESP by partition number when the image has
    several. Raises InvalidInputError when a file is missing, EspNotFoundError
    when the image has no single ESP, and the variables store's errors for a
    bad file.
    """
    for label, path in (("--image", image), ("--vars", vars_path), ("--snapshot-image", snapshot_image)):
        if path is not None and not Path(path).is_file():
            raise InvalidInputError(f"{label} {path} does not exist or is not a file")
    try:
        location = find_image_esp(Path(image), partition_number=esp_partition)
    except EspNotFoundError as error:
        if esp_partition is not None:
            # The user named the partition, so a wrong number is an input error.
            raise InvalidInputError(
                f"--esp-partition {esp_partition}: {error.message}",
                hint="run 'sgdisk -p IMAGE' to list the partitions, and pass the number of the ESP",
            ) from None
        if "EFI System Partitions" not in error.message:
            raise
        raise EspNotFoundError(error.message, hint="choose one with --esp-partition N") from None
    esp_files = ImageEsp.open(Path(image), location)
    store = OvmfVarsStore(Path(vars_path))
    disks = []
    if snapshot_image is not None:
        size = Path(snapshot_image).stat().st_size
        disks.append(
            SnapshotDisk(
                path=Path(snapshot_image),
                name=Path(snapshot_image).name,
                size=size,
                description=f"disk image {snapshot_image} ({format_size(size)})",
            )
        )
    record, problem = read_record(esp_files)
    return Target(
        mode=TargetMode.OFFLINE,
        store=store,
        esp=location,
        esp_files=esp_files,
        record=record,
        record_problem=problem,
        disks=disks,
        description=f"disk image {image} with variables file {vars_path}",
    )


def discover_live(
    *,
    efivars: Path = EFIVARFS_ROOT,
    esp_path: Path | None = None,
    roots: SystemRoots = SystemRoots(),
) -> Target:
    """Open the running system as the target: efivarfs and the mounted ESP.

    Raises VariableStoreUnavailableError when ``efivars`` contains no variables
    (a machine booted without UEFI), and EspNotFoundError when no single ESP
    is mounted.
    """
    if not efivars.is_dir() or not any(efivars.iterdir()):
        raise VariableStoreUnavailableError(
            f"no UEFI variables in {efivars}: this system did not boot through UEFI, "
            "or efivarfs is not mounted",
            hint="mount it with: mount -t efivarfs efivarfs /sys/firmware/efi/efivars",
        )
    esp_roots = esp_module.SystemRoots(proc=roots.proc, sys=roots.sys, run=roots.run, dev=roots.dev)
    location = find_live_esp(esp_roots, esp_path=esp_path)
    assert location.mount_point is not None  # find_live_esp only returns mounted ESPs.
    esp_files = MountedEsp(location.mount_point)
    record, problem = read_record(esp_files)
    return Target(
        mode=TargetMode.LIVE,
        store=EfivarfsStore(efivars),
        esp=location,
        esp_files=esp_files,
        record=record,
        record_problem=problem,
        roots=roots,
        description=f"this machine (ESP {location.describe()})",
    )


def read_record(esp_files: EspFiles) -> tuple[InstallRecord | None, str | None]:
    """Return the install record, or None and the reason when the file is invalid."""
    try:
        return read_install_record(esp_files), None
    except InstallRecordError as error:
        return None, error.message


def list_snapshot_disks(
    target: Target, *, required_size: int | None, disk_kinds: Iterable[DiskKind]
) -> list[SnapshotDisk]:
    """Return the disks that may hold the snapshot store, eligible or not, with reasons.

    Offline, these are the given disk images (checked for size only); live,
    every disk from sysfs, assessed by the partition package.
    """
    if target.mode is TargetMode.OFFLINE:
        disks = []
        for disk in target.disks:
            reasons: tuple[str, ...] = ()
            if required_size is not None and disk.size < required_size:
                reasons = (
                    f"too-small: needs {format_size(required_size)}, has {format_size(disk.size)}",
                )
            disks.append(SnapshotDisk(disk.path, disk.name, disk.size, disk.description, reasons))
        return disks

    buses = {DISK_KIND_BUSES[kind] for kind in disk_kinds if kind in DISK_KIND_BUSES}
    candidates = find_candidates(
        sys_root=target.roots.sys,
        proc_root=target.roots.proc,
        dev_root=target.roots.dev,
        required_size=required_size,
        supported_buses=buses,
        esp_disks=[target.esp.disk],
    )
    disks = []
    for candidate in candidates:
        device = candidate.device
        model = f" {device.model}" if device.model else ""
        disks.append(
            SnapshotDisk(
                path=device.device_path(target.roots.dev),
                name=device.name,
                size=device.size,
                description=(
                    f"/dev/{device.name}{model} ({format_size(device.size)}, "
                    f"{device.address.describe()})"
                ),
                exclusions=tuple(
                    f"{exclusion.reason.value}: {exclusion.detail}" for exclusion in candidate.exclusions
                ),
            )
        )
    return disks
