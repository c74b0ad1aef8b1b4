"""Layouts on sparse images and loop devices, checked with sgdisk -v and sgdisk -p."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from disk_helpers import (
    GIB,
    MIB,
    TIB,
    allocated_bytes,
    file_digest,
    make_sparse,
    mounted,
    sgdisk_partitions,
    sgdisk_verify,
    sh,
)

from switchos.errors import InvalidInputError
from switchos.partition.layout import (
    SWITCHOS_PARTITION_NAME,
    SWITCHOS_TYPE_GUID,
    DeviceBusyError,
    LayoutError,
    LayoutKind,
    StoreGeometry,
    TypeGuidWriter,
    WipeNotConfirmedError,
    find_hybrid_mbr_types,
    libparted_sets_type_guid,
    locate_store,
    prepare_existing_partition,
    prepare_free_space,
    prepare_layout,
    prepare_new_table,
    prepare_whole_disk,
    read_gpt_partition_ids,
)
from switchos.partition.store import StoreTooSmallError, read_store

GEOMETRY = StoreGeometry(slot_size=129 * MIB, slot_count=2)  # 128 MiB of RAM
STORE_SIZE = GEOMETRY.required_size  # 260 MiB
LINUX_TYPE = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"


def make_gpt_image(path: Path, size: int, partitions: list[str]) -> Path:
    """Create a sparse image with a GPT holding ``partitions`` (sgdisk --new specs), each filled with a marker."""
    make_sparse(path, size)
    argv = ["sgdisk", "--clear"]
    for number, spec in enumerate(partitions, start=1):
        argv += [f"--new={number}:{spec}", f"--typecode={number}:{LINUX_TYPE}", f"--change-name={number}:data{number}"]
    sh(*argv, path)
    for row in sgdisk_partitions(path):
        with open(path, "r+b") as image:
            image.seek(row[1] * 512)
            image.write(f"content of partition {row[0]}".encode() * 100)
    return path


def partition_digests(path: Path, sector: int = 512) -> dict[int, str]:
    return {
        number: file_digest(path, offset=start * sector, length=(end - start + 1) * sector)
        for number, start, end, _, _ in sgdisk_partitions(path)
    }


def check_switchos_partition(path: Path, number: int, sector: int = 512) -> tuple[int, int]:
    """Check partition ``number`` with sgdisk: type, name, 1 MiB alignment; return its (offset, size) in bytes."""
    sgdisk_verify(path)
    rows = {row[0]: row for row in sgdisk_partitions(path)}
    _, start, end, _, name = rows[number]
    assert name == SWITCHOS_PARTITION_NAME
    ids = read_gpt_partition_ids(path, number)
    assert ids.type_guid == SWITCHOS_TYPE_GUID
    assert "Partition GUID code: 4998007F-9E45-4E0B-9F9E-036B9E078094" in sh("sgdisk", "-i", str(number), path)
    assert (start * sector) % MIB == 0
    return start * sector, (end - start + 1) * sector


class TestNewTableOnImages:
    @pytest.mark.parametrize("size", [1 * GIB, 64 * GIB, 1 * TIB])
    def test_sparse_image(self, tmp_path: Path, size: int):
        image = make_sparse(tmp_path / "disk.img", size)
        result = prepare_new_table(image, GEOMETRY, wipe=True)

        offset, length = check_switchos_partition(image, 1)
        assert (result.offset, result.size) == (offset, length) == (MIB, STORE_SIZE)
        assert result.changed
        assert result.kind is LayoutKind.NEW_TABLE
        assert result.partition_number == 1
        assert result.partition_guid == read_gpt_partition_ids(image, 1).unique_guid
        assert result.partition_path is None
        assert len(sgdisk_partitions(image)) == 1
        report = read_store(image, offset=offset, size=length)
        assert report.healthy
        assert report.primary == result.superblock
        # GPT, store headers and backup GPT only: the image stays sparse.
        assert allocated_bytes(image) < 4 * MIB

    def test_without_wipe_rejected(self, tmp_path: Path):
        image = make_gpt_image(tmp_path / "disk.img", GIB, ["1M:+100M"])
        before = sh("sgdisk", "-p", image)
        with pytest.raises(WipeNotConfirmedError) as caught:
            prepare_new_table(image, GEOMETRY, wipe=False)
        assert "--wipe" in (caught.value.hint or "")
        assert sh("sgdisk", "-p", image) == before

    def test_replaces_existing_table(self, tmp_path: Path):
        image = make_gpt_image(tmp_path / "disk.img", GIB, ["1M:+100M", "0:+100M"])
        prepare_new_table(image, GEOMETRY, wipe=True)
        assert [row[0] for row in sgdisk_partitions(image)] == [1]
        check_switchos_partition(image, 1)

    def test_idempotent(self, tmp_path: Path):
        image = make_sparse(tmp_path / "disk.img", 512 * MIB)
        first = prepare_new_table(image, GEOMETRY, wipe=True)
        digest = file_digest(image)
        second = prepare_new_table(image, GEOMETRY, wipe=False)
        assert not second.changed
        assert second.superblock == first.superblock
        assert second.partition_guid == first.partition_guid
        assert file_digest(image) == digest

    def test_other_geometry_rewrites(self, tmp_path: Path):
        image = make_sparse(tmp_path / "disk.img", GIB)
        first = prepare_new_table(image, GEOMETRY, wipe=True)
        with pytest.raises(WipeNotConfirmedError):
            prepare_new_table(image, StoreGeometry(129 * MIB, 3), wipe=False)
        third = prepare_new_table(image, StoreGeometry(129 * MIB, 3), wipe=True)
        assert third.changed
        assert third.superblock.store_uuid != first.superblock.store_uuid
        assert third.superblock.slot_count == 3

    def test_too_small(self, tmp_path: Path):
        image = make_sparse(tmp_path / "disk.img", 256 * MIB)
        with pytest.raises(StoreTooSmallError) as caught:
            prepare_new_table(image, GEOMETRY, wipe=True)
        assert "the store needs 260 MiB" in caught.value.message
        assert "the disk has 254.98 MiB of aligned space" in caught.value.message


class TestTypeGuidWriter:
    def test_detection_matches_libparted(self):
        import _ped

        assert libparted_sets_type_guid() == hasattr(_ped.Partition, "set_type_uuid")

    def test_pyparted_writer(self, tmp_path: Path):
        image = make_sparse(tmp_path / "disk.img", GIB)
        if libparted_sets_type_guid():
            result = prepare_new_table(image, GEOMETRY, wipe=True, type_writer=TypeGuidWriter.PYPARTED)
            assert result.type_writer is TypeGuidWriter.PYPARTED
            check_switchos_partition(image, 1)
        else:
            # libparted 3.5 (Debian 12) has no type UUID setter: forcing the
            # pyparted writer is rejected before anything is written.
            with pytest.raises(LayoutError, match="newer than 3.5"):
                prepare_new_table(image, GEOMETRY, wipe=True, type_writer=TypeGuidWriter.PYPARTED)
            assert allocated_bytes(image) == 0

    def test_sgdisk_writer(self, tmp_path: Path):
        image = make_sparse(tmp_path / "disk.img", GIB)
        result = prepare_new_table(image, GEOMETRY, wipe=True, type_writer=TypeGuidWriter.SGDISK)
        assert result.type_writer is TypeGuidWriter.SGDISK
        check_switchos_partition(image, 1)

    def test_automatic_choice(self, tmp_path: Path):
        image = make_sparse(tmp_path / "disk.img", GIB)
        result = prepare_new_table(image, GEOMETRY, wipe=True)
        expected = TypeGuidWriter.PYPARTED if libparted_sets_type_guid() else TypeGuidWriter.SGDISK
        assert result.type_writer is expected


class TestFreeSpaceOnImages:
    def test_other_partitions_untouched(self, tmp_path: Path):
        image = make_gpt_image(tmp_path / "disk.img", 2 * GIB, ["1M:+100M", "0:+300M", "1200M:+200M"])
        rows_before = sgdisk_partitions(image)
        digests_before = partition_digests(image)

        result = prepare_free_space(image, GEOMETRY)

        rows_after = sgdisk_partitions(image)
        assert rows_after[:3] == rows_before
        assert {number: digest for number, digest in partition_digests(image).items() if number <= 3} == digests_before
        offset, _ = check_switchos_partition(image, 4)
        # The first free region that fits: after partition 2, before partition 3.
        assert rows_before[1][2] * 512 < offset < rows_before[2][1] * 512
        assert result.partition_number == 4
        assert read_store(image, offset=result.offset, size=result.size).healthy

    def test_no_room(self, tmp_path: Path):
        image = make_gpt_image(tmp_path / "disk.img", GIB, ["1M:+500M", "0:+300M"])
        before = sh("sgdisk", "-p", image)
        with pytest.raises(StoreTooSmallError, match="it needs 260 MiB, the largest aligned free region has 222.98 MiB"):
            prepare_free_space(image, GEOMETRY)
        assert sh("sgdisk", "-p", image) == before

    def test_no_table(self, tmp_path: Path):
        image = make_sparse(tmp_path / "disk.img", GIB)
        with pytest.raises(LayoutError, match="no readable partition table"):
            prepare_free_space(image, GEOMETRY)

    def test_msdos_table_rejected(self, tmp_path: Path):
        image = make_sparse(tmp_path / "disk.img", GIB)
        sh("parted", "--script", image, "mklabel", "msdos", "mkpart", "primary", "1MiB", "100MiB")
        with pytest.raises(LayoutError, match="msdos partition table, SwitchOS needs GPT"):
            prepare_free_space(image, GEOMETRY)

    def test_hybrid_mbr_rejected(self, tmp_path: Path):
        # A Raspberry Pi style hybrid: MBR entry 1 mirrors GPT partition 1 as FAT32 (0x0c).
        image = make_gpt_image(tmp_path / "disk.img", GIB, ["1M:+32M", "0:+100M"])
        sh("sgdisk", "--typecode=1:EF00", "--hybrid=1", image)
        assert find_hybrid_mbr_types(image) == [0xEF]
        before = file_digest(image, length=MIB)
        with pytest.raises(LayoutError, match="hybrid MBR"):
            prepare_free_space(image, GEOMETRY)
        assert file_digest(image, length=MIB) == before

    def test_idempotent(self, tmp_path: Path):
        image = make_gpt_image(tmp_path / "disk.img", 512 * MIB, ["1M:+100M"])
        first = prepare_free_space(image, GEOMETRY)
        digest = file_digest(image)
        second = prepare_free_space(image, GEOMETRY)
        assert not second.changed
        assert second.partition_number == first.partition_number == 2
        assert file_digest(image) == digest


class TestExistingPartitionOnImages:
    def test_retype(self, tmp_path: Path):
        image = make_gpt_image(tmp_path / "disk.img", GIB, ["1M:+100M", "0:+400M"])
        rows_before = sgdisk_partitions(image)
        digest_first = partition_digests(image)[1]
        result = prepare_existing_partition(image, 2, GEOMETRY, wipe=True)
        rows_after = sgdisk_partitions(image)
        assert rows_after[0] == rows_before[0]
        assert rows_after[1][1:3] == rows_before[1][1:3]
        assert partition_digests(image)[1] == digest_first
        offset, size = check_switchos_partition(image, 2)
        assert (result.offset, result.size) == (offset, size) == (101 * MIB, 400 * MIB)
        assert read_store(image, offset=offset, size=size).healthy
        unchanged = prepare_existing_partition(image, 2, GEOMETRY, wipe=False)
        assert not unchanged.changed

    def test_needs_wipe(self, tmp_path: Path):
        image = make_gpt_image(tmp_path / "disk.img", GIB, ["1M:+400M"])
        before = file_digest(image, length=2 * MIB)
        with pytest.raises(WipeNotConfirmedError, match="partition 1 of"):
            prepare_existing_partition(image, 1, GEOMETRY, wipe=False)
        assert file_digest(image, length=2 * MIB) == before

    def test_too_small_partition(self, tmp_path: Path):
        image = make_gpt_image(tmp_path / "disk.img", GIB, ["1M:+100M"])
        with pytest.raises(StoreTooSmallError, match="the store needs 260 MiB, the partition has 100 MiB"):
            prepare_existing_partition(image, 1, GEOMETRY, wipe=True)

    def test_missing_partition(self, tmp_path: Path):
        image = make_gpt_image(tmp_path / "disk.img", GIB, ["1M:+100M"])
        with pytest.raises(InvalidInputError) as caught:
            prepare_layout(LayoutKind.EXISTING_PARTITION, image, GEOMETRY, wipe=True, partition_number=3)
        assert caught.value.hint == "existing partitions: 1"


class TestWholeDiskOnImages:
    def test_store_at_byte_zero(self, tmp_path: Path):
        image = make_gpt_image(tmp_path / "disk.img", GIB, ["1M:+100M"])
        with pytest.raises(WipeNotConfirmedError):
            prepare_whole_disk(image, GEOMETRY, wipe=False)
        result = prepare_whole_disk(image, GEOMETRY, wipe=True)
        assert (result.offset, result.size, result.partition_number) == (0, GIB, None)
        # sgdisk finds no GPT any more (neither the primary nor the backup header).
        assert "Creating new GPT entries" in sh("sgdisk", "-p", image)
        assert sgdisk_partitions(image) == []
        report = read_store(image)
        assert report.healthy
        assert report.primary == result.superblock
        assert locate_store(image).offset == 0
        digest = file_digest(image)
        assert not prepare_whole_disk(image, GEOMETRY, wipe=False).changed
        assert file_digest(image) == digest


    def test_size_not_multiple_of_4096(self, tmp_path: Path):
        # The last 512-byte sector, with the backup GPT header, lies beyond the
        # last whole 4096-byte block and must be cleared too.
        size = GIB + 3 * 512
        image = make_gpt_image(tmp_path / "disk.img", size, ["1M:+100M"])
        result = prepare_whole_disk(image, GEOMETRY, wipe=True)
        assert result.superblock.store_size == GIB
        assert "Creating new GPT entries" in sh("sgdisk", "-p", image)
        with open(image, "rb") as handle:
            handle.seek(GIB)
            assert handle.read() == bytes(3 * 512)
        assert read_store(image).healthy


def node_is_block_device(path: Path | None) -> bool:
    return path is not None and stat.S_ISBLK(os.stat(path).st_mode)


def kernel_partitions(device: Path) -> list[str]:
    block = Path("/sys/block") / device.name
    return sorted(entry.name for entry in block.iterdir() if (entry / "partition").is_file())


@pytest.mark.root
@pytest.mark.parametrize("sector", [512, 4096])
class TestOnLoopDevices:
    def test_new_table(self, loop_device: Callable[..., Path], sector: int):
        device = loop_device(2 * GIB, sector_size=sector)
        result = prepare_new_table(device, GEOMETRY, wipe=True)
        offset, size = check_switchos_partition(device, 1, sector)
        assert result.logical_sector_size == sector
        assert (result.offset, result.size) == (offset, size) == (MIB, STORE_SIZE)
        assert node_is_block_device(result.partition_path)
        assert kernel_partitions(device) == [f"{device.name}p1"]
        assert result.partition_guid == read_gpt_partition_ids(device, 1).unique_guid
        # The store reads the same through the partition node.
        through_node = read_store(result.partition_path)
        assert through_node.healthy
        assert through_node.primary == result.superblock
        assert locate_store(device).offset == MIB

    def test_new_table_idempotent(self, loop_device: Callable[..., Path], sector: int, tmp_path: Path):
        device = loop_device(512 * MIB, sector_size=sector)
        first = prepare_new_table(device, GEOMETRY, wipe=True)
        image = Path(sh("losetup", "--noheadings", "--output", "BACK-FILE", device).strip())
        digest = file_digest(image)
        second = prepare_new_table(device, GEOMETRY, wipe=True)
        assert not second.changed
        assert second.partition_path == first.partition_path
        assert file_digest(image) == digest

    def test_free_space(self, loop_device: Callable[..., Path], sector: int):
        device = loop_device(GIB, sector_size=sector)
        sh("sgdisk", "--new=1:1M:+100M", f"--typecode=1:{LINUX_TYPE}", "--new=2:600M:+100M", device)
        sh("partx", "--update", device)
        rows_before = sgdisk_partitions(device)
        digests_before = partition_digests(device, sector)
        result = prepare_free_space(device, GEOMETRY)
        assert sgdisk_partitions(device)[:2] == rows_before
        assert {n: d for n, d in partition_digests(device, sector).items() if n <= 2} == digests_before
        check_switchos_partition(device, 3, sector)
        assert result.partition_path == Path(f"{device}p3")
        assert kernel_partitions(device) == [f"{device.name}p{n}" for n in (1, 2, 3)]

    def test_existing_partition(self, loop_device: Callable[..., Path], sector: int):
        device = loop_device(GIB, sector_size=sector)
        sh("sgdisk", "--new=1:1M:+100M", "--new=2:0:+300M", f"--typecode=2:{LINUX_TYPE}", device)
        result = prepare_existing_partition(device, 2, GEOMETRY, wipe=True)
        check_switchos_partition(device, 2, sector)
        assert node_is_block_device(result.partition_path)
        assert read_store(result.partition_path).healthy

    def test_whole_disk(self, loop_device: Callable[..., Path], sector: int):
        device = loop_device(GIB, sector_size=sector)
        prepare_new_table(device, GEOMETRY, wipe=True)
        assert kernel_partitions(device)
        result = prepare_whole_disk(device, GEOMETRY, wipe=True)
        assert result.logical_sector_size == sector
        assert kernel_partitions(device) == []
        assert "Creating new GPT entries" in sh("sgdisk", "-p", device)
        assert read_store(device).healthy

    def test_busy_disk_rejected(self, loop_device: Callable[..., Path], sector: int, tmp_path: Path):
        device = loop_device(GIB, sector_size=sector)
        sh("sgdisk", "--new=1:1M:+100M", device)
        sh("partx", "--update", device)
        sh("mkfs.ext4", "-q", f"{device}p1")
        with mounted(Path(f"{device}p1"), tmp_path / "mnt"):
            before = sh("sgdisk", "-p", device)
            with pytest.raises(DeviceBusyError, match="is in use"):
                prepare_new_table(device, GEOMETRY, wipe=True)
            with pytest.raises(DeviceBusyError):
                prepare_whole_disk(device, GEOMETRY, wipe=True)
            assert sh("sgdisk", "-p", device) == before
