"""Real-world boot variables: decode, render and compare with what efibootmgr printed.

The corpus folder holds text files, one per machine or report, each with
DATA blocks (efibootmgr listings, hex dumps, hex strings) and notes on what
the data means. The folder defaults to ``../shared/corpus`` next to the
repository and can be moved with SWITCHOS_CORPUS. Files about disk layouts
(no load options in them) are not read here.

Known, deliberate differences from efibootmgr's text, handled below:

- efibootmgr 18 built against efivar 38 or newer prints a file path node as a
  bare path (``/\\EFI\\...``). efivar 37 and older print
  ``File(\\EFI\\...)``, and so does SwitchOS. Listings that use the bare form are compared after
  rewriting our ``File(x)`` to ``x``.
- efibootmgr 17 and older print optional data as ASCII with "." for
  non-printable bytes; efibootmgr 18 prints hex (or text, or a GUID). SwitchOS
  renders either way (OptionalDataStyle); each listing is compared in the
  style of the efibootmgr that printed it.
"""

from __future__ import annotations

import os
import re
import struct
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from switchos.boot_entries.device_path import END_ENTIRE_NODE, DevicePath, DevicePathNode
from switchos.boot_entries.load_option import (
    LoadOption,
    LoadOptionAttribute,
    OptionalDataStyle,
    decode_ucs2_text,
    format_optional_data,
    parse_lenient,
)
from switchos.boot_entries.order import (
    OptionKind,
    check_consistency,
    format_order,
    insert_first,
    read_order,
)
from switchos.boot_entries.store import MemoryStore, VariableAttribute
from switchos.process import run
from testbed.firmware import VarsFile, find_ovmf, make_vars_file
from testbed.qemu import QemuProcess

CORPUS = Path(os.environ.get("SWITCHOS_CORPUS", Path(__file__).parents[2] / "../shared/corpus"))



# --- Reading corpus files -------------------------------------------------


def corpus_text(number: int) -> str:
    if not CORPUS.is_dir():
        pytest.skip(f"corpus folder {CORPUS} not found; set SWITCHOS_CORPUS")
    matches = sorted(CORPUS.glob(f"{number:02d}-*.txt"))
    assert len(matches) == 1, f"expected one corpus file numbered {number:02d}, found {matches}"
    return matches[0].read_text(encoding="utf-8")


def data_blocks(text: str) -> dict[str, str]:
    """Return each DATA block's body by its title line."""
    pattern = re.compile(r"^DATA: (.*?)\n-----BEGIN DATA-----\n(.*?)\n-----END DATA-----", re.M | re.S)
    return {title: body for title, body in pattern.findall(text)}


def block(text: str, title_start: str) -> str:
    matches = [body for title, body in data_blocks(text).items() if title.startswith(title_start)]
    assert len(matches) == 1, f"expected one DATA block titled {title_start!r}"
    return matches[0]


def fake_guids(text: str) -> list[uuid.UUID]:
    """Return the anonymised partition GUIDs the file lists, in order."""
    return [uuid.UUID(value) for value in re.findall(r"GUID: .*? = ([0-9a-fA-F-]{36})", text)]


def hex_bytes(text: str) -> bytes:
    """Decode hex written with any spacing and " / " node separators."""
    return bytes.fromhex(re.sub(r"[\s/]", "", text))


def dotted(data: bytes) -> str:
    """Render optional data in efibootmgr 17's dotted style, as it survives in archived copies.

    efibootmgr 17 prints byte 127 (DEL) raw, and copying loses it, so it is
    removed here.
    """
    return format_optional_data(data, style=OptionalDataStyle.DOTTED).replace("\x7f", "")


def bare_file_paths(text: str) -> str:
    r"""Rewrite ``File(x)`` to ``x``, as efibootmgr prints with efivar 38 and newer."""
    return re.sub(r"File\(([^()]*)\)", r"\1", text)


# --- efibootmgr -v -v listings with dp: and data: lines ---------------------


