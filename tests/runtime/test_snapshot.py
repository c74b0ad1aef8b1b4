"""Snapshot commands end to end on constructed system states, with a fake of the payload's hooks.

Each check of the commands is triggered by a real or constructed state: a
store image damaged on purpose, full slots, sysfs power files that offer no
S3, a real process with the power state file open, a user id other than 0.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from runtime_helpers import (
    RAM_SIZE,
    SLOT_COUNT,
    BrokenVariables,
    PayloadVariables,
    make_roots,
    read_entry,
    valid_entry,
    write_entry,
)

from switchos.efi.command import COMMAND_ATTRIBUTES
from switchos.installer.power import S3UnavailableError, SuspendInProgressError
from switchos.installer.snapshot import (
    CommandNotAcceptedError,
    NoSlotAvailableError,
    NotPrivilegedError,
    PayloadNotRunningError,
    SnapshotNotFoundError,
    SnapshotNotUsableError,
    StoreNotFoundError,
    StoreUnhealthyError,
    create_snapshot,
    delete_snapshot,
    find_store,
    list_snapshots,
    switch_snapshot,
)
from switchos.partition.layout import LayoutKind, StoreGeometry, prepare_layout
from switchos.partition.memory import compute_slot_size
from switchos.errors import ExitCode, UnsupportedMachineError
from switchos.partition.layout import DeviceNotFoundError
from switchos.partition.store import SlotEntry, SlotState

SYSTEMD_BOOT = Path("/usr/lib/systemd/boot/efi/systemd-bootx64.efi")


def test_create_lazy_sends_store_for_first_free_slot(make_system, store_image):
    image, _ = store_image
    variables = PayloadVariables()
    system = make_system(variables)

    outcome = create_snapshot(system, label="work", lazy=True)

    assert variables.writes == [(bytes.fromhex("0100000000000000"), COMMAND_ATTRIBUTES)]
    assert outcome.acknowledged
    assert outcome.slot == 0
    assert outcome.suspend is None
    entry = read_entry(image, 0)
    assert entry == SlotEntry(
        index=0, state=SlotState.PENDING, created_at=1_800_000_000, ram_size=RAM_SIZE, label="work",
        os_name="Debian GNU/Linux", os_version="12", host_name=entry.host_name,
    )
    # The power files are untouched by a lazy command.
    assert (system.sys_root / "power" / "state").read_text() == "freeze mem disk\n"


def test_create_suspends_through_power_state(make_system, store_image):
    system = make_system()

    outcome = create_snapshot(system, slot=2)

    power = system.sys_root / "power"
    assert (power / "state").read_text() == "mem"
    # s2idle was the default: deep was selected for the suspend, then s2idle restored.
    assert (power / "mem_sleep").read_text() == "s2idle"
    assert outcome.suspend is not None
    assert outcome.command.to_bytes() == bytes.fromhex("0100000002000000")
    assert outcome.slot_after_resume is not None
    assert outcome.slot_after_resume.state is SlotState.PENDING


def test_create_rejects_non_root(make_system, store_image):
    image, _ = store_image
    variables = PayloadVariables()
    with pytest.raises(NotPrivilegedError, match="needs root, but runs as user id 1000") as caught:
        create_snapshot(make_system(variables, uid=1000), lazy=True)
    assert caught.value.hint == "run it with sudo"
    assert variables.writes == []


def test_create_without_payload_status(make_system, store_image):
    image, _ = store_image
    variables = PayloadVariables(status=None)
    with pytest.raises(PayloadNotRunningError, match="the payload did not run during this boot") as caught:
        create_snapshot(make_system(variables), lazy=True)
    assert "reboot" in (caught.value.hint or "")
    assert variables.writes == []
    assert read_entry(image, 0).state is SlotState.FREE


def test_create_with_damaged_store(make_system, store_image):
    image, _ = store_image
    with open(image, "r+b") as file:
        file.seek(16)
        file.write(b"\xff" * 4)  # inside the store UUID, so the CRC no longer matches
    variables = PayloadVariables()
    with pytest.raises(StoreUnhealthyError, match="primary superblock: .*crc32c") as caught:
        create_snapshot(make_system(variables), lazy=True)
    assert caught.value.hint == f"inspect it with: switchos disk inspect {image} --repair"
    assert variables.writes == []


def test_create_with_damaged_slot_entry(make_system, store_image):
    image, superblock = store_image
    with open(image, "r+b") as file:
        file.seek(superblock.slot_entry_offset(3) + 64)
        file.write(b"garbage")
    with pytest.raises(StoreUnhealthyError, match="slot entry 3"):
        create_snapshot(make_system(), lazy=True)


def test_create_with_all_slots_used(make_system, store_image):
    image, superblock = store_image
    for index in range(SLOT_COUNT):
        write_entry(image, superblock, valid_entry(index, f"s{index}"))
    with pytest.raises(NoSlotAvailableError, match="all 4 slots") as caught:
        create_snapshot(make_system(), lazy=True)
    assert "switchos snapshot delete" in (caught.value.hint or "")
    # Full slots are a state of the store, not a mistake in the command.
    assert caught.value.exit_code == ExitCode.FAILURE


def test_create_in_used_slot(make_system, store_image):
    image, superblock = store_image
    write_entry(image, superblock, valid_entry(1, "linux"))
    with pytest.raises(NoSlotAvailableError, match="slot 1 is valid, not free") as caught:
        create_snapshot(make_system(), slot=1, lazy=True)
    assert caught.value.hint == "delete it first with: switchos snapshot delete 1"
    assert caught.value.exit_code == ExitCode.INVALID_INPUT
    with pytest.raises(NoSlotAvailableError, match="slot 9 does not exist; the store has slots 0 to 3") as caught:
        create_snapshot(make_system(), slot=9, lazy=True)
    assert caught.value.exit_code == ExitCode.INVALID_INPUT


def test_create_without_s3(make_system, tmp_path, store_image):
    roots = make_roots(tmp_path, mem_sleep="[s2idle]\n")
    variables = PayloadVariables()
    with pytest.raises(S3UnavailableError, match="lists s2idle, not deep"):
        create_snapshot(make_system(variables, roots=roots), lazy=True)
    assert variables.writes == []


def test_create_while_another_suspend_runs(make_system, tmp_path, store_image):
    roots = make_roots(tmp_path)
    state = roots["sys"] / "power" / "state"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; f = open(sys.argv[1], 'a'); time.sleep(60)", str(state)]
    )
    try:
        deadline = time.monotonic() + 10
        while not any(os.readlink(f"/proc/{holder.pid}/fd/{fd}") == str(state)
                      for fd in os.listdir(f"/proc/{holder.pid}/fd")):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        system = make_system(roots=roots)
        system.power.proc_root = Path("/proc")
        with pytest.raises(SuspendInProgressError, match=f"process {holder.pid}"):
            create_snapshot(system, lazy=True)
    finally:
        holder.kill()
        holder.wait()


def test_create_when_ram_outgrew_slots(make_system, store_image):
    with pytest.raises(UnsupportedMachineError, match="this machine has 128 MiB of RAM, but a slot has room for 64 MiB"):
        create_snapshot(make_system(ram_size=128 << 20), lazy=True)


def test_create_rejected_by_firmware_frees_slot(make_system, store_image):
    image, _ = store_image
    variables = PayloadVariables(hooks=False)
    with pytest.raises(CommandNotAcceptedError, match="did not accept the store command: writing SET_CORE_ACTION failed"):
        create_snapshot(make_system(variables), label="x", lazy=True)
    assert read_entry(image, 0) == SlotEntry(index=0)


def test_create_without_acknowledgement(make_system, store_image):
    # A payload without runtime hooks whose firmware still accepted the write.
    image, _ = store_image

    class SilentPayload(PayloadVariables):
        def set(self, name, data, **kwargs):
            self.writes.append((bytes(data), kwargs.get("attributes")))

    variables = SilentPayload()
    with pytest.raises(CommandNotAcceptedError, match="reports pending-data=\\(none\\), expected pending-data=0100000000000000"):
        create_snapshot(make_system(variables), lazy=True)
    assert read_entry(image, 0).state is SlotState.FREE


@pytest.mark.skipif(not SYSTEMD_BOOT.is_file(), reason="systemd-boot-efi is not installed")
def test_create_with_protocol_0_payload(make_system, tmp_path, store_image):
    # systemd-boot is a real PE image without a .swos section, which makes it
    # a protocol-0 payload; such a payload publishes no SwitchOSStatus.
    image, _ = store_image
    esp = tmp_path / "esp"
    (esp / "EFI" / "SwitchOS").mkdir(parents=True)
    shutil.copy(SYSTEMD_BOOT, esp / "EFI" / "SwitchOS" / "switchos-x64.efi")
    variables = PayloadVariables(status=None)

    outcome = create_snapshot(make_system(variables, esp_root=esp), lazy=True)

    assert variables.writes == [(bytes.fromhex("01000000"), COMMAND_ATTRIBUTES)]
    assert not outcome.acknowledged
    assert read_entry(image, 0).state is SlotState.FREE
    with pytest.raises(Exception, match="protocol-0 payload takes no slot"):
        create_snapshot(make_system(PayloadVariables(status=None), esp_root=esp), slot=1, lazy=True)


def test_switch_sends_target_and_saves_into_free_slot(make_system, store_image):
    image, superblock = store_image
    write_entry(image, superblock, valid_entry(0, "windows"))
    variables = PayloadVariables()

    outcome = switch_snapshot(make_system(variables), "windows", lazy=True)

    assert variables.writes == [(bytes.fromhex("0200000000000000"), COMMAND_ATTRIBUTES)]
    assert outcome.slot == 0
    assert outcome.saved_into == 1
    assert read_entry(image, 1).state is SlotState.PENDING
    assert read_entry(image, 0) == valid_entry(0, "windows")


def test_switch_saves_into_resumed_slot(make_system, store_image):
    image, superblock = store_image
    write_entry(image, superblock, valid_entry(0, "windows"))
    write_entry(image, superblock, valid_entry(2, "linux"))
    variables = PayloadVariables(status=b"protocol=1\nresumed-slot=2\n")

    outcome = switch_snapshot(make_system(variables), "0", lazy=True)

    assert outcome.saved_into == 2
    entry = read_entry(image, 2)
    assert (entry.state, entry.label) == (SlotState.PENDING, "linux")


def test_switch_target_checks(make_system, store_image):
    image, superblock = store_image
    write_entry(image, superblock, SlotEntry(index=0, state=SlotState.PENDING, label="half"))
    write_entry(image, superblock, valid_entry(1, "big", ram_size=RAM_SIZE // 2))
    write_entry(image, superblock, valid_entry(2, "twin"))
    write_entry(image, superblock, valid_entry(3, "twin"))
    system = make_system()
    with pytest.raises(SnapshotNotUsableError, match="slot 0 is pending, not a complete snapshot"):
        switch_snapshot(system, "half", lazy=True)
    with pytest.raises(SnapshotNotUsableError, match="saved with 32 MiB of RAM, but this machine has 64 MiB"):
        switch_snapshot(system, "1", lazy=True)
    with pytest.raises(SnapshotNotFoundError, match="the label 'twin' names slots 2, 3"):
        switch_snapshot(system, "twin", lazy=True)
    with pytest.raises(SnapshotNotFoundError, match="no snapshot has the label 'nope'"):
        switch_snapshot(system, "nope", lazy=True)
    with pytest.raises(SnapshotNotFoundError, match="slot 7 does not exist"):
        switch_snapshot(system, "7", lazy=True)


def test_switch_without_free_save_slot(make_system, store_image):
    image, superblock = store_image
    for index in range(SLOT_COUNT):
        write_entry(image, superblock, valid_entry(index, f"s{index}"))
    with pytest.raises(NoSlotAvailableError):
        switch_snapshot(make_system(), "0", lazy=True)


def test_delete_marks_free_and_cancels_pending_command(make_system, store_image):
    image, superblock = store_image
    variables = PayloadVariables()
    system = make_system(variables)
    create_snapshot(system, label="tmp", slot=3, lazy=True)
    asked = []

    deleted = delete_snapshot(system, "tmp", confirm=lambda slot: asked.append(slot.index) or True)

    assert asked == [3]
    assert deleted is not None and deleted.index == 3
    assert read_entry(image, 3) == SlotEntry(index=3)
    assert variables.pending == bytes(8)


def test_delete_declined_changes_nothing(make_system, store_image):
    image, superblock = store_image
    write_entry(image, superblock, valid_entry(1, "keep"))
    assert delete_snapshot(make_system(), "1", confirm=lambda slot: False) is None
    assert read_entry(image, 1) == valid_entry(1, "keep")


def test_delete_rejects_non_root(make_system):
    with pytest.raises(NotPrivilegedError):
        delete_snapshot(make_system(uid=1000), "1", confirm=lambda slot: True)


def test_list_marks_resumed_slot(make_system, store_image):
    image, superblock = store_image
    write_entry(image, superblock, valid_entry(1, "linux"))
    variables = PayloadVariables(status=b"protocol=1\nresumed-slot=1\n")

    listing = list_snapshots(make_system(variables))

    assert [item.state for item in listing.snapshots] == ["free", "valid", "free", "free"]
    assert [item.resumed_from for item in listing.snapshots] == [False, True, False, False]
    assert listing.snapshots[1].entry == valid_entry(1, "linux")


def test_list_works_without_readable_status(make_system, store_image):
    listing = list_snapshots(make_system(BrokenVariables()))
    assert listing.status is None
    assert len(listing.snapshots) == SLOT_COUNT


def test_list_shows_invalid_entry(make_system, store_image):
    image, superblock = store_image
    with open(image, "r+b") as file:
        file.seek(superblock.slot_entry_offset(2))
        file.write(b"\x09")
    listing = list_snapshots(make_system())
    assert listing.snapshots[2].state == "invalid"
    assert "state" in (listing.snapshots[2].problem or "")


def test_store_not_found_on_plain_file(make_system, tmp_path):
    empty = tmp_path / "empty.img"
    with open(empty, "wb") as file:
        file.truncate(8 << 20)
    with pytest.raises(StoreNotFoundError, match="no snapshot store found on"):
        list_snapshots(make_system(store_path=empty))


def make_fake_disk(roots: dict[str, Path], name: str, image: Path) -> None:
    """A constructed /sys/block entry for ``name`` whose /dev node is the image file."""
    block = roots["sys"] / "block" / name
    (block / "queue").mkdir(parents=True)
    (block / "queue" / "logical_block_size").write_text("512\n")
    (block / "size").write_text(f"{image.stat().st_size // 512}\n")
    (block / "dev").write_text("254:16\n")
    os.symlink(image, roots["dev"] / name)


def test_find_store_searches_disks(make_system, tmp_path):
    # A GPT disk image with a SwitchOS partition, made by the partition code,
    # found through a constructed sysfs tree: no --store needed.
    disk = tmp_path / "vdb.img"
    geometry = StoreGeometry(slot_size=compute_slot_size(RAM_SIZE), slot_count=2)
    with open(disk, "wb") as file:
        file.truncate(geometry.required_size + (4 << 20))
    result = prepare_layout(LayoutKind.NEW_TABLE, disk, geometry, wipe=True)
    roots = make_roots(tmp_path)
    make_fake_disk(roots, "vdb", disk)
    system = make_system(roots=roots, store_path=None)

    location = find_store(system)

    assert location.path == roots["dev"] / "vdb"
    assert (location.offset, location.size) == (result.offset, result.size)
    assert location.partition_number == result.partition_number
    listing = list_snapshots(system)
    assert len(listing.snapshots) == 2



def test_find_store_with_two_stores(make_system, tmp_path, store_image):
    image, _ = store_image
    roots = make_roots(tmp_path)
    make_fake_disk(roots, "vdb", image)
    make_fake_disk(roots, "vdc", image)
    with pytest.raises(StoreNotFoundError, match="found 2 snapshot stores") as caught:
        find_store(make_system(roots=roots, store_path=None))
    assert caught.value.hint == "choose one with --store DEVICE"


def test_find_store_without_disks(make_system, tmp_path):
    with pytest.raises(StoreNotFoundError, match="no disk has a SwitchOS partition"):
        find_store(make_system(store_path=None))


def test_find_store_follows_payload_options(make_system, tmp_path):
    # Two disks with a SwitchOS partition each: the one named in the payload's
    # store=partition:<PARTUUID> load option wins.
    roots = make_roots(tmp_path)
    geometry = StoreGeometry(slot_size=compute_slot_size(RAM_SIZE), slot_count=2)
    results = {}
    for name in ("vdb", "vdc"):
        disk = tmp_path / f"{name}.img"
        with open(disk, "wb") as file:
            file.truncate(geometry.required_size + (4 << 20))
        results[name] = prepare_layout(LayoutKind.NEW_TABLE, disk, geometry, wipe=True)
        make_fake_disk(roots, name, disk)
    options = f"store=partition:{results['vdc'].partition_guid} chain=\\EFI\\x.efi"
    variables = PayloadVariables(status=f"protocol=1\noptions={options}\n".encode())

    listing = list_snapshots(make_system(variables, roots=roots, store_path=None))

    assert listing.location.path == roots["dev"] / "vdc"
    with pytest.raises(StoreNotFoundError, match="found 2 snapshot stores"):
        list_snapshots(make_system(PayloadVariables(), roots=roots, store_path=None))


def test_windows_paths_without_win32(make_system):
    # On this Linux machine the Windows branches run without the Win32 calls:
    # IsUserAnAdmin is unavailable, so the administrator check fails closed.
    system = make_system()
    system.is_windows = True
    system.uid = None
    with pytest.raises(NotPrivilegedError, match="needs administrator rights") as caught:
        list_snapshots(system)
    assert "Run as administrator" in (caught.value.hint or "")
    system.ram_size = None
    with pytest.raises(UnsupportedMachineError, match="not implemented on Windows"):
        system.usable_ram()


def test_create_dry_run_writes_nothing(make_system, store_image):
    image, _ = store_image
    variables = PayloadVariables()
    system = make_system(variables)

    outcome = create_snapshot(system, label="work", slot=2, dry_run=True)

    assert outcome.command.to_bytes() == bytes.fromhex("0100000002000000")
    assert outcome.slot == 2
    assert outcome.saved_into == 2
    assert outcome.suspend is None
    assert not outcome.acknowledged
    assert variables.writes == []
    assert read_entry(image, 2) == SlotEntry(index=2)
    assert (system.sys_root / "power" / "state").read_text() == "freeze mem disk\n"


def test_create_dry_run_still_checks(make_system, tmp_path, store_image):
    image, superblock = store_image
    for index in range(SLOT_COUNT):
        write_entry(image, superblock, valid_entry(index, f"s{index}"))
    with pytest.raises(NoSlotAvailableError):
        create_snapshot(make_system(), dry_run=True)

    write_entry(image, superblock, SlotEntry(index=0))
    (tmp_path / "no-s3").mkdir()
    no_s3 = make_roots(tmp_path / "no-s3", mem_sleep="[s2idle]\n")
    with pytest.raises(S3UnavailableError):
        create_snapshot(make_system(roots=no_s3), slot=None, dry_run=True)


def test_switch_dry_run_writes_nothing(make_system, store_image):
    image, superblock = store_image
    write_entry(image, superblock, valid_entry(0, "windows"))
    variables = PayloadVariables()
    system = make_system(variables)

    outcome = switch_snapshot(system, "windows", dry_run=True)

    assert outcome.command.to_bytes() == bytes.fromhex("0200000000000000")
    assert outcome.slot == 0
    assert outcome.saved_into == 1
    assert variables.writes == []
    assert read_entry(image, 1) == SlotEntry(index=1)
    assert (system.sys_root / "power" / "state").read_text() == "freeze mem disk\n"
    with pytest.raises(SnapshotNotFoundError):
        switch_snapshot(system, "linux", dry_run=True)


def test_missing_store_path_is_invalid_input(make_system, tmp_path):
    missing = tmp_path / "missing.img"
    with pytest.raises(DeviceNotFoundError) as caught:
        list_snapshots(make_system(store_path=missing))
    assert caught.value.exit_code == ExitCode.INVALID_INPUT
    assert caught.value.message == f"{missing} does not exist"


def test_erased_store_is_not_found(make_system, store_image):
    image, superblock = store_image
    with open(image, "r+b") as handle:
        handle.write(bytes(4096))
        handle.seek(superblock.backup_offset)
        handle.write(bytes(4096))
    # A whole-disk image with erased headers has no store at all.
    with pytest.raises(StoreNotFoundError, match="no snapshot store found on"):
        list_snapshots(make_system())


def test_erased_partition_store_is_not_damaged(make_system, tmp_path):
    disk = tmp_path / "vdb.img"
    geometry = StoreGeometry(slot_size=compute_slot_size(RAM_SIZE), slot_count=2)
    with open(disk, "wb") as file:
        file.truncate(geometry.required_size + (4 << 20))
    result = prepare_layout(LayoutKind.NEW_TABLE, disk, geometry, wipe=True)
    # What 'uninstall --wipe-snapshots' leaves: the partition, with both superblocks zeroed.
    with open(disk, "r+b") as handle:
        for offset in (result.offset, result.offset + result.superblock.store_size - 4096):
            handle.seek(offset)
            handle.write(bytes(4096))

    with pytest.raises(StoreNotFoundError) as caught:
        create_snapshot(make_system(store_path=disk), dry_run=True)

    assert "both superblocks are blank (all zero)" in caught.value.message
    assert "damaged" not in caught.value.message
    assert caught.value.hint == "prepare a snapshot store with 'switchos install'"
