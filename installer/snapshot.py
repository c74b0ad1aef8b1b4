"""The runtime side of SwitchOS: list, create, switch and delete snapshots.

Every command runs its checks first, each with its own error and hint, and
changes nothing when one fails. create and switch then write the slot table,
send SET_CORE_ACTION to the payload, read SwitchOSStatus back as the
acknowledgement and suspend to S3, in which the payload does the RAM work.
docs/payload-contract.md describes the protocol.

Everything that touches the live system comes in through SnapshotSystem, so
tests point the variable store, sysfs, procfs and the power adapter elsewhere.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from switchos.boot_entries.store import VariableStore, VariableStoreError
from switchos.efi.command import COMMAND_ATTRIBUTES, COMMAND_VARIABLE, COMMAND_VENDOR, CoreAction, CoreCommand
from switchos.efi.gpt import GptError, read_gpt
from switchos.efi.status import STATUS_VARIABLE, STATUS_VENDOR, PayloadStatus
from switchos.errors import InvalidInputError, SwitchOSError, UnsupportedMachineError
from switchos.installer.power import PowerControl, SuspendResult, is_windows_administrator
from switchos.partition.blockdev import list_block_devices
from switchos.partition.layout import SWITCHOS_TYPE_GUID, LayoutError, StoreLocation
from switchos.partition.layout import locate_store as locate_store_on_device
from switchos.partition.memory import read_usable_ram
from switchos.partition.store import (
    SLOT_ENTRY_SIZE,
    SLOT_HEADER_ROOM,
    SlotEntry,
    SlotReport,
    SlotState,
    StoreError,
    StoreReport,
    Superblock,
    format_size,
    read_store,
)

# The payload file on the ESP (efi.placement.PAYLOAD_PATH).
PAYLOAD_ESP_PATH = Path("EFI/SwitchOS/switchos-x64.efi")


class NotPrivilegedError(SwitchOSError):
    """The command needs root (Linux) or an elevated administrator (Windows)."""


class PayloadNotRunningError(SwitchOSError):
    """The payload did not run during this boot, so nothing would act on a command."""


class StoreNotFoundError(SwitchOSError):
    """No snapshot store was found, or more than one."""


class StoreUnhealthyError(SwitchOSError):
    """The snapshot store has an invalid superblock or slot entry."""


class NoSlotAvailableError(SwitchOSError):
    """No slot can take the snapshot."""


class RequestedSlotUnavailableError(NoSlotAvailableError, InvalidInputError):
    """The slot given with --slot does not exist or is not free; exits as invalid input."""


class SnapshotNotFoundError(InvalidInputError):
    """The TARGET given names no slot."""


class SnapshotNotUsableError(SwitchOSError):
    """The target slot contains no complete snapshot, or one that does not fit this machine."""


class CommandNotAcceptedError(SwitchOSError):
    """The payload did not take SET_CORE_ACTION, so suspending would do nothing."""


@dataclasses.dataclass(frozen=True)
class OsInfo:
    """The OS description that a new slot entry records."""

    name: str
    version: str
    host_name: str


@dataclasses.dataclass
class SnapshotSystem:
    """The live system the snapshot commands act on.

    ``store_path`` names the device, partition or image that contains the store;
    when it is None the store is searched on the disks that ``sys_root`` lists.
    ``uid`` is the effective user id (None: ask the OS). ``clock`` gives the
    creation time written to slot entries.
    """

    variables: VariableStore
    power: PowerControl
    sys_root: Path = Path("/sys")
    proc_root: Path = Path("/proc")
    dev_root: Path = Path("/dev")
    etc_root: Path = Path("/etc")
    esp_root: Path | None = None
    store_path: Path | None = None
    uid: int | None = None
    is_windows: bool = sys.platform == "win32"
    clock: Callable[[], float] = time.time
    sync: Callable[[], None] = getattr(os, "sync", lambda: None)
    ram_size: Callable[[], int] | None = None

    def usable_ram(self) -> int:
        """Return the bytes of System RAM in the firmware memory map."""
        if self.ram_size is not None:
            return self.ram_size()
        if self.is_windows:
            # TODO: read the firmware memory map on Windows when a source that
            # matches Linux's /sys/firmware/memmap is chosen; GlobalMemoryStatusEx
            # reports less than the map, which would break the RAM size check.
            raise UnsupportedMachineError(
                "reading the firmware memory map is not implemented on Windows yet",
                hint="create and switch snapshots from Linux for now",
            )
        return read_usable_ram(sys_root=self.sys_root, proc_root=self.proc_root)


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """One slot as the list command shows it; ``entry`` is None for an unreadable entry."""

    index: int
    entry: SlotEntry | None
    problem: str | None
    resumed_from: bool

    @property
    def state(self) -> str:
        return "invalid" if self.entry is None else self.entry.state.label


@dataclasses.dataclass(frozen=True)
class StoreListing:
    """The store, its slots, and the parsed SwitchOSStatus (None when the payload did not run)."""

    location: StoreLocation
    report: StoreReport
    snapshots: tuple[Snapshot, ...]
    status: PayloadStatus | None


@dataclasses.dataclass(frozen=True)
class CommandOutcome:
    """The result of create or switch: the command sent, the slot entry written, the suspend."""

    command: CoreCommand
    slot: int | None
    saved_into: int | None
    acknowledged: bool
    suspend: SuspendResult | None
    slot_after_resume: SlotEntry | None


# -- checks -------------------------------------------------------------------


def check_privileges(system: SnapshotSystem) -> None:
    """Raise NotPrivilegedError unless the process is root or an elevated administrator."""
    if system.is_windows and system.uid is None:
        if not is_windows_administrator():
            raise NotPrivilegedError(
                "switchos snapshot needs administrator rights",
                hint="run it from an elevated prompt (Run as administrator)",
            )
        return
    uid = system.uid if system.uid is not None else os.geteuid()
    if uid != 0:
        raise NotPrivilegedError(
            f"switchos snapshot needs root, but runs as user id {uid}",
            hint="run it with sudo",
        )


def read_payload_status(variables: VariableStore) -> PayloadStatus | None:
    """Return SwitchOSStatus parsed, or None when the payload did not publish it this boot."""
    variable = variables.get(STATUS_VARIABLE, STATUS_VENDOR)
    if variable is None:
        return None
    return PayloadStatus.from_bytes(variable.data)


def require_payload_protocol(system: SnapshotSystem) -> tuple[int, PayloadStatus | None]:
    """Return the protocol of the payload that ran this boot, and its status if it published one.

    A payload publishes SwitchOSStatus in every boot in which it runs. The
    upstream payload (protocol 0) publishes nothing, so when the payload file
    on the ESP is a protocol-0 image the command goes ahead and the write of
    SET_CORE_ACTION is the only proof that it runs.
    """
    status = read_payload_status(system.variables)
    if status is not None:
        return status.protocol, status
    if find_installed_protocol(system) == 0:
        return 0, None
    raise PayloadNotRunningError(
        f"the payload did not run during this boot: the variable {STATUS_VARIABLE}-{STATUS_VENDOR} "
        "does not exist",
        hint="check with 'switchos status' that SwitchOS is installed and first in the boot order, "
        "then reboot; no snapshot can be taken before the payload has run",
    )


def find_installed_protocol(system: SnapshotSystem) -> int | None:
    """Return the protocol of the payload file on the ESP, or None when there is none."""
    # Imported here because pefile costs start-up time that only this rare path needs.
    from switchos.efi.esp import SystemRoots, find_live_esp
    from switchos.efi.pe import check_payload_image

    esp_root = system.esp_root
    if esp_root is None:
        try:
            location = find_live_esp(SystemRoots(proc=system.proc_root, sys=system.sys_root, dev=system.dev_root))
        except (SwitchOSError, OSError):
            return None
        esp_root = location.mount_point
    if esp_root is None or not (esp_root / PAYLOAD_ESP_PATH).is_file():
        return None
    try:
        return check_payload_image(esp_root / PAYLOAD_ESP_PATH).metadata.protocol
    except (SwitchOSError, OSError):
        return None


def find_store_partuuid(status: PayloadStatus | None) -> str | None:
    """Return the PARTUUID in the payload's ``store=partition:<PARTUUID>`` load option, or None."""
    if status is None:
        return None
    kind, _, partuuid = status.load_options.get("store", "").partition(":")
    return partuuid.lower() if kind == "partition" and partuuid else None


