"""``switchos boot list`` through click's CliRunner, on efivarfs folders and OVMF variables files."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from testbed.firmware import find_ovmf
from testbed.machine import SYSTEMD_BOOT_SOURCE, Machine
from testbed.qemu import EventKind

from switchos.boot_entries.device_path import make_file_path
from switchos.boot_entries.efivarfs import EfivarfsStore
from switchos.boot_entries.load_option import (
    LoadOption,
    LoadOptionAttribute,
    OptionalDataStyle,
    format_optional_data,
)
from switchos.boot_entries.ovmf_vars import OvmfVarsStore
from switchos.boot_entries.store import SWITCHOS_VENDOR, VariableStore, VariableStoreUnavailableError
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


def test_vars_alias_of_vars_file(vars_file: Path) -> None:
    exit_code, stdout, stderr = invoke("-v", "--vars", str(vars_file))

    assert exit_code == 0, stderr
    assert stdout.splitlines() == EXPECTED_VERBOSE


def test_verbose_decodes_ucs2_options(tmp_path: Path) -> None:
    store = EfivarfsStore(tmp_path)
    data = "store=partition:0f0e0d0c-0b0a-0908-0706-050403020100\0".encode("utf-16-le")
    store.set("Driver0001", option("SwitchOS payload", "\\EFI\\SwitchOS\\payload.efi", optional_data=data))
    store.set("DriverOrder", bytes.fromhex("0100"))

    exit_code, stdout, stderr = invoke("-v", "--efivars", str(tmp_path))

    assert exit_code == 0, stderr
    lines = stdout.splitlines()
    assert lines[1] == f"Driver0001* SwitchOS payload\t{PAYLOAD}{data.hex()}  [SwitchOS]"
    assert lines[2] == '    options: "store=partition:0f0e0d0c-0b0a-0908-0706-050403020100"'

    _, short, _ = invoke("--efivars", str(tmp_path))
    assert "options:" not in short

    _, document, _ = invoke("--json", "--efivars", str(tmp_path))
    entry = json.loads(document)["entries"][0]
    assert entry["optional_data"] == data.hex()
    assert entry["optional_data_text"] == "store=partition:0f0e0d0c-0b0a-0908-0706-050403020100"


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
    # FilePathListLength declares 4 bytes, but only half an End node follows.
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


# Runs in the Linux guest: lists the entries with both tools, then writes a
# Boot entry through the efivarfs store and lists it first in BootOrder.
GUEST_SCRIPT = r"""
set -e
mkdir -p /boot/efi/out
switchos boot list --json > /boot/efi/out/before.json
efibootmgr -v > /boot/efi/out/before.txt
python3 - <<'PYTHON'
import uuid
from switchos.boot_entries.device_path import make_file_path
from switchos.boot_entries.efivarfs import EfivarfsStore
from switchos.boot_entries.load_option import LoadOption, LoadOptionAttribute
from switchos.boot_entries.order import OptionKind, add_entry_first

device_path = make_file_path({number}, {start}, {size}, uuid.UUID("{guid}"), "{loader}")
option = LoadOption(LoadOptionAttribute.ACTIVE, "SwitchOS guest test", device_path)
number = add_entry_first(EfivarfsStore(), OptionKind.BOOT, option)
print(f"wrote=Boot{{number:04X}}")
PYTHON
switchos boot list --json > /boot/efi/out/after.json
efibootmgr -v > /boot/efi/out/after.txt

