"""EFI_LOAD_OPTION decoding, encoding, rendering and lenient listing."""

import struct
import uuid

import pytest

from testbed.firmware import load_option as virt_firmware_load_option

from switchos.boot_entries.device_path import (
    END_ENTIRE_NODE,
    CodecError,
    DevicePath,
    DevicePathError,
    make_file_path,
)
from switchos.boot_entries.load_option import (
    LoadOption,
    LoadOptionAttribute,
    LoadOptionError,
    OptionalDataStyle,
    decode_ucs2_text,
    format_optional_data,
    parse_lenient,
)

GUID = uuid.UUID("49ff6731-5830-4c2f-9ecd-98241ebd9860")
PATH = make_file_path(1, 0x40, 0xF000, GUID, "\\EFI\\BOOT\\BOOTX64.EFI")
BBS_PATH = DevicePath.from_bytes(bytes.fromhex("050109008100000000" + "7fff0400"))


def raw_option(attributes: int, description: bytes, path: bytes, optional: bytes = b"", *, length: int | None = None) -> bytes:
    """Assemble a load option by hand, with an optional wrong FilePathListLength."""
    path_length = len(path) if length is None else length
    return struct.pack("<IH", attributes, path_length) + description + path + optional


def test_known_vector_decodes() -> None:
    # A firmware-created fallback entry with 4 bytes of optional data.
    data = raw_option(1, "UEFI OS\0".encode("utf-16-le"), PATH.to_bytes(), bytes.fromhex("0000424f"))

    option = LoadOption.from_bytes(data)

    assert option.attributes == LoadOptionAttribute.ACTIVE
    assert option.description == "UEFI OS"
    assert option.device_path == PATH
    assert option.optional_data == bytes.fromhex("0000424f")
    assert option.extra_paths == ()
    assert option.to_bytes() == data
    assert option.format() == (
        f"UEFI OS\tHD(1,GPT,{GUID},0x40,0xf000)/File(\\EFI\\BOOT\\BOOTX64.EFI)0000424f"
    )


def test_build_and_round_trip() -> None:
    option = LoadOption(LoadOptionAttribute.ACTIVE, "SwitchOS", PATH, b"")

    assert LoadOption.from_bytes(option.to_bytes()) == option


def test_unknown_attribute_bits_kept() -> None:
    data = raw_option(7, "Debian\0".encode("utf-16-le"), BBS_PATH.to_bytes())

    option = LoadOption.from_bytes(data)

    assert int(option.attributes) == 7
    assert option.active
    assert LoadOptionAttribute.FORCE_RECONNECT in option.attributes
    assert option.to_bytes() == data


def test_category_app_and_hidden() -> None:
    attributes = LoadOptionAttribute.HIDDEN | LoadOptionAttribute.CATEGORY_APP
    option = LoadOption(attributes, "Setup", BBS_PATH)

    decoded = LoadOption.from_bytes(option.to_bytes())

    assert not decoded.active
    assert decoded.attributes & LoadOptionAttribute.CATEGORY == LoadOptionAttribute.CATEGORY_APP
    assert LoadOptionAttribute.HIDDEN in decoded.attributes


def test_description_with_lone_surrogate_round_trips() -> None:
    description = "Bad".encode("utf-16-le") + b"\x00\xdc" + b"\0\0"
    data = raw_option(1, description, BBS_PATH.to_bytes())

    option = LoadOption.from_bytes(data)

    assert option.description == "Bad\udc00"
    assert option.to_bytes() == data
    assert option.format() == "Bad\\udc00\tBBS(129,,0x0)"


def test_description_non_ascii_kept() -> None:
    # U+0100 and U+4E00 have a zero low byte; only a whole 0x0000 unit ends the text.
    option = LoadOption(LoadOptionAttribute.ACTIVE, "\u0100\u4e00 Linux", BBS_PATH)

    assert LoadOption.from_bytes(option.to_bytes()).description == "\u0100\u4e00 Linux"


def test_description_trailing_spaces_kept() -> None:
    option = LoadOption(LoadOptionAttribute.ACTIVE, "Hard Drive ", BBS_PATH)

    assert LoadOption.from_bytes(option.to_bytes()).description == "Hard Drive "


def test_empty_file_path_list() -> None:
    data = raw_option(1, "RC\0".encode("utf-16-le"), b"", b"RC")

    option = LoadOption.from_bytes(data)

    assert option.device_path.nodes == ()
    assert option.format() == "RC\tRC"
    assert option.to_bytes() == data


def test_second_device_path_kept() -> None:
    data = raw_option(1, "X\0".encode("utf-16-le"), PATH.to_bytes() + BBS_PATH.to_bytes(), b"\x01")

    option = LoadOption.from_bytes(data)

    assert option.extra_paths == (BBS_PATH,)
    assert option.to_bytes() == data


def test_header_too_short_raises() -> None:
    with pytest.raises(LoadOptionError) as caught:
        LoadOption.from_bytes(b"\x01\x00\x00")

    assert caught.value.offset == 3


def test_description_without_terminator_raises() -> None:
    data = raw_option(1, "ubuntu".encode("utf-16-le"), b"", length=0)

    with pytest.raises(LoadOptionError) as caught:
        LoadOption.from_bytes(data)

    assert caught.value.offset == 6
    assert "no NUL terminator" in caught.value.message


def test_odd_length_description_raises() -> None:
    data = raw_option(1, "ubuntu".encode("utf-16-le") + b"\x41", b"", length=0)

    with pytest.raises(LoadOptionError) as caught:
        LoadOption.from_bytes(data)

    assert "odd number of bytes" in caught.value.message


