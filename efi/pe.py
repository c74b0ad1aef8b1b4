"""Checks that a payload is a PE image this firmware can load, and reads its metadata.

The payload is the first code to run on the machine, so every check here
reports all problems at once and the caller stops before anything reaches
the ESP. pefile parses the image; its warnings count as problems except for
the few listed in BENIGN_PEFILE_WARNINGS.

The ``.swos`` section contains the payload's metadata as UTF-8 text, one
``key=value`` per line. Blank lines and lines starting with ``#`` are
ignored, and trailing NUL padding is stripped:

    protocol=1          integer, the version of the variable protocol
    name=SwitchOS       free text
    version=1.4.0       free text
    kind=driver         application | driver | runtime-driver
    store=partition     whole-disk | partition
    disks=virtio-blk,nvme   comma-separated disk kinds from DiskKind
    chainload=no        yes | no (optional, no when missing)

An image without the section is the upstream SwitchOS application (see
UPSTREAM_METADATA).
"""

from __future__ import annotations

import dataclasses
import enum
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pefile

from switchos.errors import InvalidInputError

# PE/COFF machine types (PE Format, "Machine Types").
IMAGE_FILE_MACHINE_I386 = 0x014C
IMAGE_FILE_MACHINE_AMD64 = 0x8664
IMAGE_FILE_MACHINE_ARM64 = 0xAA64
IMAGE_FILE_MACHINE_ARMNT = 0x01C4

# Optional header magic (PE Format, "Optional Header Standard Fields").
PE32_MAGIC = 0x10B
PE32_PLUS_MAGIC = 0x20B

# File header characteristics (PE Format, "Characteristics").
IMAGE_FILE_RELOCS_STRIPPED = 0x0001
IMAGE_FILE_DLL = 0x2000

IMAGE_DIRECTORY_ENTRY_SECURITY = 4
IMAGE_DIRECTORY_ENTRY_BASERELOC = 5

# UEFI memory is handed out in 4 KiB pages (UEFI 2.10, section 7.2), and on X64
# edk2's RUNTIME_PAGE_ALLOCATION_GRANULARITY is the same 4 KiB.
EFI_PAGE_SIZE = 4096

METADATA_SECTION = ".swos"

MACHINE_NAMES = {
    IMAGE_FILE_MACHINE_I386: "IA32 (x86, 32-bit)",
    IMAGE_FILE_MACHINE_ARM64: "ARM64 (AArch64)",
    IMAGE_FILE_MACHINE_ARMNT: "ARM (32-bit)",
}

# Prefixes of pefile warnings that are not problems for firmware, each with
# the reason it is ignored.
BENIGN_PEFILE_WARNINGS = {
    # A statistical hint, not a structural fault: small EFI images are mostly
    # zero padding up to FileAlignment.
    "Byte 0x00 makes up": "padding heuristic",
    # pefile reports relocation entries that patch overlapping bytes. edk2
    # applies base relocations one after the other, and Debian 12's
    # systemd-boot 252, which has such entries, boots in OVMF.
    "Overlapping offsets in relocation data": "edk2 applies relocations in order",
}


class Subsystem(enum.IntEnum):
    """PE optional header subsystem values that matter here (PE Format, "Windows Subsystem")."""

    WINDOWS_GUI = 2
    WINDOWS_CUI = 3
    EFI_APPLICATION = 10
    EFI_BOOT_SERVICE_DRIVER = 11
    EFI_RUNTIME_DRIVER = 12
    EFI_ROM = 13


class PayloadKind(enum.Enum):
    """Registration kind of a payload; the ``kind`` metadata value and the PE subsystem must agree."""

    APPLICATION = "application"
    DRIVER = "driver"
    RUNTIME_DRIVER = "runtime-driver"

    @property
    def subsystem(self) -> Subsystem:
        return _KIND_SUBSYSTEMS[self]

    @property
    def is_driver(self) -> bool:
        """True when the payload is registered as Driver#### in DriverOrder."""
        return self is not PayloadKind.APPLICATION

    @classmethod
    def from_subsystem(cls, subsystem: int) -> PayloadKind | None:
        for kind, value in _KIND_SUBSYSTEMS.items():
            if value == subsystem:
                return kind
        return None


