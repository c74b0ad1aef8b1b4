"""Install: turn choices and a discovered target into a plan.

The plan compares the requested state with the target and adds a step only
for what differs. A second install (or one after a crash) therefore adds only
the missing pieces, and it joins an install found through its record instead
of registering again. Step order keeps the machine bootable after a crash at any
point: the snapshot disk and the files first, then the install record, then
the entry, and only then the order variable that makes firmware run it.
"""

from __future__ import annotations

import stat
import uuid
from dataclasses import dataclass
from pathlib import Path

from switchos import __version__
from switchos.boot_entries.device_path import CodecError, make_file_path
from switchos.boot_entries.load_option import LoadOption, LoadOptionAttribute
from switchos.boot_entries.order import (
    OptionKind,
    find_entries,
    find_free_number,
    read_order,
)
from switchos.boot_entries.store import EFI_GLOBAL_VARIABLE
from switchos.efi.payload import VerifiedPayload
from switchos.efi.pe import DiskKind, PayloadKind, StoreLayout
from switchos.efi.placement import BACKUP_PATH, PAYLOAD_PATH, place_payload, discard_placement, to_firmware_path
from switchos.efi.record import RECORD_PATH, InstallRecord
from switchos.efi.secureboot import check_payload_bootable, read_secure_boot_state
from switchos.errors import InvalidInputError, UnsupportedMachineError
from switchos.installer import steps
from switchos.installer.config import InstallOptions
from switchos.installer.discovery import DISK_KIND_BUSES, list_snapshot_disks
from switchos.installer.model import LoaderEntry, SnapshotDisk, Target, TargetMode
from switchos.installer.plan import Plan, Step, Undo
from switchos.installer.store_status import locate_recorded_store, read_recorded_store
from switchos.installer.trial import TRIAL_PATH, TrialMarker, read_boot_id
from switchos.partition.layout import LayoutKind, StoreGeometry, find_switchos_partition, prepare_layout
from switchos.partition.memory import compute_slot_size, read_usable_ram
from switchos.partition.store import MIB, SLOT_HEADER_ROOM, StoreError, format_size, read_store, repair_primary_superblock

ENTRY_DESCRIPTION = "SwitchOS"


@dataclass(frozen=True)
class StoreChoice:
    """The snapshot disk to prepare: the disk, the layout and the slots it must hold."""

    disk: SnapshotDisk
    layout: LayoutKind
    geometry: StoreGeometry
    wipe: bool
    partition_number: int | None = None


@dataclass(frozen=True)
class InstallChoices:
    """Everything an install needs besides the target; the wizard and ``--yes`` both build one."""

    payload: VerifiedPayload
    store: StoreChoice | None
    trial_boot: bool = False
    # The payload source the plan shows in place of payload.path, when that is a temporary copy.
    payload_label: str | None = None


@dataclass
class _ApplyState:
    """Values that steps learn while applying and later steps use.

    ``store_pending`` is true while the snapshot partition is still to be
    created, so its GUID is not known before the plan applies.
    """

    store_partuuid: uuid.UUID | None
    whole_disk: bool = False
    store_pending: bool = False

    def store_word(self) -> str:
        if self.store_pending and self.store_partuuid is None and not self.whole_disk:
            return "partition:<GUID of the new partition>"
        if self.whole_disk:
            return "whole-disk"
        return f"partition:{self.store_partuuid}" if self.store_partuuid else "none"


def option_kind(payload: VerifiedPayload) -> OptionKind:
    return OptionKind.DRIVER if payload.image.kind.is_driver else OptionKind.BOOT


def make_geometry(memory: int, slots: int) -> StoreGeometry:
    return StoreGeometry(slot_size=compute_slot_size(memory), slot_count=slots)


def default_layout(payload: VerifiedPayload) -> LayoutKind:
    """Return the layout a payload's store format implies when the user picks none."""
    if payload.image.metadata.store is StoreLayout.WHOLE_DISK:
        return LayoutKind.WHOLE_DISK
    return LayoutKind.NEW_TABLE