@dataclass(frozen=True)
class DumpedEntry:
    number: int
    active: bool
    line: str  # the whole "Boot####* ..." line
    path_bytes: bytes | None  # None when the archived dp: line is cut
    optional_data: bytes | None  # None when the data: line is cut or absent


def dumped_entries(body: str) -> list[DumpedEntry]:
    """Parse a listing whose entries are followed by efibootmgr 18's "dp:" and "data:" lines."""
    entries = []
    lines = body.splitlines()
    for index, line in enumerate(lines):
        match = re.match(r"Boot([0-9A-F]{4})([* ])", line)
        if not match:
            continue
        following = lines[index + 1 : index + 3]
        dp_text = next((item.split("dp:", 1)[1] for item in following if item.strip().startswith("dp:")), None)
        data_text = next((item.split("data:", 1)[1] for item in following if item.strip().startswith("data:")), None)
        path_bytes = None
        if dp_text is not None and dp_text.strip().endswith("7f ff 04 00"):
            path_bytes = hex_bytes(dp_text)
        # efibootmgr prints "data:" only for non-empty optional data.
        if data_text is not None:
            optional: bytes | None = hex_bytes(data_text)
        elif dp_text is not None:
            optional = b""
        else:
            optional = None
        entries.append(DumpedEntry(int(match.group(1), 16), match.group(2) == "*", line, path_bytes, optional))
    return entries


def split_listing_line(line: str, rendered_path: str) -> tuple[str, str]:
    """Return the description and the text after the rendered path in a listing line."""
    position = line.find(rendered_path)
    assert position > 0, f"rendered path {rendered_path!r} not found in {line!r}"
    # "Boot####* " is 10 characters; the separator before the path is a tab or spaces.
    description = line[10:position].rstrip("\t ")
    return description, line[position + len(rendered_path) :]


DUMP_LISTINGS = [
    # (file, block title, optional data style of that efibootmgr build)
    (10, "A. ThinkPad", "efibootmgr-18"),
    (10, "B. Lenovo laptop", "efibootmgr-18"),
    (12, "efibootmgr -v on a Steam Deck", "efibootmgr-18"),
    (19, "A. HPE ProLiant", "efibootmgr-18"),
    (6, "A. efibootmgr -v", "dotted"),
]


@pytest.mark.parametrize(("number", "title", "style"), DUMP_LISTINGS)
def test_dumped_entries_render_as_listed(number: int, title: str, style: str) -> None:
    entries = dumped_entries(block(corpus_text(number), title))
    complete = [entry for entry in entries if entry.path_bytes is not None]
    assert complete, "no entry with a complete dp: line was extracted"

    for entry in complete:
        assert entry.path_bytes is not None
        path = DevicePath.from_bytes(entry.path_bytes)
        assert path.to_bytes() == entry.path_bytes

        rendered = path.format()
        if "File(" not in entry.line:
            rendered = bare_file_paths(rendered)
        description, after_path = split_listing_line(entry.line, rendered)

        optional = entry.optional_data or b""
        if style == "efibootmgr-18":
            assert after_path == format_optional_data(optional)
        else:
            # AMI's blob starts with a header and the drive name, then copies
            # the entry's own device path (05 01 09 00 ...). From that copy on,
            # the archived listing has one "." fewer than the bytes give, so
            # only the part before it is compared.
            header = optional[: optional.index(bytes.fromhex("05010900"))]
            assert len(header) > 40
            assert after_path.startswith(dotted(header))

        attributes = LoadOptionAttribute.ACTIVE if entry.active else LoadOptionAttribute(0)
        option = LoadOption(attributes, description, path, optional)
        assert LoadOption.from_bytes(option.to_bytes()) == option


def test_steam_deck_dp_hard_drive_fields() -> None:
    text = corpus_text(12)
    entries = dumped_entries(block(text, "efibootmgr -v on a Steam Deck"))
    path_bytes = entries[0].path_bytes
    assert path_bytes is not None

    hard_drive = DevicePath.from_bytes(path_bytes).hard_drive()

    assert hard_drive is not None
    assert hard_drive.partition_number == 1
    assert hard_drive.start_lba == 0x800
    assert hard_drive.size_lba == 0x20000
    assert hard_drive.signature == fake_guids(text)[0]


