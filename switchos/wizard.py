"""The install wizard: questionary prompts that build the same InstallChoices as ``--yes``.

UI only: every fact and rule comes from switchos.installer. Nothing is
written before the final confirmation, so Ctrl-C at any prompt changes
nothing; it raises UserAbortError.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import questionary

from switchos.efi.payload import VerifiedPayload
from switchos.efi.secureboot import read_secure_boot_state
from switchos.errors import InvalidInputError, SwitchOSError, UserAbortError
from switchos.installer.config import InstallOptions
from switchos.installer.discovery import list_snapshot_disks
from switchos.installer.install import (
    InstallChoices,
    UPSTREAM_MEANING,
    StoreChoice,
    default_layout,
    make_geometry,
    payload_kind_label,
)
from switchos.installer.model import SnapshotDisk, Target, TargetMode
from switchos.installer.plan import Plan
from switchos.installer.source import acquire_payload
from switchos.partition.layout import LayoutKind
from switchos.partition.memory import parse_memory_size, read_usable_ram
from switchos.partition.store import MIB, format_size

NO_DISK = "no snapshot disk"

LAYOUT_HELP = {
    LayoutKind.NEW_TABLE: "new-table: a fresh GPT with one SwitchOS partition (erases the disk)",
    LayoutKind.FREE_SPACE: "free-space: add a SwitchOS partition in free space (keeps the other partitions)",
    LayoutKind.EXISTING_PARTITION: "existing-partition: re-type a partition you name (erases that partition)",
    LayoutKind.WHOLE_DISK: "whole-disk: no partition table, the store fills the disk (erases the disk)",
}


def _ask(question: questionary.Question) -> Any:
    """Ask and return the answer; raise UserAbortError on Ctrl-C (questionary returns None then)."""
    answer = question.ask()
    if answer is None:
        raise UserAbortError("install cancelled; nothing was changed")
    return answer


def _say(text: str) -> None:
    click.echo(text)


def run_wizard(target: Target, options: InstallOptions) -> InstallChoices:
    """Ask for every choice the flags left open, showing what discovery found and proposing defaults."""
    _say(f"Target: {target.description}")
    _say(f"ESP: {target.esp.describe()}")
    _say(read_secure_boot_state(target.store).describe())
    if target.record is not None:
        _say(f"SwitchOS is installed already (entries {', '.join(target.record.entries)}); this install joins it.")

    payload = _ask_payload(options)
    if not payload.image.metadata.from_section and not options.upstream_payload:
        _say(f"The payload {payload.path} has no .swos metadata section: it was not built for this installer.")
        upstream = _ask(
            questionary.confirm(
                f"Install it as the upstream SwitchOS application? If yes, {UPSTREAM_MEANING}.", default=False
            )
        )
        if not upstream:
            raise UserAbortError("install cancelled; nothing was changed")
    _say(f"The payload is a {payload_kind_label(payload.image.kind)}, which decides how it is registered.")
    for line in payload.image.metadata.describe_consequences():
        _say(f"  {line}")
    trial = options.trial_boot or _ask(questionary.confirm(trial_question(payload), default=False))
    store = _ask_store(target, payload, options)
    return InstallChoices(payload=payload, store=store, trial_boot=bool(trial))


def trial_question(payload: VerifiedPayload) -> str:
    """Return the trial-boot question, which states what a trial means for this kind of payload."""
    if payload.image.kind.is_driver:
        return (
            "Try it with a trial boot first? The driver is listed first in DriverOrder and runs at every boot until "
            "'switchos status', run after a reboot, keeps it (it ran) or removes it from DriverOrder (it did not)."
        )
    return (
        "Try it with a trial boot first? It is set in BootNext, so it runs at the next boot only; 'switchos status' "
        "after that boot lists it first in BootOrder if it ran."
    )


def _ask_payload(options: InstallOptions) -> VerifiedPayload:
    if options.payload is not None or options.payload_url is not None:
        return acquire_payload(options)
    source = _ask(
        questionary.select(
            "Where does the payload come from? Either way it is checked (PE format, architecture, "
            "subsystem) before anything is written.",
            choices=[
                questionary.Choice("a local .efi file", value="file"),
                questionary.Choice("an HTTPS URL, checked against its SHA-256", value="url"),
            ],
        )
    )
    while True:
        if source == "file":
            answer = _ask(questionary.path("Payload file (.efi) to install:"))
            requested = InstallOptions(payload=Path(answer).expanduser())
        else:
            url = _ask(questionary.text("Payload URL (https://...):"))
            sha256 = _ask(questionary.text("Its SHA-256 (64 hex digits):"))
            requested = InstallOptions(payload_url=url.strip(), payload_sha256=sha256.strip())
        try:
            return acquire_payload(requested)
        except SwitchOSError as error:
            _say(f"error: {error.message}")


def _ask_store(target: Target, payload: VerifiedPayload, options: InstallOptions) -> StoreChoice | None:
    if options.no_snapshot_disk:
        return None
    memory = options.memory or _ask_memory(target)
    slots = int(
        _ask(
            questionary.text(
                "Snapshot slots (one RAM-sized slot per saved OS state):",
                default=str(options.slots),
                validate=lambda text: text.isdigit() and int(text) >= 1 or "enter a whole number of at least 1",
            )
        )
    )
    geometry = make_geometry(memory, slots)
    _say(
        f"The store needs {format_size(geometry.required_size)}: {slots} slots of {format_size(geometry.slot_size)}."
    )
    disks = list_snapshot_disks(target, required_size=geometry.required_size, disk_kinds=payload.image.metadata.disks)
    for excluded in disks:
        if not excluded.eligible:
            _say(f"  not usable: {excluded.description}: {', '.join(excluded.exclusions)}")
    disk = _ask_disk([candidate for candidate in disks if candidate.eligible], options)
    if disk is None:
        return None

    default = (options.layout or default_layout(payload)).value
    layout = LayoutKind(
        _ask(
            questionary.select(
                "Layout of the snapshot disk:",
                choices=[questionary.Choice(LAYOUT_HELP[kind], value=kind.value) for kind in LayoutKind],
                default=default,
            )
        )
    )
    partition = options.partition
    if layout is LayoutKind.EXISTING_PARTITION and partition is None:
        partition = int(
            _ask(questionary.text("Partition number to re-type:", validate=lambda text: text.isdigit() or "a number"))
        )
    wipe = options.wipe
    if layout is not LayoutKind.FREE_SPACE and not wipe:
        typed = _ask(
            questionary.text(
                f"This erases {disk.description}. Type its name ({disk.name}) to confirm:"
            )
        )
        if typed.strip() != disk.name:
            raise UserAbortError(f"the typed name {typed!r} is not {disk.name}; nothing was changed")
        wipe = True
    return StoreChoice(disk, layout, geometry, wipe, partition)


def _ask_memory(target: Target) -> int:
    default = ""
    if target.mode is TargetMode.LIVE:
        try:
            default = f"{read_usable_ram(sys_root=target.roots.sys, proc_root=target.roots.proc) // MIB}M"
        except SwitchOSError:
            default = ""
    while True:
        answer = _ask(questionary.text("RAM size of the target machine (for example 8G):", default=default))
        try:
            return parse_memory_size(answer)
        except InvalidInputError as error:
            _say(f"error: {error.message}")


def _ask_disk(eligible: list[SnapshotDisk], options: InstallOptions) -> SnapshotDisk | None:
    if options.snapshot_disk:
        for disk in eligible:
            if options.snapshot_disk in (str(disk.path), disk.name, f"/dev/{disk.name}"):
                return disk
    if not eligible:
        _say("No disk can hold the snapshot store; the payload is installed without one.")
        return None
    choices = [questionary.Choice(disk.description, value=str(disk.path)) for disk in eligible]
    choices.append(questionary.Choice("no snapshot disk (install the payload alone)", value=NO_DISK))
    answer = _ask(questionary.select("Disk for the snapshot store:", choices=choices))
    if answer == NO_DISK:
        return None
    return next(disk for disk in eligible if str(disk.path) == answer)


def confirm_plan(plan: Plan) -> None:
    """Show the plan and ask for the go-ahead; raise UserAbortError on no or Ctrl-C."""
    _say(plan.format_text())
    if plan.empty:
        return
    if not _ask(questionary.confirm("Apply this plan?", default=False)):
        raise UserAbortError("install cancelled; nothing was changed")
