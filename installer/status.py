"""Status: what is installed, whether the payload ran in this boot, the store and S3.

Reading status may change one thing: an entry on trial is promoted (listed
first) once SwitchOSStatus shows that the payload ran, or withdrawn when a
later boot shows that it did not.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from switchos.boot_entries.device_path import CodecError
from switchos.boot_entries.load_option import LoadOption
from switchos.boot_entries.order import OptionKind, insert_first, read_order, remove_from_order
from switchos.boot_entries.store import SWITCHOS_VENDOR
from switchos.efi.placement import PAYLOAD_PATH
from switchos.installer.model import Target, TargetMode
from switchos.installer.store_status import (
    count_used_slots,
    locate_recorded_store,
    locate_whole_disk_store,
    read_recorded_store,
)
from switchos.installer.trial import TRIAL_PATH, read_boot_id, read_trial

STATUS_VARIABLE = "SwitchOSStatus"


@dataclass
class Status:
    """The facts ``switchos status`` prints; None means unknown or not applicable."""

    installed: bool
    payload_version: str | None = None
    payload_sha256: str | None = None
    payload_file: str | None = None
    method: str | None = None
    entry: str | None = None
    order_variable: str | None = None
    order_position: int | None = None
    loaded_this_boot: bool | None = None
    payload_status: dict[str, str] = field(default_factory=dict)
    trial: str | None = None
    snapshot_store: dict[str, Any] | None = None
    s3: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def format_text(self) -> str:
        if not self.installed:
            lines = ["SwitchOS: not installed"]
        else:
            position = "not listed" if self.order_position is None else f"position {self.order_position + 1}"
            lines = [
                "SwitchOS: installed",
                f"payload: version {self.payload_version or 'unknown'}, file {self.payload_file}",
                f"method: {self.method}, {self.entry} at {position} of {self.order_variable}",
            ]
            if self.trial:
                lines.append(f"trial boot: {self.trial}")
        loaded = {True: "yes", False: "no", None: "unknown (offline target)"}[self.loaded_this_boot]
        lines.append(f"payload ran during this boot: {loaded}")
        if self.snapshot_store is not None:
            store = self.snapshot_store
            where = f"whole-disk store on {store['path']}, " if store["layout"] == "whole-disk" and "path" in store else ""
            lines.append(
                f"snapshot store: {where}{store['health']}"
                + (f", {store['slots_used']} of {store['slots']} slots used" if "slots" in store else "")
            )
        lines.append(f"S3 suspend: {self.s3.get('summary', 'unknown')}")
        lines += [f"problem: {problem}" for problem in self.problems]
        return "\n".join(lines)


def parse_status_variable(data: bytes) -> dict[str, str]:
    """Parse SwitchOSStatus: ASCII ``key=value`` lines ended by newlines."""
    values = {}
    for line in data.decode("ascii", errors="replace").splitlines():
        key, separator, value = line.partition("=")
        if separator:
            values[key.strip()] = value.strip()
    return values


def read_s3_support(target: Target) -> dict[str, Any]:
    """Read /sys/power/mem_sleep: S3 is supported when it offers ``deep``."""
    if target.mode is TargetMode.OFFLINE:
        return {"supported": None, "summary": "unknown (offline target)"}
    path = target.roots.sys / "power" / "mem_sleep"
    try:
        text = path.read_text().strip()
    except OSError:
        return {"supported": False, "mem_sleep": None, "summary": f"not supported ({path} is missing)"}
    modes = [mode.strip("[]") for mode in text.split()]
    supported = "deep" in modes
    summary = "supported (deep)" if supported else f"not supported (mem_sleep offers: {text or 'nothing'})"
    return {"supported": supported, "mem_sleep": text, "summary": summary}


def read_status(target: Target, *, promote: bool = True) -> Status:
    """Collect the status of ``target``; promote or withdraw an entry on trial when ``promote``."""
    status = Status(installed=target.record is not None, s3=read_s3_support(target))
    variable = target.store.get(STATUS_VARIABLE, SWITCHOS_VENDOR)
    if target.mode is TargetMode.LIVE:
        status.loaded_this_boot = variable is not None
    if variable is not None:
        status.payload_status = parse_status_variable(variable.data)
    record = target.record
    if target.record_problem is not None:
        status.problems.append(f"{target.record_problem}; run 'switchos install' to write a new record")
    if record is None:
        return status

    status.payload_version = record.payload_version
    status.payload_sha256 = record.payload_sha256
    data = target.esp_files.read_bytes(PAYLOAD_PATH)
    if data is None:
        status.payload_file = "missing"
        status.problems.append("the payload file is missing; run 'switchos repair --payload FILE'")
    elif hashlib.sha256(data).hexdigest() != record.payload_sha256:
        status.payload_file = "changed"
        status.problems.append("the payload file differs from the recorded one; run 'switchos repair'")
    else:
        status.payload_file = "ok"

    for name in record.entries:
        kind = OptionKind.DRIVER if name.startswith("Driver") else OptionKind.BOOT
        number = kind.parse_variable_name(name)
        if number is None:
            continue
        status.method = "driver" if kind is OptionKind.DRIVER else "application"
        status.entry = name
        status.order_variable = kind.order_variable
        order = read_order(target.store, kind)
        status.order_position = order.index(number) if number in order else None
        if target.store.get(name) is None:
            status.problems.append(f"{name} is missing; run 'switchos repair'")
        elif status.order_position != 0 and target.esp_files.read_bytes(TRIAL_PATH) is None:
            status.problems.append(f"{name} is not first in {kind.order_variable}; run 'switchos repair'")
        if promote:
            _settle_trial(target, status, kind, number)
    status.snapshot_store = _store_status(target)
    return status


def _settle_trial(target: Target, status: Status, kind: OptionKind, number: int) -> None:
    marker = read_trial(target)
    if marker is None or marker.entry != kind.variable_name(number):
        return
    if target.mode is TargetMode.OFFLINE or marker.boot_id == read_boot_id(target):
        status.trial = "pending: reboot to try the payload"
        return
    if status.loaded_this_boot:
        insert_first(target.store, kind, number)
        target.esp_files.delete(TRIAL_PATH)
        status.trial = "passed: the payload ran, so the entry is now listed first"
        status.order_position = 0
    else:
        remove_from_order(target.store, kind, number)
        target.esp_files.delete(TRIAL_PATH)
        status.trial = "failed: the payload did not run, so the entry was withdrawn from the order"
        status.order_position = None
        status.problems.append("the trial boot did not run the payload; check the console output of that boot")


def _entry_uses_whole_disk(target: Target, name: str) -> bool:
    """Return whether entry ``name``'s load options name a whole-disk store (``store=whole-disk``)."""
    variable = target.store.get(name)
    if variable is None:
        return False
    try:
        option = LoadOption.from_bytes(variable.data)
    except CodecError:
        return False
    text = option.optional_data.decode("utf-16-le", errors="replace").rstrip("\0")
    return "store=whole-disk" in text.split()


