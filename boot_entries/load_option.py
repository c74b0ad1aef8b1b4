"""EFI_LOAD_OPTION, the data of Boot#### and Driver#### variables (UEFI 2.10, section 3.1.3).

Layout, little-endian::

    0   UINT32  Attributes
    4   UINT16  FilePathListLength   bytes of FilePathList
    6   CHAR16  Description[]        UCS-2, ends with a 0x0000 code unit
    ..  FilePathList                 one or more device paths, each ending in End Entire
    ..  UINT8   OptionalData[]       the rest of the variable

Decoding is strict and encoding reproduces every decoded input byte for byte;
``parse_lenient`` reads as much as it can for listings.
"""

from __future__ import annotations

import enum
import struct
import uuid
from dataclasses import dataclass, field

from switchos.boot_entries.device_path import (
    CodecError,
    DevicePath,
    DevicePathError,
    escape_text,
    parse_device_path_list,
)

# Attributes (u32) and FilePathListLength (u16).
LOAD_OPTION_HEADER = struct.Struct("<IH")
UCS2_NUL = b"\0\0"


class LoadOptionError(CodecError):
    """A load option is malformed."""


class LoadOptionAttribute(enum.IntFlag):
    """LOAD_OPTION_* attribute bits (UEFI 2.10, section 3.1.3).

    Unknown bits are kept, so rewriting an option preserves bits that firmware
    set and that this project does not know.
    """

    ACTIVE = 0x00000001
    FORCE_RECONNECT = 0x00000002
    HIDDEN = 0x00000008
    CATEGORY_BOOT = 0x00000000
    CATEGORY_APP = 0x00000100
    CATEGORY = 0x00001F00


# Optional data of exactly 16 bytes renders as a GUID in braces, with the
# name libefivar 39 gives the well-known GUIDs of its guids.txt.
WELL_KNOWN_GUID_NAMES = {
    uuid.UUID("8108ac4e-9f11-4d59-850e-e21a522c59b2"): "auto_created_boot_option",
    uuid.UUID("8be4df61-93ca-11d2-aa0d-00e098032b8c"): "global",
    uuid.UUID("605dab50-e046-4300-abb6-3dd810dd8b23"): "shim",
    uuid.UUID("91376aff-cba6-42be-949d-06fde81128e8"): "grub",
    uuid.UUID("0abba7dc-e516-4167-bbf5-4d9d1c739416"): "fwupdate",
    uuid.UUID("77fa9abd-0359-4d32-bd60-28f4e78f784b"): "microsoft",
    uuid.UUID("c57ad6b7-0515-40a8-9d21-551652854e37"): "shell",
    uuid.UUID("721c8b66-426c-4e86-8e99-3457c46ab0b9"): "lenovo_setup",
    uuid.UUID("126a762d-5758-4fca-8531-201a7f57f850"): "lenovo_boot_menu",
    uuid.UUID("a7d8d9a6-6ab0-4aeb-ad9d-163e59a7a380"): "lenovo_diag_splash",
    uuid.UUID("bc7838d2-0f82-4d60-8316-c068ee79d25b"): "lenovo_msg",
    uuid.UUID("00000000-0000-0000-0000-000000000000"): "zero",
}


class OptionalDataStyle(enum.Enum):
    """The optional data text of an efibootmgr version, printed after the device path."""

    # efibootmgr 18: a GUID in braces, ASCII text, or hex.
    EFIBOOTMGR_18 = "efibootmgr-18"
    # efibootmgr 17 and older (Debian 12 ships 17): bytes 0x20 to 0x7F as
    # characters, every other byte as ".".
    DOTTED = "dotted"


def format_optional_data(
    optional_data: bytes, *, style: OptionalDataStyle = OptionalDataStyle.EFIBOOTMGR_18
) -> str:
    """Render optional data as efibootmgr prints it after the device path.

    In the default efibootmgr 18 style, empty data renders as "", 16 bytes as
    ``{guid}`` (or ``{name}`` for a well-known GUID), data of printable ASCII
    (0x20 to 0x7F) as text, anything else as lowercase hex. UCS-2 text such as
    a kernel command line therefore shows as hex, as efibootmgr prints it
    without ``--unicode``.
    """
    if style is OptionalDataStyle.DOTTED:
        return "".join(chr(byte) if 0x20 <= byte <= 0x7F else "." for byte in optional_data)
    if not optional_data:
        return ""
    if len(optional_data) == 16:
        guid = uuid.UUID(bytes_le=optional_data)
        return "{" + WELL_KNOWN_GUID_NAMES.get(guid, str(guid)) + "}"
    if all(0x20 <= byte <= 0x7F for byte in optional_data):
        return optional_data.decode("ascii")
    return optional_data.hex()


