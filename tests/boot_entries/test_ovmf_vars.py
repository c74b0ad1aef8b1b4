"""OvmfVarsStore on copies of the OVMF variables template, checked with virt-firmware and OVMF."""

from __future__ import annotations

import hashlib
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from testbed.firmware import find_ovmf, hard_drive_file_path, load_option
from testbed import standin
from testbed.machine import SYSTEMD_BOOT_PATH, SYSTEMD_BOOT_SOURCE, Machine
from testbed.qemu import EventKind
from virt.firmware.varstore.edk2 import Edk2VarStore

from switchos.boot_entries.device_path import make_file_path
from switchos.boot_entries.load_option import LoadOption, LoadOptionAttribute
from switchos.boot_entries.order import OptionKind, add_entry_first
from switchos.boot_entries.ovmf_vars import InvalidVarsFileError, OvmfVarsStore
from switchos.boot_entries.store import (
    EFI_GLOBAL_VARIABLE,
    SWITCHOS_VENDOR,
    VariableAttribute,
    VariableRejectedError,
    VariableStoreFullError,
    VariableStoreReadOnlyError,
)


@pytest.fixture
def vars_file(tmp_path: Path) -> Path:
    target = tmp_path / "OVMF_VARS.fd"
    target.write_bytes(find_ovmf().vars_template.read_bytes())
    return target


def read_with_virt_firmware(path: Path) -> dict[tuple[str, str], tuple[int, bytes]]:
    variables = Edk2VarStore(str(path)).get_varlist()
    return {(str(v.name), str(v.guid)): (v.attr, bytes(v.data)) for v in variables.values()}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_template_save_is_byte_identical(vars_file: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.fd"

    OvmfVarsStore(vars_file).save(copy)

    assert copy.read_bytes() == vars_file.read_bytes()


def test_save_keeps_every_variable(vars_file: Path, tmp_path: Path) -> None:
    store = OvmfVarsStore(vars_file)
    store.set("Boot0000", b"\x01\x00\x00\x00entry")
    store.set("SwitchOSStatus", b"\x02", vendor=SWITCHOS_VENDOR)
    copy = tmp_path / "copy.fd"

    OvmfVarsStore(vars_file).save(copy)

    assert read_with_virt_firmware(copy) == read_with_virt_firmware(vars_file)
    assert len(read_with_virt_firmware(copy)) == 2


def test_set_is_written_through(vars_file: Path) -> None:
    attributes = VariableAttribute.NON_VOLATILE | VariableAttribute.BOOTSERVICE_ACCESS

    OvmfVarsStore(vars_file).set("SwitchOSStatus", b"\xaa\xbb", vendor=SWITCHOS_VENDOR, attributes=attributes)

    assert read_with_virt_firmware(vars_file) == {
        ("SwitchOSStatus", str(SWITCHOS_VENDOR)): (int(attributes), b"\xaa\xbb")
    }
    variable = OvmfVarsStore(vars_file).get("SwitchOSStatus", SWITCHOS_VENDOR)
    assert variable is not None
    assert variable.attributes == attributes
    assert variable.data == b"\xaa\xbb"


def test_get_missing_returns_none(vars_file: Path) -> None:
    store = OvmfVarsStore(vars_file)
    store.set("BootOrder", b"\x00\x00")

    assert store.get("Boot0000") is None
    assert store.get("BootOrder", SWITCHOS_VENDOR) is None


def test_same_name_two_vendors(vars_file: Path) -> None:
    store = OvmfVarsStore(vars_file)
    other_vendor = uuid.UUID("11111111-2222-3333-4444-555555555555")

    store.set("Status", b"global")
    store.set("Status", b"other", vendor=other_vendor)

    assert store.list() == [("Status", other_vendor), ("Status", EFI_GLOBAL_VARIABLE)]
    global_variable = store.get("Status")
    assert global_variable is not None
    assert global_variable.data == b"global"


def test_delete_is_written_through(vars_file: Path) -> None:
    store = OvmfVarsStore(vars_file)
    store.set("Boot0001", b"x")
    store.set("BootOrder", b"\x01\x00")

    store.delete("Boot0001")
    store.delete("Boot0001")

    assert read_with_virt_firmware(vars_file) == {("BootOrder", str(EFI_GLOBAL_VARIABLE)): (0x7, b"\x01\x00")}
    assert OvmfVarsStore(vars_file).list() == [("BootOrder", EFI_GLOBAL_VARIABLE)]


def test_full_store_keeps_file(vars_file: Path) -> None:
    store = OvmfVarsStore(vars_file)
    before = digest(vars_file)

    with pytest.raises(VariableStoreFullError) as raised:
        store.set("Huge", b"\x00" * 1024 * 1024)

    assert str(vars_file) in raised.value.message
    assert raised.value.hint is not None
    assert digest(vars_file) == before
    assert store.get("Huge") is None
    assert store.list() == []


def test_authenticated_attributes_rejected(vars_file: Path) -> None:
    attributes = VariableAttribute.NON_VOLATILE | VariableAttribute.TIME_BASED_AUTHENTICATED_WRITE_ACCESS

    with pytest.raises(VariableRejectedError) as raised:
        OvmfVarsStore(vars_file).set("db", b"x", attributes=attributes)

    assert "authenticated" in raised.value.message


def test_empty_data_rejected(vars_file: Path) -> None:
    with pytest.raises(VariableRejectedError):
        OvmfVarsStore(vars_file).set("Boot0001", b"")


def test_no_temporary_files_left(vars_file: Path) -> None:
    vars_file.chmod(0o640)

    OvmfVarsStore(vars_file).set("Boot0001", b"x")

    assert sorted(path.name for path in vars_file.parent.iterdir()) == ["OVMF_VARS.fd"]
    assert vars_file.stat().st_mode & 0o777 == 0o640


def test_not_a_vars_file(tmp_path: Path) -> None:
    path = tmp_path / "random.fd"
    path.write_bytes(os.urandom(128 * 1024))

    with pytest.raises(InvalidVarsFileError) as raised:
        OvmfVarsStore(path)

    assert "contains no edk2 variable store" in raised.value.message
    assert raised.value.hint is not None
    assert "nvram-template" in raised.value.hint


def test_missing_vars_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidVarsFileError) as raised:
        OvmfVarsStore(tmp_path / "absent.fd")

    assert "does not exist" in raised.value.message


