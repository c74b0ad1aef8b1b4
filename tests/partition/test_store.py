"""The snapshot store codec: byte layout, CRC, validation, initialization and repair."""

from __future__ import annotations

import struct
import uuid
from pathlib import Path

import pytest
from disk_helpers import GIB, MIB, TIB, allocated_bytes, make_sparse
from hypothesis import given, settings
from hypothesis import strategies as st

from switchos.partition.crc import CHECK_VALUE, compute_crc32c
from switchos.partition.store import (
    HEADER_AREA_SIZE,
    BlankSuperblockError,
    MAX_SLOT_COUNT,
    ChecksumType,
    SlotEntry,
    SlotState,
    StoreFieldTooLongError,
    StoreFormatError,
    StoreTooSmallError,
    Superblock,
    SuperblockCopy,
    initialize_store,
    make_superblock,
    read_store,
    format_bytes,
    repair_primary_superblock,
    required_store_size,
)

VECTOR_UUID = uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")

# The known-good superblock of docs/snapshot-store.md, assembled field by field
# from the format table (not through the codec's struct format).
VECTOR_FIELDS_BEFORE_CRC = b"SWOSSNAP" + (1).to_bytes(2, "little") + (0).to_bytes(2, "little")
VECTOR_FIELDS_AFTER_CRC = (
    VECTOR_UUID.bytes
    + (1 * GIB).to_bytes(8, "little")
    + (1 * MIB).to_bytes(8, "little")
    + (256 * MIB).to_bytes(8, "little")
    + (2).to_bytes(4, "little")
    + (4096).to_bytes(4, "little")
    + (512).to_bytes(4, "little")
    + (0).to_bytes(4, "little")
    + (1700000000).to_bytes(8, "little")
    + bytes(48)
)
VECTOR_HEX = (
    "53574f53534e415001000000699c1b28"
    "00112233445566778899aabbccddeeff"
    "00000040000000000000100000000000"
    "00000010000000000200000000100000"
    "000200000000000000f1536500000000"
    + "00" * 48
)


