"""read_listing on in-memory stores: boot variables, entries, our marks and inconsistencies."""

from __future__ import annotations

import json
import uuid

import pytest

from switchos.boot_entries.device_path import make_file_path
from switchos.boot_entries.listing import ProblemKind, decode_options_text, is_ours, read_listing
from switchos.boot_entries.load_option import LoadOption, LoadOptionAttribute
from switchos.boot_entries.order import OptionKind
from switchos.boot_entries.store import SWITCHOS_VENDOR, MemoryStore

ESP_GUID = uuid.UUID("c5ab5e46-7c97-4d3a-846b-1e32682ef154")


def option(description: str, path: str, *, active: bool = True, optional_data: bytes = b"") -> bytes:
    attributes = LoadOptionAttribute.ACTIVE if active else LoadOptionAttribute(0)
    device_path = make_file_path(1, 0x800, 0x82000, ESP_GUID, path)
    return LoadOption(attributes, description, device_path, optional_data).to_bytes()


def order(*numbers: int) -> bytes:
    return b"".join(number.to_bytes(2, "little") for number in numbers)


def test_empty_store() -> None:
    listing = read_listing(MemoryStore())

    assert listing.boot_current is None
    assert listing.boot_next is None
    assert listing.timeout is None
    assert listing.boot_order is None
    assert listing.driver_order is None
    assert listing.entries == ()
    assert listing.problems == ()


def test_boot_variables_decoded() -> None:
    store = MemoryStore()
    store.set("BootCurrent", order(0x1C))
    store.set("BootNext", order(0x3))
    store.set("Timeout", order(5))
    store.set("BootOrder", order())

    listing = read_listing(store)

    assert listing.boot_current == 0x1C
    assert listing.boot_next == 0x3
    assert listing.timeout == 5
    assert listing.boot_order == ()


def test_malformed_boot_next_reported() -> None:
    store = MemoryStore()
    store.set("BootNext", b"\x01\x00\x00")

    listing = read_listing(store)

    assert listing.boot_next is None
    assert len(listing.problems) == 1
    problem = listing.problems[0]
    assert problem.kind is ProblemKind.MALFORMED
    assert problem.variable == "BootNext"
    assert problem.message == "BootNext is 3 bytes long instead of 2"


def test_entry_fields() -> None:
    store = MemoryStore()
    store.set("Boot0000", option("Linux Boot Manager", "\\EFI\\systemd\\systemd-bootx64.efi"))
    store.set("BootOrder", order(0))

    (entry,) = read_listing(store).entries

    assert entry.kind is OptionKind.BOOT
    assert entry.number == 0
    assert entry.variable_name == "Boot0000"
    assert entry.attributes == 1
    assert entry.active
    assert entry.description == "Linux Boot Manager"
    assert entry.device_path == (
        "HD(1,GPT,c5ab5e46-7c97-4d3a-846b-1e32682ef154,0x800,0x82000)/File(\\EFI\\systemd\\systemd-bootx64.efi)"
    )
    assert entry.file_path == "\\EFI\\systemd\\systemd-bootx64.efi"
    assert entry.optional_data == b""
    assert not entry.ours
    assert entry.error is None


def test_inactive_entry_with_optional_data() -> None:
    store = MemoryStore()
    store.set("Boot0001", option("Shell", "\\shell.efi", active=False, optional_data=b"fs0:"))

    (entry,) = read_listing(store).entries

    assert not entry.active
    assert entry.optional_data == b"fs0:"
    assert entry.optional_data_text == "fs0:"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("store=partition:0f0e0d0c-0b0a-0908-0706-050403020100\0".encode("utf-16-le"),
         "store=partition:0f0e0d0c-0b0a-0908-0706-050403020100"),
        ("root=/dev/vda2 initrd=\\initrd.img é\0".encode("utf-16-le"), "root=/dev/vda2 initrd=\\initrd.img é"),
        ("no terminator".encode("utf-16-le"), None),
        ("two\0parts\0".encode("utf-16-le"), None),
        ("tab\there\0".encode("utf-16-le"), None),
        ("\0".encode("utf-16-le"), None),
        (b"quiet", None),
        (b"\x01\x00\x00\x00", None),
        (b"\x00\xd8\x00\x00", None),
        (b"", None),
        (None, None),
    ],
)
def test_decode_options_text(data: bytes | None, expected: str | None) -> None:
    assert decode_options_text(data) == expected


