"""Uninstall: remove only what SwitchOS added, in the reverse order of install.

Entries leave their order variable before they are deleted, the files go
after the entries, and the install record goes last, so an uninstall stopped
at any point leaves a bootable machine that the next uninstall finishes.
"""

from __future__ import annotations

import os

from switchos.boot_entries.order import OptionKind, read_order
from switchos.efi.placement import BACKUP_PATH, PAYLOAD_DIR, PAYLOAD_PATH, to_firmware_path
from switchos.efi.record import RECORD_PATH
from switchos.errors import ExitCode, SwitchOSError
from switchos.installer import steps
from switchos.installer.install import find_our_entries
from switchos.installer.model import Target
from switchos.installer.plan import Plan, Step
from switchos.installer.store_status import locate_recorded_store
from switchos.installer.trial import TRIAL_PATH
from switchos.partition.store import SUPERBLOCK_BLOCK_SIZE, backup_superblock_offset


class NotInstalledError(SwitchOSError):
    """The target has no SwitchOS install to remove or repair."""

    exit_code = ExitCode.NOTHING_TO_DO


def build_uninstall_plan(target: Target, *, wipe_snapshots: bool = False) -> Plan:
    """Return the steps that remove SwitchOS's entries, files and record from ``target``.

    Entries are ours when the record names them or when they load our payload
    file from the target's ESP. Raises NotInstalledError when there is nothing
    to remove.
    """
    plan_steps: list[Step] = []
    removed: list[str] = []
    for kind in (OptionKind.BOOT, OptionKind.DRIVER):
        numbers = find_our_entries(target, kind)
        order = read_order(target.store, kind)
        for number in numbers:
            if number in order:
                plan_steps.append(steps.remove_from_order_step(target.store, kind, number))
        if kind is OptionKind.BOOT and steps.boot_next_points_at(target.store, set(numbers)):
            plan_steps.append(steps.clear_boot_next_step(target.store))
        for number in numbers:
            name = kind.variable_name(number)
            removed.append(name)
            plan_steps.append(steps.delete_variable_step(target.store, name, f"delete {name}"))

    for path in (TRIAL_PATH, BACKUP_PATH, PAYLOAD_PATH):
        if target.esp_files.read_bytes(path) is not None:
            plan_steps.append(steps.delete_file_step(target.esp_files, path))
    if wipe_snapshots:
        plan_steps += _plan_wipe_store(target)
    if target.record is not None or target.esp_files.read_bytes(RECORD_PATH) is not None:
        plan_steps.append(steps.delete_file_step(target.esp_files, RECORD_PATH, action="delete-record"))
    if plan_steps:
        plan_steps.append(steps.remove_empty_dir_step(target.esp_files, PAYLOAD_DIR))

    if not plan_steps:
        raise NotInstalledError(
            f"SwitchOS is not installed on {target.description}: no install record and no SwitchOS entry"
        )
    summary = [f"ESP: {target.esp.describe()}", f"entries to remove: {', '.join(removed) or 'none'}"]
    notes = []
    if target.record is not None and target.record.snapshot_store_partuuid and not wipe_snapshots:
        notes.append(
            f"the snapshot store (PARTUUID {target.record.snapshot_store_partuuid}) and its snapshots "
            "are kept; pass --wipe-snapshots to erase its headers"
        )
    notes.append(f"the folder {to_firmware_path(PAYLOAD_DIR)} is kept if files other than SwitchOS's remain in it")
    return Plan("uninstall", target.description, tuple(plan_steps), tuple(summary), tuple(notes))


def _plan_wipe_store(target: Target) -> list[Step]:
    record = target.record
    if record is None or record.snapshot_store_partuuid is None:
        return []
    location = locate_recorded_store(target, record.snapshot_store_partuuid)
    if location is None:
        return []

    def apply() -> None:
        # Zeroing both superblocks makes the store unrecognisable; the slots'
        # data stays on the disk until something overwrites it.
        fd = os.open(location.path, os.O_RDWR | os.O_CLOEXEC)
        try:
            size = location.size if location.size is not None else os.lseek(fd, 0, os.SEEK_END)
            zero = bytes(SUPERBLOCK_BLOCK_SIZE)
            os.pwrite(fd, zero, location.offset)
            os.pwrite(fd, zero, location.offset + backup_superblock_offset(size))
            os.fsync(fd)
        finally:
            os.close(fd)

    return [
        Step(
            "wipe-snapshot-store",
            f"erase the snapshot store headers on {location.path} (its snapshots are lost)",
            apply,
            {"path": str(location.path), "offset": location.offset},
        )
    ]