def test_qcow2_vars_file(vars_file: Path, tmp_path: Path) -> None:
    qcow2 = tmp_path / "vars.qcow2"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", vars_file, qcow2], check=True)

    with pytest.raises(InvalidVarsFileError) as raised:
        OvmfVarsStore(qcow2)

    assert "qcow2" in raised.value.message
    assert raised.value.hint is not None
    assert "qemu-img convert" in raised.value.hint


@pytest.mark.root
def test_read_only_mount_raises(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", folder], check=True)
    try:
        path = folder / "OVMF_VARS.fd"
        path.write_bytes(find_ovmf().vars_template.read_bytes())
        store = OvmfVarsStore(path)
        subprocess.run(["mount", "-o", "remount,ro", folder], check=True)

        with pytest.raises(VariableStoreReadOnlyError) as raised:
            store.set("Boot0001", b"x")

        assert "read-only" in raised.value.message
        assert store.get("Boot0001") is None
    finally:
        subprocess.run(["umount", folder], check=True)


@pytest.mark.vm
def test_written_entry_boots(tmp_path: Path) -> None:
    # The test bed's machine has systemd-boot as Boot0001. A second copy of it
    # under \EFI\SwitchOS\ becomes Boot0002, written and put first in BootOrder
    # by our store; OVMF's console then names Boot0002 as the entry it starts.
    machine = Machine(tmp_path / "machine")
    try:
        loader_path = "\\EFI\\SwitchOS\\test-loader.efi"
        machine.esp_volume.write(loader_path, SYSTEMD_BOOT_SOURCE)
        device_path = hard_drive_file_path(
            partition_number=machine.esp.number,
            start_lba=machine.esp.start_lba,
            size_lba=machine.esp.size_lba,
            partition_guid=machine.esp.guid,
            path=loader_path,
        )
        store = OvmfVarsStore(machine.vars_path)
        store.set("Boot0002", load_option("SwitchOS store test", device_path))
        boot_order = store.get("BootOrder")
        assert boot_order is not None
        store.set("BootOrder", b"\x02\x00" + boot_order.data)

        result = machine.boot_to_systemd_boot()

        assert not result.timed_out, result.transcript()
        firmware_lines = [event.text for event in result.events if event.kind is EventKind.FIRMWARE]
        started = [line for line in firmware_lines if "starting Boot0002" in line]
        assert started, result.transcript()
        assert "test-loader.efi" in started[0]
        assert not any("Boot0001" in line for line in firmware_lines), result.transcript()

        # The firmware has now written variables of its own (and left deleted
        # records behind); a load and save keeps every live one.
        copy = tmp_path / "after-boot.fd"
        OvmfVarsStore(machine.vars_path).save(copy)
        variables = read_with_virt_firmware(machine.vars_path)
        assert len(variables) > 3
        assert read_with_virt_firmware(copy) == variables
    finally:
        machine.remove()


@pytest.mark.vm
def test_project_entry_boots_standin(tmp_path: Path) -> None:
    # The project's codec and boot order policy write the entry through the
    # store; the stand-in application then chain-loads systemd-boot.
    machine = Machine(tmp_path / "machine")
    try:
        standin_path = "\\EFI\\SwitchOS\\standin-app.efi"
        machine.esp_volume.write(standin_path, standin.build("app"))
        esp = machine.esp
        device_path = make_file_path(esp.number, esp.start_lba, esp.size_lba, esp.guid, standin_path)
        options = f"chain={SYSTEMD_BOOT_PATH}"
        option = LoadOption(
            LoadOptionAttribute.ACTIVE, "SwitchOS stand-in", device_path, (options + "\0").encode("utf-16-le")
        )
        number = add_entry_first(OvmfVarsStore(machine.vars_path), OptionKind.BOOT, option)

        result = machine.boot_to_systemd_boot()

        assert not result.timed_out, result.transcript()
        started = result.first_index(EventKind.STANDIN)
        loader = result.first_index(EventKind.SYSTEMD_BOOT)
        assert started is not None, result.transcript()
        assert loader is not None, result.transcript()
        assert started < loader
        assert "kind=application" in result.events[started].text
        firmware_starts = [event.text for event in result.events[:loader] if event.text.startswith("BdsDxe: starting")]
        assert len(firmware_starts) == 1, firmware_starts
        assert f"Boot{number:04X}" in firmware_starts[0]
    finally:
        machine.remove()
