"""A reader for GUID Partition Tables, enough to find the ESP on a disk or image.

Layouts follow UEFI 2.10, section 5.3. The header is in LBA 1, and the
partition entry array starts at the LBA the header names. Both CRC32s are
checked.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass
from typing import BinaryIO

from switchos.errors import InvalidInputError

ESP_TYPE_GUID = uuid.UUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")

GPT_SIGNATURE = b"EFI PART"
# Signature, Revision, HeaderSize, HeaderCRC32, Reserved, MyLBA, AlternateLBA,
# FirstUsableLBA, LastUsableLBA, DiskGUID, PartitionEntryLBA,
# NumberOfPartitionEntries, SizeOfPartitionEntry, PartitionEntryArrayCRC32.
GPT_HEADER_FORMAT = "<8sIIIIQQQQ16sQIII"
GPT_HEADER_SIZE = struct.calcsize(GPT_HEADER_FORMAT)  # 92
HEADER_CRC_OFFSET = 16
# PartitionTypeGUID, UniquePartitionGUID, StartingLBA, EndingLBA, Attributes, PartitionName.
GPT_ENTRY_FORMAT = "<16s16sQQQ72s"
GPT_ENTRY_SIZE = struct.calcsize(GPT_ENTRY_FORMAT)  # 128
MAX_ENTRY_ARRAY_BYTES = 1024 * 1024


class GptError(InvalidInputError):
    """The disk or image has no valid GUID Partition Table."""


@dataclass(frozen=True)
class GptHeader:
    """The fields of a GPT header that a reader needs."""

    my_lba: int
    alternate_lba: int
    first_usable_lba: int
    last_usable_lba: int
    disk_guid: uuid.UUID
    entries_lba: int
    entry_count: int
    entry_size: int
    entries_crc32: int

    @classmethod
    def from_bytes(cls, sector: bytes) -> GptHeader:
        """Parse and validate a header; raise GptError on a bad signature, size or CRC."""
        if len(sector) < GPT_HEADER_SIZE or sector[:8] != GPT_SIGNATURE:
            raise GptError("no GPT header signature ('EFI PART') in LBA 1")
        fields = struct.unpack_from(GPT_HEADER_FORMAT, sector)
        header_size = fields[2]
        if not GPT_HEADER_SIZE <= header_size <= len(sector):
            raise GptError(f"GPT header size {header_size} is invalid")
        raw = bytearray(sector[:header_size])
        raw[HEADER_CRC_OFFSET : HEADER_CRC_OFFSET + 4] = b"\0\0\0\0"
        if zlib.crc32(raw) != fields[3]:
            raise GptError("GPT header CRC32 does not match")
        if fields[12] < GPT_ENTRY_SIZE or fields[12] % 8:
            raise GptError(f"GPT partition entry size {fields[12]} is invalid")
        return cls(
            my_lba=fields[5],
            alternate_lba=fields[6],
            first_usable_lba=fields[7],
            last_usable_lba=fields[8],
            disk_guid=uuid.UUID(bytes_le=fields[9]),
            entries_lba=fields[10],
            entry_count=fields[11],
            entry_size=fields[12],
            entries_crc32=fields[13],
        )


@dataclass(frozen=True)
class GptPartition:
    """One used partition entry; ``number`` is 1-based as Linux and sgdisk count."""

    number: int
    type_guid: uuid.UUID
    partition_guid: uuid.UUID
    first_lba: int
    last_lba: int
    attributes: int
    name: str

    @classmethod
    def from_bytes(cls, number: int, entry: bytes) -> GptPartition:
        type_raw, unique_raw, first, last, attributes, name_raw = struct.unpack_from(
            GPT_ENTRY_FORMAT, entry
        )
        name = name_raw.decode("utf-16-le", errors="replace").split("\0", 1)[0]
        return cls(
            number=number,
            type_guid=uuid.UUID(bytes_le=type_raw),
            partition_guid=uuid.UUID(bytes_le=unique_raw),
            first_lba=first,
            last_lba=last,
            attributes=attributes,
            name=name,
        )

    @property
    def sector_count(self) -> int:
        return self.last_lba - self.first_lba + 1


@dataclass(frozen=True)
class PartitionTable:
    """A disk's GPT: its header, used partitions and logical sector size."""

    header: GptHeader
    partitions: tuple[GptPartition, ...]
    sector_size: int


def read_gpt(file: BinaryIO, *, sector_size: int = 512) -> PartitionTable:
    """Read the primary GPT from an open disk or image; raise GptError when it is invalid."""
    file.seek(sector_size)
    header = GptHeader.from_bytes(file.read(sector_size))
    array_bytes = header.entry_count * header.entry_size
    if array_bytes > MAX_ENTRY_ARRAY_BYTES:
        raise GptError(f"GPT partition entry array of {array_bytes} bytes is implausibly large")
    file.seek(header.entries_lba * sector_size)
    array = file.read(array_bytes)
    if len(array) != array_bytes:
        raise GptError("the disk ends inside the GPT partition entry array")
    if zlib.crc32(array) != header.entries_crc32:
        raise GptError("GPT partition entry array CRC32 does not match")
    partitions = []
    for index in range(header.entry_count):
        entry = array[index * header.entry_size : index * header.entry_size + GPT_ENTRY_SIZE]
        if entry[:16] == bytes(16):
            continue
        partitions.append(GptPartition.from_bytes(index + 1, entry))
    return PartitionTable(header, tuple(partitions), sector_size)


def detect_gpt(file: BinaryIO) -> PartitionTable:
    """Read the GPT of an image, trying 512-byte and then 4096-byte sectors."""
    errors = []
    for sector_size in (512, 4096):
        try:
            return read_gpt(file, sector_size=sector_size)
        except GptError as error:
            errors.append(f"{sector_size}-byte sectors: {error.message}")
    raise GptError("no valid GPT found (" + "; ".join(errors) + ")")