def test_windows_optional_data_prints_as_hex() -> None:
    # Boot0001's dp: line is cut, but its 136-byte optional data is in the listing line.
    line = next(line for line in block(corpus_text(10), "A. ThinkPad").splitlines() if line.startswith("Boot0001"))
    blob_hex = line.rsplit(")", 1)[1]
    blob = bytes.fromhex(blob_hex)

    assert blob[:8] == b"WINDOWS\0"
    assert struct.unpack_from("<I", blob, 12)[0] == len(blob)
    assert format_optional_data(blob) == blob_hex


def test_ami_optional_data_holds_a_device_path() -> None:
    # AMI stores the drive's real device path inside the BBS entry's optional data.
    text = corpus_text(6)
    entry = dumped_entries(block(text, "A. efibootmgr -v"))[0]
    assert entry.optional_data is not None
    start = entry.optional_data.index(bytes.fromhex("02010c00d041030a"))

    embedded = DevicePath.from_bytes(entry.optional_data[start:], strict=False)

    # The file writes the SATA node the edk2 way, Sata(0,0xFFFF,0); libefivar prints decimal.
    described = re.search(r"(PciRoot\(0x0\)/Pci\(0x1,0x2\)/Pci\(0x0,0x1\)/)Sata\(0,0xFFFF,0\)", text)
    assert described is not None
    assert embedded.format() == described.group(1) + "Sata(0,65535,0)"


@pytest.mark.parametrize(("number", "title"), [(11, "efibootmgr (v18"), (2, "B2.")])
def test_kernel_command_line_prints_as_hex(number: int, title: str) -> None:
    # EFI stub entries carry the command line as UCS-2 without a NUL; efibootmgr 18 prints hex.
    # Lines that show the command line as text were printed with --unicode; they are skipped.
    lines = [
        line
        for line in block(corpus_text(number), title).splitlines()
        if re.search(r"/File\(\\vmlinuz-linux\)[0-9a-f]+$", line)
    ]
    assert lines

    for line in lines:
        command_line_hex = line.rsplit(")", 1)[1]
        optional = bytes.fromhex(command_line_hex)
        command_line = decode_ucs2_text(optional)

        assert format_optional_data(optional) == command_line_hex
        assert command_line is not None
        assert command_line.startswith("root=/dev/")
        assert command_line.endswith("initrd=\\initramfs-linux.img")


# --- Load options and device paths given as hex ---------------------------


def hexdump_bytes(body: str) -> bytes:
    """Decode ``hexdump -C`` output."""
    data = b""
    for line in body.splitlines():
        match = re.match(r"[0-9a-f]{8}  ((?:[0-9a-f]{2} {1,2})+)\s*\|", line)
        if match:
            data += bytes.fromhex(match.group(1))
    return data


def test_dell_hexdump_decodes_field_by_field() -> None:
    text = corpus_text(5)
    raw = hexdump_bytes(block(text, "hexdump -C"))
    assert len(raw) == 0x8E

    attributes = VariableAttribute(struct.unpack_from("<I", raw)[0])
    option = LoadOption.from_bytes(raw[4:])

    assert attributes == VariableAttribute.NON_VOLATILE | VariableAttribute.BOOTSERVICE_ACCESS | VariableAttribute.RUNTIME_ACCESS
    assert option.attributes == LoadOptionAttribute.ACTIVE
    assert len(option.device_path.to_bytes()) == int(re.search(r"FilePathListLength = (0x[0-9a-f]+)", text).group(1), 16)  # type: ignore[union-attr]
    assert option.optional_data == b""
    assert option.to_bytes() == raw[4:]

    expected = re.search(r"=> efibootmgr text: Boot0006\* (\S+)\s+(\S+)", text)
    assert expected is not None
    assert option.description == expected.group(1)
    assert option.device_path.format() == expected.group(2).replace("<guid>", str(fake_guids(text)[0]))


