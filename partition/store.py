"""The snapshot store: superblocks and slot table, as docs/snapshot-store.md defines them.

All offsets are bytes from the start of the store (the SwitchOS partition, or
the whole disk for protocol-0 payloads) and multiples of 4096, so a device with
512- or 4096-byte logical sectors reads and writes them as whole sectors.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import struct
import time
import uuid
from collections.abc import Sequence

from switchos.errors import InvalidInputError, SwitchOSError
from switchos.partition.crc import compute_crc32c, compute_crc32c_with_zeroed_field

MIB = 1024 * 1024

STORE_MAGIC = b"SWOSSNAP"
FORMAT_MAJOR = 1
FORMAT_MINOR = 0

# The superblock occupies a 4096-byte block. Its first 128 bytes are defined
# and covered by the CRC, and the rest of the block is written as zero.
SUPERBLOCK_BLOCK_SIZE = 4096
SUPERBLOCK_FORMAT = "<8sHHI16sQQQIIIIQ48s"
SUPERBLOCK_SIZE = struct.calcsize(SUPERBLOCK_FORMAT)
SUPERBLOCK_CRC_OFFSET = 12

SLOT_TABLE_OFFSET = 4096
SLOT_ENTRY_FORMAT = "<BBHIQQQ32s64s64s32s64s220sI"
SLOT_ENTRY_SIZE = struct.calcsize(SLOT_ENTRY_FORMAT)
SLOT_ENTRY_CRC_OFFSET = 508

# The superblock and slot table live in the first MiB; slots start after it.
HEADER_AREA_SIZE = 1 * MIB
SLOT_AREA_OFFSET = HEADER_AREA_SIZE
MAX_SLOT_COUNT = (HEADER_AREA_SIZE - SLOT_TABLE_OFFSET) // SLOT_ENTRY_SIZE
# Each slot starts with this much room for the payload's per-image header.
SLOT_HEADER_ROOM = 1 * MIB
# The backup superblock is the last 4096-byte block of the store. The layouts
# reserve a whole MiB for it so that partition sizes stay MiB multiples.
TAIL_AREA_SIZE = 1 * MIB

assert SUPERBLOCK_SIZE == 128
assert SLOT_ENTRY_SIZE == 512

_SLOT_TEXT_FIELDS = {"label": 64, "os_name": 64, "os_version": 32, "host_name": 64}
_SLOT_FIELD_OFFSETS = {
    "state": 0,
    "checksum_type": 1,
    "reserved0": 2,
    "index": 4,
    "created_at": 8,
    "ram_size": 16,
    "image_size": 24,
    "image_checksum": 32,
    "label": 64,
    "os_name": 128,
    "os_version": 192,
    "host_name": 224,
    "reserved1": 288,
    "crc32c": 508,
}
_SUPERBLOCK_FIELD_OFFSETS = {
    "superblock": 0,
    "magic": 0,
    "version_major": 8,
    "version_minor": 10,
    "crc32c": 12,
    "store_uuid": 16,
    "store_size": 32,
    "slot_area_offset": 40,
    "slot_size": 48,
    "slot_count": 56,
    "slot_table_offset": 60,
    "slot_entry_size": 64,
    "copy": 68,
    "created_at": 72,
    "reserved": 80,
}


class SuperblockCopy(enum.IntEnum):
    """Role of a superblock: the primary at offset 0 or the backup in the last block."""

    PRIMARY = 0
    BACKUP = 1


class SlotState(enum.IntEnum):
    """Life cycle of a slot: the payload moves it free -> pending -> valid, or to damaged."""

    FREE = 0
    PENDING = 1
    VALID = 2
    DAMAGED = 3

    @property
    def label(self) -> str:
        return self.name.lower()


class ChecksumType(enum.IntEnum):
    """Algorithm of the image checksum in a slot entry."""

    NONE = 0
    CRC32C = 1
    SHA256 = 2


@dataclasses.dataclass(frozen=True)
class FieldProblem:
    """One invalid field: its byte offset from the start of the store, name and what is wrong."""

    offset: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field} at byte {self.offset:#x}: {self.message}"


class StoreError(SwitchOSError):
    """The snapshot store cannot be read, written or repaired."""


class StoreFormatError(StoreError):
    """A superblock or slot entry is invalid; ``problems`` lists every invalid field."""

    def __init__(self, what: str, problems: Sequence[FieldProblem], *, hint: str | None = None) -> None:
        details = "; ".join(str(problem) for problem in problems)
        super().__init__(f"invalid {what}: {details}", hint=hint)
        self.problems = tuple(problems)


class BlankSuperblockError(StoreFormatError):
    """The superblock's block is all zero: no store was written there, or its headers were erased."""


