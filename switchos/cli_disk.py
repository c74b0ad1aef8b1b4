"""``switchos disk``: list snapshot disk candidates, inspect and repair a snapshot store."""

from __future__ import annotations

import datetime
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from switchos.cli_confirm import confirm_change
from switchos.errors import ExitCode, SwitchOSError
from switchos.partition.blockdev import Bus
from switchos.partition.candidates import DEFAULT_PAYLOAD_BUSES, DiskCandidate, find_candidates
from switchos.partition.layout import NoStoreOnDeviceError, locate_store
from switchos.partition.memory import DEFAULT_SLOT_COUNT, compute_store_size, parse_memory_size, read_usable_ram
from switchos.partition.store import (
    BlankSuperblockError,
    SlotReport,
    StoreReport,
    Superblock,
    format_size,
    read_store,
    repair_primary_superblock,
)

F = TypeVar("F", bound=Callable[..., Any])


def _reports_errors(command: F) -> F:
    """Print a SwitchOSError as ``error:`` and ``hint:`` lines on stderr and exit with its code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except SwitchOSError as error:
            click.echo(f"error: {error.message}", err=True)
            if error.hint:
                click.echo(f"hint: {error.hint}", err=True)
            sys.exit(int(error.exit_code))

    return wrapper  # type: ignore[return-value]


class StoreDamagedError(SwitchOSError):
    """A superblock or slot entry of the inspected store is invalid."""


@click.group("disk")
def disk() -> None:
    """Find the snapshot disk and inspect its snapshot store."""


def _candidate_json(candidate: DiskCandidate, dev_root: Path) -> dict[str, Any]:
    device = candidate.device
    address = device.address
    return {
        "name": device.name,
        "path": str(device.device_path(dev_root)),
        "size": device.size,
        "logical_sector_size": device.logical_sector_size,
        "physical_sector_size": device.physical_sector_size,
        "rotational": device.rotational,
        "removable": device.removable,
        "read_only": device.read_only,
        "model": device.model,
        "bus": address.bus.value,
        "pci_address": address.pci_address,
        "pci_path": list(address.pci_path),
        "nvme_namespace": address.nvme_namespace,
        "sata_port": address.sata_port,
        "scsi_address": list(address.scsi_address) if address.scsi_address else None,
        "sysfs_path": address.sysfs_path,
        "backing_file": device.backing_file,
        "holders": list(device.holders),
        "partitions": [
            {"name": part.name, "number": part.number, "start": part.start, "size": part.size,
             "holders": list(part.holders)}
            for part in device.partitions
        ],
        "eligible": candidate.eligible,
        "exclusions": [{"reason": item.reason.value, "detail": item.detail} for item in candidate.exclusions],
    }


@disk.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--slots", type=click.IntRange(min=1), default=DEFAULT_SLOT_COUNT, show_default=True,
              help="Number of snapshot slots the disk must hold.")
@click.option("--memory", metavar="SIZE",
              help="RAM size of the machine the disk is for, with a unit (K, M, G or T, powers of 1024), "
                   "at least 64M, for example 16G; default: this machine's RAM.")
@click.option("--bus", "buses", multiple=True, type=click.Choice([bus.value for bus in Bus]),
              help="A bus the payload supports (repeatable); default: virtio-blk, nvme, sata.")
@click.option("--sys-root", type=click.Path(path_type=Path), default=Path("/sys"), hidden=True)
@click.option("--proc-root", type=click.Path(path_type=Path), default=Path("/proc"), hidden=True)
@click.option("--dev-root", type=click.Path(path_type=Path), default=Path("/dev"), hidden=True)
@_reports_errors
def list_disks(
    as_json: bool, slots: int, memory: str | None, buses: tuple[str, ...],
    sys_root: Path, proc_root: Path, dev_root: Path,
) -> None:
    """List the disks and whether each can hold the snapshot store, with the reasons if not."""
    required_size: int | None
    if memory is not None:
        required_size = compute_store_size(parse_memory_size(memory), slots)
    else:
        try:
            required_size = compute_store_size(read_usable_ram(sys_root=sys_root, proc_root=proc_root), slots)
        except SwitchOSError as error:
            click.echo(f"warning: {error.message}; sizes are not checked", err=True)
            required_size = None
    supported = frozenset(Bus(value) for value in buses) if buses else DEFAULT_PAYLOAD_BUSES
    candidates = find_candidates(
        sys_root=sys_root, proc_root=proc_root, dev_root=dev_root,
        required_size=required_size, supported_buses=supported,
    )

    if as_json:
        document = {
            "required_size": required_size,
            "slots": slots,
            "disks": [_candidate_json(candidate, dev_root) for candidate in candidates],
        }
        click.echo(json.dumps(document, indent=2))
        return

    if required_size is not None:
        click.echo(f"The snapshot store needs {format_size(required_size)} for {slots} slots.")
    rows = [("DEVICE", "SIZE", "SECTOR", "BUS", "STATUS")]
    details: list[str] = []
    for candidate in candidates:
        device = candidate.device
        status = "candidate" if candidate.eligible else "excluded: " + ", ".join(
            item.reason.value for item in candidate.exclusions
        )
        rows.append((
            str(device.device_path(dev_root)), format_size(device.size),
            f"{device.logical_sector_size}/{device.physical_sector_size}", device.address.describe(), status,
        ))
        details.extend(f"  {device.name}: {item.reason.value}: {item.detail}" for item in candidate.exclusions)
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]]
        click.echo("  ".join(cells).rstrip())
    if details:
        click.echo("")
        click.echo("Reasons:")
        for line in details:
            click.echo(line)


def _timestamp(seconds: int) -> str | None:
    if not seconds:
        return None
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat()


def _superblock_json(superblock: Superblock | None) -> dict[str, Any] | None:
    if superblock is None:
        return None
    return {
        "store_uuid": str(superblock.store_uuid),
        "version": f"{superblock.version_major}.{superblock.version_minor}",
        "store_size": superblock.store_size,
        "slot_size": superblock.slot_size,
        "slot_count": superblock.slot_count,
        "created_at": _timestamp(superblock.created_at),
    }


def _slot_json(slot: SlotReport) -> dict[str, Any]:
    if slot.entry is None:
        return {"index": slot.index, "offset": slot.offset, "state": None, "error": _error_text(slot.error)}
    entry = slot.entry
    return {
        "index": slot.index,
        "offset": slot.offset,
        "state": entry.state.label,
        "label": entry.label,
        "os_name": entry.os_name,
        "os_version": entry.os_version,
        "host_name": entry.host_name,
        "created_at": _timestamp(entry.created_at),
        "ram_size": entry.ram_size,
        "image_size": entry.image_size,
        "checksum_type": entry.checksum_type.name.lower(),
        "image_checksum": entry.image_checksum.hex(),
        "error": None,
    }


def _report_json(device: Path, report: StoreReport) -> dict[str, Any]:
    return {
        "device": str(device),
        "offset": report.offset,
        "size": report.size,
        "healthy": report.healthy,
        "blank": report.blank,
        "primary": _superblock_json(report.primary),
        "primary_error": _error_text(report.primary_error),
        "backup": _superblock_json(report.backup),
        "backup_error": _error_text(report.backup_error),
        "slots": [_slot_json(slot) for slot in report.slots],
    }


def _print_report(device: Path, report: StoreReport) -> None:
    click.echo(f"Store on {device} at byte {report.offset}, {format_size(report.size)}")
    for name, superblock, error in (
        ("primary superblock", report.primary, report.primary_error),
        ("backup superblock", report.backup, report.backup_error),
    ):
        if superblock is not None:
            click.echo(f"  {name}: valid")
        elif isinstance(error, BlankSuperblockError):
            click.echo(f"  {name}: blank (all zero)")
        else:
            click.echo(f"  {name}: INVALID: {_error_text(error)}")
    trusted = report.superblock
    if trusted is not None:
        click.echo(f"  store UUID: {trusted.store_uuid}")
        click.echo(f"  format version: {trusted.version_major}.{trusted.version_minor}")
        click.echo(f"  slots: {trusted.slot_count} of {format_size(trusted.slot_size)}, numbered from 0")
        click.echo(f"  created: {_timestamp(trusted.created_at) or 'unknown'}")
    for slot in report.slots:
        if slot.entry is None:
            click.echo(f"  slot {slot.index}: INVALID: {_error_text(slot.error)}")
            continue
        entry = slot.entry
        line = f"  slot {slot.index}: {entry.state.label}"
        if entry.label or entry.os_name:
            line += f", {entry.label!r}, {entry.os_name} {entry.os_version} on {entry.host_name}".rstrip()
        if entry.created_at:
            line += f", saved {_timestamp(entry.created_at)}, RAM {format_size(entry.ram_size)}"
        click.echo(line)


def _error_text(error: SwitchOSError | None) -> str | None:
    # The message only: check_store_report gives the hint, because only it
    # checks whether the other superblock copy is valid.
    return None if error is None else error.message


def check_store_report(device: Path, report: StoreReport) -> None:
    """Raise when the store on ``device`` is blank or damaged, with the hint that fits the damage."""
    if report.blank:
        raise NoStoreOnDeviceError(
            f"no snapshot store on {device}: both superblocks are blank (all zero), "
            "so no store was written there or its headers were erased",
            hint="prepare a snapshot store with 'switchos install'",
        )
    if report.healthy:
        return
    if report.primary_repairable:
        hint = (
            "the backup superblock is valid: "
            f"'switchos disk inspect --repair {device}' restores the primary superblock from it"
        )
    elif report.superblock is None:
        hint = (
            "neither superblock is valid, so this is not a SwitchOS snapshot store or both copies are damaged; "
            "'switchos install' prepares a new store, and the snapshots in this one are lost"
        )
    elif report.backup is None:
        # NOTE: no command rewrites the backup superblock yet; the store keeps
        # working through the valid primary.
        hint = "the primary superblock is valid, so the store still works; only the backup copy is damaged"
    else:
        numbers = ", ".join(str(slot.index) for slot in report.slots if slot.error is not None)
        hint = f"free the damaged slots with 'switchos snapshot delete N' (slots {numbers})"
    raise StoreDamagedError(f"the snapshot store on {device} is damaged", hint=hint)


@disk.command("inspect")
@click.argument("device", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--repair", is_flag=True, help="Rewrite the primary superblock from the backup copy at the end.")
@click.option("--yes", "-y", is_flag=True, help="Repair without asking for confirmation.")
@click.option("--dry-run", is_flag=True, help="With --repair: show what would be written, write nothing.")
@_reports_errors
def inspect(device: Path, as_json: bool, repair: bool, yes: bool, dry_run: bool) -> None:
    """Show the snapshot store on DEVICE (a disk, its SwitchOS partition, or an image file).

    Slots are numbered from 0. Exits 1 when a superblock or slot entry is
    invalid, 2 when DEVICE does not exist, and 3 when DEVICE contains no snapshot
    store (for example after 'switchos uninstall --wipe-snapshots').
    """
    location = locate_store(device)
    report = read_store(device, offset=location.offset, size=location.size)
    if as_json:
        click.echo(json.dumps(_report_json(device, report), indent=2))
    else:
        _print_report(device, report)

    if repair and not report.blank:
        _repair(device, location.offset, location.size, report, yes=yes, dry_run=dry_run)
        return
    check_store_report(device, report)


def _repair(device: Path, offset: int, size: int, report: StoreReport, *, yes: bool, dry_run: bool) -> None:
    if not report.primary_repairable:
        if report.backup is None:
            # repair_primary_superblock raises the error that explains this.
            repair_primary_superblock(device, offset=offset, size=size, dry_run=True)
        click.echo("The primary superblock matches the backup; nothing to repair.", err=True)
        sys.exit(int(ExitCode.NOTHING_TO_DO))
    if dry_run:
        superblock = repair_primary_superblock(device, offset=offset, size=size, dry_run=True)
        click.echo(
            f"Would rewrite the primary superblock at byte {offset} of {device} "
            f"from the backup (store {superblock.store_uuid}); nothing written.",
            err=True,
        )
        return
    confirm_change(
        f"Rewrite the primary superblock of {device} from the backup copy?",
        yes=yes, action="repair the primary superblock",
    )
    superblock = repair_primary_superblock(device, offset=offset, size=size)
    click.echo(f"Rewrote the primary superblock of store {superblock.store_uuid} from the backup.", err=True)