def test_u_root_fixture_round_trips() -> None:
    text = corpus_text(17)
    raw = bytes.fromhex(block(text, "Boot0007 EFI_LOAD_OPTION").strip())
    spaced = hex_bytes(block(text, "same bytes, 16 per line"))
    assert raw == spaced

    option = LoadOption.from_bytes(raw)

    assert option.to_bytes() == raw
    assert option.optional_data == bytes.fromhex("0000424f")
    listed = re.search(r'efibootmgr text: "Boot0007\* (.*?)<TAB>(.*?)"', text)
    assert listed is not None
    assert option.description == listed.group(1)
    # The listing there is in the efibootmgr 17 style: the path, then dotted optional data.
    assert option.device_path.format() + dotted(option.optional_data) == listed.group(2)
    assert option.format_path(style=OptionalDataStyle.DOTTED) == listed.group(2)
    assert option.format_path() == option.device_path.format() + "0000424f"


def test_go_efilib_load_options() -> None:
    text = corpus_text(15)
    guid = fake_guids(text)[0]
    file_text = "File(\\EFI\\ubuntu\\shimx64.efi)"
    expected = {
        "L1.": ("ubuntu", f"HD(1,GPT,{guid},0x800,0x100000)/{file_text}", b""),
        "L2.": (
            "Linux Firmware Updater",
            f"HD(1,GPT,{guid},0x800,0x100000)/{file_text}",
            "\\fwupdx64.efi\0".encode("utf-16-le"),
        ),
        "L3.": (
            "Graphic Setup",
            "FvVol(bdb6c5ed-6bf3-4909-837c-353f6dcbb6a2)/FvFile(6b287864-759c-42c4-b435-a74ab694cd3b)",
            b"",
        ),
    }

    for title, (description, path_text, optional) in expected.items():
        raw = bytes.fromhex(block(text, title).strip())
        option = LoadOption.from_bytes(raw)

        assert option.to_bytes() == raw
        assert option.attributes == LoadOptionAttribute.ACTIVE
        assert option.description == description
        assert option.device_path.format() == path_text
        assert option.optional_data == optional
    assert decode_ucs2_text("\\fwupdx64.efi\0".encode("utf-16-le")) == "\\fwupdx64.efi"


def test_go_efilib_device_paths() -> None:
    # The file states decoded values, not efibootmgr output, so the texts
    # below are libefivar's forms of those values. AcpiEx prints its string
    # fields empty when they are present but empty, as efibootmgr does on Hyper-V.
    text = corpus_text(15)
    partition_15, partition_1 = fake_guids(text)[1], fake_guids(text)[0]
    expected = {
        "H1.": (
            "AcpiEx(VMBus,,)/VenHw(9b17e5a2-0891-42dd-b653-80b5c22809ba,"
            "d96361baa104294db60572e2ffb1dc7f5a80e5d23e369c4494ed50c0a0cd8656)/SCSI(0,0)/"
            f"HD(15,GPT,{partition_15},0x2800,0x35000)/File(\\EFI\\ubuntu\\shimx64.efi)"
        ),
        "H2.": (
            "PciRoot(0x0)/Pci(0x1d,0x0)/Pci(0x0,0x0)/NVMe(0x1,00-00-00-00-00-00-00-00)/"
            f"HD(1,GPT,{partition_1},0x800,0x100000)/File(\\EFI\\ubuntu\\shimx64.efi)"
        ),
        "H3.": "PciRoot(0x1)/Pci(0x0,0x0)/Pci(0x0,0x0)/MAC(a0369fb532ce,1)/IPv4(0.0.0.0,0,DHCP,0.0.0.0,0.0.0.0,0.0.0.0)",
    }

    for title, path_text in expected.items():
        raw = bytes.fromhex(block(text, title).strip())
        path = DevicePath.from_bytes(raw)

        assert path.to_bytes() == raw
        assert path.format() == path_text


