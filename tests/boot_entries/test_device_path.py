"""Device path decoding, encoding and text rendering.

Expected texts follow what efibootmgr prints through libefivar, except for
File(), which efivar 38 and newer print as a bare path.
"""

import struct
import uuid

import pytest

from testbed.firmware import hard_drive_file_path

from switchos.boot_entries.device_path import (
    END_ENTIRE_NODE,
    END_INSTANCE_NODE,
    CodecError,
    DevicePath,
    DevicePathError,
    DevicePathNode,
    MediaSubtype,
    NodeType,
    PartitionFormat,
    SignatureType,
    make_file_path,
    parse_device_path_list,
)
from switchos.errors import InvalidInputError

END = "7fff0400"
GUID = uuid.UUID("998c78fe-8b1b-4f2e-bf42-424e8563aa70")
GUID_LE = GUID.bytes_le.hex()


def node(node_type: int, subtype: int, data_hex: str) -> str:
    """Return the hex of one node with its header."""
    data = bytes.fromhex(data_hex)
    return struct.pack("<BBH", node_type, subtype, 4 + len(data)).hex() + data.hex()


def le(guid: str) -> str:
    """Return the hex of a GUID in its on-disk (mixed-endian) byte order."""
    return uuid.UUID(guid).bytes_le.hex()


def ucs2(text: str) -> str:
    return (text + "\0").encode("utf-16-le").hex()