def format_load_options(*, store: str, chain: str | None) -> str:
    """Return the payload's load options text: ``key=value`` words separated by spaces.

    ``store=partition:<PARTUUID>`` names the snapshot partition
    (``store=whole-disk`` a whole-disk store, ``store=none`` no store), and
    ``chain=<path>`` the loader an application starts next. The firmware
    passes the text, encoded as NUL-terminated UCS-2, to the payload as
    LoadOptions.
    """
    words = [f"store={store}"]
    if chain is not None:
        words.append(f"chain={chain}")
    return " ".join(words)


def encode_load_options(text: str) -> bytes:
    return (text + "\0").encode("utf-16-le")


def payload_entry(target: Target, payload_options: str) -> LoadOption:
    device_path = make_file_path(
        target.esp.partition_number, target.esp.start, target.esp.size, target.esp_partuuid,
        to_firmware_path(PAYLOAD_PATH),
    )
    return LoadOption(
        attributes=LoadOptionAttribute.ACTIVE,
        description=ENTRY_DESCRIPTION,
        device_path=device_path,
        optional_data=encode_load_options(payload_options),
    )


def find_our_entries(target: Target, kind: OptionKind) -> tuple[int, ...]:
    """Return the numbers of entries that load our payload file from the target's ESP, plus recorded ones."""
    numbers = set(find_entries(target.store, kind, target.esp_partuuid, to_firmware_path(PAYLOAD_PATH)))
    if target.record is not None:
        for name in target.record.entries:
            number = kind.parse_variable_name(name)
            if number is not None and target.store.get(name) is not None:
                numbers.add(number)
    return tuple(sorted(numbers))


def find_chain_loader(target: Target, ours: set[int]) -> LoaderEntry:
    """Return the first entry of BootOrder that is not ours and loads a file: what an application starts next.

    Raises UnsupportedMachineError when BootOrder lists no such entry.
    """
    skipped: list[str] = []
    for number in read_order(target.store, OptionKind.BOOT):
        if number in ours:
            continue
        name = OptionKind.BOOT.variable_name(number)
        variable = target.store.get(name, EFI_GLOBAL_VARIABLE)
        if variable is None:
            skipped.append(f"{name} (listed but missing)")
            continue
        try:
            option = LoadOption.from_bytes(variable.data)
        except CodecError:
            skipped.append(f"{name} (malformed)")
            continue
        hard_drive = option.device_path.hard_drive()
        if option.device_path.file_path() is None or hard_drive is None:
            skipped.append(f"{name} {option.description!r} (not a file on a disk)")
            continue
        if hard_drive.signature != target.esp_partuuid:
            # NOTE: the payload resolves chain= on its own partition, so only a
            # loader on the same ESP can be chained.
            skipped.append(f"{name} {option.description!r} (on another partition)")
            continue
        return LoaderEntry(OptionKind.BOOT, number, option)
    detail = f"; skipped: {', '.join(skipped)}" if skipped else ""
    raise UnsupportedMachineError(
        f"BootOrder lists no boot loader on the ESP for the payload to start{detail}",
        hint="install the OS boot loader on this ESP first, or use a driver payload",
    )


def choose_entry_number(target: Target, kind: OptionKind, ours: tuple[int, ...]) -> int:
    """Return the number of our entry: an existing one, else the recorded one if free, else a free one.

    Reusing the recorded number when its variable is gone lets repair
    re-create a deleted entry where the order variable still lists it.
    """
    if ours:
        return ours[0]
    if target.record is not None:
        for name in target.record.entries:
            number = kind.parse_variable_name(name)
            if number is not None and target.store.get(name) is None:
                return number
    return find_free_number(target.store, kind)