def corpus_hex_options() -> dict[str, bytes]:
    """Return every complete load option the corpus gives as bytes, by a short label."""
    options = {"05 Boot0006": hexdump_bytes(block(corpus_text(5), "hexdump -C"))[4:]}
    options["17 Boot0007"] = bytes.fromhex(block(corpus_text(17), "Boot0007 EFI_LOAD_OPTION").strip())
    for title in ("L1.", "L2.", "L3."):
        options[f"15 {title}"] = bytes.fromhex(block(corpus_text(15), title).strip())
    return options


def test_corpus_options_match_efibootdump(tmp_path: Path) -> None:
    # efibootdump (efibootmgr 17, libefivar 37) prints File() and dotted
    # optional data, like SwitchOS's DOTTED style.
    options = corpus_hex_options()
    for label, raw in options.items():
        file = tmp_path / label.replace(" ", "-")
        file.write_bytes(struct.pack("<I", 7) + raw)
        option = LoadOption.from_bytes(raw)

        output = run(["efibootdump", "--file", file]).stdout.decode("latin-1").rstrip("\n")

        active = "*" if option.active else " "
        expected = f"{file}: {active} {option.description} {option.format_path(style=OptionalDataStyle.DOTTED)}"
        assert output == expected


def test_lenovo_raw_nodes_match_newer_text() -> None:
    # efibootmgr 0.5 dumped nodes it did not know as hex. A later efibootmgr
    # on another Lenovo prints the same kind of bytes as VenMsg() and Sata().
    old = block(corpus_text(3), "efibootmgr -v")
    newer = block(corpus_text(11), "efibootmgr (v18")
    raw_nodes = set(re.findall(r"\b(03(?:120a|0a2[45])00[0-9a-f]+?)(?=\.|$|\s)", old, re.M))
    assert raw_nodes

    rendered = set()
    for raw in raw_nodes:
        node_length = struct.unpack_from("<H", bytes.fromhex(raw[4:8]))[0]
        node_bytes = bytes.fromhex(raw[: node_length * 2])
        rendered.add(DevicePath.from_bytes(node_bytes + END_ENTIRE_NODE.to_bytes()).format())

    assert "Sata(1,0,0)" in rendered
    assert "Sata(0,0,0)" in rendered
    newer_venmsg = set(re.findall(r"VenMsg\([0-9a-f-]{36},[0-9a-f]+\)", newer))
    assert newer_venmsg & rendered
    assert all(text.startswith(("Sata(", "VenMsg(bc7838d2-0f82-4d60-8316-c068ee79d25b,")) for text in rendered)


def test_class_guid_optional_data_forms() -> None:
    # The same 16 bytes print dotted in efibootmgr 0.5 and as {guid} in efibootmgr 18.
    optional = bytes.fromhex(re.search(r"bytes ((?:[0-9a-f]{2}\s+){15}[0-9a-f]{2})", corpus_text(3)).group(1))  # type: ignore[union-attr]

    assert dotted(optional) == "..bYVD.A...O.*.."
    assert format_optional_data(optional) in block(corpus_text(11), "efibootmgr (v18")


# --- Listings that only have text -----------------------------------------


def _u32(value: str) -> bytes:
    return struct.pack("<I", int(value, 0))


def _guid(value: str) -> bytes:
    return uuid.UUID(value).bytes_le


