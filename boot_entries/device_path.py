"""UEFI device paths: decode, encode, and render them as text.

A device path is a packed list of nodes (UEFI 2.10, section 10.2). Every node
starts with the same 4-byte header, ``type: u8, subtype: u8, length: u16 LE``,
where ``length`` counts the header too, and the node's data follows. A path
ends with an End Entire node (7F FF 04 00). An End Instance node (7F 01 04 00)
separates the instances of a multi-instance path.

The text form follows what efibootmgr prints through libefivar (efivar 38 and
39), with three deliberate differences:

- A file path node renders as ``File(\\EFI\\...)``, as efivar 37 and older
  printed it, because the UEFI text form and the rest of SwitchOS use it
  (efivar 38 and newer print the bare path).
- An unknown subtype of a known type renders all of its data bytes, where
  libefivar prints only the first half for ACPI and media nodes.
- IPv6 addresses render in RFC 5952 form in network byte order, where
  libefivar reads each 16-bit group in little-endian order.
- The instances of a multi-instance path are joined by ",", as in the UEFI
  text form, where libefivar prints ",," and then a "/".
"""

from __future__ import annotations

import enum
import ipaddress
import struct
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from switchos.errors import InvalidInputError, SwitchOSError

# Every node starts with type (u8), subtype (u8) and the node length (u16 LE).
NODE_HEADER = struct.Struct("<BBH")


class CodecError(SwitchOSError):
    """Binary UEFI data (a device path, load option or order variable) is malformed.

    ``offset`` is the byte offset of the problem from the start of the data
    handed to the decoder, or None when the problem has no position.
    """

    def __init__(self, message: str, *, offset: int | None, hint: str | None = None) -> None:
        if offset is not None:
            message = f"{message} (at byte offset {offset})"
        super().__init__(message, hint=hint)
        self.offset = offset


class DevicePathError(CodecError):
    """A device path is malformed."""


class NodeType(enum.IntEnum):
    """Device path node types (UEFI 2.10, section 10.3.1)."""

    HARDWARE = 0x01
    ACPI = 0x02
    MESSAGING = 0x03
    MEDIA = 0x04
    BBS = 0x05
    END = 0x7F


class HardwareSubtype(enum.IntEnum):
    PCI = 0x01
    PCCARD = 0x02
    MEMORY_MAPPED = 0x03
    VENDOR = 0x04
    CONTROLLER = 0x05
    BMC = 0x06


class AcpiSubtype(enum.IntEnum):
    ACPI = 0x01
    EXPANDED = 0x02
    ADR = 0x03


class MessagingSubtype(enum.IntEnum):
    ATAPI = 0x01
    SCSI = 0x02
    FIBRE_CHANNEL = 0x03
    IEEE1394 = 0x04
    USB = 0x05
    I2O = 0x06
    INFINIBAND = 0x09
    VENDOR = 0x0A
    MAC = 0x0B
    IPV4 = 0x0C
    IPV6 = 0x0D
    UART = 0x0E
    USB_CLASS = 0x0F
    USB_WWID = 0x10
    LUN = 0x11
    SATA = 0x12
    ISCSI = 0x13
    VLAN = 0x14
    FIBRE_CHANNEL_EX = 0x15
    SAS_EX = 0x16
    NVME_NAMESPACE = 0x17
    URI = 0x18
    UFS = 0x19
    SD = 0x1A
    BLUETOOTH = 0x1B
    WIFI = 0x1C
    EMMC = 0x1D
    BLUETOOTH_LE = 0x1E
    DNS = 0x1F
    NVDIMM = 0x20


class MediaSubtype(enum.IntEnum):
    HARD_DRIVE = 0x01
    CDROM = 0x02
    VENDOR = 0x03
    FILE_PATH = 0x04
    MEDIA_PROTOCOL = 0x05
    FIRMWARE_FILE = 0x06
    FIRMWARE_VOLUME = 0x07
    RELATIVE_OFFSET = 0x08
    RAM_DISK = 0x09


class BbsSubtype(enum.IntEnum):
    BBS = 0x01


class EndSubtype(enum.IntEnum):
    INSTANCE = 0x01
    ENTIRE = 0xFF


class PartitionFormat(enum.IntEnum):
    """The MBRType field of a hard drive node."""

    MBR = 0x01
    GPT = 0x02


class SignatureType(enum.IntEnum):
    """The SignatureType field of a hard drive node."""

    NONE = 0x00
    MBR = 0x01
    GUID = 0x02


# Data layouts after the 4-byte header, all little-endian (UEFI 2.10, section 10.3).
HARD_DRIVE_DATA = struct.Struct("<IQQ16sBB")  # number, start LBA, size LBA, signature, format, type
CDROM_DATA = struct.Struct("<IQQ")  # boot entry, partition start RBA, sectors
MEMORY_MAPPED_DATA = struct.Struct("<IQQ")  # memory type, start, end address
BMC_DATA = struct.Struct("<BQ")  # interface type, base address
ACPI_DATA = struct.Struct("<II")  # _HID, _UID
ACPI_EXPANDED_DATA = struct.Struct("<III")  # _HID, _UID, _CID, then three ASCIIZ strings
ATAPI_DATA = struct.Struct("<BBH")  # primary/secondary, master/slave, LUN
SCSI_DATA = struct.Struct("<HH")  # target, LUN
FIBRE_CHANNEL_DATA = struct.Struct("<IQQ")  # reserved, WWN, LUN
FIBRE_CHANNEL_EX_DATA = struct.Struct(">4xQQ")  # WWN and LUN are stored as big-endian byte arrays
IEEE1394_DATA = struct.Struct("<IQ")  # reserved, GUID
INFINIBAND_DATA = struct.Struct("<IQQQQQ")  # flags, port GID (low, high), IOC GUID, target port, device
MAC_DATA = struct.Struct("<32sB")  # address, interface type
IPV4_DATA = struct.Struct("<4s4sHHHB")  # local, remote, local port, remote port, protocol, static
IPV4_DATA_EXTRA = struct.Struct("<4s4s")  # gateway, subnet mask (UEFI 2.4 and later)
IPV6_DATA = struct.Struct("<16s16sHHHB")  # local, remote, ports, protocol, origin
IPV6_DATA_EXTRA = struct.Struct("<B16s")  # prefix length, gateway (UEFI 2.4 and later)
UART_DATA = struct.Struct("<IQBBB")  # reserved, baud rate, data bits, parity, stop bits
USB_CLASS_DATA = struct.Struct("<HHBBB")  # vendor, product, class, subclass, protocol
USB_WWID_DATA = struct.Struct("<HHH")  # interface, vendor, product, then the UCS-2 serial number
SATA_DATA = struct.Struct("<HHH")  # HBA port, port multiplier port, LUN
ISCSI_DATA = struct.Struct("<HH8sH")  # protocol, options, LUN (big-endian bytes), TPGT, then the name
NVME_DATA = struct.Struct("<I8s")  # namespace id, IEEE EUI-64
SAS_DATA = struct.Struct("<IQQBBH")  # (vendor node) reserved, address, LUN, topology, bay, RTP
SAS_EX_ADDRESS = struct.Struct(">QQ")  # (SAS Ex node) address and LUN as big-endian byte arrays
SAS_EX_DATA = struct.Struct("<16xBBH")  # (SAS Ex node) topology, drive bay, RTP after them
BBS_DATA = struct.Struct("<HH")  # device type, status flags, then the ASCIIZ description
RELATIVE_OFFSET_DATA = struct.Struct("<IQQ")  # reserved, first byte, last byte
RAM_DISK_DATA = struct.Struct("<QQ16sH")  # start, end, disk type GUID, instance
GUID_SIZE = 16