def test_path_length_past_end_raises() -> None:
    data = raw_option(1, "x\0".encode("utf-16-le"), PATH.to_bytes(), length=len(PATH.to_bytes()) + 10)

    with pytest.raises(LoadOptionError) as caught:
        LoadOption.from_bytes(data)

    assert caught.value.offset == 4
    assert "runs past the end" in caught.value.message


def test_vendor_junk_after_end_node_raises() -> None:
    description = "x\0".encode("utf-16-le")
    path = PATH.to_bytes() + b"AMBO"
    data = raw_option(1, description, path)

    with pytest.raises(DevicePathError) as caught:
        LoadOption.from_bytes(data)

    assert caught.value.offset == 6 + len(description) + len(PATH.to_bytes())


def test_truncated_node_in_path_raises_with_absolute_offset() -> None:
    description = "x\0".encode("utf-16-le")
    data = raw_option(1, description, bytes.fromhex("0404"))

    with pytest.raises(CodecError) as caught:
        LoadOption.from_bytes(data)

    assert caught.value.offset == 6 + len(description)


def test_path_list_length_too_large_raises() -> None:
    option = LoadOption(LoadOptionAttribute.ACTIVE, "x", PATH, extra_paths=(PATH,) * 700)

    with pytest.raises(LoadOptionError):
        option.to_bytes()


@pytest.mark.parametrize(
    ("optional", "text"),
    [
        (b"", ""),
        (bytes.fromhex("4eac0881119f594d850ee21a522c59b2"), "{auto_created_boot_option}"),
        (bytes.fromhex("91af625956449f41a7b91f4f892ab0f6"), "{5962af91-4456-419f-a7b9-1f4f892ab0f6}"),
        (b"RC", "RC"),
        (b"root=/dev/sda2 ro", "root=/dev/sda2 ro"),
        (bytes.fromhex("0000424f"), "0000424f"),
        ("root=/dev/sda2".encode("utf-16-le"), "root=/dev/sda2".encode("utf-16-le").hex()),
    ],
)
def test_optional_data_rendering(optional: bytes, text: str) -> None:
    assert format_optional_data(optional) == text


def test_optional_data_dotted_style() -> None:
    optional = bytes.fromhex("4eac0881119f594d850ee21a522c59b2") + b"\x7f\xff"

    assert format_optional_data(optional, style=OptionalDataStyle.DOTTED) == "N.....YM....R,Y.\x7f."


def test_format_in_dotted_style() -> None:
    option = LoadOption(LoadOptionAttribute.ACTIVE, "UEFI OS", PATH, bytes.fromhex("0000424f"))

    assert option.format(style=OptionalDataStyle.DOTTED).endswith("BOOTX64.EFI)..BO")


def test_decode_ucs2_text() -> None:
    assert decode_ucs2_text("initrd=\\initrd.img\0".encode("utf-16-le")) == "initrd=\\initrd.img"
    assert decode_ucs2_text(bytes.fromhex("0000424f")) is None
    assert decode_ucs2_text(b"abc") is None
    assert decode_ucs2_text(b"\x00\xd8") is None


def test_lenient_valid_option() -> None:
    option = LoadOption(LoadOptionAttribute.ACTIVE, "SwitchOS", PATH, b"RC")

    listing = parse_lenient(option.to_bytes())

    assert listing.error is None
    assert listing.option == option
    assert listing.format() == option.format()


def test_lenient_shows_nodes_before_bad_node() -> None:
    description = "Broken\0".encode("utf-16-le")
    hard_drive = PATH.nodes[0].to_bytes()
    path = hard_drive + bytes.fromhex("0404ff00") + END_ENTIRE_NODE.to_bytes()
    data = raw_option(1, description, path, b"RC")

    listing = parse_lenient(data)

    assert listing.option is None
    assert listing.active
    assert listing.description == "Broken"
    assert listing.device_path is not None
    assert listing.device_path.format() == f"HD(1,GPT,{GUID},0x40,0xf000)"
    assert listing.optional_data == b"RC"
    assert listing.error is not None
    assert listing.error.offset == 6 + len(description) + len(hard_drive)
    assert "[invalid:" in listing.format()


def test_lenient_junk_after_end_keeps_optional_data() -> None:
    description = "x\0".encode("utf-16-le")
    data = raw_option(1, description, PATH.to_bytes() + b"AMBO", b"\x01\x02")

    listing = parse_lenient(data)

    assert listing.error is not None
    assert listing.device_path == PATH
    assert listing.optional_data == b"\x01\x02"


def test_lenient_description_without_terminator() -> None:
    data = raw_option(1, "ubunt".encode("utf-16-le") + b"u", b"", length=0)

    listing = parse_lenient(data)

    assert listing.description == "ubunt"
    assert listing.device_path is None
    assert isinstance(listing.error, LoadOptionError)


def test_lenient_too_short() -> None:
    listing = parse_lenient(b"\x01")

    assert listing.attributes is None
    assert listing.error is not None
    assert listing.format().startswith("\t [invalid:")


def test_to_bytes_matches_virt_firmware() -> None:
    # virt-firmware is an independent encoder of EFI_LOAD_OPTION.
    for optional in (b"", "initrd=\\initrd.img\0".encode("utf-16-le")):
        expected = virt_firmware_load_option("SwitchOS", PATH.to_bytes(), optional)

        assert LoadOption(LoadOptionAttribute.ACTIVE, "SwitchOS", PATH, optional).to_bytes() == expected
        assert LoadOption.from_bytes(expected).optional_data == optional