_KIND_SUBSYSTEMS = {
    PayloadKind.APPLICATION: Subsystem.EFI_APPLICATION,
    PayloadKind.DRIVER: Subsystem.EFI_BOOT_SERVICE_DRIVER,
    PayloadKind.RUNTIME_DRIVER: Subsystem.EFI_RUNTIME_DRIVER,
}


class StoreLayout(enum.Enum):
    """Layout of the payload's snapshots on the snapshot disk."""

    WHOLE_DISK = "whole-disk"
    PARTITION = "partition"


class DiskKind(enum.Enum):
    """Disk controllers the payload can write snapshots through."""

    VIRTIO_BLK = "virtio-blk"
    NVME = "nvme"
    AHCI = "ahci"
    SCSI = "scsi"
    USB = "usb"


@dataclass(frozen=True)
class PayloadMetadata:
    """The contents of the ``.swos`` section, or the upstream defaults."""

    protocol: int
    name: str
    version: str | None
    kind: PayloadKind
    store: StoreLayout
    disks: tuple[DiskKind, ...]
    chainload: bool
    from_section: bool

    def describe_consequences(self) -> list[str]:
        """Return sentences telling the user what this payload's metadata means for them."""
        lines: list[str] = []
        if not self.from_section:
            lines.append(
                "The payload has no .swos metadata section, so it is treated as the upstream "
                "SwitchOS application (protocol 0)."
            )
        if self.store is StoreLayout.WHOLE_DISK:
            lines.append(
                "The whole snapshot disk is used for snapshots: everything on it is overwritten."
            )
        disks = ", ".join(disk.value for disk in self.disks)
        lines.append(f"Snapshots can only be written to disks of these kinds: {disks}.")
        if self.kind is PayloadKind.APPLICATION and not self.chainload:
            lines.append(
                "The payload does not start the next boot loader itself, so after it runs "
                "the firmware may show its boot menu instead of starting the OS."
            )
        return lines


# The upstream SwitchOS application carries no metadata section.
UPSTREAM_METADATA = PayloadMetadata(
    protocol=0,
    name="SwitchOS",
    version=None,
    kind=PayloadKind.APPLICATION,
    store=StoreLayout.WHOLE_DISK,
    disks=(DiskKind.VIRTIO_BLK,),
    chainload=False,
    from_section=False,
)

# The newest variable protocol this installer speaks.
MAX_PROTOCOL = 1

METADATA_KEYS = ("protocol", "name", "version", "kind", "store", "disks", "chainload")
# Drivers do not chain-load, so their metadata may leave chainload out (it means no).
OPTIONAL_METADATA_KEYS = {"chainload": "no"}


@dataclass(frozen=True)
class PeImageInfo:
    """Facts about a payload image that passed every check."""

    path: Path
    size: int
    kind: PayloadKind
    subsystem: Subsystem
    section_alignment: int
    file_alignment: int
    has_signature: bool
    metadata: PayloadMetadata
    warnings: tuple[str, ...] = field(default=())


class PayloadCheckError(InvalidInputError):
    """The payload is not an image this firmware can load or SwitchOS can register.

    ``problems`` lists every problem found, one sentence each.
    """

    def __init__(self, path: Path, problems: list[str]) -> None:
        listing = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(
            f"payload {path} failed {len(problems)} check(s):\n{listing}",
            hint="use a SwitchOS payload built for x86-64 UEFI (PE32+, AMD64, "
            "EFI application or driver)",
        )
        self.path = path
        self.problems = problems