# A variable of our own vendor, which efivarfs may mark immutable at creation.
variable=/sys/firmware/efi/efivars/SwitchOSGuestTest-{vendor}
store="from switchos.boot_entries.efivarfs import EfivarfsStore; import uuid; store = EfivarfsStore(); vendor = uuid.UUID('{vendor}')"
python3 -c "$store; store.set('SwitchOSGuestTest', b'one', vendor=vendor)"
# The guest has no lsattr; FS_IOC_GETFLAGS (0x80086601) reads the flags, and 0x10 is immutable.
immutable="import fcntl, struct; flags = bytearray(4); fcntl.ioctl(open('$variable', 'rb'), 0x80086601, flags); print(bool(struct.unpack('=i', flags)[0] & 0x10))"
echo "immutable-created=$(python3 -c "$immutable")"
python3 -c "$store; store.set('SwitchOSGuestTest', b'two', vendor=vendor)"
echo "immutable-rewritten=$(python3 -c "$immutable")"
python3 -c "$store; print('data=' + store.get('SwitchOSGuestTest', vendor).data.decode())"
python3 -c "$store; store.delete('SwitchOSGuestTest', vendor=vendor)"
[ -e $variable ] && echo exists-after-delete=yes || echo exists-after-delete=no
"""

GUEST_LOADER = "\\EFI\\SwitchOS\\guest-test.efi"


def parse_efibootmgr(text: str) -> dict[str, object]:
    """Split efibootmgr -v output into its header values and its entry lines."""
    parsed: dict[str, object] = {"entries": {}}
    entries: dict[str, tuple[bool, str]] = {}
    for line in text.splitlines():
        match = re.fullmatch(r"(Boot[0-9A-F]{4})(\*| ) (.*)", line)
        if match:
            entries[match.group(1)] = (match.group(2) == "*", match.group(3))
        elif ": " in line:
            key, value = line.split(": ", 1)
            parsed[key] = value
    parsed["entries"] = entries
    return parsed


def ours_as_efibootmgr(data: dict[str, object]) -> dict[str, object]:
    """Render boot list --json in the shape parse_efibootmgr returns."""
    parsed: dict[str, object] = {}
    if data["boot_current"] is not None:
        parsed["BootCurrent"] = f"{data['boot_current']:04X}"
    if data["timeout"] is not None:
        parsed["Timeout"] = f"{data['timeout']} seconds"
    if data["boot_order"] is not None:
        parsed["BootOrder"] = ",".join(f"{number:04X}" for number in data["boot_order"])  # type: ignore[attr-defined]
    entries = {}
    for entry in data["entries"]:  # type: ignore[attr-defined]
        if entry["kind"] != "boot":
            continue
        optional_data = format_optional_data(
            bytes.fromhex(entry["optional_data"]), style=OptionalDataStyle.DOTTED
        )
        entries[entry["name"]] = (entry["active"], f"{entry['description']}\t{entry['device_path']}{optional_data}")
    parsed["entries"] = entries
    return parsed


@pytest.mark.vm
def test_guest_listing_matches_efibootmgr_and_entry_boots(tmp_path: Path) -> None:
    machine = Machine(tmp_path / "machine", guest="cloud")
    try:
        machine.esp_volume.write(GUEST_LOADER, SYSTEMD_BOOT_SOURCE)
        esp = machine.esp
        script = GUEST_SCRIPT.format(
            number=esp.number,
            start=esp.start_lba,
            size=esp.size_lba,
            guid=esp.guid,
            loader=GUEST_LOADER.replace("\\", "\\\\"),
            vendor=SWITCHOS_VENDOR,
        )
        run, result = machine.run_guest(script)
        assert run.exit_status == 0, result.transcript()
        written = [line.split("=", 1)[1] for line in run.output if line.startswith("wrote=")]
        assert len(written) == 1, run.text
        entry_name = written[0]
        values = dict(line.split("=", 1) for line in run.output if "=" in line)
        assert values["data"] == "two", run.text
        assert values["exists-after-delete"] == "no", run.text
        # efivarfs marks a new variable of a vendor it does not know immutable,
        # so the rewrite and the delete above had to clear the flag.
        assert values["immutable-created"] == "True", run.text
        assert values["immutable-rewritten"] == values["immutable-created"], run.text

        outputs = {name: machine.esp_volume.read(f"\\out\\{name}").decode() for name in
                   ("before.json", "before.txt", "after.json", "after.txt")}
        for stage in ("before", "after"):
            ours = ours_as_efibootmgr(json.loads(outputs[f"{stage}.json"]))
            theirs = parse_efibootmgr(outputs[f"{stage}.txt"])
            efibootmgr_text = outputs[f"{stage}.txt"]
            our_entries = ours.pop("entries")
            their_entries = theirs.pop("entries")
            assert ours == theirs, efibootmgr_text
            assert sorted(our_entries) == sorted(their_entries), efibootmgr_text  # type: ignore[call-overload]
            for name, their_entry in their_entries.items():  # type: ignore[attr-defined]
                assert our_entries[name] == their_entry, f"{stage} {name}"  # type: ignore[index]

        after = json.loads(outputs["after.json"])
        assert after["boot_order"][0] == int(entry_name[4:], 16)
        (entry,) = [entry for entry in after["entries"] if entry["name"] == entry_name]
        assert entry["ours"]
        assert entry["file_path"] == GUEST_LOADER

        # The entry reached the firmware's NVRAM: the variables file has it,
        # and the next boot starts it before the distribution's loader.
        stored = OvmfVarsStore(machine.vars_path).get(entry_name)
        assert stored is not None
        assert LoadOption.from_bytes(stored.data).device_path.file_path() == GUEST_LOADER

        second = machine.boot_to_systemd_boot()
        firmware_lines = [event.text for event in second.events if event.kind is EventKind.FIRMWARE]
        started = [line for line in firmware_lines if "starting" in line]
        assert started, second.transcript()
        assert started[0].startswith(f"BdsDxe: starting {entry_name} \"SwitchOS guest test\""), second.transcript()
        assert "guest-test.efi" in started[0]
    finally:
        machine.remove()