def encode_text_node(name: str, arguments: list[str]) -> bytes | None:
    """Build a node from its efibootmgr text, from the UEFI layouts; None for forms not handled here."""
    bbs_types = {"Floppy": 1, "HD": 2, "CDROM": 3, "PCMCIA": 4, "USB": 5, "Network": 6}
    encoders = {
        "PciRoot": lambda a: (2, 1, _u32("0x0a0341d0") + _u32(a[0])),
        "Pci": lambda a: (1, 1, bytes([int(a[1], 0), int(a[0], 0)])),
        "File": lambda a: (4, 4, (",".join(a) + "\0").encode("utf-16-le")),
        "FvFile": lambda a: (4, 6, _guid(a[0])),
        "FvVol": lambda a: (4, 7, _guid(a[0])),
        "VenMedia": lambda a: (4, 3, _guid(a[0]) + bytes.fromhex("".join(a[1:]))),
        "VenHw": lambda a: (1, 4, _guid(a[0]) + bytes.fromhex("".join(a[1:]))),
        "VenMsg": lambda a: (3, 10, _guid(a[0]) + bytes.fromhex("".join(a[1:]))),
        "SCSI": lambda a: (3, 2, struct.pack("<HH", int(a[0]), int(a[1]))),
        "Ata": lambda a: (3, 1, struct.pack("<BBH", int(a[0]), int(a[1]), int(a[2]))),
        "Sata": lambda a: (3, 0x12, struct.pack("<HHH", int(a[0]), int(a[1]), int(a[2]))),
        "USB": lambda a: (3, 5, bytes([int(a[0]), int(a[1])])),
        "SD": lambda a: (3, 0x1A, bytes([int(a[0])])),
        "MAC": lambda a: (3, 0x0B, bytes.fromhex(a[0]).ljust(32, b"\0") + bytes([int(a[1], 0)])),
        "NVMe": lambda a: (3, 0x17, _u32(a[0]) + bytes.fromhex(a[1].replace("-", ""))),
        # Class 0xFF, because libefivar leaves the class out of this form.
        "UsbClass": lambda a: (3, 0x0F, struct.pack("<HHBBB", int(a[0], 16), int(a[1], 16), 0xFF, int(a[2]), int(a[3]))),
        "MemoryMapped": lambda a: (1, 3, struct.pack("<IQQ", int(a[0]), int(a[1], 0), int(a[2], 0))),
        "BBS": lambda a: (5, 1, struct.pack("<HH", bbs_types.get(a[0]) or int(a[0]), int(a[2], 0)) + a[1].encode("latin-1") + b"\0"),
    }
    if name == "HD":
        number, kind, signature, start, size = arguments
        if kind == "GPT":
            fields = (int(number), int(start, 0), int(size, 0), _guid(signature), 2, 2)
        else:
            fields = (int(number), int(start, 0), int(size, 0), _u32(signature).ljust(16, b"\0"), 1, 1)
        return DevicePathNode(4, 1, struct.pack("<IQQ16sBB", *fields)).to_bytes()
    if name not in encoders:
        return None
    node_type, subtype, data = encoders[name](arguments)
    return DevicePathNode(node_type, subtype, data).to_bytes()


FIRST_NODE = re.compile(r"(?<![A-Za-z])(PciRoot|HD|BBS|FvFile|FvVol|VenMedia|VenHw|VenMsg|MemoryMapped|File|UsbClass)\(")


def encode_text_path(text: str) -> tuple[bytes, str] | None:
    """Encode the path at the start of ``text``; return its bytes and the text it covered."""
    position = 0
    encoded = b""
    while True:
        match = re.compile(r"([A-Za-z]+)\(([^()]*)\)").match(text, position)
        if not match:
            return None
        node = encode_text_node(match.group(1), match.group(2).split(","))
        if node is None:
            return None
        encoded += node
        position = match.end()
        if not text.startswith("/", position) or text.startswith("/\\", position):
            return encoded + END_ENTIRE_NODE.to_bytes(), text[: match.end()]
        position += 1


TEXT_LISTINGS = [
    # (file, block title, minimum number of entries whose path is encoded and compared)
    (1, "efibootmgr -v", 11),
    (2, "A2.", 5),
    (2, "B1.", 4),
    (6, "B. efibootmgr", 1),
    (6, "C. server", 3),
    (9, "efibootmgr -v", 3),
    (11, "efibootmgr (v18", 8),
    (14, "efibootmgr -v inside", 6),
    (19, "A. HPE ProLiant", 4),
]