def find_store(system: SnapshotSystem, *, partuuid: str | None = None) -> StoreLocation:
    """Return where the snapshot store is.

    ``system.store_path`` wins; otherwise every disk is searched for a
    partition of the SwitchOS type (the one with ``partuuid`` when given) or
    a whole-disk store. Raises StoreNotFoundError for none or several, and
    DeviceNotFoundError (invalid input) when ``store_path`` does not exist.
    """
    if system.store_path is not None:
        try:
            return locate_store_on_device(system.store_path)
        except LayoutError as error:
            raise StoreNotFoundError(error.message, hint=error.hint) from error

    found: list[tuple[StoreLocation, str]] = []
    for disk in list_block_devices(sys_root=system.sys_root):
        path = system.dev_root / disk.name
        try:
            with open(path, "rb") as file:
                table = read_gpt(file, sector_size=disk.logical_sector_size)
        except GptError:
            table = None
        except OSError:
            continue
        if table is None:
            if _has_superblock(path):
                found.append((StoreLocation(path, 0, disk.size, None), ""))
            continue
        for part in table.partitions:
            if part.type_guid == SWITCHOS_TYPE_GUID:
                sector = table.sector_size
                location = StoreLocation(path, part.first_lba * sector, part.sector_count * sector, part.number)
                found.append((location, str(part.partition_guid)))

    if partuuid is not None:
        matching = [item for item in found if item[1] == partuuid.lower()]
        if matching:
            found = matching
    if not found:
        raise StoreNotFoundError(
            "no snapshot store found: no disk has a SwitchOS partition or a whole-disk store",
            hint="prepare one with 'switchos install', or name it with --store DEVICE",
        )
    if len(found) > 1:
        listing = ", ".join(describe_location(location) for location, _ in found)
        raise StoreNotFoundError(
            f"found {len(found)} snapshot stores: {listing}",
            hint="choose one with --store DEVICE",
        )
    return found[0][0]