def check_payload_image(path: Path) -> PeImageInfo:
    """Check the PE image at ``path`` and return what it is.

    Raises PayloadCheckError listing every problem found.
    """
    data = path.read_bytes()
    problems: list[str] = []
    try:
        pe = pefile.PE(data=data, fast_load=False)
    except pefile.PEFormatError as error:
        problems.append(_describe_format_error(data, str(error)))
        raise PayloadCheckError(path, problems) from None

    try:
        problems += _check_headers(pe)
        problems += _check_file_bounds(pe, len(data))
        problems += _check_alignment(pe)
        problems += _check_relocations(pe)
        problems += _significant_warnings(pe)
        metadata, metadata_problems = read_metadata(pe)
        problems += metadata_problems
        subsystem = pe.OPTIONAL_HEADER.Subsystem
        kind = PayloadKind.from_subsystem(subsystem)
        if kind is not None and not metadata.from_section:
            # Without metadata the subsystem alone decides how the image is registered.
            metadata = dataclasses.replace(metadata, kind=kind)
        elif kind is not None and metadata_problems == [] and metadata.kind is not kind:
            problems.append(
                f"the .swos section says kind={metadata.kind.value}, but the PE subsystem is "
                f"{subsystem} ({kind.value}); firmware skips an application listed as a "
                "driver, and a driver listed as a boot option never runs its entry point "
                "before the OS loader"
            )
        if problems or kind is None:
            # _check_headers has reported any subsystem without a kind.
            raise PayloadCheckError(path, problems)
        return PeImageInfo(
            path=path,
            size=len(data),
            kind=kind,
            subsystem=Subsystem(subsystem),
            section_alignment=pe.OPTIONAL_HEADER.SectionAlignment,
            file_alignment=pe.OPTIONAL_HEADER.FileAlignment,
            has_signature=has_authenticode_signature(pe, data),
            metadata=metadata,
            warnings=tuple(pe.get_warnings()),
        )
    finally:
        pe.close()


def _describe_format_error(data: bytes, message: str) -> str:
    if len(data) < 64 or data[:2] != b"MZ":
        return "not a PE image: the file does not start with an MZ (DOS) header"
    if "NT Headers" in message or "e_lfanew" in message or "PE signature" in message.lower():
        return f"not a PE image, or truncated before its PE header ({message})"
    return f"not a valid PE image ({message})"


def _check_headers(pe: pefile.PE) -> list[str]:
    problems: list[str] = []
    machine = pe.FILE_HEADER.Machine
    magic = pe.OPTIONAL_HEADER.Magic
    if magic == PE32_MAGIC:
        problems.append(
            "the image is PE32 (32-bit); x86-64 UEFI firmware loads only PE32+ images"
        )
    elif magic != PE32_PLUS_MAGIC:
        problems.append(f"unknown optional header magic 0x{magic:x}; expected PE32+ (0x20b)")
    if machine != IMAGE_FILE_MACHINE_AMD64:
        name = MACHINE_NAMES.get(machine, f"0x{machine:04x}")
        problems.append(
            f"the image is built for {name}; this installer needs an AMD64 (x86-64) image"
        )
    if pe.FILE_HEADER.Characteristics & IMAGE_FILE_DLL:
        problems.append("the image is a DLL, not an EFI application or driver")

    subsystem = pe.OPTIONAL_HEADER.Subsystem
    if subsystem == Subsystem.WINDOWS_CUI:
        problems.append(
            "the image is a Windows console program (subsystem 3), not an EFI image"
        )
    elif subsystem == Subsystem.WINDOWS_GUI:
        problems.append("the image is a Windows GUI program (subsystem 2), not an EFI image")
    elif PayloadKind.from_subsystem(subsystem) is None:
        problems.append(
            f"unsupported PE subsystem {subsystem}; expected 10 (EFI application), "
            "11 (boot-service driver) or 12 (runtime driver)"
        )
    return problems


def _check_file_bounds(pe: pefile.PE, file_size: int) -> list[str]:
    # edk2's PE/COFF loader reads the last byte of SizeOfHeaders and of every
    # section's raw data, and fails the load when that byte is past the end of
    # the file (BasePeCoffLib, PeCoffLoaderGetPeHeader).
    problems: list[str] = []
    if pe.OPTIONAL_HEADER.SizeOfHeaders > file_size:
        problems.append(
            f"truncated file: the headers need {pe.OPTIONAL_HEADER.SizeOfHeaders} bytes "
            f"but the file has {file_size}"
        )
    for section in pe.sections:
        end = section.PointerToRawData + section.SizeOfRawData
        if section.SizeOfRawData and end > file_size:
            problems.append(
                f"truncated file: section {_section_name(section)} ends at byte {end} "
                f"but the file has {file_size}"
            )
    return problems