def reference_crc32c(data: bytes) -> int:
    """Bit-by-bit CRC32C (reflected polynomial 0x82F63B78), independent of the crc32c package."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def vector_superblock() -> Superblock:
    return Superblock(
        store_uuid=VECTOR_UUID, store_size=1 * GIB, slot_size=256 * MIB, slot_count=2, created_at=1700000000
    )


class TestCrc32c:
    def test_check_value(self):
        assert compute_crc32c(b"123456789") == CHECK_VALUE == 0xE3069283

    def test_matches_reference_implementation(self):
        data = bytes(range(256)) * 3
        assert compute_crc32c(data) == reference_crc32c(data)


class TestSuperblock:
    def test_known_good_vector(self):
        crc = reference_crc32c(VECTOR_FIELDS_BEFORE_CRC + bytes(4) + VECTOR_FIELDS_AFTER_CRC)
        expected = VECTOR_FIELDS_BEFORE_CRC + crc.to_bytes(4, "little") + VECTOR_FIELDS_AFTER_CRC
        assert crc == 0x281B9C69
        assert expected.hex() == VECTOR_HEX
        assert vector_superblock().to_bytes() == expected

    def test_vector_parses(self):
        parsed = Superblock.from_bytes(bytes.fromhex(VECTOR_HEX))
        assert parsed == vector_superblock()

    def test_block_is_padded_to_4096(self):
        block = vector_superblock().to_block()
        assert len(block) == 4096
        assert block[128:] == bytes(4096 - 128)

    def test_backup_differs_only_in_copy_and_crc(self):
        primary = vector_superblock().to_bytes()
        backup = vector_superblock().as_copy(SuperblockCopy.BACKUP).to_bytes()
        differing = [offset for offset in range(128) if primary[offset] != backup[offset]]
        assert set(differing) <= set(range(12, 16)) | set(range(68, 72))
        assert Superblock.from_bytes(backup).copy is SuperblockCopy.BACKUP

    @settings(max_examples=60, deadline=None)
    @given(
        slot_mib=st.integers(min_value=2, max_value=1 << 20),
        slot_count=st.integers(min_value=1, max_value=MAX_SLOT_COUNT),
        extra_blocks=st.integers(min_value=1, max_value=1 << 30),
        created_at=st.integers(min_value=0, max_value=(1 << 64) - 1),
        uuid_bytes=st.binary(min_size=16, max_size=16),
        copy=st.sampled_from(SuperblockCopy),
    )
    def test_round_trip(self, slot_mib, slot_count, extra_blocks, created_at, uuid_bytes, copy):
        slot_size = slot_mib * MIB
        superblock = Superblock(
            store_uuid=uuid.UUID(bytes=uuid_bytes),
            store_size=MIB + slot_count * slot_size + extra_blocks * 4096,
            slot_size=slot_size,
            slot_count=slot_count,
            created_at=created_at,
            copy=copy,
        )
        data = superblock.to_bytes()
        assert len(data) == 128
        assert Superblock.from_bytes(data) == superblock
        assert Superblock.from_bytes(data).to_bytes() == data

    def test_wrong_magic_raises_with_offset(self):
        data = bytearray(vector_superblock().to_bytes())
        data[0:8] = b"NOTSTORE"
        with pytest.raises(StoreFormatError) as caught:
            Superblock.from_bytes(bytes(data), base_offset=0x1000)
        assert [(p.field, p.offset) for p in caught.value.problems] == [("magic", 0x1000)]

    def test_wrong_magic_message_has_no_raw_bytes(self):
        data = bytearray(vector_superblock().to_bytes())
        data[0:8] = b"\x00\xffNOTSB\x01"
        with pytest.raises(StoreFormatError) as caught:
            Superblock.from_bytes(bytes(data))
        assert caught.value.message == (
            'invalid superblock: magic at byte 0x0: hex 00ff4e4f54534201, expected "SWOSSNAP"'
        )
        assert caught.value.hint is None

    def test_zero_block_is_blank(self):
        with pytest.raises(BlankSuperblockError) as caught:
            Superblock.from_bytes(bytes(128), base_offset=0x2000)
        assert caught.value.message == "invalid superblock: superblock at byte 0x2000: all 128 bytes are zero (blank)"

    def test_format_bytes(self):
        assert format_bytes(b"SWOSSNAP") == '"SWOSSNAP"'
        assert format_bytes(b"AB\x7f") == "hex 41427f"

    def test_flipped_bit_fails_crc(self):
        data = bytearray(vector_superblock().to_bytes())
        data[40] ^= 0x01
        with pytest.raises(StoreFormatError) as caught:
            Superblock.from_bytes(bytes(data))
        fields = [problem.field for problem in caught.value.problems]
        assert "crc32c" in fields
        assert "slot_area_offset" in fields

    def test_every_problem_reported_at_once(self):
        fields = bytearray(VECTOR_FIELDS_BEFORE_CRC + bytes(4) + VECTOR_FIELDS_AFTER_CRC)
        struct.pack_into("<H", fields, 8, 2)  # version_major
        struct.pack_into("<I", fields, 56, 0)  # slot_count
        struct.pack_into("<I", fields, 64, 256)  # slot_entry_size
        struct.pack_into("<I", fields, 68, 7)  # copy
        struct.pack_into("<I", fields, 12, reference_crc32c(bytes(fields)))
        with pytest.raises(StoreFormatError) as caught:
            Superblock.from_bytes(bytes(fields))
        problems = {problem.field: problem.offset for problem in caught.value.problems}
        assert problems == {"version_major": 8, "slot_count": 56, "slot_entry_size": 64, "copy": 68}
        assert "slot_count at byte 0x38" in str(caught.value)

    def test_newer_minor_version_accepted(self):
        fields = bytearray(VECTOR_FIELDS_BEFORE_CRC + bytes(4) + VECTOR_FIELDS_AFTER_CRC)
        struct.pack_into("<H", fields, 10, 3)
        struct.pack_into("<I", fields, 12, reference_crc32c(bytes(fields)))
        assert Superblock.from_bytes(bytes(fields)).version_minor == 3

    def test_short_input_raises(self):
        with pytest.raises(StoreFormatError, match="100 bytes, expected 128"):
            Superblock.from_bytes(bytes(100))


class TestSlotEntry:
    def full_entry(self) -> SlotEntry:
        return SlotEntry(
            index=1,
            state=SlotState.VALID,
            created_at=1700000100,
            ram_size=8 * GIB,
            image_size=8 * GIB,
            checksum_type=ChecksumType.CRC32C,
            image_checksum=bytes.fromhex("78563412"),
            label="work",
            os_name="Debian GNU/Linux",
            os_version="12",
            host_name="desk",
        )

    def test_known_good_vector(self):
        expected = bytearray(512)
        expected[0] = 2
        expected[1] = 1
        expected[4:8] = (1).to_bytes(4, "little")
        expected[8:16] = (1700000100).to_bytes(8, "little")
        expected[16:24] = (8 * GIB).to_bytes(8, "little")
        expected[24:32] = (8 * GIB).to_bytes(8, "little")
        expected[32:36] = bytes.fromhex("78563412")
        expected[64:68] = b"work"
        expected[128:144] = b"Debian GNU/Linux"
        expected[192:194] = b"12"
        expected[224:228] = b"desk"
        expected[508:512] = reference_crc32c(bytes(expected)).to_bytes(4, "little")
        assert self.full_entry().to_bytes() == bytes(expected)

    def test_round_trip(self):
        entry = self.full_entry()
        assert SlotEntry.from_bytes(entry.to_bytes()) == entry

    @settings(max_examples=60, deadline=None)
    @given(
        state=st.sampled_from(SlotState),
        checksum=st.sampled_from([(ChecksumType.NONE, 0), (ChecksumType.CRC32C, 4), (ChecksumType.SHA256, 32)]),
        data=st.data(),
        label=st.text(max_size=16).filter(lambda text: "\0" not in text and len(text.encode()) <= 64),
        host=st.text(max_size=16).filter(lambda text: "\0" not in text and len(text.encode()) <= 64),
        numbers=st.tuples(*(st.integers(min_value=0, max_value=(1 << 64) - 1) for _ in range(3))),
        index=st.integers(min_value=0, max_value=MAX_SLOT_COUNT - 1),
    )
    def test_round_trip_any(self, state, checksum, data, label, host, numbers, index):
        checksum_type, length = checksum
        digest = data.draw(st.binary(min_size=length, max_size=length))
        entry = SlotEntry(
            index=index, state=state, created_at=numbers[0], ram_size=numbers[1], image_size=numbers[2],
            checksum_type=checksum_type, image_checksum=digest, label=label, host_name=host,
        )
        raw = entry.to_bytes()
        assert len(raw) == 512
        assert SlotEntry.from_bytes(raw) == entry

    def test_free_entry_is_zero_but_index_and_crc(self):
        raw = SlotEntry(index=5).to_bytes()
        assert raw[4:8] == (5).to_bytes(4, "little")
        assert raw[:4] == bytes(4)
        assert raw[8:508] == bytes(500)

    def test_long_label_rejected(self):
        with pytest.raises(StoreFieldTooLongError, match="label"):
            SlotEntry(index=0, label="x" * 65).to_bytes()

    def test_full_field_without_terminator(self):
        entry = SlotEntry(index=0, os_version="v" * 32)
        assert SlotEntry.from_bytes(entry.to_bytes()).os_version == "v" * 32

    def test_invalid_fields_reported_with_offsets(self):
        raw = bytearray(self.full_entry().to_bytes())
        raw[0] = 9  # state
        raw[64:68] = b"\xff\xfe\x00\x01"  # invalid UTF-8, then a byte after the NUL
        struct.pack_into("<I", raw, 508, reference_crc32c(bytes(raw[:508]) + bytes(4)))
        with pytest.raises(StoreFormatError) as caught:
            SlotEntry.from_bytes(bytes(raw), base_offset=4096 + 512)
        problems = {problem.field: problem.offset for problem in caught.value.problems}
        assert problems == {"state": 4608, "label": 4608 + 64}


class TestStoreOnDisk:
    def test_size_too_small_states_sizes(self, tmp_path: Path):
        image = make_sparse(tmp_path / "small.img", 100 * MIB)
        with pytest.raises(StoreTooSmallError) as caught:
            initialize_store(image, slot_size=64 * MIB, slot_count=2)
        assert "needs 136314880 bytes (130 MiB)" in caught.value.message
        assert "only 104857600 bytes (100 MiB)" in caught.value.message

    @pytest.mark.parametrize("size", [1 * GIB, 1 * TIB])
    def test_initialize_writes_headers_only(self, tmp_path: Path, size: int):
        image = make_sparse(tmp_path / "store.img", size)
        superblock = initialize_store(image, slot_size=256 * MIB, slot_count=2)
        # The first MiB and the last 4096 bytes, whatever the image size (plus
        # file system metadata blocks for the sparse file).
        assert allocated_bytes(image) <= HEADER_AREA_SIZE + 64 * 1024
        with open(image, "rb") as handle:
            handle.seek(size - 4096)
            backup = Superblock.from_bytes(handle.read(128), base_offset=size - 4096)
        assert backup == superblock.as_copy(SuperblockCopy.BACKUP)
        assert superblock.store_size == size

    def test_read_back_and_slot_entries(self, tmp_path: Path):
        image = make_sparse(tmp_path / "store.img", 2 * GIB)
        superblock = initialize_store(image, offset=MIB, size=GIB, slot_size=100 * MIB, slot_count=5)
        report = read_store(image, offset=MIB, size=GIB)
        assert report.healthy
        assert report.primary == superblock
        assert [slot.entry for slot in report.slots] == [SlotEntry(index=i) for i in range(5)]
        assert [slot.offset for slot in report.slots] == [4096 + 512 * i for i in range(5)]
        assert [superblock.slot_offset(i) for i in range(2)] == [MIB, 101 * MIB]

    def test_erased_headers_are_blank(self, tmp_path: Path):
        image = make_sparse(tmp_path / "store.img", GIB)
        superblock = initialize_store(image, slot_size=100 * MIB, slot_count=2)
        with open(image, "r+b") as handle:
            handle.write(bytes(4096))
            assert not read_store(image).blank
            handle.seek(superblock.backup_offset)
            handle.write(bytes(4096))
        report = read_store(image)
        assert report.blank
        assert report.superblock is None
        assert not report.primary_repairable

    def test_damaged_primary_repaired_from_backup(self, tmp_path: Path):
        image = make_sparse(tmp_path / "store.img", GIB)
        superblock = initialize_store(image, slot_size=100 * MIB, slot_count=2)
        with open(image, "r+b") as handle:
            handle.write(b"\0" * 16)
        report = read_store(image)
        assert report.primary is None
        assert report.primary_error is not None
        assert report.primary_error.problems[0].field == "magic"
        assert report.superblock == superblock.as_copy(SuperblockCopy.BACKUP)
        assert report.primary_repairable
        assert not report.healthy

        planned = repair_primary_superblock(image, dry_run=True)
        assert read_store(image).primary is None
        assert planned == superblock

        assert repair_primary_superblock(image) == superblock
        repaired = read_store(image)
        assert repaired.healthy
        assert repaired.primary == superblock

    def test_repair_without_backup_raises(self, tmp_path: Path):
        image = make_sparse(tmp_path / "store.img", GIB)
        initialize_store(image, slot_size=100 * MIB, slot_count=2)
        with open(image, "r+b") as handle:
            handle.write(b"\0" * 16)
            handle.seek(GIB - 4096)
            handle.write(b"\0" * 16)
        with pytest.raises(Exception, match="backup superblock is invalid too"):
            repair_primary_superblock(image)

    def test_damaged_slot_entry_reported(self, tmp_path: Path):
        image = make_sparse(tmp_path / "store.img", GIB)
        initialize_store(image, slot_size=100 * MIB, slot_count=3)
        with open(image, "r+b") as handle:
            handle.seek(4096 + 512 + 100)
            handle.write(b"\x01")
        report = read_store(image)
        assert [slot.entry is None for slot in report.slots] == [False, True, False]
        assert report.slots[1].error is not None
        assert report.slots[1].error.problems[0].offset == 4096 + 512 + 508
        assert not report.healthy

    def test_entry_at_wrong_position_reported(self, tmp_path: Path):
        image = make_sparse(tmp_path / "store.img", GIB)
        initialize_store(image, slot_size=100 * MIB, slot_count=2)
        with open(image, "r+b") as handle:
            handle.seek(4096 + 512)
            handle.write(SlotEntry(index=0, state=SlotState.VALID).to_bytes())
        report = read_store(image)
        error = report.slots[1].error
        assert error is not None
        assert [(problem.field, problem.offset) for problem in error.problems] == [("index", 4096 + 512 + 4)]
        assert report.slots[0].entry == SlotEntry(index=0)

    def test_make_superblock_rounds_store_size_down(self):
        superblock = make_superblock(store_size=GIB + 1000, slot_size=2 * MIB, slot_count=1)
        assert superblock.store_size == GIB
        assert required_store_size(2 * MIB, 1) == 4 * MIB

    def test_offsets_are_4096_multiples(self):
        # Every offset is a multiple of 4096, so 512- and 4096-byte sector
        # devices address the structures as whole sectors.
        superblock = make_superblock(store_size=GIB, slot_size=10 * MIB, slot_count=3)
        offsets = [0, superblock.slot_table_offset, superblock.slot_area_offset, superblock.backup_offset]
        offsets += [superblock.slot_offset(i) for i in range(3)]
        assert all(offset % 4096 == 0 for offset in offsets)
        assert all(superblock.slot_offset(i) % MIB == 0 for i in range(3))