NODE_TEXTS = [
    # Hardware
    (node(1, 1, "0314"), "Pci(0x14,0x3)"),
    (node(1, 2, "05"), "PcCard(0x5)"),
    (node(1, 3, "0b000000" + "00a0b30c00000000" + "ff0ffa0c00000000"), "MemoryMapped(11,0xcb3a000,0xcfa0fff)"),
    (
        node(1, 4, "8b12e85cec2cf040837280640e3dc858" + "0200"),
        "VenHw(5ce8128b-2cec-40f0-8372-80640e3dc858,0200)",
    ),
    (node(1, 4, "8b12e85cec2cf040837280640e3dc858"), "VenHw(5ce8128b-2cec-40f0-8372-80640e3dc858)"),
    (node(1, 4, uuid.UUID("cf31fac5-c24e-11d2-85f3-00a0c93ec93b").bytes_le.hex() + "80000000"), "EDD10(0x80)"),
    (node(1, 5, "02000000"), "Ctrl(0x2)"),
    (node(1, 6, "01" + "00f0000000000000"), "BMC(1,0xf000)"),
    (node(1, 0x55, "abcd"), "HardwarePath(85,abcd)"),
    # ACPI
    (node(2, 1, "d041030a" + "00000000"), "PciRoot(0x0)"),
    (node(2, 1, "d041030a" + "03000000"), "PciRoot(0x3)"),
    (node(2, 1, "d041080a" + "01000000"), "PcieRoot(0x1)"),
    (node(2, 1, "d041050a" + "00000000"), "AcpiContainer()"),
    (node(2, 1, "d041090a" + "00000000"), "EmbeddedController()"),
    (node(2, 1, "d0410406" + "00000000"), "Floppy(0x0)"),
    (node(2, 1, "d0410103" + "00000000"), "Keyboard(0x0)"),
    (node(2, 1, "d0410105" + "01000000"), "Serial(0x1)"),
    (node(2, 1, "d0410104" + "00000000"), "Acpi(0x040141d0,0x0)"),
    (node(2, 2, "00000000" * 3 + "564d427573000000"), "AcpiEx(VMBus,,)"),
    (node(2, 2, "d041030a" + "00000000" * 2 + "00" + "3200" + "00"), "PciRoot(2)"),
    (node(2, 2, "d04101ff" + "05000000" + "07000000"), "AcpiEx(0xff0141d0,0x7,0x5)"),
    (node(2, 3, "00010080" + "01010080"), "AcpiAdr(0x80000100,0x80000101)"),
    (node(2, 0xFF, "0102"), "AcpiPath(255,0102)"),
    # Messaging
    (node(3, 1, "0100" + "0000"), "Ata(1,0,0)"),
    (node(3, 2, "7b01" + "0000"), "SCSI(379,0)"),
    (node(3, 3, "00000000" + "0807060504030201" + "0100000000000000"), "Fibre(102030405060708,1)"),
    (node(3, 0x15, "00000000" + "0102030405060708" + "0000000000000001"), "Fibre(102030405060708,1)"),
    (node(3, 4, "00000000" + "efcdab8967452301"), "I1394(0x123456789abcdef)"),
    (node(3, 5, "1300"), "USB(19,0)"),
    (node(3, 6, "07000000"), "I2O(7)"),
    (
        node(3, 9, "01000000" + "0200000000000000" + "0100000000000000" + "0300000000000000" + "0400000000000000" + "0500000000000000"),
        "Infiniband(00000001,12,3,4,5)",
    ),
    (node(3, 0xA, le("e0c14753-f9be-11d2-9a0c-0090273fc14d")), "VenPcAnsi()"),
    (node(3, 0xA, le("dfa66065-b419-11d3-9a2d-0090273fc14d") + "01"), "VenVt100(01)"),
    (node(3, 0xA, "9d9a49372f54894ca02635da142094e4" + "01000000"), "UartFlowControl(Hardware)"),
    (node(3, 0xA, "9d9a49372f54894ca02635da142094e4" + "07000000"), "UartFlowControl(7)"),
    (
        node(3, 0xA, "b4dd87d48b00d911afdc001083ffca4d" + "00000000" + "0807060504030201" + "0000000000000000" + "00" + "00" + "0000"),
        "SAS(102030405060708,0,0,NoTopology)",
    ),
    (
        node(3, 0xA, "d23878bc820f604d8316c068ee79d25b" + "a5388f9ca46ace40bf2f0ade9bc05d6d01"),
        "VenMsg(bc7838d2-0f82-4d60-8316-c068ee79d25b,a5388f9ca46ace40bf2f0ade9bc05d6d01)",
    ),
    (node(3, 0xB, "000c29c1fce5" + "00" * 26 + "00"), "MAC(000c29c1fce5,0)"),
    (node(3, 0xB, "a0369fb532ce" + "00" * 26 + "01"), "MAC(a0369fb532ce,1)"),
    (
        node(3, 0xC, "c0a80002" + "c0a80001" + "0000" + "4500" + "1100" + "01" + "c0a800fe" + "ffffff00"),
        "IPv4(192.168.0.1:69,UDP,Static,192.168.0.2,192.168.0.254,255.255.255.0)",
    ),
    (node(3, 0xC, "00" * 15), "IPv4(0.0.0.0,0,DHCP,0.0.0.0)"),
    (
        node(3, 0xD, "fe800000000000000000000000000001" + "20010db8000000000000000000000002" + "0000" + "5000" + "0600" + "01" + "40" + "00" * 16),
        "IPv6([2001:db8::2]:80,TCP,StatelessAutoConfigure,[fe80::1],[::],64)",
    ),
    (node(3, 0xE, "00000000" + "0000000000000000" + "00" + "01" + "01"), "Uart(115200,8,N,1)"),
    (node(3, 0xE, "00000000" + "8025000000000000" + "07" + "02" + "03"), "Uart(9600,7,E,2)"),
    (node(3, 0xF, "ffff" + "ffff" + "ff" + "ff" + "ff"), "UsbClass(ffff,ffff,255,255)"),
    (node(3, 0xF, "8109" + "5555" + "08" + "06" + "50"), "UsbMassStorage(0x981,0x5555,6,80)"),
    (node(3, 0xF, "0100" + "0200" + "fe" + "01" + "00"), "UsbDeviceFirmwareUpdate(0x1,0x2,0)"),
    (node(3, 0x10, "0000" + "8109" + "5555" + ucs2("SN1")), "UsbWwid(981,5555,0,SN1)"),
    (node(3, 0x11, "03"), "Unit(3)"),
    (node(3, 0x12, "0100" + "0000" + "0000"), "Sata(1,0,0)"),
    (node(3, 0x12, "0000" + "ffff" + "0000"), "Sata(0,65535,0)"),
    (
        node(3, 0x13, "0000" + "0000" + "0000000000000001" + "0100" + b"iqn.2020-01.test:disk\0".hex()),
        "iSCSI(iqn.2020-01.test:disk,1,0x1,None,None,CHAP_BI,TCP)",
    ),
    (node(3, 0x14, "6400"), "Vlan(100)"),
    (node(3, 0x16, "0102030405060708" + "0000000000000000" + "00" + "00" + "0000"), "SAS(102030405060708,0,0,NoTopology)"),
    (node(3, 0x17, "01000000" + "0025387c2e510d96"), "NVMe(0x1,00-25-38-7C-2E-51-0D-96)"),
    (node(3, 0x18, b"http://192.0.2.1/boot.efi".hex()), "Uri(http://192.0.2.1/boot.efi)"),
    (node(3, 0x18, ""), "Uri()"),
    (node(3, 0x19, "0102"), "UFS(1,0x02)"),
    (node(3, 0x1A, "00"), "SD(0)"),
    (node(3, 0x1B, "001122334455"), "Bluetooth(00:11:22:33:44:55)"),
    (node(3, 0x1C, "41" + "00" * 31), "Wi-Fi(41" + ":00" * 31 + ")"),
    (node(3, 0x1D, "02"), "eMMC(2)"),
    (node(3, 0x1E, "001122334455" + "01"), "BluetoothLE(00:11:22:33:44:55,1)"),
    (node(3, 0x1F, "00" + "08080808" + "00" * 12 + "01010101" + "00" * 12), "Dns(8.8.8.8,1.1.1.1)"),
    (node(3, 0x20, GUID_LE), f"NVDIMM({GUID})"),
    (node(3, 0x7E, "01"), "Msg(126,01)"),
    # Media
    (
        node(4, 1, "01000000" + "0008000000000000" + "0000020000000000" + GUID_LE + "02" + "02"),
        f"HD(1,GPT,{GUID},0x800,0x20000)",
    ),
    (
        node(4, 1, "02000000" + "0000af3b00000000" + "0000010000000000" + "a2931e5d" + "00" * 12 + "01" + "01"),
        "HD(2,MBR,0x5d1e93a2,0x3baf0000,0x10000)",
    ),
    (
        node(4, 1, "03000000" + "0100000000000000" + "0200000000000000" + "00" * 16 + "01" + "00"),
        "HD(3,0," + "00" * 16 + ",0x1,0x2)",
    ),
    (node(4, 2, "01000000" + "1000000000000000" + "0020000000000000"), "CDROM(1,0x10,0x2000)"),
    (node(4, 3, le("5023b95c-db26-429b-a648-bd47664c8012")), "VenMedia(5023b95c-db26-429b-a648-bd47664c8012)"),
    (node(4, 4, ucs2("\\EFI\\BOOT\\BOOTX64.EFI")), "File(\\EFI\\BOOT\\BOOTX64.EFI)"),
    (node(4, 5, GUID_LE), f"Media({GUID})"),
    (node(4, 6, "668b1c726c42864e8e993457c46ab0b9"), "FvFile(721c8b66-426c-4e86-8e99-3457c46ab0b9)"),
    (node(4, 7, "edc5b6bdf36b0949837c353f6dcbb6a2"), "FvVol(bdb6c5ed-6bf3-4909-837c-353f6dcbb6a2)"),
    (node(4, 8, "00000000" + "0002000000000000" + "ff03000000000000"), "Offset(0x200,0x3ff)"),
    (
        node(4, 9, "0000001000000000" + "ffffff1000000000" + uuid.UUID("77ab535a-45fc-624b-5560-f7b281d1f96e").bytes_le.hex() + "0000"),
        "VirtualDisk(0x10000000,0x10ffffff,0)",
    ),
    (
        node(4, 9, "0000001000000000" + "ffffff1000000000" + GUID_LE + "0100"),
        f"Ramdisk(0x10000000,0x10ffffff,1,{GUID})",
    ),
    (node(4, 0x20, "0102"), "MediaPath(32,0102)"),
    # BBS
    (node(5, 1, "0200" + "0000" + "00"), "BBS(HD,,0x0)"),
    (node(5, 1, "0600" + "0000" + "00"), "BBS(Network,,0x0)"),
    (node(5, 1, "0800" + "0000" + "00"), "BBS(8,,0x0)"),
    (node(5, 1, "8100" + "0000" + "00"), "BBS(129,,0x0)"),
    (node(5, 1, "0200" + "0005" + b"Notebook Hard Drive\0".hex()), "BBS(HD,Notebook Hard Drive,0x500)"),
    (node(5, 1, "0300" + "0000" + "9e8041" + "00"), "BBS(CDROM,\\x9e\\x80A,0x0)"),
    (node(5, 2, "ab"), "BbsPath(2,ab)"),
    # Unknown type
    (node(0x42, 7, "0102"), "Path(66,7,0102)"),
]