def build_install_plan(target: Target, choices: InstallChoices, *, command: str = "install") -> Plan:
    """Return the steps that bring ``target`` to the installed state of ``choices``.

    Raises SecureBootError when firmware would refuse the payload and
    UnsupportedMachineError when an application has no loader to chain to.
    """
    payload = choices.payload
    check_payload_bootable(read_secure_boot_state(target.store), has_signature=payload.image.has_signature)
    kind = option_kind(payload)
    other_kind = OptionKind.BOOT if kind is OptionKind.DRIVER else OptionKind.DRIVER
    ours = find_our_entries(target, kind)
    number = choose_entry_number(target, kind, ours)
    entry_name = kind.variable_name(number)
    chain: LoaderEntry | None = None
    # An application without chain-loading (the upstream one) ignores chain=.
    if kind is OptionKind.BOOT and payload.image.metadata.chainload:
        chain = find_chain_loader(target, set(ours) | {number})

    summary = [
        f"ESP: {target.esp.describe()}",
        f"payload: {choices.payload_label or payload.path} (version {payload.version or 'unknown'}, {payload.image.kind.value}, "
        f"sha256 {payload.sha256[:16]}...)",
        f"registration: {entry_name} in {kind.order_variable}"
        + (f", chain-loading {chain.name} {chain.file_path}" if chain else ""),
    ]
    if target.record is not None:
        summary.append(
            f"already installed (entries {', '.join(target.record.entries)}): "
            "checking the machine against the install record"
        )
    elif target.record_problem is not None:
        summary.append(f"install record is invalid and is written again: {target.record_problem}")
    notes = [
        line for line in payload.image.metadata.describe_consequences()
        if not line.startswith("Snapshots can only be written")
    ]
    if choices.store is not None:
        notes.append(describe_disk_buses(target, payload, choices.store.disk))

    state = _ApplyState(store_partuuid=target.record.snapshot_store_partuuid if target.record else None)
    plan_steps: list[Step] = []
    store_step, store_line = _plan_store(target, choices.store, state)
    summary.append(store_line)
    if store_step is not None:
        plan_steps.append(store_step)
    plan_steps += _plan_payload_file(target, payload)
    plan_steps += _plan_record(target, payload, entry_name, state)
    chain_path = chain.file_path if chain else None
    plan_steps += _plan_entry(target, kind, number, state, chain_path)
    if choices.trial_boot:
        plan_steps += _plan_trial(target, kind, number)
    else:
        position = steps.order_position(target.store, kind, number)
        if position != 0:
            plan_steps.append(steps.insert_first_step(target.store, kind, number, position=position))
        if target.esp_files.read_bytes(TRIAL_PATH) is not None:
            plan_steps.append(steps.delete_file_step(target.esp_files, TRIAL_PATH, action="end-trial"))
    plan_steps += _plan_duplicates(target, kind, [n for n in ours if n != number])
    plan_steps += _plan_duplicates(target, other_kind, list(find_our_entries(target, other_kind)))
    if target.esp_files.read_bytes(BACKUP_PATH) is not None:
        plan_steps.append(steps.delete_file_step(target.esp_files, BACKUP_PATH, action="delete-backup"))
    return Plan(command, target.description, tuple(plan_steps), tuple(summary), tuple(notes))


def _plan_store(
    target: Target, choice: StoreChoice | None, state: _ApplyState
) -> tuple[Step | None, str]:
    if choice is None:
        if state.store_partuuid is not None:
            return None, f"snapshot store: keep the recorded one (PARTUUID {state.store_partuuid})"
        return None, "snapshot store: none (no snapshot disk chosen)"
    check_store_disk(target, choice)
    disk, geometry = choice.disk, choice.geometry
    store_line = (
        f"snapshot store: {disk.description}, layout {choice.layout.value}, {describe_slots(geometry)}"
    )
    state.whole_disk = choice.layout is LayoutKind.WHOLE_DISK
    if _has_matching_store(disk.path, choice):
        if not state.whole_disk:
            state.store_partuuid = find_switchos_partition(disk.path, geometry).partition_guid  # type: ignore[union-attr]
        return None, store_line + " (already prepared)"
    # A missing --wipe does not stop planning, so --dry-run can show the plan;
    # require_wipe_in_plan rejects the plan before it is applied.
    needs_wipe = choice.layout is not LayoutKind.FREE_SPACE and not choice.wipe
    state.store_pending = True
    state.store_partuuid = None

    def apply() -> Undo | None:
        result = prepare_layout(
            choice.layout, disk.path, geometry, wipe=choice.wipe, partition_number=choice.partition_number
        )
        state.store_partuuid = result.partition_guid
        state.store_pending = False
        # The prepared disk stays on rollback: it is not part of the boot path.
        return None

    destroys = choice.layout in (LayoutKind.NEW_TABLE, LayoutKind.EXISTING_PARTITION, LayoutKind.WHOLE_DISK)
    description = (
        f"prepare the snapshot store on {disk.path} ({choice.layout.value}, {count_slots(geometry.slot_count)} of "
        f"{format_size(geometry.slot_size)})" + (", erasing its contents" if destroys else "")
        + (" (needs --wipe)" if needs_wipe else "")
    )
    details = {
        "disk": str(disk.path), "layout": choice.layout.value,
        "slot_size": geometry.slot_size, "slots": geometry.slot_count, "wipe": choice.wipe,
        "needs_wipe": needs_wipe, "disk_description": disk.description,
    }
    return Step("prepare-snapshot-disk", description, apply, details), store_line


