"""``switchos snapshot``: list, create, switch and delete snapshots."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from switchos.boot_entries.store import VariableStore
from switchos.cli_confirm import confirm_change
from switchos.efi.command import COMMAND_VARIABLE, COMMAND_VENDOR
from switchos.errors import UserAbortError
from switchos.installer.power import make_power_control
from switchos.installer.snapshot import (
    CommandOutcome,
    SnapshotSystem,
    StoreListing,
    create_snapshot,
    delete_snapshot,
    describe_location,
    format_timestamp,
    list_snapshots,
    snapshot_to_json,
    switch_snapshot,
)
from switchos.partition.store import SlotReport, SlotState, format_size

EFIVARFS_DEFAULT = Path("/sys/firmware/efi/efivars")


def _make_variable_store(efivars: Path) -> VariableStore:
    if sys.platform == "win32":
        from switchos.boot_entries.windows import WindowsStore

        return WindowsStore()
    from switchos.boot_entries.efivarfs import EfivarfsStore

    return EfivarfsStore(efivars)


STORE_HELP = ("The disk, SwitchOS partition or image that contains the snapshot store "
              "(default: search every disk).")

F = TypeVar("F", bound=Callable[..., Any])


def store_option(command: F) -> F:
    """Accept --store after the subcommand too; it overrides the group's --store."""
    return click.option("--store", "store_path", type=click.Path(path_type=Path), default=None,
                        help=STORE_HELP)(command)


def _apply_store(system: SnapshotSystem, store_path: Path | None) -> None:
    if store_path is not None:
        system.store_path = store_path


@click.group("snapshot")
@click.option("--store", "store_path", type=click.Path(path_type=Path), default=None, help=STORE_HELP)
@click.option("--efivars", type=click.Path(path_type=Path), default=EFIVARFS_DEFAULT, hidden=True)
@click.option("--sys-root", type=click.Path(path_type=Path), default=Path("/sys"), hidden=True)
@click.option("--proc-root", type=click.Path(path_type=Path), default=Path("/proc"), hidden=True)
@click.option("--dev-root", type=click.Path(path_type=Path), default=Path("/dev"), hidden=True)
@click.option("--etc-root", type=click.Path(path_type=Path), default=Path("/etc"), hidden=True)
@click.pass_context
def snapshot(
    ctx: click.Context, store_path: Path | None, efivars: Path, sys_root: Path, proc_root: Path,
    dev_root: Path, etc_root: Path,
) -> None:
    """Save this OS into a slot of the snapshot store, or switch to a saved one.

    Slots are numbered from 0. create and switch send the command to the
    payload and suspend the machine to S3, during which the payload saves or
    restores the RAM.
    """
    if isinstance(ctx.obj, SnapshotSystem):
        # A caller (the tests) passed a prepared system.
        if store_path is not None:
            ctx.obj.store_path = store_path
        return
    ctx.obj = SnapshotSystem(
        variables=_make_variable_store(efivars),
        power=make_power_control(sys_root=sys_root, proc_root=proc_root, dev_root=dev_root),
        sys_root=sys_root,
        proc_root=proc_root,
        dev_root=dev_root,
        etc_root=etc_root,
        store_path=store_path,
    )


@snapshot.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@store_option
@click.pass_obj
def list_command(system: SnapshotSystem, as_json: bool, store_path: Path | None) -> None:
    """List the slots of the snapshot store, numbered from 0; * marks the slot this OS was resumed from."""
    _apply_store(system, store_path)
    listing = list_snapshots(system)
    if as_json:
        click.echo(json.dumps(_listing_json(listing), indent=2))
        return
    _print_listing(listing)


def _listing_json(listing: StoreListing) -> dict[str, object]:
    superblock = listing.report.superblock
    return {
        "store": {
            "path": str(listing.location.path),
            "offset": listing.location.offset,
            "size": listing.location.size,
            "uuid": str(superblock.store_uuid) if superblock else None,
            "healthy": listing.report.healthy,
            "slot_numbering": "0-based",
        },
        "payload": None if listing.status is None else {
            "protocol": listing.status.protocol,
            "version": listing.status.version,
            "resumed_slot": listing.status.resumed_slot,
        },
        "slots": [snapshot_to_json(item, superblock) for item in listing.snapshots],
    }


def _print_listing(listing: StoreListing) -> None:
    superblock = listing.report.superblock
    slot_size = format_size(superblock.slot_size) if superblock else "?"
    click.echo(
        f"Snapshot store on {describe_location(listing.location)}: "
        f"{len(listing.snapshots)} slots of {slot_size}, numbered from 0",
        err=True,
    )
    rows = [("", "SLOT", "STATE", "LABEL", "OS", "HOST", "CREATED", "RAM")]
    for item in listing.snapshots:
        entry = item.entry
        marker = "*" if item.resumed_from else ""
        if entry is None or entry.state is SlotState.FREE:
            rows.append((marker, str(item.index), item.state, "", "", "", "", ""))
            continue
        os_text = f"{entry.os_name} {entry.os_version}".strip()
        ram = format_size(entry.ram_size) if entry.ram_size else ""
        rows.append((marker, str(item.index), item.state, entry.label, os_text, entry.host_name,
                     format_timestamp(entry.created_at), ram))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    for item in listing.snapshots:
        if item.problem:
            click.echo(f"warning: slot {item.index} is unreadable: {item.problem}", err=True)


@snapshot.command("create")
@click.option("--label", default="", help="A name for the snapshot, at most 64 bytes of UTF-8.")
@click.option("--slot", type=click.IntRange(min=0), default=None,
              help="The free slot to save into, numbered from 0 (default: the first free slot).")