@pytest.mark.parametrize(("node_hex", "text"), NODE_TEXTS)
def test_node_text_and_round_trip(node_hex: str, text: str) -> None:
    data = bytes.fromhex(node_hex + END)

    path = DevicePath.from_bytes(data)

    assert path.format() == text
    assert path.to_bytes() == data
    assert len(path.nodes) == 2


def test_path_nodes_joined_with_slash() -> None:
    data = bytes.fromhex(node(2, 1, "d041030a00000000") + node(1, 1, "0001") + node(3, 0x12, "010000000000") + END)

    assert DevicePath.from_bytes(data).format() == "PciRoot(0x0)/Pci(0x1,0x0)/Sata(1,0,0)"


def test_multi_instance_round_trip() -> None:
    first = node(2, 1, "d041030a00000000") + node(1, 1, "0001")
    second = node(2, 1, "d041030a00000000") + node(1, 1, "0002")
    data = bytes.fromhex(first + "7f010400" + second + END)

    path = DevicePath.from_bytes(data)

    assert path.to_bytes() == data
    assert path.format() == "PciRoot(0x0)/Pci(0x1,0x0),PciRoot(0x0)/Pci(0x2,0x0)"
    assert END_INSTANCE_NODE in path.nodes
    assert [len(instance) for instance in path.instances()] == [2, 2]