def format_bus(kind: DiskKind) -> str:
    """Return the bus name of a payload disk kind as 'switchos disk list --bus' spells it."""
    bus = DISK_KIND_BUSES.get(kind)
    if bus is None:
        return kind.value
    return f"{bus.value} (AHCI)" if kind is DiskKind.AHCI else bus.value


def describe_disk_buses(target: Target, payload: VerifiedPayload, disk: SnapshotDisk) -> str:
    """Return a note naming the buses the payload writes snapshots on, and whether the chosen disk is on one."""
    buses = ", ".join(format_bus(kind) for kind in payload.image.metadata.disks)
    if target.mode is TargetMode.OFFLINE:
        verdict = f"attach {disk.path} to the machine on one of these buses, because an image has no bus of its own"
    else:
        # Live discovery excludes disks on other buses, so a chosen disk is on one of them.
        verdict = f"{disk.path} is on one of them"
    return f"The payload writes snapshots only to disks on these buses: {buses}; {verdict}."


def format_mib(size: int) -> str:
    """Return ``size`` rounded up to whole MiB, as truncate(1) reads it (``514M``)."""
    return f"{-(-size // MIB)}M"


def check_image_size(disks: list[SnapshotDisk], geometry: StoreGeometry) -> None:
    """Raise InvalidInputError when a snapshot disk image is smaller than the store needs."""
    for disk in disks:
        if disk.size < geometry.required_size:
            needed = format_mib(geometry.required_size)
            raise InvalidInputError(
                f"--snapshot-image {disk.path} is too small for the snapshot store: it needs {needed}iB "
                f"for {describe_slots(geometry)}, and the image has {format_mib(disk.size)}iB",
                hint=f"grow the image with: truncate -s {needed} {disk.path}; or pass fewer --slots "
                "or a smaller --memory",
            )


def count_slots(count: int) -> str:
    return f"{count} slot" if count == 1 else f"{count} slots"


def describe_slots(geometry: StoreGeometry) -> str:
    """Return the slot count and size, and why a slot is larger than the RAM."""
    return (
        f"{count_slots(geometry.slot_count)} of {format_size(geometry.slot_size)} each "
        f"(the RAM size rounded up to a whole MiB, plus {format_size(SLOT_HEADER_ROOM)} for the slot header)"
    )


def is_same_file(first: Path, second: Path) -> bool:
    """Return whether two paths name one file: the same resolved path, inode or block device.

    Comparing inodes catches a hard link, and resolving catches a symbolic link.
    """
    if first.resolve() == second.resolve():
        return True
    try:
        first_stat, second_stat = first.stat(), second.stat()
    except OSError:
        return False
    if (first_stat.st_dev, first_stat.st_ino) == (second_stat.st_dev, second_stat.st_ino):
        return True
    both_devices = stat.S_ISBLK(first_stat.st_mode) and stat.S_ISBLK(second_stat.st_mode)
    return both_devices and first_stat.st_rdev == second_stat.st_rdev


def esp_disk_path(target: Target) -> Path:
    """Return the path of the disk (or disk image) that contains the target's ESP."""
    if target.mode is TargetMode.OFFLINE:
        return Path(target.esp.disk)
    return target.roots.dev / target.esp.disk