def _store_status(target: Target) -> dict[str, Any] | None:
    record = target.record
    if record is None:
        return None
    if record.snapshot_store_partuuid is not None:
        result: dict[str, Any] = {"layout": "partition", "partuuid": str(record.snapshot_store_partuuid)}
        location = locate_recorded_store(target, record.snapshot_store_partuuid)
        missing = "not found (no disk has that partition)"
    elif any(_entry_uses_whole_disk(target, name) for name in record.entries):
        # NOTE: the record names no disk for a whole-disk store, so status
        # reports the first disk that starts with a store superblock.
        result = {"layout": "whole-disk"}
        location = locate_whole_disk_store(target)
        missing = "not found (no disk starts with a snapshot store)"
    else:
        return None
    if location is None:
        result["health"] = missing
        if target.mode is TargetMode.OFFLINE and not target.disks:
            result["health"] += "; pass --snapshot-image with the snapshot disk image to check it"
        return result
    report = read_recorded_store(location)
    result["path"] = str(location.path)
    if report is None:
        result["health"] = "unreadable"
        return result
    superblock = report.superblock
    if report.healthy:
        result["health"] = "healthy"
    elif report.primary_repairable:
        result["health"] = "primary superblock damaged; 'switchos repair' restores it from the backup"
    else:
        result["health"] = "damaged"
    if superblock is not None:
        result["slots"] = superblock.slot_count
        result["slot_size"] = superblock.slot_size
        result["slots_used"] = count_used_slots(report)
    return result