@pytest.mark.parametrize(("number", "title", "minimum"), TEXT_LISTINGS)
def test_text_listing_paths_render_as_listed(number: int, title: str, minimum: int) -> None:
    compared = 0
    for line in block(corpus_text(number), title).splitlines():
        if not re.match(r"Boot[0-9A-F]{4}[* ] ", line):
            continue
        if number == 14:
            # Undo the line-wrap damage the file documents: spaces before "(" and "/".
            line = re.sub(r"(?<=\S) +(?=[(/])", "", line)
        match = FIRST_NODE.search(line, 10)
        if not match:
            continue
        encoded = encode_text_path(line[match.start() :])
        if encoded is None:
            continue
        path_bytes, path_text = encoded

        assert DevicePath.from_bytes(path_bytes).format() == path_text
        compared += 1

    assert compared >= minimum


def test_hp_bbs_descriptions_with_raw_bytes() -> None:
    # The file lost the raw bytes (shown as U+FFFD); it suggests 0x9e or 0x80.
    body = block(corpus_text(8), "A. efibootmgr -v")
    listed = re.findall(r"BBS\((\w+),\ufffd,(0x[0-9a-f]+)\)", body)
    assert len(listed) == 5

    for device_type, status in listed:
        node = encode_text_node("BBS", [device_type, "X\x9e\x80", status])
        assert node is not None
        text = DevicePath.from_bytes(node + END_ENTIRE_NODE.to_bytes()).format()

        assert text == f"BBS({device_type},X\\x9e\\x80,{status})"
        text.encode("utf-8")


def test_ami_entry_sizes_match_strace() -> None:
    # The strace gives whole efivarfs file sizes: 4 bytes of attributes plus
    # the load option of a BBS node with an empty description.
    text = corpus_text(2)
    sizes = [int(size) for size in re.findall(r"read\(4, \"\\7\\0\\0\\0\\1.*\) = (\d+)", text)]
    names = re.findall(r"Boot000\d\* (UEFI:[\w/ ]+?)\s+BBS\((\d+),", block(text, "A2."))
    assert len(sizes) == len(names) == 3

    for (description, device_type), size in zip(names, sizes):
        node = encode_text_node("BBS", [device_type, "", "0x0"])
        assert node is not None
        option = LoadOption(LoadOptionAttribute.ACTIVE, description, DevicePath.from_bytes(node + END_ENTIRE_NODE.to_bytes()))

        assert 4 + len(option.to_bytes()) == size
        assert struct.unpack_from("<H", option.to_bytes(), 4)[0] == 13


def test_truncated_strace_prefix_lists_leniently() -> None:
    # The Debian entry's read is cut by strace after its description starts.
    text = corpus_text(2)
    escaped = re.search(r'read\(4, "(\\7\\0\\0\\0\\7\\0.*?)"\.\.\.', text)
    assert escaped is not None
    raw = escaped.group(1).encode("latin-1").decode("unicode_escape").encode("latin-1")

    listing = parse_lenient(raw[4:])

    assert listing.attributes is not None
    assert int(listing.attributes) == 7
    assert listing.description is not None
    assert listing.description.startswith("Debian GNU/")
    assert listing.error is not None
    assert listing.option is None


# --- Boot order consistency on listed machines ----------------------------


def listing_store(body: str) -> MemoryStore:
    """Build a store with BootOrder and a stand-in entry for every listed Boot#### line."""
    store = MemoryStore()
    order = re.search(r"^BootOrder: ([0-9A-F,]+)", body, re.M)
    assert order is not None
    store.set("BootOrder", format_order(int(number, 16) for number in order.group(1).split(",")))
    stand_in = LoadOption(LoadOptionAttribute.ACTIVE, "stand-in", DevicePath((END_ENTIRE_NODE,))).to_bytes()
    for number in re.findall(r"^Boot([0-9A-F]{4})", body, re.M):
        store.set(f"Boot{number}", stand_in)
    return store