def check_store_disk(target: Target, choice: StoreChoice) -> None:
    """Raise InvalidInputError when the chosen layout would overwrite the ESP or the disk around it.

    The new-table and whole-disk layouts erase the whole disk, so they need a
    disk other than the ESP's. Existing-partition re-types one partition, so
    that partition must not be the ESP.
    """
    esp_disk = esp_disk_path(target)
    if not is_same_file(choice.disk.path, esp_disk):
        return
    flag = "--snapshot-image" if target.mode is TargetMode.OFFLINE else "--snapshot-disk"
    if choice.layout in (LayoutKind.NEW_TABLE, LayoutKind.WHOLE_DISK):
        raise InvalidInputError(
            f"{flag} {choice.disk.path} cannot hold the snapshot store: esp-disk: it contains the ESP "
            f"({target.esp.describe()}), and the {choice.layout.value} layout would erase it",
            hint=f"pass a separate disk as {flag} (an image can be made with: truncate -s SIZE FILE), "
            "or --layout free-space to add the store next to the ESP",
        )
    if choice.layout is LayoutKind.EXISTING_PARTITION and choice.partition_number == target.esp.partition_number:
        raise InvalidInputError(
            f"--partition {choice.partition_number} of {choice.disk.path} is the ESP, "
            "so it cannot hold the snapshot store",
            hint="pass --partition with the number of an unused partition, or --layout free-space",
        )


def _has_matching_store(path: Path, choice: StoreChoice) -> bool:
    """Return whether the disk already contains a healthy store of the chosen layout and geometry."""
    if choice.layout is not LayoutKind.WHOLE_DISK:
        return find_switchos_partition(path, choice.geometry) is not None
    try:
        report = read_store(path)
    except StoreError:
        return False
    superblock = report.primary
    return (
        report.healthy
        and superblock is not None
        and (superblock.slot_size, superblock.slot_count) == (choice.geometry.slot_size, choice.geometry.slot_count)
    )


def _plan_payload_file(target: Target, payload: VerifiedPayload) -> list[Step]:
    if target.esp_files.read_bytes(PAYLOAD_PATH) == payload.path.read_bytes():
        return []

    def apply() -> Undo:
        placement = place_payload(target.esp_files, payload)
        return lambda: discard_placement(target.esp_files, placement)

    path = to_firmware_path(PAYLOAD_PATH)
    return [
        Step(
            "place-payload",
            f"copy the payload to {path} on the ESP ({format_size(payload.size)})",
            apply,
            {"path": path, "sha256": payload.sha256},
        )
    ]


def _plan_record(target: Target, payload: VerifiedPayload, entry_name: str, state: _ApplyState) -> list[Step]:
    previous = target.record
    boot_order = read_order(target.store, OptionKind.BOOT) if target.store.get("BootOrder") else None
    driver_order = read_order(target.store, OptionKind.DRIVER) if target.store.get("DriverOrder") else None

    # NOTE: the record names a store by partition GUID only, so a whole-disk
    # store is not recorded, and status and repair do not see it.
    def make_record() -> InstallRecord:
        return InstallRecord(
            installer_version=__version__,
            payload_sha256=payload.sha256,
            payload_version=payload.version,
            entries=(entry_name,),
            original_boot_order=previous.original_boot_order if previous else boot_order,
            original_driver_order=previous.original_driver_order if previous else driver_order,
            snapshot_store_partuuid=state.store_partuuid,
        )

    if previous is not None and not state.store_pending and make_record() == previous:
        return []
    return [
        steps.write_file_step(
            target.esp_files,
            "write-record",
            RECORD_PATH,
            lambda: make_record().to_json().encode(),
            f"write the install record {to_firmware_path(RECORD_PATH)} (entry {entry_name})",
        )
    ]


def _plan_entry(
    target: Target, kind: OptionKind, number: int, state: _ApplyState, chain: str | None
) -> list[Step]:
    name = kind.variable_name(number)

    def make_data() -> bytes:
        return payload_entry(target, format_load_options(store=state.store_word(), chain=chain)).to_bytes()

    existing = target.store.get(name, EFI_GLOBAL_VARIABLE)
    if existing is not None and not state.store_pending and existing.data == make_data():
        return []
    options = format_load_options(store=state.store_word(), chain=chain)
    action = "update-entry" if existing is not None else "create-entry"
    verb = "rewrite" if existing is not None else "create"
    description = (
        f"{verb} {name} \"{ENTRY_DESCRIPTION}\" for {to_firmware_path(PAYLOAD_PATH)} "
        f"with options \"{options}\""
    )
    step = steps.write_variable_step(target.store, action, name, make_data, description)
    step.details["options"] = options
    return [step]