def test_end_node_kept_in_nodes() -> None:
    path = DevicePath.from_bytes(bytes.fromhex(node(4, 6, GUID_LE) + END))

    assert path.nodes[-1] == END_ENTIRE_NODE
    assert path.nodes[-1].is_end_entire


def test_node_shorter_than_header_raises() -> None:
    data = bytes.fromhex(node(1, 1, "0001") + "04040200" + END)

    with pytest.raises(DevicePathError) as caught:
        DevicePath.from_bytes(data)

    assert caught.value.offset == 6
    assert "shorter than its 4-byte header" in caught.value.message


def test_zero_length_node_raises() -> None:
    with pytest.raises(DevicePathError) as caught:
        DevicePath.from_bytes(bytes.fromhex("04040000" + END))

    assert caught.value.offset == 0


def test_length_past_end_raises() -> None:
    data = bytes.fromhex(node(1, 1, "0001") + "04042a00" + "00" * 10)

    with pytest.raises(DevicePathError) as caught:
        DevicePath.from_bytes(data)

    assert caught.value.offset == 6
    assert "past the end" in caught.value.message


def test_truncated_header_raises() -> None:
    with pytest.raises(DevicePathError) as caught:
        DevicePath.from_bytes(bytes.fromhex(node(1, 1, "0001") + "7fff"))

    assert caught.value.offset == 6
    assert "truncated" in caught.value.message


def test_missing_end_node_raises() -> None:
    data = bytes.fromhex(node(1, 1, "0001"))

    with pytest.raises(DevicePathError) as caught:
        DevicePath.from_bytes(data)

    assert caught.value.offset == 6
    assert DevicePath.from_bytes(data, strict=False).format() == "Pci(0x1,0x0)"


def test_junk_after_end_strict_raises() -> None:
    data = bytes.fromhex(node(4, 6, GUID_LE) + END + "414d424f")

    with pytest.raises(DevicePathError) as caught:
        DevicePath.from_bytes(data)

    assert caught.value.offset == 24
    assert DevicePath.from_bytes(data, strict=False).to_bytes() == data[:24]


def test_short_hard_drive_node_raises() -> None:
    data = bytes.fromhex(node(4, 1, "01000000" + "00" * 8) + END)

    with pytest.raises(DevicePathError) as caught:
        DevicePath.from_bytes(data)

    assert caught.value.offset == 0
    assert "fewer than the 38" in caught.value.message


def test_odd_length_file_node_raises() -> None:
    data = bytes.fromhex(node(4, 4, "5c0045") + END)

    with pytest.raises(DevicePathError) as caught:
        DevicePath.from_bytes(data)

    assert "odd length" in caught.value.message


def test_error_offset_counts_from_base() -> None:
    with pytest.raises(DevicePathError) as caught:
        DevicePath.from_bytes(bytes.fromhex("0404"), base_offset=100)

    assert caught.value.offset == 100
    assert "byte offset 100" in str(caught.value)


def test_errors_share_codec_base() -> None:
    assert issubclass(DevicePathError, CodecError)


def test_parse_lenient_returns_nodes_and_error() -> None:
    data = bytes.fromhex(node(2, 1, "d041030a00000000") + node(1, 1, "0001") + "0101ff00")

    path, error = DevicePath.parse_lenient(data)

    assert path.format() == "PciRoot(0x0)/Pci(0x1,0x0)"
    assert error is not None
    assert error.offset == 18


def test_parse_lenient_valid_path_has_no_error() -> None:
    data = bytes.fromhex(node(4, 6, GUID_LE) + END)

    path, error = DevicePath.parse_lenient(data)

    assert error is None
    assert path.to_bytes() == data


def test_short_node_formats_generic() -> None:
    short = DevicePathNode(NodeType.MEDIA, MediaSubtype.HARD_DRIVE, b"\x01\x00")

    assert short.format() == "Path(4,1,0100)"