def _has_superblock(path: Path) -> bool:
    try:
        return read_store(path).superblock is not None
    except SwitchOSError:
        return False


def describe_location(location: StoreLocation) -> str:
    if location.partition_number is None:
        return f"{location.path} (whole disk)" if location.offset == 0 else str(location.path)
    return f"partition {location.partition_number} of {location.path}"


def require_healthy_store(location: StoreLocation) -> tuple[StoreReport, Superblock]:
    """Read the store; raise StoreNotFoundError when both superblocks are blank, else
    StoreUnhealthyError naming every invalid part."""
    report = read_store(location.path, offset=location.offset, size=location.size)
    if report.blank:
        raise StoreNotFoundError(
            f"no snapshot store on {describe_location(location)}: both superblocks are blank (all zero), "
            "so no store was written there or its headers were erased",
            hint="prepare a snapshot store with 'switchos install'",
        )
    problems = []
    if report.primary_error is not None:
        problems.append(f"primary superblock: {report.primary_error.message}")
    if report.backup_error is not None:
        problems.append(f"backup superblock: {report.backup_error.message}")
    if report.primary is not None and report.backup is not None and not report.healthy:
        if report.primary.as_copy(report.backup.copy) != report.backup:
            problems.append("the primary and backup superblocks differ")
    problems += [slot.error.message for slot in report.slots if slot.error is not None]
    superblock = report.superblock
    if problems or superblock is None:
        repair = " --repair" if report.primary_repairable else ""
        raise StoreUnhealthyError(
            f"the snapshot store on {describe_location(location)} is damaged: " + "; ".join(problems),
            hint=f"inspect it with: switchos disk inspect {location.path}{repair}",
        )
    return report, superblock