def _plan_trial(target: Target, kind: OptionKind, number: int) -> list[Step]:
    """Register for the next boot only: BootNext for an application, a marked DriverOrder entry for a driver."""
    marker = TrialMarker(entry=kind.variable_name(number), boot_id=read_boot_id(target))
    plan_steps = [
        steps.write_file_step(
            target.esp_files, "write-trial", TRIAL_PATH, lambda: marker.to_json().encode(),
            f"write the trial marker {to_firmware_path(TRIAL_PATH)}: after the next boot, 'switchos status' "
            + (
                "puts the entry first in BootOrder if the payload ran"
                if kind is OptionKind.BOOT
                else "keeps the driver if it ran and removes it from DriverOrder if it did not; "
                "until then the driver runs at every boot"
            ),
        )
    ]
    if kind is OptionKind.BOOT:
        plan_steps.append(steps.set_boot_next_step(target.store, number))
    else:
        position = steps.order_position(target.store, kind, number)
        if position != 0:
            plan_steps.append(steps.insert_first_step(target.store, kind, number, position=position))
    return plan_steps


def _plan_duplicates(target: Target, kind: OptionKind, numbers: list[int]) -> list[Step]:
    """Unlist and delete entries of ours other than the one the plan keeps."""
    plan_steps: list[Step] = []
    order = read_order(target.store, kind)
    for number in numbers:
        name = kind.variable_name(number)
        if number in order:
            plan_steps.append(steps.remove_from_order_step(target.store, kind, number))
        if kind is OptionKind.BOOT and steps.boot_next_points_at(target.store, {number}):
            plan_steps.append(steps.clear_boot_next_step(target.store))
        plan_steps.append(
            steps.delete_variable_step(target.store, name, f"delete {name}, a second SwitchOS entry")
        )
    return plan_steps


def plan_superblock_repair(target: Target) -> list[Step]:
    """Return a step that rewrites a damaged primary superblock from its backup, when needed."""
    if target.record is None or target.record.snapshot_store_partuuid is None:
        return []
    location = locate_recorded_store(target, target.record.snapshot_store_partuuid)
    if location is None:
        return []
    report = read_recorded_store(location)
    if report is None or report.healthy or not report.primary_repairable:
        return []

    def apply() -> None:
        repair_primary_superblock(location.path, offset=location.offset, size=location.size)

    return [
        Step(
            "repair-superblock",
            f"rewrite the damaged primary superblock of the snapshot store on {location.path} from its backup",
            apply,
            {"path": str(location.path), "offset": location.offset},
        )
    ]


def require_single(disks: list[SnapshotDisk]) -> SnapshotDisk:
    """Return the one eligible disk; raise InvalidInputError listing the choices when there are several."""
    eligible = [disk for disk in disks if disk.eligible]
    if len(eligible) == 1:
        return eligible[0]
    if not eligible:
        excluded = "; ".join(f"{disk.description}: {', '.join(disk.exclusions)}" for disk in disks)
        raise UnsupportedMachineError(
            "no disk can hold the snapshot store" + (f" ({excluded})" if excluded else ""),
            hint="add an unused disk, or pass --no-snapshot-disk to install the payload alone",
        )
    listing = "; ".join(disk.description for disk in eligible)
    raise InvalidInputError(
        f"{len(eligible)} disks could hold the snapshot store: {listing}",
        hint="choose one with --snapshot-disk " + " or --snapshot-disk ".join(str(d.path) for d in eligible),
    )