CONSISTENCY = [
    # (file, block, listed but missing, present but unlisted), as the files' notes state them
    (1, "efibootmgr -v", (), ()),
    (3, "efibootmgr -v", (), (0x0000, 0x0001, 0x0002, 0x000C, 0x0014, 0x0015, 0x0016, 0x001C)),
    (9, "efibootmgr -v", (0x2004,), (0x0005, 0x0007, 0x3001)),
]


@pytest.mark.parametrize(("number", "title", "missing", "unlisted"), CONSISTENCY)
def test_listing_consistency_report(number: int, title: str, missing: tuple[int, ...], unlisted: tuple[int, ...]) -> None:
    store = listing_store(block(corpus_text(number), title))
    order_before = read_order(store, OptionKind.BOOT)

    report = check_consistency(store, OptionKind.BOOT)

    assert report.listed_missing == missing
    assert report.unlisted == unlisted
    assert read_order(store, OptionKind.BOOT) == order_before

    store.set("Boot7000", LoadOption(LoadOptionAttribute.ACTIVE, "SwitchOS", DevicePath((END_ENTIRE_NODE,))).to_bytes())
    insert_first(store, OptionKind.BOOT, 0x7000)

    assert read_order(store, OptionKind.BOOT) == (0x7000, *order_before)


# --- Entries that OVMF creates itself ---------------------------------------


@pytest.mark.vm
def test_ovmf_created_entries(tmp_path: Path) -> None:
    """Boot OVMF with disks on several buses; decode, re-encode and render the entries it creates."""
    ovmf = find_ovmf()
    vars_path = make_vars_file(ovmf, tmp_path / "OVMF_VARS.fd")
    argv = [
        "qemu-system-x86_64", "-machine", "q35,accel=tcg", "-nodefaults", "-m", "256",
        "-display", "none", "-nic", "none", "-no-reboot",
        "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={ovmf.code}",
        "-drive", f"if=pflash,format=raw,unit=1,file={vars_path}",
        "-device", "qemu-xhci,id=xhci",
    ]  # fmt: skip
    devices = {
        "virtio": "virtio-blk-pci,drive={drive}",
        "nvme": "nvme,drive={drive},serial=SWOSNVME",
        "sata": "ide-hd,drive={drive},bus=ide.0",
        "usb": "usb-storage,drive={drive},bus=xhci.0",
    }
    for name, device in devices.items():
        image = tmp_path / f"{name}.img"
        image.write_bytes(b"")
        os.truncate(image, 1 << 20)
        argv += ["-drive", f"if=none,format=raw,id={name},file={image}", "-device", device.format(drive=name)]

    with QemuProcess(argv, workdir=tmp_path) as qemu:
        # Boot options are written before the first one is tried.
        result = qemu.wait(timeout=120, until=lambda lines: any("BdsDxe: loading Boot" in line for line in lines))
    assert not result.timed_out, result.transcript()

    variables = VarsFile(vars_path)
    numbers = [name for name in variables.names() if re.fullmatch(r"Boot[0-9A-F]{4}", name)]
    assert len(numbers) >= 5

    store = MemoryStore()
    store.set("BootOrder", variables.get("BootOrder") or b"")
    rendered = []
    for name in numbers:
        raw = variables.get(name)
        assert raw is not None
        option = LoadOption.from_bytes(raw)
        assert option.to_bytes() == raw
        store.set(name, raw)

        file = tmp_path / name
        file.write_bytes(struct.pack("<I", 7) + raw)
        output = run(["efibootdump", "--file", file]).stdout.decode("latin-1").rstrip("\n")
        active = "*" if option.active else " "
        assert output == f"{file}: {active} {option.description} {option.format_path(style=OptionalDataStyle.DOTTED)}"
        rendered.append(option.device_path.format())

    assert check_consistency(store, OptionKind.BOOT).consistent
    assert any(text.startswith("FvVol(") for text in rendered)
    assert any("/NVMe(0x1," in text for text in rendered)
    assert any("/Sata(0," in text for text in rendered)
    assert any("/USB(" in text for text in rendered)