def _check_alignment(pe: pefile.PE) -> list[str]:
    problems: list[str] = []
    section_alignment = pe.OPTIONAL_HEADER.SectionAlignment
    file_alignment = pe.OPTIONAL_HEADER.FileAlignment
    # edk2 checks the load address with (Address & (SectionAlignment - 1)),
    # which only works for powers of two (BasePeCoffLib, PeCoffLoaderLoadImage).
    if section_alignment == 0 or section_alignment & (section_alignment - 1):
        problems.append(f"section alignment 0x{section_alignment:x} is not a power of two")
        return problems

    # PE Format, "Optional Header Windows-Specific Fields": SectionAlignment must
    # be at least FileAlignment, and below the page size the two must be equal,
    # because the loader then maps the file as it is.
    if section_alignment < file_alignment:
        problems.append(
            f"section alignment 0x{section_alignment:x} is smaller than file alignment "
            f"0x{file_alignment:x}"
        )
    elif section_alignment < EFI_PAGE_SIZE and section_alignment != file_alignment:
        problems.append(
            f"section alignment 0x{section_alignment:x} is below the 4 KiB page size but "
            f"differs from file alignment 0x{file_alignment:x}"
        )

    # edk2 turns the Memory Attributes Table off for the whole machine when a
    # runtime image's SectionAlignment is not a multiple of
    # RUNTIME_PAGE_ALLOCATION_GRANULARITY (MemoryAttributesTable.c,
    # SetMemoryAttributesTableSectionAlignment). Without that table the OS
    # cannot map runtime code and data with separate permissions.
    if (
        pe.OPTIONAL_HEADER.Subsystem == Subsystem.EFI_RUNTIME_DRIVER
        and section_alignment % EFI_PAGE_SIZE
    ):
        problems.append(
            f"runtime driver with section alignment 0x{section_alignment:x}; runtime "
            "drivers need 4 KiB (0x1000) alignment or firmware drops its memory "
            "attributes table"
        )

    # Section start addresses are not checked: edk2's BasePeCoffLib copies each
    # section to its RVA whatever its alignment, and Debian 12's systemd-boot,
    # whose .sbat and .osrel start off the 0x200 grid, boots in OVMF.
    return problems


def _check_relocations(pe: pefile.PE) -> list[str]:
    # Firmware loads an image wherever it finds free pages. Without base
    # relocations edk2 can only load it at its linked ImageBase and otherwise
    # fails with IMAGE_ERROR_INVALID_IMAGE_ADDRESS.
    directories = pe.OPTIONAL_HEADER.DATA_DIRECTORY
    relocation_size = (
        directories[IMAGE_DIRECTORY_ENTRY_BASERELOC].Size
        if len(directories) > IMAGE_DIRECTORY_ENTRY_BASERELOC
        else 0
    )
    if pe.FILE_HEADER.Characteristics & IMAGE_FILE_RELOCS_STRIPPED or relocation_size == 0:
        return [
            "the image has no base relocations, so firmware can load it only at its "
            f"linked address 0x{pe.OPTIONAL_HEADER.ImageBase:x}"
        ]
    return []


def _significant_warnings(pe: pefile.PE) -> list[str]:
    problems = []
    for warning in pe.get_warnings():
        if any(warning.startswith(prefix) for prefix in BENIGN_PEFILE_WARNINGS):
            continue
        problems.append(f"pefile warning: {warning}")
    return problems


def _section_name(section: pefile.SectionStructure) -> str:
    name: bytes = section.Name
    return name.rstrip(b"\x00").decode("ascii", errors="replace")


def read_metadata(pe: pefile.PE) -> tuple[PayloadMetadata, list[str]]:
    """Return the payload metadata and the problems found in the ``.swos`` section.

    An image without the section gets UPSTREAM_METADATA and no problems.
    """
    sections = [s for s in pe.sections if _section_name(s) == METADATA_SECTION]
    if not sections:
        return UPSTREAM_METADATA, []
    if len(sections) > 1:
        return UPSTREAM_METADATA, [f"the image has {len(sections)} {METADATA_SECTION} sections"]
    section = sections[0]
    raw = section.get_data()
    # Raw data is padded to FileAlignment; VirtualSize is the real length when set.
    if 0 < section.Misc_VirtualSize < len(raw):
        raw = raw[: section.Misc_VirtualSize]
    return parse_metadata(raw.rstrip(b"\x00"))