def decode_ucs2_text(optional_data: bytes) -> str | None:
    """Return optional data read as UCS-2LE text, or None when it is not text.

    Text means an even length, no control characters other than a final NUL,
    and no lone surrogates. A kernel command line passed to an EFI stub is
    the usual case.
    """
    if len(optional_data) < 2 or len(optional_data) % 2:
        return None
    try:
        text = optional_data.decode("utf-16-le")
    except UnicodeDecodeError:
        return None
    text = text.removesuffix("\0")
    if any(ord(character) < 0x20 for character in text):
        return None
    return text


def _find_description_end(data: bytes, start: int) -> int:
    """Return the offset of the description's 0x0000 code unit; raise LoadOptionError without one."""
    position = start
    while position + 2 <= len(data):
        if data[position] == 0 and data[position + 1] == 0:
            return position
        position += 2
    if position < len(data):
        raise LoadOptionError(
            "Load option description has an odd number of bytes and no NUL terminator",
            offset=start,
        )
    raise LoadOptionError("Load option description has no NUL terminator", offset=start)


@dataclass(frozen=True)
class LoadOption:
    """One EFI_LOAD_OPTION.

    ``device_path`` is FilePathList[0], the image to load; ``extra_paths``
    contains any further device paths of the FilePathList, whose use is OS
    specific. ``description`` keeps lone surrogates of invalid UTF-16 so it
    encodes back to the same bytes. ``attributes`` keeps unknown bits.
    """

    attributes: LoadOptionAttribute
    description: str
    device_path: DevicePath
    optional_data: bytes = b""
    extra_paths: tuple[DevicePath, ...] = field(default=())

    @property
    def active(self) -> bool:
        return bool(self.attributes & LoadOptionAttribute.ACTIVE)

    @classmethod
    def from_bytes(cls, data: bytes) -> LoadOption:
        """Decode a load option; raise LoadOptionError or DevicePathError with the byte offset.

        Rejected: fewer than 6 bytes, a description without a 0x0000 code
        unit, a FilePathListLength past the end of the data, and a FilePathList
        that is not a packed list of complete device paths (truncated nodes,
        node lengths below 4 or past the list, bytes after an End Entire node
        that do not form another device path). A FilePathListLength of 0 gives
        an empty ``device_path``.
        """
        data = bytes(data)
        if len(data) < LOAD_OPTION_HEADER.size:
            raise LoadOptionError(
                f"Load option is {len(data)} bytes long, shorter than its 6-byte header",
                offset=len(data),
            )
        attributes, path_list_length = LOAD_OPTION_HEADER.unpack_from(data)
        description_start = LOAD_OPTION_HEADER.size
        description_end = _find_description_end(data, description_start)
        description = data[description_start:description_end].decode("utf-16-le", "surrogatepass")

        path_start = description_end + len(UCS2_NUL)
        path_end = path_start + path_list_length
        if path_end > len(data):
            raise LoadOptionError(
                f"FilePathListLength {path_list_length} runs past the end of the load option "
                f"({len(data) - path_start} bytes left after the description)",
                offset=4,
            )
        paths = parse_device_path_list(data[path_start:path_end], base_offset=path_start)
        first = paths[0] if paths else DevicePath(())
        return cls(
            attributes=LoadOptionAttribute(attributes),
            description=description,
            device_path=first,
            optional_data=data[path_end:],
            extra_paths=paths[1:],
        )

    def to_bytes(self) -> bytes:
        """Encode the option; raise LoadOptionError if the FilePathList exceeds 65535 bytes."""
        path_list = self.device_path.to_bytes() + b"".join(path.to_bytes() for path in self.extra_paths)
        if len(path_list) > 0xFFFF:
            raise LoadOptionError(
                f"FilePathList is {len(path_list)} bytes, more than FilePathListLength can hold",
                offset=4,
            )
        description = self.description.encode("utf-16-le", "surrogatepass") + UCS2_NUL
        header = LOAD_OPTION_HEADER.pack(int(self.attributes) & 0xFFFFFFFF, len(path_list))
        return header + description + path_list + self.optional_data

    def format_path(self, *, style: OptionalDataStyle = OptionalDataStyle.EFIBOOTMGR_18) -> str:
        """Render the device path and optional data as efibootmgr -v prints them after the tab.

        Like efibootmgr, this shows FilePathList[0] only; ``extra_paths`` are
        left out.
        """
        return self.device_path.format() + format_optional_data(self.optional_data, style=style)

    def format(self, *, style: OptionalDataStyle = OptionalDataStyle.EFIBOOTMGR_18) -> str:
        """Render ``description<TAB>path+optional data``, the part of an efibootmgr -v line after ``Boot####* ``.

        Control characters and lone surrogates in the description are escaped
        (see ``escape_text``), so the text always encodes to UTF-8.
        """
        return f"{escape_text(self.description)}\t{self.format_path(style=style)}"