def check_s3(system: SnapshotSystem) -> None:
    """Raise when S3 is impossible or another suspend or hibernation is under way."""
    system.power.check_s3()
    system.power.check_idle()


# -- slots --------------------------------------------------------------------


def list_snapshots(system: SnapshotSystem) -> StoreListing:
    """Read the store and SwitchOSStatus for ``snapshot list``; raise when the store cannot be found."""
    check_privileges(system)
    try:
        status = read_payload_status(system.variables)
    except (SwitchOSError, OSError):
        # The list is still useful without the payload's status.
        status = None
    partuuid = find_store_partuuid(status)
    location = find_store(system, partuuid=partuuid)
    report = read_store(location.path, offset=location.offset, size=location.size)
    if report.superblock is None:
        require_healthy_store(location)
    resumed = status.resumed_slot if status is not None else None
    snapshots = tuple(
        Snapshot(
            index=slot.index,
            entry=slot.entry,
            problem=slot.error.message if slot.error is not None else None,
            resumed_from=slot.index == resumed,
        )
        for slot in report.slots
    )
    return StoreListing(location, report, snapshots, status)


def find_slot(report: StoreReport, target: str) -> SlotReport:
    """Return the slot named by ``target``: a slot number, or the label of exactly one slot."""
    if target.isdigit():
        index = int(target)
        if index >= len(report.slots):
            raise SnapshotNotFoundError(
                f"slot {index} does not exist; the store has slots 0 to {len(report.slots) - 1}",
                hint="list the slots with: switchos snapshot list",
            )
        return report.slots[index]
    matches = [slot for slot in report.slots if slot.entry is not None and slot.entry.label == target
               and slot.entry.state is not SlotState.FREE]
    if not matches:
        raise SnapshotNotFoundError(
            f"no snapshot has the label {target!r}",
            hint="list the slots with: switchos snapshot list",
        )
    if len(matches) > 1:
        numbers = ", ".join(str(slot.index) for slot in matches)
        raise SnapshotNotFoundError(
            f"the label {target!r} names slots {numbers}",
            hint="give the slot number instead of the label",
        )
    return matches[0]


def choose_free_slot(report: StoreReport, requested: int | None, *, exclude: int | None = None) -> int:
    """Return ``requested`` when it is free, else the first free slot; raise NoSlotAvailableError."""
    if requested is not None:
        if requested >= len(report.slots):
            raise RequestedSlotUnavailableError(
                f"slot {requested} does not exist; the store has slots 0 to {len(report.slots) - 1}",
                hint="choose a slot from: switchos snapshot list",
            )
        entry = report.slots[requested].entry
        if entry is None or entry.state is not SlotState.FREE:
            state = "invalid" if entry is None else entry.state.label
            raise RequestedSlotUnavailableError(
                f"slot {requested} is {state}, not free",
                hint=f"delete it first with: switchos snapshot delete {requested}",
            )
        return requested
    for slot in report.slots:
        if slot.index != exclude and slot.entry is not None and slot.entry.state is SlotState.FREE:
            return slot.index
    raise NoSlotAvailableError(
        f"all {len(report.slots)} slots of the snapshot store are in use",
        hint="delete a snapshot with: switchos snapshot delete TARGET",
    )