def parse_metadata(text: bytes) -> tuple[PayloadMetadata, list[str]]:
    """Parse ``.swos`` section text; return the metadata and every problem found.

    The metadata is UPSTREAM_METADATA when there are problems.
    """
    problems: list[str] = []
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as error:
        return UPSTREAM_METADATA, [f"{METADATA_SECTION} section is not UTF-8 text: {error}"]

    values: dict[str, str] = {}
    for number, line in enumerate(decoded.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep:
            problems.append(f"{METADATA_SECTION} line {number}: expected key=value, got {line!r}")
        elif key not in METADATA_KEYS:
            problems.append(f"{METADATA_SECTION} line {number}: unknown key {key!r}")
        elif key in values:
            problems.append(f"{METADATA_SECTION} line {number}: duplicate key {key!r}")
        else:
            values[key] = value
    for key, default in OPTIONAL_METADATA_KEYS.items():
        values.setdefault(key, default)
    for key in METADATA_KEYS:
        if key not in values:
            problems.append(f"{METADATA_SECTION} section: missing key {key!r}")
    if problems:
        return UPSTREAM_METADATA, problems

    protocol = _parse_protocol(values["protocol"], problems)
    kind = _parse_enum(PayloadKind, "kind", values["kind"], problems)
    store = _parse_enum(StoreLayout, "store", values["store"], problems)
    disks = [
        _parse_enum(DiskKind, "disks", item.strip(), problems)
        for item in values["disks"].split(",")
    ]
    chainload = _parse_yes_no("chainload", values["chainload"], problems)
    if not values["name"]:
        problems.append(f"{METADATA_SECTION} section: name is empty")
    known_disks = tuple(disk for disk in disks if disk is not None)
    if problems or kind is None or store is None:
        return UPSTREAM_METADATA, problems
    return (
        PayloadMetadata(
            protocol=protocol,
            name=values["name"],
            version=values["version"] or None,
            kind=kind,
            store=store,
            disks=known_disks,
            chainload=chainload,
            from_section=True,
        ),
        [],
    )


def _parse_protocol(value: str, problems: list[str]) -> int:
    if not value.isdigit():
        problems.append(f"{METADATA_SECTION} section: protocol {value!r} is not a number")
        return 0
    protocol = int(value)
    if protocol > MAX_PROTOCOL:
        problems.append(
            f"{METADATA_SECTION} section: protocol {protocol} is newer than this installer "
            f"supports (at most {MAX_PROTOCOL}); update switchos"
        )
    return protocol


EnumT = TypeVar("EnumT", bound=enum.Enum)


def _parse_enum(enum_type: type[EnumT], key: str, value: str, problems: list[str]) -> EnumT | None:
    try:
        return enum_type(value)
    except ValueError:
        allowed = ", ".join(str(member.value) for member in enum_type)
        problems.append(
            f"{METADATA_SECTION} section: invalid {key} {value!r}; expected one of {allowed}"
        )
        return None


def _parse_yes_no(key: str, value: str, problems: list[str]) -> bool:
    if value not in ("yes", "no"):
        problems.append(f"{METADATA_SECTION} section: {key} must be yes or no, got {value!r}")
    return value == "yes"


# WIN_CERTIFICATE (PE Format, "The Attribute Certificate Table"): dwLength,
# wRevision, wCertificateType, then the certificate.
WIN_CERTIFICATE_FORMAT = "<IHH"
WIN_CERTIFICATE_HEADER_SIZE = 8
WIN_CERT_TYPE_PKCS_SIGNED_DATA = 0x0002


def has_authenticode_signature(pe: pefile.PE, data: bytes) -> bool:
    """Return whether the certificate table contains a PKCS#7 (Authenticode) certificate.

    The signature is not verified: firmware does that against its db.
    """
    directories = pe.OPTIONAL_HEADER.DATA_DIRECTORY
    if len(directories) <= IMAGE_DIRECTORY_ENTRY_SECURITY:
        return False
    entry = directories[IMAGE_DIRECTORY_ENTRY_SECURITY]
    # The security directory's VirtualAddress is a file offset, not an RVA.
    offset, end = entry.VirtualAddress, entry.VirtualAddress + entry.Size
    if entry.Size == 0 or end > len(data):
        return False
    while offset + WIN_CERTIFICATE_HEADER_SIZE <= end:
        length, _revision, certificate_type = struct.unpack_from(
            WIN_CERTIFICATE_FORMAT, data, offset
        )
        if length < WIN_CERTIFICATE_HEADER_SIZE:
            return False
        if certificate_type == WIN_CERT_TYPE_PKCS_SIGNED_DATA:
            return True
        # Entries are aligned to 8 bytes.
        offset += (length + 7) & ~7
    return False
