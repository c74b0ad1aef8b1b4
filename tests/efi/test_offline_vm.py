"""Offline placement into a test-bed disk image, then OVMF boots it in QEMU."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from switchos.efi.esp import find_image_esp
from switchos.efi.payload import verify_local_payload
from switchos.efi.placement import (
    BACKUP_PATH,
    ImageEsp,
    PlacementAction,
    commit_placement,
    place_payload,
)
from switchos.efi.record import InstallRecord, read_install_record, write_install_record
from testbed import standin
from testbed.machine import SYSTEMD_BOOT_PATH, SYSTEMD_BOOT_SOURCE, Machine
from testbed.qemu import EventKind

DRIVER_NUMBER = 0x0000


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[Machine]:
    built = Machine(tmp_path / "machine")
    yield built
    built.remove()


@pytest.mark.vm
def test_offline_placement_boots(machine: Machine, tmp_path: Path) -> None:
    location = find_image_esp(machine.system_image)
    # The test bed's own sgdisk reading of the partition agrees with ours.
    assert location.partition_number == machine.esp.number
    assert (location.start, location.size) == (machine.esp.start_lba, machine.esp.size_lba)
    assert location.partition_signature == str(machine.esp.guid)

    esp = ImageEsp.open(machine.system_image, location)
    old = verify_local_payload(standin.build("driver", tmp_path / "old", version="0.0.9"))
    new = verify_local_payload(standin.build("driver", tmp_path / "new"))
    assert place_payload(esp, old).action is PlacementAction.CREATED
    replaced = place_payload(esp, new)
    assert replaced.action is PlacementAction.REPLACED
    assert esp.read_bytes(BACKUP_PATH) == old.path.read_bytes()

    machine.add_load_option("Driver", DRIVER_NUMBER, "SwitchOS", replaced.firmware_path)
    record = InstallRecord(
        installer_version="0.1.0",
        payload_sha256=new.sha256,
        payload_version=new.version,
        entries=(f"Driver{DRIVER_NUMBER:04X}",),
        original_boot_order=(1,),
        original_driver_order=None,
        snapshot_store_partuuid=None,
    )
    write_install_record(esp, record)
    commit_placement(esp, replaced)
    esp.check()

    # The boot loader already on the ESP is untouched, and the test bed's own
    # mtools reader sees our files.
    assert machine.esp_volume.read(SYSTEMD_BOOT_PATH) == SYSTEMD_BOOT_SOURCE.read_bytes()
    placed = machine.esp_volume.read("\\EFI\\SwitchOS\\switchos-x64.efi")
    assert hashlib.sha256(placed).hexdigest() == new.sha256
    assert esp.read_bytes(BACKUP_PATH) is None
    assert read_install_record(esp) == record

    result = machine.boot_to_systemd_boot()

    assert not result.timed_out, result.transcript()
    started = result.first_index(EventKind.STANDIN, "started kind=driver")
    loader = result.first_index(EventKind.SYSTEMD_BOOT)
    assert started is not None, result.transcript()
    assert loader is not None, result.transcript()
    assert started < loader