def test_parse_device_path_list_two_paths() -> None:
    first = node(4, 6, GUID_LE) + END
    second = node(1, 1, "0001") + END

    paths = parse_device_path_list(bytes.fromhex(first + second))

    assert [path.format() for path in paths] == [f"FvFile({GUID})", "Pci(0x1,0x0)"]


def test_parse_device_path_list_junk_raises() -> None:
    data = bytes.fromhex(node(4, 6, GUID_LE) + END + "0000424f")

    with pytest.raises(DevicePathError) as caught:
        parse_device_path_list(data, base_offset=50)

    assert caught.value.offset == 50 + 24


def test_make_file_path_bytes() -> None:
    guid = uuid.UUID("49ff6731-5830-4c2f-9ecd-98241ebd9860")

    path = make_file_path(1, 0x40, 0xF000, guid, "/EFI/BOOT/BOOTX64.EFI")

    expected = (
        "04012a00" + "01000000" + "4000000000000000" + "00f0000000000000" + guid.bytes_le.hex() + "0202"
        + "04043000" + ucs2("\\EFI\\BOOT\\BOOTX64.EFI") + END
    )  # fmt: skip
    assert path.to_bytes().hex() == expected
    assert path.format() == f"HD(1,GPT,{guid},0x40,0xf000)/File(\\EFI\\BOOT\\BOOTX64.EFI)"


def test_make_file_path_adds_leading_backslash() -> None:
    path = make_file_path(1, 2048, 4096, GUID, "EFI\\switchos\\payload.efi")

    assert path.file_path() == "\\EFI\\switchos\\payload.efi"


@pytest.mark.parametrize("bad", ["", "/", "\\EFI\\a\0b", "\\EFI\\\U0001f600.efi"])
def test_make_file_path_rejects_bad_path(bad: str) -> None:
    with pytest.raises(InvalidInputError):
        make_file_path(1, 2048, 4096, GUID, bad)


def test_hard_drive_decodes_gpt() -> None:
    path = make_file_path(15, 0x2800, 0x35000, GUID, "\\EFI\\ubuntu\\shimx64.efi")

    hard_drive = path.hard_drive()

    assert hard_drive is not None
    assert hard_drive.partition_number == 15
    assert hard_drive.start_lba == 0x2800
    assert hard_drive.size_lba == 0x35000
    assert hard_drive.signature == GUID
    assert hard_drive.partition_format == PartitionFormat.GPT
    assert hard_drive.signature_type == SignatureType.GUID


def test_hard_drive_decodes_mbr() -> None:
    data = bytes.fromhex(
        node(4, 1, "02000000" + "0000af3b00000000" + "0000010000000000" + "a2931e5d" + "00" * 12 + "01" + "01") + END
    )

    hard_drive = DevicePath.from_bytes(data).hard_drive()

    assert hard_drive is not None
    assert hard_drive.signature == 0x5D1E93A2
    assert hard_drive.partition_format == PartitionFormat.MBR


def test_hard_drive_and_file_absent() -> None:
    path = DevicePath.from_bytes(bytes.fromhex(node(5, 1, "020000000000") + END))

    assert path.hard_drive() is None
    assert path.file_path() is None


def test_file_path_joins_split_nodes() -> None:
    data = bytes.fromhex(node(4, 4, ucs2("\\EFI\\")) + node(4, 4, ucs2("BOOT\\BOOTX64.EFI")) + END)

    assert DevicePath.from_bytes(data).file_path() == "\\EFI\\BOOT\\BOOTX64.EFI"


def test_file_node_with_lone_surrogate_round_trips() -> None:
    data = bytes.fromhex(node(4, 4, "5c0000d84100" + "0000") + END)

    path = DevicePath.from_bytes(data)

    assert path.to_bytes() == data
    assert path.file_path() == "\\\ud800A"
    assert path.format() == "File(\\\\ud800A)"


def test_oversized_node_to_bytes_raises() -> None:
    huge = DevicePathNode(NodeType.MEDIA, MediaSubtype.VENDOR, bytes(70000))

    with pytest.raises(DevicePathError):
        huge.to_bytes()


def test_make_file_path_matches_virt_firmware() -> None:
    # virt-firmware is an independent encoder of the same HD()/File() path.
    expected = hard_drive_file_path(
        partition_number=1, start_lba=2048, size_lba=0x100000, partition_guid=GUID, path="\\EFI\\switchos\\payload.efi"
    )

    assert make_file_path(1, 2048, 0x100000, GUID, "\\EFI\\switchos\\payload.efi").to_bytes() == expected