@dataclass(frozen=True)
class LoadOptionListing:
    """What a lenient read of a load option found, for listings.

    Every field that could be read is set; the fields after the first problem
    are None. ``device_path`` contains the nodes read before a problem in the
    FilePathList. ``error`` is that first problem, or None when the option is
    valid (then ``option`` is the strict decode).
    """

    attributes: LoadOptionAttribute | None
    description: str | None
    device_path: DevicePath | None
    optional_data: bytes | None
    error: CodecError | None
    option: LoadOption | None

    @property
    def active(self) -> bool:
        return self.attributes is not None and bool(self.attributes & LoadOptionAttribute.ACTIVE)

    def format(self, *, style: OptionalDataStyle = OptionalDataStyle.EFIBOOTMGR_18) -> str:
        """Render like ``LoadOption.format``, with what could be read and the error in brackets."""
        if self.option is not None:
            return self.option.format(style=style)
        text = escape_text(self.description) if self.description is not None else ""
        text += "\t"
        if self.device_path is not None:
            text += self.device_path.format()
        if self.optional_data is not None:
            text += format_optional_data(self.optional_data, style=style)
        if self.error is not None:
            text += f" [invalid: {self.error.message}]"
        return text


def parse_lenient(data: bytes) -> LoadOptionListing:
    """Read a load option as far as possible; never raise for malformed data.

    The FilePathList is cut at its declared length even when a node in it is
    malformed, so the optional data after it is still shown.
    """
    data = bytes(data)
    try:
        option = LoadOption.from_bytes(data)
    except CodecError as error:
        first_error = error
    else:
        return LoadOptionListing(
            option.attributes, option.description, option.device_path, option.optional_data, None, option
        )

    if len(data) < LOAD_OPTION_HEADER.size:
        return LoadOptionListing(None, None, None, None, first_error, None)
    attributes_value, path_list_length = LOAD_OPTION_HEADER.unpack_from(data)
    attributes = LoadOptionAttribute(attributes_value)
    start = LOAD_OPTION_HEADER.size
    try:
        description_end = _find_description_end(data, start)
    except LoadOptionError:
        readable = data[start : len(data) - (len(data) - start) % 2]
        description = readable.decode("utf-16-le", "surrogatepass")
        return LoadOptionListing(attributes, description, None, None, first_error, None)
    description = data[start:description_end].decode("utf-16-le", "surrogatepass")

    path_start = description_end + len(UCS2_NUL)
    path_end = min(path_start + path_list_length, len(data))
    device_path, _ = DevicePath.parse_lenient(data[path_start:path_end], base_offset=path_start)
    optional_data = data[path_end:] if path_start + path_list_length <= len(data) else None
    return LoadOptionListing(attributes, description, device_path, optional_data, first_error, None)


__all__ = [
    "CodecError",
    "DevicePathError",
    "LoadOption",
    "LoadOptionAttribute",
    "LoadOptionError",
    "LoadOptionListing",
    "OptionalDataStyle",
    "decode_ucs2_text",
    "format_optional_data",
    "parse_lenient",
]