def find_disk(disks: list[SnapshotDisk], requested: str) -> SnapshotDisk:
    """Return the disk named by ``--snapshot-disk`` (a path or a name); raise InvalidInputError otherwise."""
    for disk in disks:
        if requested in (str(disk.path), disk.name, f"/dev/{disk.name}"):
            if not disk.eligible:
                raise InvalidInputError(
                    f"{disk.description} cannot hold the snapshot store: {', '.join(disk.exclusions)}"
                )
            return disk
    names = ", ".join(str(disk.path) for disk in disks) or "none"
    raise InvalidInputError(f"--snapshot-disk {requested} is not a disk of the target", hint=f"disks: {names}")


def payload_kind_label(kind: PayloadKind) -> str:
    return "driver (Driver#### in DriverOrder)" if kind.is_driver else "application (Boot#### first in BootOrder)"


def require_wipe_in_plan(plan: Plan) -> None:
    """Raise InvalidInputError when a step of ``plan`` erases a disk that ``--wipe`` did not confirm."""
    for step in plan.steps:
        if step.details.get("needs_wipe"):
            raise InvalidInputError(
                f"the {step.details['layout']} layout erases {step.details['disk_description']}",
                hint="pass --wipe to confirm, or choose --layout free-space to keep the existing partitions",
            )


def resolve_store_choice(
    target: Target, payload: VerifiedPayload, options: InstallOptions
) -> StoreChoice | None:
    """Pick the snapshot disk and layout from ``options`` without asking; refuse ambiguity.

    Returns None when no store is requested (``--no-snapshot-disk``) or when the
    install record already names one and no disk was given.
    """
    if options.no_snapshot_disk:
        return None
    if target.record is not None and target.record.snapshot_store_partuuid and options.snapshot_disk is None:
        return None
    memory = options.memory
    if memory is None:
        if target.mode is TargetMode.OFFLINE:
            raise InvalidInputError(
                "the RAM size of the offline target is unknown, so the snapshot slots cannot be sized",
                hint="pass --memory SIZE (for example --memory 8G), or --no-snapshot-disk",
            )
        memory = read_usable_ram(sys_root=target.roots.sys, proc_root=target.roots.proc)
    geometry = make_geometry(memory, options.slots)
    disks = list_snapshot_disks(
        target, required_size=geometry.required_size, disk_kinds=payload.image.metadata.disks
    )
    if target.mode is TargetMode.OFFLINE and not disks:
        needed = format_mib(geometry.required_size)
        raise InvalidInputError(
            "no snapshot disk image was given for the offline target",
            hint=f"pass --snapshot-image FILE (make one with: truncate -s {needed} FILE), or --no-snapshot-disk",
        )
    if target.mode is TargetMode.OFFLINE:
        check_image_size(disks, geometry)
    disk = find_disk(disks, options.snapshot_disk) if options.snapshot_disk else require_single(disks)
    layout = options.layout or default_layout(payload)
    if layout is LayoutKind.EXISTING_PARTITION and options.partition is None:
        raise InvalidInputError(
            "the existing-partition layout needs the partition number", hint="pass --partition N"
        )
    return StoreChoice(disk, layout, geometry, options.wipe, options.partition)


UPSTREAM_MEANING = (
    "it is then registered as an application first in BootOrder that does not start the next boot "
    "loader, and its snapshot store fills the whole snapshot disk, erasing it"
)


def check_upstream_confirmed(payload: VerifiedPayload, *, confirmed: bool) -> None:
    """Raise InvalidInputError for a payload without ``.swos`` metadata unless ``--upstream-payload`` was given.

    Any EFI application without the section (a boot loader, a shell) would
    otherwise pass as the upstream SwitchOS application.
    """
    if payload.image.metadata.from_section or confirmed:
        return
    raise InvalidInputError(
        f"payload {payload.path} has no .swos metadata section, so it is not a payload built for this installer",
        hint=f"if it is the upstream SwitchOS application, pass --upstream-payload ({UPSTREAM_MEANING})",
    )


def resolve_choices(target: Target, payload: VerifiedPayload, options: InstallOptions) -> InstallChoices:
    """Build the choices of an unattended install (``--yes``) from options alone."""
    check_upstream_confirmed(payload, confirmed=options.upstream_payload)
    store = resolve_store_choice(target, payload, options)
    return InstallChoices(payload=payload, store=store, trial_boot=options.trial_boot)