class StoreTooSmallError(StoreError):
    """The partition or disk is smaller than the store needs."""


class StoreFieldTooLongError(InvalidInputError):
    """A text field does not fit its fixed-size slot entry field."""


def format_bytes(data: bytes) -> str:
    """Format raw bytes for a message: quoted text when all are printable ASCII, else hex."""
    if data and all(0x20 <= byte < 0x7F for byte in data):
        return '"' + data.decode("ascii") + '"'
    return f"hex {data.hex()}"


def align_up(value: int, alignment: int) -> int:
    return -(-value // alignment) * alignment


def align_down(value: int, alignment: int) -> int:
    return value // alignment * alignment


def required_store_size(slot_size: int, slot_count: int) -> int:
    """Return the smallest store size in bytes with room for ``slot_count`` slots of ``slot_size``."""
    return HEADER_AREA_SIZE + slot_count * slot_size + TAIL_AREA_SIZE


def backup_superblock_offset(store_size: int) -> int:
    """Return the offset of the backup superblock: the last whole 4096-byte block."""
    return align_down(store_size, SUPERBLOCK_BLOCK_SIZE) - SUPERBLOCK_BLOCK_SIZE


@dataclasses.dataclass(frozen=True)
class Superblock:
    """The 128-byte store header, written at offset 0 and again in the last 4096-byte block."""

    store_uuid: uuid.UUID
    store_size: int
    slot_size: int
    slot_count: int
    created_at: int
    copy: SuperblockCopy = SuperblockCopy.PRIMARY
    version_major: int = FORMAT_MAJOR
    version_minor: int = FORMAT_MINOR
    slot_area_offset: int = SLOT_AREA_OFFSET
    slot_table_offset: int = SLOT_TABLE_OFFSET
    slot_entry_size: int = SLOT_ENTRY_SIZE

    def to_bytes(self) -> bytes:
        """Return the 128 defined bytes, CRC included."""
        packed = struct.pack(
            SUPERBLOCK_FORMAT,
            STORE_MAGIC,
            self.version_major,
            self.version_minor,
            0,
            self.store_uuid.bytes,
            self.store_size,
            self.slot_area_offset,
            self.slot_size,
            self.slot_count,
            self.slot_table_offset,
            self.slot_entry_size,
            int(self.copy),
            self.created_at,
            bytes(48),
        )
        crc = compute_crc32c(packed)
        return packed[:SUPERBLOCK_CRC_OFFSET] + struct.pack("<I", crc) + packed[SUPERBLOCK_CRC_OFFSET + 4 :]

    def to_block(self) -> bytes:
        """Return the whole 4096-byte block: the superblock followed by zeros."""
        return self.to_bytes().ljust(SUPERBLOCK_BLOCK_SIZE, b"\0")

    @classmethod
    def from_bytes(cls, data: bytes, *, base_offset: int = 0) -> Superblock:
        """Parse and validate a superblock; raise StoreFormatError listing every invalid field.

        ``base_offset`` is where ``data`` starts in the store, so that the
        offsets in the error point into the store.
        """
        def problem(field: str, message: str) -> FieldProblem:
            return FieldProblem(base_offset + _SUPERBLOCK_FIELD_OFFSETS[field], field, message)

        if len(data) < SUPERBLOCK_SIZE:
            raise StoreFormatError(
                "superblock",
                [FieldProblem(base_offset, "superblock", f"{len(data)} bytes, expected {SUPERBLOCK_SIZE}")],
            )
        data = bytes(data[:SUPERBLOCK_SIZE])
        (
            magic,
            major,
            minor,
            stored_crc,
            uuid_bytes,
            store_size,
            slot_area_offset,
            slot_size,
            slot_count,
            slot_table_offset,
            slot_entry_size,
            copy,
            created_at,
            _reserved,
        ) = struct.unpack(SUPERBLOCK_FORMAT, data)

        if not any(data):
            raise BlankSuperblockError("superblock", [problem("superblock", "all 128 bytes are zero (blank)")])
        if magic != STORE_MAGIC:
            # Nothing else is worth checking in a block that is not a superblock.
            # Whether the store can be repaired depends on the other copy, so
            # the hint is left to the caller that has both.
            raise StoreFormatError(
                "superblock",
                [problem("magic", f"{format_bytes(magic)}, expected {format_bytes(STORE_MAGIC)}")],
            )
        problems: list[FieldProblem] = []
        if major != FORMAT_MAJOR:
            problems.append(problem("version_major", f"{major}, this program reads {FORMAT_MAJOR}"))
        actual_crc = compute_crc32c_with_zeroed_field(data, SUPERBLOCK_CRC_OFFSET)
        if actual_crc != stored_crc:
            problems.append(problem("crc32c", f"stored {stored_crc:#010x}, computed {actual_crc:#010x}"))
        if slot_table_offset != SLOT_TABLE_OFFSET:
            problems.append(problem("slot_table_offset", f"{slot_table_offset}, expected {SLOT_TABLE_OFFSET}"))
        if slot_entry_size != SLOT_ENTRY_SIZE:
            problems.append(problem("slot_entry_size", f"{slot_entry_size}, expected {SLOT_ENTRY_SIZE}"))
        if slot_area_offset != SLOT_AREA_OFFSET:
            problems.append(problem("slot_area_offset", f"{slot_area_offset}, expected {SLOT_AREA_OFFSET}"))
        if slot_size % MIB or slot_size <= SLOT_HEADER_ROOM:
            problems.append(problem("slot_size", f"{slot_size} is not a MiB multiple larger than 1 MiB"))
        if not 1 <= slot_count <= MAX_SLOT_COUNT:
            problems.append(problem("slot_count", f"{slot_count}, expected 1 to {MAX_SLOT_COUNT}"))
        if store_size % SUPERBLOCK_BLOCK_SIZE:
            problems.append(problem("store_size", f"{store_size} is not a multiple of {SUPERBLOCK_BLOCK_SIZE}"))
        elif store_size < SLOT_AREA_OFFSET + slot_count * slot_size + SUPERBLOCK_BLOCK_SIZE:
            problems.append(problem("store_size", f"{store_size} is too small for {slot_count} slots of {slot_size}"))
        if copy not in (SuperblockCopy.PRIMARY, SuperblockCopy.BACKUP):
            problems.append(problem("copy", f"{copy}, expected 0 (primary) or 1 (backup)"))
        if problems:
            raise StoreFormatError("superblock", problems)

        return cls(
            store_uuid=uuid.UUID(bytes=uuid_bytes),
            store_size=store_size,
            slot_size=slot_size,
            slot_count=slot_count,
            created_at=created_at,
            copy=SuperblockCopy(copy),
            version_major=major,
            version_minor=minor,
            slot_area_offset=slot_area_offset,
            slot_table_offset=slot_table_offset,
            slot_entry_size=slot_entry_size,
        )

    @property
    def backup_offset(self) -> int:
        return backup_superblock_offset(self.store_size)

    def slot_offset(self, index: int) -> int:
        """Return the offset of slot ``index``; the image data starts SLOT_HEADER_ROOM later."""
        return self.slot_area_offset + index * self.slot_size

    def slot_entry_offset(self, index: int) -> int:
        return self.slot_table_offset + index * self.slot_entry_size

    def as_copy(self, copy: SuperblockCopy) -> Superblock:
        return dataclasses.replace(self, copy=copy)


def _encode_text(field: str, text: str) -> bytes:
    size = _SLOT_TEXT_FIELDS[field]
    encoded = text.encode("utf-8")
    if len(encoded) > size or b"\0" in encoded:
        raise StoreFieldTooLongError(
            f"slot {field} {text!r} is invalid: it is {len(encoded)} bytes of UTF-8 or contains NUL, "
            f"and the field has room for {size} bytes",
            hint=f"use a {field.replace('_', ' ')} of at most {size} bytes",
        )
    return encoded.ljust(size, b"\0")


def _decode_text(raw: bytes) -> str:
    """Decode a NUL-padded UTF-8 field; raise ValueError on invalid UTF-8 or bytes after the NUL."""
    text, _, padding = raw.partition(b"\0")
    if padding.strip(b"\0"):
        raise ValueError("non-zero bytes after the terminating NUL")
    return text.decode("utf-8")


@dataclasses.dataclass(frozen=True)
class SlotEntry:
    """One 512-byte slot table entry: the state and description of one saved image."""

    index: int
    state: SlotState = SlotState.FREE
    created_at: int = 0
    ram_size: int = 0
    image_size: int = 0
    checksum_type: ChecksumType = ChecksumType.NONE
    image_checksum: bytes = b""
    label: str = ""
    os_name: str = ""
    os_version: str = ""
    host_name: str = ""

    def to_bytes(self) -> bytes:
        """Return the 512-byte entry, CRC included; raise StoreFieldTooLongError for long text."""
        if len(self.image_checksum) > 32:
            raise StoreFieldTooLongError(
                f"image checksum of slot {self.index} is {len(self.image_checksum)} bytes, "
                "longer than the 32-byte field"
            )
        packed = struct.pack(
            SLOT_ENTRY_FORMAT,
            int(self.state),
            int(self.checksum_type),
            0,
            self.index,
            self.created_at,
            self.ram_size,
            self.image_size,
            self.image_checksum.ljust(32, b"\0"),
            _encode_text("label", self.label),
            _encode_text("os_name", self.os_name),
            _encode_text("os_version", self.os_version),
            _encode_text("host_name", self.host_name),
            bytes(220),
            0,
        )
        crc = compute_crc32c(packed)
        return packed[:SLOT_ENTRY_CRC_OFFSET] + struct.pack("<I", crc)

    @classmethod
    def from_bytes(cls, data: bytes, *, base_offset: int = 0) -> SlotEntry:
        """Parse and validate one entry; raise StoreFormatError listing every invalid field."""
        def problem(field: str, message: str) -> FieldProblem:
            return FieldProblem(base_offset + _SLOT_FIELD_OFFSETS[field], field, message)

        if len(data) < SLOT_ENTRY_SIZE:
            raise StoreFormatError(
                "slot entry",
                [FieldProblem(base_offset, "slot entry", f"{len(data)} bytes, expected {SLOT_ENTRY_SIZE}")],
            )
        data = bytes(data[:SLOT_ENTRY_SIZE])
        (
            state,
            checksum_type,
            _reserved0,
            index,
            created_at,
            ram_size,
            image_size,
            checksum,
            label,
            os_name,
            os_version,
            host_name,
            _reserved1,
            stored_crc,
        ) = struct.unpack(SLOT_ENTRY_FORMAT, data)

        problems: list[FieldProblem] = []
        actual_crc = compute_crc32c_with_zeroed_field(data, SLOT_ENTRY_CRC_OFFSET)
        if actual_crc != stored_crc:
            problems.append(problem("crc32c", f"stored {stored_crc:#010x}, computed {actual_crc:#010x}"))
        if state not in SlotState._value2member_map_:
            problems.append(problem("state", f"{state}, expected 0 to 3"))
        if checksum_type not in ChecksumType._value2member_map_:
            problems.append(problem("checksum_type", f"{checksum_type}, expected 0 to 2"))
        texts: dict[str, str] = {}
        for field, raw in (("label", label), ("os_name", os_name), ("os_version", os_version), ("host_name", host_name)):
            try:
                texts[field] = _decode_text(raw)
            except ValueError as error:
                problems.append(problem(field, f"invalid text: {error}"))
        if problems:
            raise StoreFormatError(f"slot entry {index}", problems)

        checksum_length = {ChecksumType.NONE: 0, ChecksumType.CRC32C: 4, ChecksumType.SHA256: 32}
        return cls(
            index=index,
            state=SlotState(state),
            created_at=created_at,
            ram_size=ram_size,
            image_size=image_size,
            checksum_type=ChecksumType(checksum_type),
            image_checksum=checksum[: checksum_length[ChecksumType(checksum_type)]],
            **texts,
        )


def make_superblock(
    *, store_size: int, slot_size: int, slot_count: int,
    store_uuid: uuid.UUID | None = None, created_at: int | None = None,
) -> Superblock:
    """Build the primary superblock for a new store; raise StoreTooSmallError when it does not fit."""
    if slot_size % MIB or slot_size <= SLOT_HEADER_ROOM:
        raise InvalidInputError(f"slot size {slot_size} is not a MiB multiple larger than 1 MiB")
    if not 1 <= slot_count <= MAX_SLOT_COUNT:
        raise InvalidInputError(
            f"slot count {slot_count} is out of range", hint=f"use 1 to {MAX_SLOT_COUNT} slots"
        )
    usable = align_down(store_size, SUPERBLOCK_BLOCK_SIZE)
    needed = required_store_size(slot_size, slot_count)
    if usable < needed:
        raise StoreTooSmallError(
            f"the store needs {needed} bytes ({format_size(needed)}) for {slot_count} slots of "
            f"{format_size(slot_size)}, but only {usable} bytes ({format_size(usable)}) are available",
            hint="use a larger disk or partition, or fewer slots",
        )
    return Superblock(
        store_uuid=store_uuid or uuid.uuid4(),
        store_size=usable,
        slot_size=slot_size,
        slot_count=slot_count,
        created_at=int(time.time()) if created_at is None else created_at,
    )


def format_header_area(superblock: Superblock) -> bytes:
    """Return the first MiB of a new store: primary superblock, free slot entries, zeros."""
    area = bytearray(HEADER_AREA_SIZE)
    area[:SUPERBLOCK_BLOCK_SIZE] = superblock.as_copy(SuperblockCopy.PRIMARY).to_block()
    for index in range(superblock.slot_count):
        offset = superblock.slot_entry_offset(index)
        area[offset : offset + SLOT_ENTRY_SIZE] = SlotEntry(index=index).to_bytes()
    return bytes(area)


def _open_size(fd: int) -> int:
    return os.lseek(fd, 0, os.SEEK_END)


def _pread_exact(fd: int, length: int, offset: int) -> bytes:
    data = os.pread(fd, length, offset)
    if len(data) != length:
        raise StoreError(f"short read: {len(data)} of {length} bytes at offset {offset}")
    return data


def _pwrite_exact(fd: int, data: bytes, offset: int) -> None:
    written = 0
    while written < len(data):
        written += os.pwrite(fd, data[written:], offset + written)


def initialize_store(
    path: os.PathLike[str] | str,
    *,
    offset: int = 0,
    size: int | None = None,
    slot_size: int,
    slot_count: int,
    store_uuid: uuid.UUID | None = None,
    created_at: int | None = None,
) -> Superblock:
    """Write a new, empty store at ``offset`` of ``path`` and return its superblock.

    Writes only the first MiB (superblock and slot table) and the last 4096-byte
    block (backup superblock), so the cost does not depend on the store size.
    ``size`` defaults to the rest of the file or device after ``offset``.
    """
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        if size is None:
            size = _open_size(fd) - offset
        superblock = make_superblock(
            store_size=size, slot_size=slot_size, slot_count=slot_count,
            store_uuid=store_uuid, created_at=created_at,
        )
        _pwrite_exact(fd, format_header_area(superblock), offset)
        backup = superblock.as_copy(SuperblockCopy.BACKUP).to_block()
        _pwrite_exact(fd, backup, offset + superblock.backup_offset)
        os.fsync(fd)
    finally:
        os.close(fd)
    return superblock


@dataclasses.dataclass(frozen=True)
class SlotReport:
    """One slot as read: its entry, or the error that made it unreadable."""

    index: int
    offset: int
    entry: SlotEntry | None
    error: StoreFormatError | None


@dataclasses.dataclass(frozen=True)
class StoreReport:
    """A store as read from disk: both superblocks (or their errors) and the slots."""

    offset: int
    size: int
    primary: Superblock | None
    primary_error: StoreFormatError | None
    backup: Superblock | None
    backup_error: StoreFormatError | None
    slots: tuple[SlotReport, ...]

    @property
    def superblock(self) -> Superblock | None:
        """The superblock to trust: the primary when valid, else the backup."""
        return self.primary or self.backup

    @property
    def healthy(self) -> bool:
        return (
            self.primary is not None
            and self.backup is not None
            and _same_store(self.primary, self.backup)
            and all(slot.error is None for slot in self.slots)
        )

    @property
    def blank(self) -> bool:
        """Whether both superblocks are all zero, so the area holds no store (or its headers were erased)."""
        return isinstance(self.primary_error, BlankSuperblockError) and isinstance(
            self.backup_error, BlankSuperblockError
        )

    @property
    def primary_repairable(self) -> bool:
        return self.backup is not None and (self.primary is None or not _same_store(self.primary, self.backup))


def _same_store(primary: Superblock, backup: Superblock) -> bool:
    return primary.as_copy(SuperblockCopy.BACKUP) == backup


def read_store(path: os.PathLike[str] | str, *, offset: int = 0, size: int | None = None) -> StoreReport:
    """Read both superblocks and the slot table of the store at ``offset`` of ``path``.

    Damaged headers do not raise, because the report carries each error.
    Raises StoreError when the file cannot be opened or read, and
    StoreTooSmallError when it is too small to contain a store.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as error:
        raise StoreError(f"cannot open {os.fspath(path)}: {error.strerror}") from error
    try:
        if size is None:
            size = _open_size(fd) - offset
        if size < HEADER_AREA_SIZE + SUPERBLOCK_BLOCK_SIZE:
            raise StoreTooSmallError(f"{os.fspath(path)} has {size} bytes after offset {offset}, too small for a store")
        primary, primary_error = _read_superblock(fd, offset, 0)
        backup_offset = backup_superblock_offset(size)
        backup, backup_error = _read_superblock(fd, offset, backup_offset)
        if backup is not None and backup.copy != SuperblockCopy.BACKUP:
            backup_error = StoreFormatError(
                "backup superblock",
                [FieldProblem(backup_offset + _SUPERBLOCK_FIELD_OFFSETS["copy"], "copy", "marked primary")],
            )
            backup = None
        if primary is not None and primary.copy != SuperblockCopy.PRIMARY:
            primary_error = StoreFormatError(
                "primary superblock", [FieldProblem(_SUPERBLOCK_FIELD_OFFSETS["copy"], "copy", "marked backup")]
            )
            primary = None
        trusted = primary or backup
        slots: list[SlotReport] = []
        if trusted is not None:
            table = _pread_exact(fd, trusted.slot_count * SLOT_ENTRY_SIZE, offset + trusted.slot_table_offset)
            for index in range(trusted.slot_count):
                entry_offset = trusted.slot_entry_offset(index)
                raw = table[index * SLOT_ENTRY_SIZE : (index + 1) * SLOT_ENTRY_SIZE]
                slots.append(_parse_slot(raw, index, entry_offset))
    finally:
        os.close(fd)
    return StoreReport(offset, size, primary, primary_error, backup, backup_error, tuple(slots))


def _read_superblock(fd: int, store_offset: int, offset: int) -> tuple[Superblock | None, StoreFormatError | None]:
    raw = _pread_exact(fd, SUPERBLOCK_SIZE, store_offset + offset)
    try:
        return Superblock.from_bytes(raw, base_offset=offset), None
    except StoreFormatError as error:
        return None, error


def _parse_slot(raw: bytes, index: int, entry_offset: int) -> SlotReport:
    try:
        entry = SlotEntry.from_bytes(raw, base_offset=entry_offset)
    except StoreFormatError as error:
        return SlotReport(index, entry_offset, None, error)
    if entry.index != index:
        mismatch = StoreFormatError(
            f"slot entry {index}",
            [FieldProblem(entry_offset + _SLOT_FIELD_OFFSETS["index"], "index", f"{entry.index}, expected {index}")],
        )
        return SlotReport(index, entry_offset, None, mismatch)
    return SlotReport(index, entry_offset, entry, None)


def repair_primary_superblock(
    path: os.PathLike[str] | str, *, offset: int = 0, size: int | None = None, dry_run: bool = False
) -> Superblock:
    """Rewrite the primary superblock from the backup copy and return what was (or would be) written.

    Raises StoreError when the backup is invalid too. With ``dry_run`` nothing
    is written.
    """
    report = read_store(path, offset=offset, size=size)
    if report.backup is None:
        problem = report.backup_error.message if report.backup_error is not None else "unreadable"
        raise StoreError(
            f"cannot repair {os.fspath(path)}: the backup superblock is invalid too ({problem})",
            hint="initialize the store again; its snapshots cannot be recovered from the headers",
        )
    primary = report.backup.as_copy(SuperblockCopy.PRIMARY)
    if not dry_run:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            _pwrite_exact(fd, primary.to_block(), offset)
            os.fsync(fd)
        finally:
            os.close(fd)
    return primary


def format_size(size: int) -> str:
    """Format a byte count with a binary unit, for messages: 1.5 GiB, 2052 MiB, 4 KiB.

    A size that two decimals would show as a whole number of one unit (2 GiB +
    4 MiB as "2.00 GiB") is shown in the next smaller unit, so two different
    sizes never print alike.
    """
    for unit, factor in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size < factor:
            continue
        if size % factor == 0:
            return f"{size // factor} {unit}"
        text = f"{size / factor:.2f}"
        if not text.endswith(".00"):
            return f"{text} {unit}"
    return f"{size} B"
