"""Repair: compare the install record with the machine and plan the fixes.

Repair wants the same state as install (payload file, record, entry first in
its order, no second entry of ours, healthy superblocks), so it builds the
install plan for the recorded payload and adds a superblock repair.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from switchos.efi.payload import VerifiedPayload, verify_local_payload
from switchos.efi.placement import BACKUP_PATH, PAYLOAD_PATH, to_firmware_path
from switchos.errors import InvalidInputError
from switchos.installer.install import InstallChoices, build_install_plan, plan_superblock_repair
from switchos.installer.model import Target
from switchos.installer.plan import Plan
from switchos.installer.status import read_status
from switchos.installer.uninstall import NotInstalledError


def find_recorded_payload(target: Target, work_dir: Path) -> tuple[VerifiedPayload, str]:
    """Return the payload whose hash the record holds, from the ESP file or its backup, and its ESP path.

    The bytes are copied to ``work_dir`` so they are checked like any payload.
    Raises InvalidInputError when neither file matches the record.
    """
    assert target.record is not None
    expected = target.record.payload_sha256
    for path in (PAYLOAD_PATH, BACKUP_PATH):
        data = target.esp_files.read_bytes(path)
        if data is not None and hashlib.sha256(data).hexdigest() == expected:
            copy = work_dir / "recorded-payload.efi"
            copy.write_bytes(data)
            return verify_local_payload(copy), f"{to_firmware_path(path)} on the ESP"
    raise InvalidInputError(
        f"the payload file {to_firmware_path(PAYLOAD_PATH)} is missing or changed "
        f"(the record expects sha256 {expected})",
        hint="pass the payload file with --payload so repair can place it again",
    )


def _list_other_problems(target: Target) -> str:
    """Return the problems besides the payload file that repair fixes once it has the payload, as a sentence."""
    problems = [
        problem.split("; run ")[0]
        for problem in read_status(target, promote=False).problems
        if "payload file" not in problem
    ]
    if not problems:
        return ""
    return "; with the payload, repair also fixes: " + "; ".join(problems)


def build_repair_plan(target: Target, *, payload: VerifiedPayload | None, work_dir: Path) -> Plan:
    """Return the fixes for ``target``; raise NotInstalledError when it has no install record."""
    if target.record is None:
        raise NotInstalledError(
            f"SwitchOS is not installed on {target.description}: no install record on the ESP",
            hint="run 'switchos install' instead",
        )
    label = None
    if payload is None:
        try:
            payload, label = find_recorded_payload(target, work_dir)
        except InvalidInputError as error:
            raise InvalidInputError(error.message + _list_other_problems(target), hint=error.hint) from None
    choices = InstallChoices(payload=payload, store=None, payload_label=label)
    plan = build_install_plan(target, choices, command="repair")
    extra = tuple(plan_superblock_repair(target))
    return Plan(plan.command, plan.target, plan.steps + extra, plan.summary, plan.notes)
