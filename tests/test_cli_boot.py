"""``switchos boot list`` through click's CliRunner, on efivarfs folders and OVMF variables files."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from testbed.firmware import find_ovmf

from switchos.boot_entries.device_path import make_file_path
from switchos.boot_entries.efivarfs import EfivarfsStore
from switchos.boot_entries.load_option import LoadOption, LoadOptionAttribute
from switchos.boot_entries.ovmf_vars import OvmfVarsStore
from switchos.boot_entries.store import VariableStore, VariableStoreUnavailableError
from switchos.cli import main
from switchos.cli_boot import open_store

ESP_GUID = uuid.UUID("c5ab5e46-7c97-4d3a-846b-1e32682ef154")
SYSTEMD_BOOT = "HD(1,GPT,c5ab5e46-7c97-4d3a-846b-1e32682ef154,0x800,0x82000)/File(\\EFI\\systemd\\systemd-bootx64.efi)"
PAYLOAD = "HD(1,GPT,c5ab5e46-7c97-4d3a-846b-1e32682ef154,0x800,0x82000)/File(\\EFI\\SwitchOS\\payload.efi)"


def option(description: str, path: str, *, active: bool = True, optional_data: bytes = b"") -> bytes:
    attributes = LoadOptionAttribute.ACTIVE if active else LoadOptionAttribute(0)
    device_path = make_file_path(1, 0x800, 0x82000, ESP_GUID, path)
    return LoadOption(attributes, description, device_path, optional_data).to_bytes()


def fill(store: VariableStore) -> None:
    store.set("Boot0000", option("Linux Boot Manager", "\\EFI\\systemd\\systemd-bootx64.efi"))
    store.set("Boot0002", option("Old", "\\EFI\\old\\old.efi", active=False, optional_data=b"quiet"))
    store.set("Driver0001", option("SwitchOS payload", "\\EFI\\SwitchOS\\payload.efi"))
    store.set("BootOrder", bytes.fromhex("00000500"))
    store.set("DriverOrder", bytes.fromhex("0100"))
    store.set("BootNext", bytes.fromhex("0000"))
    store.set("Timeout", bytes.fromhex("0300"))


EXPECTED_VERBOSE = [
    "BootNext: 0000",
    "Timeout: 3 seconds",
    "BootOrder: 0000,0005",
    f"Boot0000* Linux Boot Manager\t{SYSTEMD_BOOT}",
    "Boot0002  Old\tHD(1,GPT,c5ab5e46-7c97-4d3a-846b-1e32682ef154,0x800,0x82000)/File(\\EFI\\old\\old.efi)quiet",
    "DriverOrder: 0001",
    f"Driver0001* SwitchOS payload\t{PAYLOAD}  [SwitchOS]",
    "Inconsistencies:",
    "  BootOrder lists Boot0005, which does not exist",
    "  Boot0002 exists, but BootOrder does not list it",
]


@pytest.fixture
def efivars(tmp_path: Path) -> Path:
    # A plain folder has the efivarfs file layout, which is all the store reads.
    root = tmp_path / "efivars"
    root.mkdir()
    fill(EfivarfsStore(root))
    return root


@pytest.fixture
def vars_file(tmp_path: Path) -> Path:
    path = tmp_path / "OVMF_VARS.fd"
    path.write_bytes(find_ovmf().vars_template.read_bytes())
    fill(OvmfVarsStore(path))
    return path


def invoke(*arguments: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["boot", "list", *arguments])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_verbose_listing_of_efivars(efivars: Path) -> None:
    exit_code, stdout, stderr = invoke("--verbose", "--efivars", str(efivars))

    assert exit_code == 0, stderr
    assert stdout.splitlines() == EXPECTED_VERBOSE
    assert stderr == ""


def test_vars_file_lists_the_same(vars_file: Path) -> None:
    exit_code, stdout, stderr = invoke("-v", "--vars-file", str(vars_file))

    assert exit_code == 0, stderr
    assert stdout.splitlines() == EXPECTED_VERBOSE


def test_short_listing_has_descriptions_only(efivars: Path) -> None:
    exit_code, stdout, _ = invoke("--efivars", str(efivars))

    assert exit_code == 0
    lines = stdout.splitlines()
    assert "Boot0000* Linux Boot Manager" in lines
    assert "Boot0002  Old" in lines
    assert "Driver0001* SwitchOS payload  [SwitchOS]" in lines
    assert not any("HD(" in line for line in lines)


def test_json_listing(efivars: Path) -> None:
    exit_code, stdout, _ = invoke("--json", "--efivars", str(efivars))

    assert exit_code == 0
    data = json.loads(stdout)
    assert data["boot_next"] == 0
    assert data["boot_current"] is None
    assert data["timeout"] == 3
    assert data["boot_order"] == [0, 5]
    assert data["driver_order"] == [1]
    assert [entry["name"] for entry in data["entries"]] == ["Boot0000", "Boot0002", "Driver0001"]
    assert [entry["ours"] for entry in data["entries"]] == [False, False, True]
    assert data["entries"][1]["optional_data"] == b"quiet".hex()
    assert data["problems"] == [
        {"kind": "listed-missing", "variable": "BootOrder", "entry": "Boot0005", "message": None},
        {"kind": "unlisted", "variable": "BootOrder", "entry": "Boot0002", "message": None},
    ]


def test_consistent_store_says_none(tmp_path: Path) -> None:
    store = EfivarfsStore(tmp_path)
    store.set("Boot0000", option("Only", "\\a.efi"))
    store.set("BootOrder", bytes.fromhex("0000"))

    exit_code, stdout, _ = invoke("--efivars", str(tmp_path))

    assert exit_code == 0
    assert stdout.splitlines() == ["BootOrder: 0000", "Boot0000* Only", "Inconsistencies: none"]


def test_malformed_entry_shown(tmp_path: Path) -> None:
    store = EfivarfsStore(tmp_path)
    # FilePathListLength says 4 bytes, but only half an End node follows.
    store.set("Boot0001", b"\x01\x00\x00\x00\x04\x00" + "Ok\0".encode("utf-16-le") + b"\x7f\xff")

    exit_code, stdout, _ = invoke("--efivars", str(tmp_path))

    assert exit_code == 0
    lines = stdout.splitlines()
    assert lines[0].startswith("Boot0001* Ok [invalid: FilePathListLength 4 runs past the end")
    assert "[invalid: " in lines[0]
    assert lines[1] == "Inconsistencies:"
    assert lines[2].startswith("  Boot0001 is malformed: ")


def test_invalid_utf16_description_printed_escaped(tmp_path: Path) -> None:
    store = EfivarfsStore(tmp_path)
    description = "HP\udc80"
    device_path = make_file_path(1, 0x800, 0x82000, ESP_GUID, "\\a.efi").to_bytes()
    data = (
        b"\x01\x00\x00\x00"
        + len(device_path).to_bytes(2, "little")
        + description.encode("utf-16-le", "surrogatepass")
        + b"\0\0"
        + device_path
    )
    store.set("Boot0001", data)

    exit_code, stdout, _ = invoke("--efivars", str(tmp_path))

    assert exit_code == 0
    assert stdout.splitlines()[0] == "Boot0001* HP\\udc80"


def test_both_sources_rejected(efivars: Path, vars_file: Path) -> None:
    exit_code, stdout, stderr = invoke("--efivars", str(efivars), "--vars-file", str(vars_file))

    assert exit_code == 2
    assert stdout == ""
    assert stderr.splitlines() == [
        "error: --efivars and --vars-file cannot be used together",
        "hint: pass only one of them",
    ]


def test_missing_efivars_folder(tmp_path: Path) -> None:
    exit_code, _, stderr = invoke("--efivars", str(tmp_path / "absent"))

    assert exit_code == 2
    assert stderr.splitlines()[0] == f"error: efivarfs directory {tmp_path / 'absent'} does not exist"


def test_not_a_vars_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.fd"
    path.write_bytes(b"\xff" * 4096)

    exit_code, _, stderr = invoke("--vars-file", str(path))

    assert exit_code == 2
    lines = stderr.splitlines()
    assert lines[0] == f"error: {path} contains no edk2 variable store"
    assert lines[1].startswith("hint: pass an OVMF_VARS.fd file")


def test_default_without_efivarfs_raises(tmp_path: Path) -> None:
    with pytest.raises(VariableStoreUnavailableError) as raised:
        open_store(efivars=None, vars_file=None, default_efivars=tmp_path / "absent")

    assert raised.value.exit_code == 5
    assert "did not boot in UEFI mode" in raised.value.message
    assert raised.value.hint is not None
    assert "--efivars PATH" in raised.value.hint
    assert "--vars-file FILE" in raised.value.hint


def test_default_uses_efivarfs_when_present(efivars: Path) -> None:
    store = open_store(efivars=None, vars_file=None, default_efivars=efivars)

    assert isinstance(store, EfivarfsStore)
    assert store.root == efivars