END_ENTIRE = NODE_HEADER.pack(NodeType.END, EndSubtype.ENTIRE, NODE_HEADER.size)

# Vendor GUIDs with their own text forms in libefivar.
EDD10_GUID = uuid.UUID("cf31fac5-c24e-11d2-85f3-00a0c93ec93b")
UART_FLOW_CONTROL_GUID = uuid.UUID("37499a9d-542f-4c89-a026-35da142094e4")
SAS_GUID = uuid.UUID("d487ddb4-008b-11d9-afdc-001083ffca4d")
VENDOR_MESSAGING_LABELS = {
    uuid.UUID("e0c14753-f9be-11d2-9a0c-0090273fc14d"): "VenPcAnsi",
    uuid.UUID("dfa66065-b419-11d3-9a2d-0090273fc14d"): "VenVt100",
    uuid.UUID("7baec70b-57e0-4c76-8e87-2f9e28088343"): "VenVt100Plus",
    uuid.UUID("ad15a0d6-8bec-4acf-a073-d01de77e2d88"): "VenUtf8",
    uuid.UUID("eba4e8d2-3858-41ec-a281-2647ba9660d0"): "DebugPort",
}
RAM_DISK_LABELS = {
    uuid.UUID("77ab535a-45fc-624b-5560-f7b281d1f96e"): "VirtualDisk",
    uuid.UUID("3d5abd30-4175-87ce-6d64-d2ade523c4bb"): "VirtualCD",
    uuid.UUID("5cea02c9-4d07-69d3-269f-4496fbe096f9"): "PersistentVirtualDisk",
    uuid.UUID("08018188-42cd-bb48-100f-5387d53ded3d"): "PersistentVirtualCD",
}

# EISA PNP ids as ACPI _HID values: 0x41D0 ("PNP") in the low half, the device number above it.
PNP_PCI_ROOT = 0x0A0341D0
PNP_CONTAINER_0A05 = 0x0A0541D0
PNP_CONTAINER_0A06 = 0x0A0641D0
PNP_PCIE_ROOT = 0x0A0841D0
PNP_EMBEDDED_CONTROLLER = 0x0A0941D0
PNP_FLOPPY = 0x060441D0
PNP_KEYBOARD = 0x030141D0
PNP_SERIAL = 0x050141D0
ACPI_NVDIMM_ROOT = 0x00128E09  # ACPI0012: 0x8E09 is the compressed "ACP" prefix

BBS_DEVICE_TYPE_NAMES = {1: "Floppy", 2: "HD", 3: "CDROM", 4: "PCMCIA", 5: "USB", 6: "Network"}

USB_CLASS_NAMES = {
    0x01: "UsbAudio",
    0x02: "UsbCDCControl",
    0x03: "UsbHID",
    0x06: "UsbImage",
    0x07: "UsbPrinter",
    0x08: "UsbMassStorage",
    0x09: "UsbHub",
    0x0A: "UsbCDCData",
    0x0B: "UsbSmartCard",
    0x0E: "UsbVideo",
    0xDC: "UsbDiagnostic",
    0xDE: "UsbWireless",
}
USB_CLASS_APPLICATION_SPECIFIC = 0xFE
USB_APPLICATION_SUBCLASS_NAMES = {
    0x01: "UsbDeviceFirmwareUpdate",
    0x02: "UsbIrdaBridge",
    0x03: "UsbTestAndMeasurement",
}

# The generic text name of an unknown subtype per known type (UEFI 2.10, section 10.6.1.6).
GENERIC_NAMES: dict[int, str] = {
    NodeType.HARDWARE: "HardwarePath",
    NodeType.ACPI: "AcpiPath",
    NodeType.MESSAGING: "Msg",
    NodeType.MEDIA: "MediaPath",
    NodeType.BBS: "BbsPath",
}


class _NodeTooShort(Exception):
    """Raised inside the formatters when a node's data is shorter than its layout."""


def _unpack(layout: struct.Struct, data: bytes, offset: int = 0) -> tuple[Any, ...]:
    if len(data) < offset + layout.size:
        raise _NodeTooShort
    return layout.unpack_from(data, offset)


def _guid(data: bytes, offset: int = 0) -> uuid.UUID:
    if len(data) < offset + GUID_SIZE:
        raise _NodeTooShort
    return uuid.UUID(bytes_le=bytes(data[offset : offset + GUID_SIZE]))


def _ascii_z(data: bytes) -> bytes:
    """Return the bytes up to the first NUL, or all of them."""
    end = data.find(b"\0")
    return data if end < 0 else data[:end]