def test_ucs2_options_decoded_in_json() -> None:
    store = MemoryStore()
    data = "store=partition:abc\0".encode("utf-16-le")
    store.set("Driver0001", option("SwitchOS", "\\EFI\\SwitchOS\\switchos-x64.efi", optional_data=data))

    (entry,) = read_listing(store).to_dict()["entries"]

    assert entry["optional_data"] == data.hex()
    assert entry["optional_data_text"] == "store=partition:abc"


def test_entries_sorted_boot_then_driver() -> None:
    store = MemoryStore()
    store.set("Driver0000", option("SwitchOS payload", "\\EFI\\SwitchOS\\payload.efi"))
    store.set("Boot0010", option("b", "\\b.efi"))
    store.set("Boot0002", option("a", "\\a.efi"))

    names = [entry.variable_name for entry in read_listing(store).entries]

    assert names == ["Boot0002", "Boot0010", "Driver0000"]


def test_other_vendor_and_non_option_names_ignored() -> None:
    store = MemoryStore()
    store.set("Boot0005", option("not global", "\\a.efi"), vendor=SWITCHOS_VENDOR)
    store.set("Boot001_BbsIndex", b"\x00")
    store.set("BootOptionSupport", b"\x01\x00\x00\x00")

    assert read_listing(store).entries == ()


def test_lowercase_entry_name_read() -> None:
    store = MemoryStore()
    store.set("Boot000a", option("lowercase", "\\a.efi"))

    (entry,) = read_listing(store).entries

    assert entry.number == 0xA
    assert entry.variable_name == "Boot000a"
    assert entry.description == "lowercase"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("\\EFI\\SwitchOS\\payload.efi", True),
        ("\\efi\\switchos\\payload.efi", True),
        ("/EFI/SWITCHOS/runtime.efi", True),
        ("EFI\\SwitchOS\\deep\\x.efi", True),
        ("\\EFI\\SwitchOSX\\payload.efi", False),
        ("\\EFI\\SwitchOS", False),
        ("\\EFI\\debian\\SwitchOS\\x.efi", False),
        (None, False),
    ],
)
def test_is_ours_path_rule(path: str | None, expected: bool) -> None:
    assert is_ours(path) is expected


def test_ours_marked_on_entries() -> None:
    store = MemoryStore()
    store.set("Boot0000", option("Other", "\\EFI\\debian\\shimx64.efi"))
    store.set("Boot0001", option("Ours", "\\EFI\\SWITCHOS\\PAYLOAD.EFI"))

    ours = {entry.variable_name: entry.ours for entry in read_listing(store).entries}

    assert ours == {"Boot0000": False, "Boot0001": True}


def test_order_inconsistencies_reported() -> None:
    store = MemoryStore()
    store.set("Boot0001", option("a", "\\a.efi"))
    store.set("Boot0002", option("b", "\\b.efi"))
    store.set("Boot0004", option("unlisted", "\\c.efi"))
    store.set("BootOrder", order(2, 9, 1, 2))
    store.set("Driver0003", option("driver", "\\d.efi"))

    problems = read_listing(store).problems

    found = {(problem.kind, problem.variable, problem.entry) for problem in problems}
    assert found == {
        (ProblemKind.LISTED_MISSING, "BootOrder", "Boot0009"),
        (ProblemKind.DUPLICATE, "BootOrder", "Boot0002"),
        (ProblemKind.UNLISTED, "BootOrder", "Boot0004"),
        (ProblemKind.UNLISTED, "DriverOrder", "Driver0003"),
    }
    assert len(problems) == 4