@click.option("--lazy", is_flag=True,
              help="Only send the command; the payload saves at the next suspend you start.")
@click.option("--dry-run", is_flag=True,
              help="Run every check and print the command that would be sent; write nothing, do not suspend.")
@store_option
@click.pass_obj
def create_command(
    system: SnapshotSystem, label: str, slot: int | None, lazy: bool, dry_run: bool, store_path: Path | None,
) -> None:
    """Save the running OS into a slot: send the store command and suspend to S3."""
    _apply_store(system, store_path)
    saving = "the payload saves the RAM before the machine sleeps"
    outcome = create_snapshot(
        system, label=label, slot=slot, lazy=lazy, dry_run=dry_run,
        before_suspend=lambda sent: _report_sent(sent, saving),
    )
    if dry_run:
        _report_dry_run(outcome, None if lazy else saving)
        return
    if lazy:
        _report_sent(outcome, None)
    _report_resume(outcome)


@snapshot.command("switch")
@click.argument("target")
@click.option("--lazy", is_flag=True,
              help="Only send the command; the payload switches at the next suspend you start.")
@click.option("--dry-run", is_flag=True,
              help="Run every check and print the command that would be sent; write nothing, do not suspend.")
@store_option
@click.pass_obj
def switch_command(system: SnapshotSystem, target: str, lazy: bool, dry_run: bool, store_path: Path | None) -> None:
    """Switch to the snapshot TARGET (a slot number from 0, or a label): send the switch command and suspend."""
    _apply_store(system, store_path)
    restoring = "the payload restores the snapshot while the machine sleeps"
    outcome = switch_snapshot(
        system, target, lazy=lazy, dry_run=dry_run,
        before_suspend=lambda sent: _report_sent(sent, restoring),
    )
    if dry_run:
        _report_dry_run(outcome, None if lazy else restoring)
        return
    if lazy:
        _report_sent(outcome, None)
    _report_resume(outcome)


def _report_sent(outcome: CommandOutcome, suspending: str | None) -> None:
    """Print what was sent and, when ``suspending`` is given, that the machine suspends now."""
    command = outcome.command
    slot_text = "" if outcome.slot is None else f" for slot {outcome.slot}"
    confirmation = (
        "the payload acknowledged it" if outcome.acknowledged
        else "the firmware accepted the write (a protocol-0 payload sends no acknowledgement)"
    )
    click.echo(f"Sent the {command.action.label} command{slot_text} "
               f"(SET_CORE_ACTION {command.to_bytes().hex()}); {confirmation}.", err=True)
    if suspending is None:
        click.echo("The command waits for the next suspend to S3; suspend the machine when you are ready.",
                   err=True)
    else:
        click.echo(f"Suspending to S3; {suspending}.", err=True)


def _report_dry_run(outcome: CommandOutcome, suspending: str | None) -> None:
    """Print what create or switch would do; the checks passed and nothing was written."""
    command = outcome.command
    slot_text = "" if outcome.slot is None else f" for slot {outcome.slot}"
    click.echo("Dry run: every check passed; nothing was written and the machine stays awake.")
    if outcome.saved_into is not None:
        click.echo(f"Would mark slot {outcome.saved_into} pending, for the payload to save this OS into.")
    click.echo(
        f"Would send the {command.action.label} command{slot_text}: write {COMMAND_VARIABLE}-{COMMAND_VENDOR} "
        f"= {command.to_bytes().hex()} (hex)."
    )
    if suspending is None:
        click.echo("Would then wait for the next suspend to S3 that you start (--lazy).")
    else:
        click.echo(f"Would then suspend to S3; {suspending}.")
    # The acknowledgement check needs the variable written, so a dry run cannot make it.
    click.echo("Not checked: whether the payload accepts the command, which shows only when it is sent.")


def _report_resume(outcome: CommandOutcome) -> None:
    if outcome.suspend is None:
        return
    click.echo(f"The machine resumed after {outcome.suspend.elapsed:.1f} s.", err=True)
    after = outcome.slot_after_resume
    if after is not None and outcome.saved_into is not None:
        click.echo(f"Slot {outcome.saved_into} is now {after.state.label}.", err=True)
        if after.state is SlotState.PENDING:
            click.echo(
                "warning: the payload did not mark the slot valid, so the save did not complete; "
                "check the payload's console output",
                err=True,
            )


@snapshot.command("delete")
@click.argument("target")
@click.option("--yes", "-y", is_flag=True, help="Delete without asking for confirmation.")
@store_option
@click.pass_obj
def delete_command(system: SnapshotSystem, target: str, yes: bool, store_path: Path | None) -> None:
    """Mark the slot TARGET (a slot number from 0, or a label) free; its snapshot is lost."""
    _apply_store(system, store_path)

    def confirm(slot: SlotReport) -> bool:
        entry = slot.entry
        what = f"slot {slot.index}"
        if entry is not None and entry.label:
            what += f" ({entry.label!r}, {entry.state.label})"
        elif entry is not None:
            what += f" ({entry.state.label})"
        confirm_change(f"Delete the snapshot in {what}? It cannot be restored afterwards",
                       yes=yes, action=f"delete the snapshot in slot {slot.index}")
        return True

    deleted = delete_snapshot(system, target, confirm=confirm)
    if deleted is None:
        raise UserAbortError("nothing deleted; nothing was changed")
    click.echo(f"Slot {deleted.index} is free.", err=True)