def escape_bytes(raw: bytes) -> str:
    """Render bytes of unknown encoding losslessly: printable ASCII except "\\" as is, the rest as \\xNN."""
    return "".join(
        chr(byte) if 0x20 <= byte < 0x7F and byte != 0x5C else f"\\x{byte:02x}" for byte in raw
    )


def escape_text(text: str) -> str:
    """Make decoded UCS-2 text printable: control characters become \\xNN, lone surrogates \\uXXXX.

    The result always encodes to UTF-8, so a listing cannot fail on a
    firmware string. Other characters, the backslash included, stay as they are.
    """
    parts = []
    for character in text:
        code = ord(character)
        if code < 0x20 or code == 0x7F:
            parts.append(f"\\x{code:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            parts.append(f"\\u{code:04x}")
        else:
            parts.append(character)
    return "".join(parts)


def _ucs2_z(data: bytes) -> str:
    """Decode UCS-2LE up to the first NUL code unit; lone surrogates survive as such."""
    units = len(data) // 2
    for index in range(units):
        if data[2 * index] == 0 and data[2 * index + 1] == 0:
            return data[: 2 * index].decode("utf-16-le", "surrogatepass")
    return data[: 2 * units].decode("utf-16-le", "surrogatepass")


def _ipv4(address: bytes, port: int = 0) -> str:
    text = ".".join(str(byte) for byte in address)
    return f"{text}:{port}" if port > 0 else text


def _ipv6(address: bytes, port: int = 0) -> str:
    text = f"[{ipaddress.IPv6Address(bytes(address)).compressed}]"
    return f"{text}:{port}" if port > 0 else text


def _ip_protocol(protocol: int) -> str:
    return {6: "TCP", 17: "UDP"}.get(protocol, str(protocol))


def _vendor(label: str, data: bytes) -> str:
    guid = _guid(data)
    extra = data[GUID_SIZE:]
    return f"{label}({guid},{extra.hex()})" if extra else f"{label}({guid})"


def _format_hardware(subtype: int, data: bytes) -> str:
    if subtype == HardwareSubtype.PCI:
        function, device = _unpack(struct.Struct("<BB"), data)
        return f"Pci({device:#x},{function:#x})"
    if subtype == HardwareSubtype.PCCARD:
        (function,) = _unpack(struct.Struct("<B"), data)
        return f"PcCard({function:#x})"
    if subtype == HardwareSubtype.MEMORY_MAPPED:
        memory_type, start, end = _unpack(MEMORY_MAPPED_DATA, data)
        return f"MemoryMapped({memory_type},{start:#x},{end:#x})"
    if subtype == HardwareSubtype.VENDOR:
        if _guid(data) == EDD10_GUID and len(data) >= GUID_SIZE + 4:
            (device,) = struct.unpack_from("<I", data, GUID_SIZE)
            return f"EDD10({device:#x})"
        return _vendor("VenHw", data)
    if subtype == HardwareSubtype.CONTROLLER:
        (controller,) = _unpack(struct.Struct("<I"), data)
        return f"Ctrl({controller:#x})"
    if subtype == HardwareSubtype.BMC:
        interface, base = _unpack(BMC_DATA, data)
        return f"BMC({interface},{base:#x})"
    return _generic(NodeType.HARDWARE, subtype, data)


def _format_acpi(subtype: int, data: bytes) -> str:
    if subtype == AcpiSubtype.ACPI:
        hid, uid = _unpack(ACPI_DATA, data)
        simple = {
            PNP_PCI_ROOT: f"PciRoot({uid:#x})",
            PNP_PCIE_ROOT: f"PcieRoot({uid:#x})",
            PNP_CONTAINER_0A05: "AcpiContainer()",
            PNP_CONTAINER_0A06: "AcpiContainer()",
            PNP_EMBEDDED_CONTROLLER: "EmbeddedController()",
            PNP_FLOPPY: f"Floppy({uid:#x})",
            PNP_KEYBOARD: f"Keyboard({uid:#x})",
            PNP_SERIAL: f"Serial({uid:#x})",
            # NOTE: libefivar also renders the NvDimm() children from the next
            # node here; this renders that _ADR node on its own as AcpiAdr().
            ACPI_NVDIMM_ROOT: "NvRoot()",
        }
        return simple.get(hid, f"Acpi(0x{hid:08x},{uid:#x})")
    if subtype == AcpiSubtype.EXPANDED:
        return _format_acpi_expanded(data)
    if subtype == AcpiSubtype.ADR:
        if len(data) < 4:
            raise _NodeTooShort
        count = len(data) // 4
        addresses = struct.unpack_from(f"<{count}I", data)
        return "AcpiAdr(" + ",".join(f"{address:#x}" for address in addresses) + ")"
    return _generic(NodeType.ACPI, subtype, data)


def _format_acpi_expanded(data: bytes) -> str:
    hid, uid, cid = _unpack(ACPI_EXPANDED_DATA, data)
    # The three ASCIIZ strings follow in the order _HIDSTR, _UIDSTR, _CIDSTR.
    # A string that is present, even empty, replaces the number in the text.
    # Where the node has no room for a string, the number stays.
    strings: list[str | None] = []
    rest = data[ACPI_EXPANDED_DATA.size :]
    while rest and len(strings) < 3:
        value = _ascii_z(rest)
        strings.append(escape_bytes(value))
        rest = rest[len(value) + 1 :]
    strings += [None] * (3 - len(strings))
    hid_text, uid_text, cid_text = strings
    if uid_text is not None:
        if hid == PNP_PCI_ROOT:
            return f"PciRoot({uid_text})"
        if hid == PNP_PCIE_ROOT:
            return f"PcieRoot({uid_text})"
        if hid in (PNP_CONTAINER_0A05, PNP_CONTAINER_0A06):
            return f"AcpiContainer({uid_text})"
        if hid == PNP_EMBEDDED_CONTROLLER:
            return "EmbeddedController()"
    hid_part = hid_text if hid_text is not None else f"{hid:#x}"
    cid_part = cid_text if cid_text is not None else f"{cid:#x}"
    uid_part = uid_text if uid_text is not None else f"{uid:#x}"
    return f"AcpiEx({hid_part},{cid_part},{uid_part})"


def _format_sas(address: int, lun: int, topology: int, bay: int, rtp: int) -> str:
    # Topology byte: bits 0-3 tell whether more information follows (1: this
    # byte, 2: this and the next byte), bits 4-5 SAS/SATA and internal/external,
    # bit 6 direct or expander connection (UEFI 2.10, section 10.3.4.18).
    more_info = topology & 0x0F
    text = f"SAS({address:x},{lun:x},{rtp:x},"
    if not more_info:
        return text + "NoTopology)"
    device = (topology >> 4) & 0x03
    kind = "SAS" if device in (0, 2) else "SATA"
    location = "External" if device in (2, 3) else "Internal"
    connection = "Expanded" if topology & 0x40 else "Direct"
    text += f"{kind},{location},{connection}"
    if more_info == 2:
        text += f",{bay + 1}"
    return text + ")"


def _format_messaging_vendor(data: bytes) -> str:
    guid = _guid(data)
    extra = data[GUID_SIZE:]
    if guid in VENDOR_MESSAGING_LABELS:
        return f"{VENDOR_MESSAGING_LABELS[guid]}({extra.hex()})"
    if guid == UART_FLOW_CONTROL_GUID:
        (flow,) = _unpack(struct.Struct("<I"), extra)
        labels = {0: "None", 1: "Hardware", 2: "XonXoff"}
        return f"UartFlowControl({labels.get(flow, str(flow))})"
    if guid == SAS_GUID:
        _, address, lun, topology, bay, rtp = _unpack(SAS_DATA, extra)
        return _format_sas(address, lun, topology, bay, rtp)
    return _vendor("VenMsg", data)


def _format_usb_class(data: bytes) -> str:
    vendor, product, device_class, subclass, protocol = _unpack(USB_CLASS_DATA, data)
    if device_class in USB_CLASS_NAMES:
        label = USB_CLASS_NAMES[device_class]
        return f"{label}({vendor:#x},{product:#x},{subclass},{protocol})"
    if device_class == USB_CLASS_APPLICATION_SPECIFIC and subclass in USB_APPLICATION_SUBCLASS_NAMES:
        label = USB_APPLICATION_SUBCLASS_NAMES[subclass]
        return f"{label}({vendor:#x},{product:#x},{protocol})"
    # libefivar leaves the class out of this form.
    return f"UsbClass({vendor:x},{product:x},{subclass},{protocol})"


def _format_ipv4(data: bytes) -> str:
    local, remote, local_port, remote_port, protocol, static = _unpack(IPV4_DATA, data)
    parts = [
        _ipv4(remote, remote_port),
        _ip_protocol(protocol),
        "Static" if static else "DHCP",
        _ipv4(local, local_port),
    ]
    # Nodes written before UEFI 2.4 end here, without gateway and subnet mask.
    if len(data) >= IPV4_DATA.size + IPV4_DATA_EXTRA.size:
        gateway, netmask = IPV4_DATA_EXTRA.unpack_from(data, IPV4_DATA.size)
        parts += [_ipv4(gateway), _ipv4(netmask)]
    return "IPv4(" + ",".join(parts) + ")"


def _format_ipv6(data: bytes) -> str:
    local, remote, local_port, remote_port, protocol, origin = _unpack(IPV6_DATA, data)
    origins = {0: "Static", 1: "StatelessAutoConfigure", 2: "StatefulAutoConfigure"}
    parts = [
        _ipv6(remote, remote_port),
        _ip_protocol(protocol),
        origins.get(origin, f"{origin:#x}"),
        _ipv6(local, local_port),
    ]
    # Nodes written before UEFI 2.4 end here, without prefix length and gateway.
    if len(data) >= IPV6_DATA.size + IPV6_DATA_EXTRA.size:
        prefix, gateway = IPV6_DATA_EXTRA.unpack_from(data, IPV6_DATA.size)
        parts += [_ipv6(gateway), str(prefix)]
    return "IPv6(" + ",".join(parts) + ")"


def _format_uart(data: bytes) -> str:
    _, baud, data_bits, parity, stop_bits = _unpack(UART_DATA, data)
    # Zero means "the default", which libefivar prints as 115200 baud, 8 bits.
    parity_text = "DNEOMS"[parity] if parity <= 5 else str(parity)
    stop_text = ("D", "1", "1.5", "2")[stop_bits] if stop_bits <= 3 else str(stop_bits)
    return f"Uart({baud or 115200},{data_bits or 8},{parity_text},{stop_text})"


def _format_iscsi(data: bytes) -> str:
    protocol, options, lun, tpgt = _unpack(ISCSI_DATA, data)
    name = escape_bytes(_ascii_z(data[ISCSI_DATA.size :]))
    header_digest = "CRC32" if options & 0x0002 else "None"
    data_digest = "CRC32" if (options >> 2) & 0x0002 else "None"
    if (options >> 10) & 0x0002:
        authentication = "None"
    elif (options >> 12) & 0x0001:
        authentication = "CHAP_UNI"
    else:
        authentication = "CHAP_BI"
    transport = "TCP" if protocol == 0 else "Unknown"
    lun_value = int.from_bytes(lun, "big")
    return (
        f"iSCSI({name},{tpgt},{lun_value:#x},{header_digest},{data_digest},"
        f"{authentication},{transport})"
    )


def _format_dns(data: bytes) -> str:
    if not data:
        raise _NodeTooShort
    is_ipv6 = data[0]
    addresses = []
    for start in range(1, len(data) - GUID_SIZE + 1, GUID_SIZE):
        entry = data[start : start + GUID_SIZE]
        addresses.append(_ipv6(entry) if is_ipv6 else _ipv4(entry[:4]))
    return "Dns(" + ",".join(addresses) + ")"


def _format_messaging(subtype: int, data: bytes) -> str:
    simple: dict[int, Callable[[bytes], str]] = {
        MessagingSubtype.ATAPI: lambda d: "Ata({},{},{})".format(*_unpack(ATAPI_DATA, d)),
        MessagingSubtype.SCSI: lambda d: "SCSI({},{})".format(*_unpack(SCSI_DATA, d)),
        MessagingSubtype.FIBRE_CHANNEL: lambda d: "Fibre({1:x},{2:x})".format(
            *_unpack(FIBRE_CHANNEL_DATA, d)
        ),
        MessagingSubtype.FIBRE_CHANNEL_EX: lambda d: "Fibre({0:x},{1:x})".format(
            *_unpack(FIBRE_CHANNEL_EX_DATA, d)
        ),
        MessagingSubtype.IEEE1394: lambda d: "I1394({1:#x})".format(*_unpack(IEEE1394_DATA, d)),
        MessagingSubtype.USB: lambda d: "USB({},{})".format(*_unpack(struct.Struct("<BB"), d)),
        MessagingSubtype.I2O: lambda d: "I2O({})".format(*_unpack(struct.Struct("<I"), d)),
        MessagingSubtype.INFINIBAND: lambda d: "Infiniband({0:08x},{2:x}{1:x},{3:x},{4},{5})".format(
            *_unpack(INFINIBAND_DATA, d)
        ),
        MessagingSubtype.VENDOR: _format_messaging_vendor,
        MessagingSubtype.MAC: _format_mac,
        MessagingSubtype.IPV4: _format_ipv4,
        MessagingSubtype.IPV6: _format_ipv6,
        MessagingSubtype.UART: _format_uart,
        MessagingSubtype.USB_CLASS: _format_usb_class,
        MessagingSubtype.USB_WWID: _format_usb_wwid,
        MessagingSubtype.LUN: lambda d: "Unit({})".format(*_unpack(struct.Struct("<B"), d)),
        MessagingSubtype.SATA: lambda d: "Sata({},{},{})".format(*_unpack(SATA_DATA, d)),
        MessagingSubtype.ISCSI: _format_iscsi,
        MessagingSubtype.VLAN: lambda d: "Vlan({})".format(*_unpack(struct.Struct("<H"), d)),
        MessagingSubtype.SAS_EX: lambda d: _format_sas(*_unpack(SAS_EX_ADDRESS, d), *_unpack(SAS_EX_DATA, d)),
        MessagingSubtype.NVME_NAMESPACE: _format_nvme,
        MessagingSubtype.URI: lambda d: f"Uri({escape_bytes(_ascii_z(d))})",
        MessagingSubtype.UFS: lambda d: "UFS({},0x{:02x})".format(*_unpack(struct.Struct("<BB"), d)),
        MessagingSubtype.SD: lambda d: "SD({})".format(*_unpack(struct.Struct("<B"), d)),
        MessagingSubtype.BLUETOOTH: lambda d: f"Bluetooth({_colon_hex(d, 6)})",
        MessagingSubtype.WIFI: lambda d: f"Wi-Fi({_colon_hex(d, 32)})",
        MessagingSubtype.EMMC: lambda d: "eMMC({})".format(*_unpack(struct.Struct("<B"), d)),
        MessagingSubtype.BLUETOOTH_LE: lambda d: "BluetoothLE({},{})".format(
            _colon_hex(d, 6), _unpack(struct.Struct("<6xB"), d)[0]
        ),
        MessagingSubtype.DNS: _format_dns,
        MessagingSubtype.NVDIMM: lambda d: f"NVDIMM({_guid(d)})",
    }
    formatter = simple.get(subtype)
    if formatter is None:
        return _generic(NodeType.MESSAGING, subtype, data)
    return formatter(data)


def _colon_hex(data: bytes, size: int) -> str:
    if len(data) < size:
        raise _NodeTooShort
    return ":".join(f"{byte:02x}" for byte in data[:size])


def _format_mac(data: bytes) -> str:
    address, interface_type = _unpack(MAC_DATA, data)
    # Interface types 0 and 1 (Ethernet) use the first 6 of the 32 address bytes.
    printed = address[:6] if interface_type < 2 else address
    return f"MAC({printed.hex()},{interface_type})"


def _format_usb_wwid(data: bytes) -> str:
    interface, vendor, product = _unpack(USB_WWID_DATA, data)
    serial = escape_text(_ucs2_z(data[USB_WWID_DATA.size :]))
    return f"UsbWwid({vendor:x},{product:x},{interface},{serial})"


def _format_nvme(data: bytes) -> str:
    namespace, eui = _unpack(NVME_DATA, data)
    return f"NVMe({namespace:#x},{'-'.join(f'{byte:02X}' for byte in eui)})"


def _format_hard_drive(data: bytes) -> str:
    number, start, size, signature, _, signature_type = _unpack(HARD_DRIVE_DATA, data)
    if signature_type == SignatureType.MBR:
        (disk_signature,) = struct.unpack_from("<I", signature)
        return f"HD({number},MBR,{disk_signature:#x},{start:#x},{size:#x})"
    if signature_type == SignatureType.GUID:
        return f"HD({number},GPT,{uuid.UUID(bytes_le=signature)},{start:#x},{size:#x})"
    return f"HD({number},{signature_type},{signature.hex()},{start:#x},{size:#x})"


def _format_ram_disk(data: bytes) -> str:
    start, end, disk_type, instance = _unpack(RAM_DISK_DATA, data)
    disk_guid = uuid.UUID(bytes_le=disk_type)
    label = RAM_DISK_LABELS.get(disk_guid)
    if label:
        return f"{label}({start:#x},{end:#x},{instance})"
    return f"Ramdisk({start:#x},{end:#x},{instance},{disk_guid})"


def _format_media(subtype: int, data: bytes) -> str:
    if subtype == MediaSubtype.HARD_DRIVE:
        return _format_hard_drive(data)
    if subtype == MediaSubtype.CDROM:
        entry, start, sectors = _unpack(CDROM_DATA, data)
        return f"CDROM({entry},{start:#x},{sectors:#x})"
    if subtype == MediaSubtype.VENDOR:
        return _vendor("VenMedia", data)
    if subtype == MediaSubtype.FILE_PATH:
        return f"File({escape_text(_ucs2_z(data))})"
    if subtype == MediaSubtype.MEDIA_PROTOCOL:
        return f"Media({_guid(data)})"
    if subtype == MediaSubtype.FIRMWARE_FILE:
        return f"FvFile({_guid(data)})"
    if subtype == MediaSubtype.FIRMWARE_VOLUME:
        return f"FvVol({_guid(data)})"
    if subtype == MediaSubtype.RELATIVE_OFFSET:
        _, first, last = _unpack(RELATIVE_OFFSET_DATA, data)
        return f"Offset({first:#x},{last:#x})"
    if subtype == MediaSubtype.RAM_DISK:
        return _format_ram_disk(data)
    return _generic(NodeType.MEDIA, subtype, data)


def _format_bbs(subtype: int, data: bytes) -> str:
    if subtype != BbsSubtype.BBS:
        return _generic(NodeType.BBS, subtype, data)
    device_type, status = _unpack(BBS_DATA, data)
    # The description is an ASCIIZ string of unknown encoding; firmware has
    # been seen storing bytes that are not valid UTF-8 there.
    description = escape_bytes(_ascii_z(data[BBS_DATA.size :]))
    type_text = BBS_DEVICE_TYPE_NAMES.get(device_type, str(device_type))
    return f"BBS({type_text},{description},{status:#x})"


def _generic(node_type: int, subtype: int, data: bytes) -> str:
    name = GENERIC_NAMES.get(node_type)
    if name is None:
        return f"Path({node_type},{subtype},{data.hex()})"
    return f"{name}({subtype},{data.hex()})"


_FORMATTERS: dict[int, Callable[[int, bytes], str]] = {
    NodeType.HARDWARE: _format_hardware,
    NodeType.ACPI: _format_acpi,
    NodeType.MESSAGING: _format_messaging,
    NodeType.MEDIA: _format_media,
    NodeType.BBS: _format_bbs,
}

# The minimum data length (after the header) of each node whose text form reads
# fixed fields; a strict decode rejects shorter nodes.
MINIMUM_DATA_LENGTH: dict[tuple[int, int], int] = {
    (NodeType.HARDWARE, HardwareSubtype.PCI): 2,
    (NodeType.HARDWARE, HardwareSubtype.PCCARD): 1,
    (NodeType.HARDWARE, HardwareSubtype.MEMORY_MAPPED): MEMORY_MAPPED_DATA.size,
    (NodeType.HARDWARE, HardwareSubtype.VENDOR): GUID_SIZE,
    (NodeType.HARDWARE, HardwareSubtype.CONTROLLER): 4,
    (NodeType.HARDWARE, HardwareSubtype.BMC): BMC_DATA.size,
    (NodeType.ACPI, AcpiSubtype.ACPI): ACPI_DATA.size,
    (NodeType.ACPI, AcpiSubtype.EXPANDED): ACPI_EXPANDED_DATA.size,
    (NodeType.ACPI, AcpiSubtype.ADR): 4,
    (NodeType.MESSAGING, MessagingSubtype.ATAPI): ATAPI_DATA.size,
    (NodeType.MESSAGING, MessagingSubtype.SCSI): SCSI_DATA.size,
    (NodeType.MESSAGING, MessagingSubtype.FIBRE_CHANNEL): FIBRE_CHANNEL_DATA.size,
    (NodeType.MESSAGING, MessagingSubtype.FIBRE_CHANNEL_EX): FIBRE_CHANNEL_EX_DATA.size,
    (NodeType.MESSAGING, MessagingSubtype.IEEE1394): IEEE1394_DATA.size,
    (NodeType.MESSAGING, MessagingSubtype.USB): 2,
    (NodeType.MESSAGING, MessagingSubtype.I2O): 4,
    (NodeType.MESSAGING, MessagingSubtype.INFINIBAND): INFINIBAND_DATA.size,
    (NodeType.MESSAGING, MessagingSubtype.VENDOR): GUID_SIZE,
    (NodeType.MESSAGING, MessagingSubtype.MAC): MAC_DATA.size,
    (NodeType.MESSAGING, MessagingSubtype.IPV4): IPV4_DATA.size,
    (NodeType.MESSAGING, MessagingSubtype.IPV6): IPV6_DATA.size,
    (NodeType.MESSAGING, MessagingSubtype.UART): UART_DATA.size,
    (NodeType.MESSAGING, MessagingSubtype.USB_CLASS): USB_CLASS_DATA.size,
    (NodeType.MESSAGING, MessagingSubtype.USB_WWID): USB_WWID_DATA.size,
    (NodeType.MESSAGING, MessagingSubtype.LUN): 1,
    (NodeType.MESSAGING, MessagingSubtype.SATA): SATA_DATA.size,
    (NodeType.MESSAGING, MessagingSubtype.ISCSI): ISCSI_DATA.size,
    (NodeType.MESSAGING, MessagingSubtype.VLAN): 2,
    (NodeType.MESSAGING, MessagingSubtype.SAS_EX): SAS_EX_DATA.size,
    (NodeType.MESSAGING, MessagingSubtype.NVME_NAMESPACE): NVME_DATA.size,
    (NodeType.MESSAGING, MessagingSubtype.UFS): 2,
    (NodeType.MESSAGING, MessagingSubtype.SD): 1,
    (NodeType.MESSAGING, MessagingSubtype.BLUETOOTH): 6,
    (NodeType.MESSAGING, MessagingSubtype.WIFI): 32,
    (NodeType.MESSAGING, MessagingSubtype.EMMC): 1,
    (NodeType.MESSAGING, MessagingSubtype.BLUETOOTH_LE): 7,
    (NodeType.MESSAGING, MessagingSubtype.DNS): 1,
    (NodeType.MESSAGING, MessagingSubtype.NVDIMM): GUID_SIZE,
    (NodeType.MEDIA, MediaSubtype.HARD_DRIVE): HARD_DRIVE_DATA.size,
    (NodeType.MEDIA, MediaSubtype.CDROM): CDROM_DATA.size,
    (NodeType.MEDIA, MediaSubtype.VENDOR): GUID_SIZE,
    (NodeType.MEDIA, MediaSubtype.MEDIA_PROTOCOL): GUID_SIZE,
    (NodeType.MEDIA, MediaSubtype.FIRMWARE_FILE): GUID_SIZE,
    (NodeType.MEDIA, MediaSubtype.FIRMWARE_VOLUME): GUID_SIZE,
    (NodeType.MEDIA, MediaSubtype.RELATIVE_OFFSET): RELATIVE_OFFSET_DATA.size,
    (NodeType.MEDIA, MediaSubtype.RAM_DISK): RAM_DISK_DATA.size,
    (NodeType.BBS, BbsSubtype.BBS): BBS_DATA.size,
}


@dataclass(frozen=True)
class HardDrive:
    """The decoded fields of a hard drive media node (UEFI 2.10, section 10.3.5.1).

    ``start_lba`` and ``size_lba`` count logical blocks of the disk, which are
    4096 bytes on 4Kn disks. ``signature`` is the partition GUID for GPT, the
    32-bit disk signature for MBR, and the raw 16 bytes otherwise.
    """

    partition_number: int
    start_lba: int
    size_lba: int
    signature: uuid.UUID | int | bytes
    partition_format: int
    signature_type: int


@dataclass(frozen=True)
class DevicePathNode:
    """One device path node: its type, subtype and the data after the 4-byte header."""

    type: int
    subtype: int
    data: bytes

    @property
    def is_end_entire(self) -> bool:
        return self.type == NodeType.END and self.subtype == EndSubtype.ENTIRE

    @property
    def is_end_instance(self) -> bool:
        return self.type == NodeType.END and self.subtype == EndSubtype.INSTANCE

    def to_bytes(self) -> bytes:
        """Encode the node with its header; raise DevicePathError if the data exceeds the u16 length."""
        length = NODE_HEADER.size + len(self.data)
        if length > 0xFFFF:
            raise DevicePathError(
                f"Device path node {self.type:#04x}/{self.subtype:#04x} is {length} bytes long, "
                "more than the 65535 a node length can hold",
                offset=None,
            )
        return NODE_HEADER.pack(self.type, self.subtype, length) + self.data

    def format(self) -> str:
        """Render the node in the text form that efibootmgr prints.

        End Entire renders as an empty string and End Instance as ",". A node
        too short for its layout renders in the generic ``Path(type,subtype,hex)``
        form, so listing never fails on a node that a lenient read let through.
        """
        if self.is_end_entire:
            return ""
        if self.is_end_instance:
            return ","
        formatter = _FORMATTERS.get(self.type)
        try:
            if formatter is None:
                return _generic(self.type, self.subtype, self.data)
            return formatter(self.subtype, self.data)
        except _NodeTooShort:
            return f"Path({self.type},{self.subtype},{self.data.hex()})"

    def check(self, offset: int) -> None:
        """Raise DevicePathError if the node's data is too short or invalid for its kind.

        ``offset`` is the position of the node's header, used in the error.
        """
        minimum = MINIMUM_DATA_LENGTH.get((self.type, self.subtype), 0)
        if len(self.data) < minimum:
            raise DevicePathError(
                f"Device path node {self.format()} has {len(self.data)} data bytes, "
                f"fewer than the {minimum} its type needs",
                offset=offset,
            )
        if (self.type, self.subtype) == (NodeType.MEDIA, MediaSubtype.FILE_PATH) and len(self.data) % 2:
            raise DevicePathError(
                f"File path node has an odd length of {len(self.data)} UCS-2 bytes",
                offset=offset,
            )


def _read_node(data: bytes, position: int, base_offset: int) -> DevicePathNode:
    """Decode the node at ``position``; raise DevicePathError on a bad header."""
    offset = base_offset + position
    if len(data) - position < NODE_HEADER.size:
        raise DevicePathError(
            f"Device path node header is truncated: {len(data) - position} of 4 bytes present",
            offset=offset,
        )
    node_type, subtype, length = NODE_HEADER.unpack_from(data, position)
    if length < NODE_HEADER.size:
        raise DevicePathError(
            f"Device path node {node_type:#04x}/{subtype:#04x} has length {length}, "
            "shorter than its 4-byte header",
            offset=offset,
        )
    if position + length > len(data):
        raise DevicePathError(
            f"Device path node {node_type:#04x}/{subtype:#04x} has length {length}, "
            f"past the end of the data ({len(data) - position} bytes left)",
            offset=offset,
        )
    return DevicePathNode(node_type, subtype, bytes(data[position + NODE_HEADER.size : position + length]))


@dataclass(frozen=True)
class DevicePath:
    """A device path: its nodes in order, including the End Entire node that ends it.

    Keeping the End nodes in ``nodes`` makes ``to_bytes`` the plain
    concatenation of the nodes, so decoding and encoding round-trip byte for
    byte, End Instance nodes of multi-instance paths included. A path built by
    hand should end with ``END_ENTIRE_NODE``; an empty path (no nodes) is the
    empty FilePathList of a load option.
    """

    nodes: tuple[DevicePathNode, ...]

    @classmethod
    def from_bytes(cls, data: bytes, *, strict: bool = True, base_offset: int = 0) -> DevicePath:
        """Decode one device path that fills ``data``.

        Raises DevicePathError (offsets counted from ``base_offset``) for a
        truncated node, a length shorter than the header or past the end, a
        node too short for its type, a missing End Entire node, and (when
        ``strict``) bytes after the End Entire node. With ``strict=False`` the
        bytes after the End Entire node are ignored and a path that stops
        without one is returned as read.
        """
        path, end = _read_path(data, 0, base_offset, require_end=strict)
        if strict and end != len(data):
            raise DevicePathError(
                f"{len(data) - end} bytes follow the end of the device path",
                offset=base_offset + end,
                hint="Read the data as a list of device paths, or list it leniently.",
            )
        return path

    @classmethod
    def parse_lenient(cls, data: bytes, *, base_offset: int = 0) -> tuple[DevicePath, CodecError | None]:
        """Decode as many nodes as possible and return them with the first error, or None."""
        nodes: list[DevicePathNode] = []
        position = 0
        while position < len(data):
            try:
                node = _read_node(data, position, base_offset)
                node.check(base_offset + position)
            except DevicePathError as error:
                return cls(tuple(nodes)), error
            nodes.append(node)
            position += NODE_HEADER.size + len(node.data)
            if node.is_end_entire:
                if position != len(data):
                    return cls(tuple(nodes)), DevicePathError(
                        f"{len(data) - position} bytes follow the end of the device path",
                        offset=base_offset + position,
                    )
                return cls(tuple(nodes)), None
        return cls(tuple(nodes)), DevicePathError(
            "Device path has no End Entire node", offset=base_offset + len(data)
        )

    def to_bytes(self) -> bytes:
        return b"".join(node.to_bytes() for node in self.nodes)

    def format(self) -> str:
        """Render the path as efibootmgr does: nodes joined by "/", instances by ","."""
        parts: list[str] = []
        after_separator = True
        for node in self.nodes:
            if node.is_end_entire:
                break
            if node.is_end_instance:
                parts.append(",")
                after_separator = True
                continue
            if not after_separator:
                parts.append("/")
            parts.append(node.format())
            after_separator = False
        return "".join(parts)

    def __str__(self) -> str:
        return self.format()

    def instances(self) -> Iterator[tuple[DevicePathNode, ...]]:
        """Yield the nodes of each instance, without the End nodes."""
        current: list[DevicePathNode] = []
        for node in self.nodes:
            if node.type == NodeType.END and node.subtype in (EndSubtype.ENTIRE, EndSubtype.INSTANCE):
                yield tuple(current)
                current = []
                if node.is_end_entire:
                    return
            else:
                current.append(node)
        if current:
            yield tuple(current)

    def hard_drive(self) -> HardDrive | None:
        """Return the first hard drive node decoded, or None when the path has none."""
        for node in self.nodes:
            if (node.type, node.subtype) != (NodeType.MEDIA, MediaSubtype.HARD_DRIVE):
                continue
            if len(node.data) < HARD_DRIVE_DATA.size:
                return None
            number, start, size, raw, partition_format, signature_type = HARD_DRIVE_DATA.unpack_from(
                node.data
            )
            signature: uuid.UUID | int | bytes = raw
            if signature_type == SignatureType.GUID:
                signature = uuid.UUID(bytes_le=raw)
            elif signature_type == SignatureType.MBR:
                signature = struct.unpack_from("<I", raw)[0]
            return HardDrive(number, start, size, signature, partition_format, signature_type)
        return None

    def file_path(self) -> str | None:
        """Return the file path of the first run of file path nodes, or None.

        UEFI allows a path to be split over consecutive file path nodes; their
        strings are joined as firmware joins them.
        """
        parts: list[str] = []
        for node in self.nodes:
            if (node.type, node.subtype) == (NodeType.MEDIA, MediaSubtype.FILE_PATH):
                parts.append(_ucs2_z(node.data))
            elif parts:
                break
        return "".join(parts) if parts else None


END_ENTIRE_NODE = DevicePathNode(NodeType.END, EndSubtype.ENTIRE, b"")
END_INSTANCE_NODE = DevicePathNode(NodeType.END, EndSubtype.INSTANCE, b"")


def _read_path(
    data: bytes, start: int, base_offset: int, *, require_end: bool
) -> tuple[DevicePath, int]:
    """Read nodes from ``start`` through the End Entire node; return the path and its end position."""
    nodes: list[DevicePathNode] = []
    position = start
    while position < len(data):
        node = _read_node(data, position, base_offset)
        node.check(base_offset + position)
        nodes.append(node)
        position += NODE_HEADER.size + len(node.data)
        if node.is_end_entire:
            return DevicePath(tuple(nodes)), position
    if require_end:
        raise DevicePathError(
            "Device path has no End Entire node",
            offset=base_offset + len(data),
            hint="The data is truncated, or its length field is wrong.",
        )
    return DevicePath(tuple(nodes)), position


def parse_device_path_list(data: bytes, *, base_offset: int = 0) -> tuple[DevicePath, ...]:
    """Decode a packed list of device paths, as in a load option's FilePathList.

    Each path must end with an End Entire node, and the paths must fill
    ``data`` exactly; anything else raises DevicePathError with the offset.
    Empty data gives an empty tuple.
    """
    paths: list[DevicePath] = []
    position = 0
    while position < len(data):
        path, position = _read_path(data, position, base_offset, require_end=True)
        paths.append(path)
    return tuple(paths)


def make_file_path(
    partition_number: int, start_lba: int, size_lba: int, partition_guid: uuid.UUID, path: str
) -> DevicePath:
    """Build ``HD(n,GPT,guid,start,size)/File(path)`` for a file on a GPT partition.

    ``start_lba`` and ``size_lba`` are in logical blocks of the disk (4096
    bytes on 4Kn disks), as firmware matches them against the partition table.
    Forward slashes in ``path`` become backslashes and a leading backslash is
    added. Raises InvalidInputError for an empty path, a NUL character, or
    characters outside the UCS-2 range.
    """
    file_name = path.replace("/", "\\")
    if not file_name.startswith("\\"):
        file_name = "\\" + file_name
    if file_name == "\\" or "\0" in file_name:
        raise InvalidInputError(f"Invalid EFI file path {path!r}", hint="Give a path such as \\EFI\\BOOT\\BOOTX64.EFI.")
    if any(ord(character) > 0xFFFF or 0xD800 <= ord(character) <= 0xDFFF for character in file_name):
        raise InvalidInputError(
            f"EFI file path {path!r} contains characters outside UCS-2",
            hint="Use a path of characters from the Basic Multilingual Plane.",
        )
    if not 0 < partition_number <= 0xFFFFFFFF:
        raise InvalidInputError(f"Invalid partition number {partition_number}")
    if not (0 <= start_lba < 2**64 and 0 <= size_lba < 2**64):
        raise InvalidInputError(f"Invalid partition start {start_lba} or size {size_lba} (in logical blocks)")
    hard_drive = DevicePathNode(
        NodeType.MEDIA,
        MediaSubtype.HARD_DRIVE,
        HARD_DRIVE_DATA.pack(
            partition_number,
            start_lba,
            size_lba,
            partition_guid.bytes_le,
            PartitionFormat.GPT,
            SignatureType.GUID,
        ),
    )
    file_node = DevicePathNode(
        NodeType.MEDIA, MediaSubtype.FILE_PATH, (file_name + "\0").encode("utf-16-le")
    )
    return DevicePath((hard_drive, file_node, END_ENTIRE_NODE))