def test_odd_length_order_reported_and_shown() -> None:
    store = MemoryStore()
    store.set("Boot0001", option("a", "\\a.efi"))
    store.set("BootOrder", order(1) + b"\x02")

    listing = read_listing(store)

    assert listing.boot_order == (1,)
    assert [problem.kind for problem in listing.problems] == [ProblemKind.MALFORMED]
    assert listing.problems[0].variable == "BootOrder"
    assert listing.problems[0].message is not None
    assert "odd length" in listing.problems[0].message


def test_malformed_entry_listed_leniently() -> None:
    store = MemoryStore()
    valid = option("Broken", "\\EFI\\SwitchOS\\payload.efi")
    # Cut the End node off the device path, and keep FilePathListLength as it was.
    store.set("Boot0003", valid[:-4])
    store.set("BootOrder", order(3))

    listing = read_listing(store)

    (entry,) = listing.entries
    assert entry.description == "Broken"
    assert entry.error is not None
    assert entry.file_path == "\\EFI\\SwitchOS\\payload.efi"
    assert entry.ours
    assert [(problem.kind, problem.variable) for problem in listing.problems] == [
        (ProblemKind.MALFORMED, "Boot0003")
    ]


def test_corpus_entry_renders_as_efibootmgr() -> None:
    # Boot0000 of a ThinkPad, as efibootmgr 18 -v printed it and with its dp: bytes.
    device_path = bytes.fromhex(
        (
            "04 01 2a 00 01 00 00 00 00 08 00 00 00 00 00 00 00 00 10 00 00 00 00 00 82 d0 f9 ff 54 14 a4 43 "
            "a3 25 aa a0 9f 49 54 1e 02 02 / 04 04 30 00 5c 00 45 00 46 00 49 00 5c 00 47 00 52 00 55 00 42 00 "
            "5c 00 67 00 72 00 75 00 62 00 78 00 36 00 34 00 2e 00 65 00 66 00 69 00 00 00 / 7f ff 04 00"
        ).replace("/", " ")
    )
    data = (1).to_bytes(4, "little") + len(device_path).to_bytes(2, "little") + "GRUB\0".encode("utf-16-le")
    store = MemoryStore()
    store.set("Boot0000", data + device_path)

    (entry,) = read_listing(store).entries

    assert entry.error is None
    assert f"Boot0000* {entry.description}\t{entry.device_path}" == (
        "Boot0000* GRUB\tHD(1,GPT,fff9d082-1454-43a4-a325-aaa09f49541e,0x800,0x100000)/File(\\EFI\\GRUB\\grubx64.efi)"
    )


def test_to_dict_is_stable_json() -> None:
    store = MemoryStore()
    store.set("Boot0001", option("Ours", "\\EFI\\SwitchOS\\payload.efi", optional_data=b"\x01\x02"))
    store.set("BootOrder", order(1, 7))
    store.set("Timeout", order(3))

    data = json.loads(json.dumps(read_listing(store).to_dict()))

    assert list(data) == [
        "format_version",
        "boot_current",
        "boot_next",
        "timeout",
        "boot_order",
        "driver_order",
        "entries",
        "problems",
    ]
    assert data["format_version"] == 1
    assert data["timeout"] == 3
    assert data["boot_order"] == [1, 7]
    assert data["driver_order"] is None
    assert data["entries"] == [
        {
            "name": "Boot0001",
            "kind": "boot",
            "number": 1,
            "attributes": 1,
            "active": True,
            "description": "Ours",
            "device_path": "HD(1,GPT,c5ab5e46-7c97-4d3a-846b-1e32682ef154,0x800,0x82000)/File(\\EFI\\SwitchOS\\payload.efi)",
            "file_path": "\\EFI\\SwitchOS\\payload.efi",
            "optional_data": "0102",
            "optional_data_text": None,
            "ours": True,
            "error": None,
        }
    ]
    assert data["problems"] == [
        {"kind": "listed-missing", "variable": "BootOrder", "entry": "Boot0007", "message": None}
    ]