def write_slot_entry(location: StoreLocation, superblock: Superblock, entry: SlotEntry) -> None:
    """Write one slot table entry in place and flush it to the disk."""
    offset = location.offset + superblock.slot_entry_offset(entry.index)
    data = entry.to_bytes()
    assert len(data) == SLOT_ENTRY_SIZE
    fd = os.open(location.path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
    try:
        written = os.pwrite(fd, data, offset)
        if written != len(data):
            raise StoreError(f"short write: {written} of {len(data)} bytes at offset {offset} of {location.path}")
        os.fsync(fd)
    finally:
        os.close(fd)


def read_os_info(system: SnapshotSystem) -> OsInfo:
    """Return the OS name and version (os-release on Linux) and the host name."""
    host = socket.gethostname()
    if system.is_windows:
        return OsInfo("Windows", platform.release(), host)
    values: dict[str, str] = {}
    for candidate in (system.etc_root / "os-release", system.etc_root.parent / "usr" / "lib" / "os-release"):
        try:
            text = candidate.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip("\"'")
        break
    return OsInfo(values.get("NAME", "Linux"), values.get("VERSION_ID", ""), host)


def _fit(text: str, size: int) -> str:
    """Cut ``text`` to at most ``size`` bytes of UTF-8 without splitting a character."""
    return text.encode("utf-8")[:size].decode("utf-8", errors="ignore")


def make_pending_entry(index: int, *, label: str, os_info: OsInfo, ram_size: int, created_at: int) -> SlotEntry:
    return SlotEntry(
        index=index,
        state=SlotState.PENDING,
        created_at=created_at,
        ram_size=ram_size,
        label=label,
        os_name=_fit(os_info.name, 64),
        os_version=_fit(os_info.version, 32),
        host_name=_fit(os_info.host_name, 64),
    )


# -- the command channel ------------------------------------------------------


def send_command(system: SnapshotSystem, command: CoreCommand, *, protocol: int) -> bool:
    """Write SET_CORE_ACTION and check the acknowledgement; return whether the payload confirmed it.

    Protocol 1 confirms through SwitchOSStatus, whose pending-data must equal
    the bytes written. Protocol 0 has no acknowledgement: a write that the
    firmware accepted is all there is, so the result is False. Raises
    CommandNotAcceptedError when the write is rejected or not confirmed.
    """
    data = command.to_bytes()
    try:
        system.variables.set(COMMAND_VARIABLE, data, vendor=COMMAND_VENDOR, attributes=COMMAND_ATTRIBUTES)
    except VariableStoreError as error:
        # Firmware rejects a volatile variable written after ExitBootServices,
        # so a rejected write means no SetVariable hook took it.
        raise CommandNotAcceptedError(
            f"the payload did not accept the {command.action.label} command: writing "
            f"{COMMAND_VARIABLE} failed ({error.message})",
            hint="the payload's runtime hook is not active in this boot; reboot and check 'switchos status'",
        ) from error
    if protocol == 0:
        return False

    status = read_payload_status(system.variables)
    pending = status.pending if status is not None else None
    if pending is None or pending.data != data:
        reported = "no pending command" if pending is None else f"pending-data={pending.data.hex().upper() or '(none)'}"
        raise CommandNotAcceptedError(
            f"the payload did not accept the {command.action.label} command: {STATUS_VARIABLE} reports "
            f"{reported}, expected pending-data={data.hex().upper()}",
            hint="the payload that ran this boot cannot take commands (a boot-service driver has no "
            "runtime hook); install a payload with runtime support",
        )
    return True


def cancel_command(system: SnapshotSystem, *, protocol: int) -> None:
    """Replace a pending command with a no-op; errors are ignored because this only cleans up."""
    try:
        command = CoreCommand.for_protocol(CoreAction.NO_OP, protocol=protocol, slot=None)
        system.variables.set(COMMAND_VARIABLE, command.to_bytes(), vendor=COMMAND_VENDOR, attributes=COMMAND_ATTRIBUTES)
    except SwitchOSError:
        pass


def _suspend(system: SnapshotSystem) -> SuspendResult:
    # The payload copies RAM, not the disk caches' future; flush file systems
    # so a switch away leaves them consistent on disk.
    system.sync()
    return system.power.suspend()


def _read_entry(location: StoreLocation, index: int) -> SlotEntry | None:
    try:
        report = read_store(location.path, offset=location.offset, size=location.size)
    except SwitchOSError:
        return None
    return report.slots[index].entry if index < len(report.slots) else None


# -- commands -----------------------------------------------------------------


def create_snapshot(
    system: SnapshotSystem,
    *,
    label: str = "",
    slot: int | None = None,
    lazy: bool = False,
    dry_run: bool = False,
    before_suspend: Callable[[CommandOutcome], None] | None = None,
) -> CommandOutcome:
    """Save the running OS into a slot at the next S3 suspend, and suspend now unless ``lazy``.

    ``before_suspend`` receives the sent command once every check passed and
    the payload took it, right before the machine suspends. With ``dry_run``
    every check runs and the outcome describes the command, but no slot
    entry or variable is written and the machine does not suspend.
    """
    check_privileges(system)
    protocol, status = require_payload_protocol(system)
    partuuid = find_store_partuuid(status)
    location = find_store(system, partuuid=partuuid)
    report, superblock = require_healthy_store(location)
    if protocol == 0:
        # The upstream payload reads no slot table: no slot to choose or write.
        index = None
        command = CoreCommand.for_protocol(CoreAction.STORE, protocol=0, slot=slot)
    else:
        index = choose_free_slot(report, slot)
        command = CoreCommand.for_protocol(CoreAction.STORE, protocol=protocol, slot=index)
    check_s3(system)
    ram_size = system.usable_ram()
    if index is not None:
        _require_slot_room(superblock, ram_size)
    if dry_run:
        return CommandOutcome(command, index, index, False, None, None)

    if index is not None:
        entry = make_pending_entry(
            index, label=label, os_info=read_os_info(system), ram_size=ram_size, created_at=int(system.clock())
        )
        write_slot_entry(location, superblock, entry)
    try:
        acknowledged = send_command(system, command, protocol=protocol)
    except SwitchOSError:
        if index is not None:
            write_slot_entry(location, superblock, SlotEntry(index=index))
        raise

    sent = CommandOutcome(command, index, index, acknowledged, None, None)
    if lazy:
        return sent
    if before_suspend is not None:
        before_suspend(sent)
    result = _suspend(system)
    after = _read_entry(location, index) if index is not None else None
    return CommandOutcome(command, index, index, acknowledged, result, after)


def switch_snapshot(
    system: SnapshotSystem,
    target: str,
    *,
    lazy: bool = False,
    dry_run: bool = False,
    before_suspend: Callable[[CommandOutcome], None] | None = None,
) -> CommandOutcome:
    """Restore the snapshot ``target`` at the next S3 resume, and suspend now unless ``lazy``.

    With protocol 1 the running OS is saved first into the slot marked
    pending here: the slot it was resumed from when SwitchOSStatus names one,
    else the first free slot. ``before_suspend`` and ``dry_run`` work as in
    create_snapshot.
    """
    check_privileges(system)
    protocol, status = require_payload_protocol(system)
    partuuid = find_store_partuuid(status)
    location = find_store(system, partuuid=partuuid)
    report, superblock = require_healthy_store(location)
    chosen = find_slot(report, target)
    ram_size = system.usable_ram()
    _require_usable_target(chosen, ram_size)
    save_index = None
    if protocol >= 1:
        resumed = status.resumed_slot if status is not None else None
        if resumed is not None and resumed != chosen.index and resumed < len(report.slots):
            save_index = resumed
        else:
            save_index = choose_free_slot(report, None, exclude=chosen.index)
        _require_slot_room(superblock, ram_size)
    check_s3(system)

    command = CoreCommand.for_protocol(CoreAction.SWITCH, protocol=protocol, slot=None if protocol == 0 else chosen.index)
    if dry_run:
        return CommandOutcome(command, chosen.index, save_index, False, None, None)
    if save_index is not None:
        previous = report.slots[save_index].entry
        label = previous.label if previous is not None and save_index == (status.resumed_slot if status else None) else ""
        entry = make_pending_entry(
            save_index, label=label, os_info=read_os_info(system), ram_size=ram_size, created_at=int(system.clock())
        )
        write_slot_entry(location, superblock, entry)
    try:
        acknowledged = send_command(system, command, protocol=protocol)
    except SwitchOSError:
        if save_index is not None:
            previous = report.slots[save_index].entry
            write_slot_entry(location, superblock, previous or SlotEntry(index=save_index))
        raise

    sent = CommandOutcome(command, chosen.index, save_index, acknowledged, None, None)
    if lazy:
        return sent
    if before_suspend is not None:
        before_suspend(sent)
    result = _suspend(system)
    after = _read_entry(location, save_index) if save_index is not None else None
    return CommandOutcome(command, chosen.index, save_index, acknowledged, result, after)


def delete_snapshot(system: SnapshotSystem, target: str, *, confirm: Callable[[SlotReport], bool]) -> SlotReport | None:
    """Mark the slot named by ``target`` free after ``confirm`` returns True; return it, or None when declined.

    A command still pending for that slot is replaced by a no-op, so the
    payload never writes into a slot the user freed.
    """
    check_privileges(system)
    try:
        status = read_payload_status(system.variables)
    except SwitchOSError:
        status = None
    partuuid = find_store_partuuid(status)
    location = find_store(system, partuuid=partuuid)
    report, superblock = require_healthy_store(location)
    chosen = find_slot(report, target)
    if not confirm(chosen):
        return None
    write_slot_entry(location, superblock, SlotEntry(index=chosen.index))
    pending = status.pending if status is not None else None
    if pending is not None and pending.action != CoreAction.NO_OP and pending.slot == chosen.index:
        cancel_command(system, protocol=status.protocol if status is not None else 0)
    return chosen


def _require_slot_room(superblock: Superblock, ram_size: int) -> None:
    room = superblock.slot_size - SLOT_HEADER_ROOM
    if ram_size > room:
        raise UnsupportedMachineError(
            f"this machine has {format_size(ram_size)} of RAM, but a slot has room for {format_size(room)}",
            hint="the RAM grew since the store was prepared; prepare the snapshot disk again "
            "with 'switchos install'",
        )


def _require_usable_target(slot: SlotReport, ram_size: int) -> None:
    entry = slot.entry
    if entry is None:
        raise SnapshotNotUsableError(
            f"slot {slot.index} has an invalid entry: {slot.error.message if slot.error else 'unreadable'}",
            hint=f"delete it with: switchos snapshot delete {slot.index}",
        )
    if entry.state is not SlotState.VALID:
        raise SnapshotNotUsableError(
            f"slot {slot.index} is {entry.state.label}, not a complete snapshot",
            hint="switch only to a slot that 'switchos snapshot list' shows as valid",
        )
    # A RAM image restores all of physical memory, so it fits only a machine
    # with the same usable RAM as the one that saved it.
    if entry.ram_size != ram_size:
        raise SnapshotNotUsableError(
            f"slot {slot.index} was saved with {format_size(entry.ram_size)} of RAM, "
            f"but this machine has {format_size(ram_size)}",
            hint="a snapshot can only be restored on the memory layout it was saved with; "
            "restore the RAM configuration or delete the snapshot",
        )


def format_timestamp(seconds: int) -> str:
    """Format a slot time as UTC ISO 8601, or "unknown" for 0."""
    if not seconds:
        return "unknown"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def snapshot_to_json(snapshot: Snapshot, superblock: Superblock | None) -> dict[str, object]:
    entry = snapshot.entry
    document: dict[str, object] = {
        # Slots are numbered from 0, in the text output too.
        "slot": snapshot.index,
        "state": snapshot.state,
        "resumed_from": snapshot.resumed_from,
        "slot_size": superblock.slot_size if superblock else None,
    }
    if entry is None:
        document["problem"] = snapshot.problem
        return document
    document.update(
        label=entry.label,
        os_name=entry.os_name,
        os_version=entry.os_version,
        host_name=entry.host_name,
        created_at=entry.created_at or None,
        ram_size=entry.ram_size or None,
        image_size=entry.image_size or None,
    )
    return document

