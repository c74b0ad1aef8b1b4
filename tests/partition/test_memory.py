"""RAM sizing from the firmware memory map and /proc/iomem, slot and store sizes."""

from __future__ import annotations

from pathlib import Path

import pytest
from disk_helpers import GIB, MIB

from switchos.errors import InvalidInputError
from switchos.partition.memory import (
    MemorySizeError,
    compute_slot_size,
    compute_store_size,
    parse_memory_size,
    parse_size,
    read_usable_ram,
)

# The firmware memory map of a QEMU q35 guest with 4 GiB of RAM (OVMF), as
# /sys/firmware/memmap shows it: low RAM, the 32-bit hole, and RAM above 4 GiB.
Q35_MEMMAP = [
    ("0x0", "0x9ffff", "System RAM"),
    ("0x100000", "0x7fffffff", "System RAM"),
    ("0x80000000", "0xafffffff", "Reserved"),
    ("0xb0000000", "0xbfffffff", "Reserved"),
    ("0x100000000", "0x17fffffff", "System RAM"),
    ("0xfeffc000", "0xfeffffff", "Reserved"),
]
Q35_RAM = 0xA0000 + (0x80000000 - 0x100000) + 0x80000000

IOMEM = """\
00000000-00000fff : Reserved
00001000-0009ffff : System RAM
000a0000-000bffff : PCI Bus 0000:00
00100000-7fffffff : System RAM
  01000000-01ffffff : Kernel code
  02000000-0220ffff : System RAM
80000000-afffffff : Reserved
100000000-17fffffff : System RAM
"""
IOMEM_RAM = (0xA0000 - 0x1000) + (0x80000000 - 0x100000) + 0x80000000

IOMEM_AS_USER = """\
00000000-00000000 : Reserved
00000000-00000000 : System RAM
00000000-00000000 : PCI Bus 0000:00
00000000-00000000 : System RAM
  00000000-00000000 : Kernel code
"""


def write_memmap(sys_root: Path, entries: list[tuple[str, str, str]]) -> None:
    for index, (start, end, kind) in enumerate(entries):
        entry = sys_root / "firmware" / "memmap" / str(index)
        entry.mkdir(parents=True)
        (entry / "start").write_text(start + "\n")
        (entry / "end").write_text(end + "\n")
        (entry / "type").write_text(kind + "\n")


def write_iomem(proc_root: Path, text: str) -> None:
    proc_root.mkdir(parents=True, exist_ok=True)
    (proc_root / "iomem").write_text(text)


class TestReadUsableRam:
    def test_firmware_memmap(self, tmp_path: Path):
        write_memmap(tmp_path / "sys", Q35_MEMMAP)
        write_iomem(tmp_path / "proc", IOMEM)
        assert read_usable_ram(sys_root=tmp_path / "sys", proc_root=tmp_path / "proc") == Q35_RAM

    def test_iomem_fallback_counts_top_level_lines(self, tmp_path: Path):
        (tmp_path / "sys").mkdir()
        write_iomem(tmp_path / "proc", IOMEM)
        assert read_usable_ram(sys_root=tmp_path / "sys", proc_root=tmp_path / "proc") == IOMEM_RAM

    def test_iomem_read_without_root(self, tmp_path: Path):
        (tmp_path / "sys").mkdir()
        write_iomem(tmp_path / "proc", IOMEM_AS_USER)
        with pytest.raises(MemorySizeError) as caught:
            read_usable_ram(sys_root=tmp_path / "sys", proc_root=tmp_path / "proc")
        assert "zero addresses" in caught.value.message
        assert "--memory" in (caught.value.hint or "")

    def test_nothing_readable(self, tmp_path: Path):
        (tmp_path / "sys").mkdir()
        (tmp_path / "proc").mkdir()
        with pytest.raises(MemorySizeError, match="cannot read the memory map"):
            read_usable_ram(sys_root=tmp_path / "sys", proc_root=tmp_path / "proc")

    def test_this_machine(self):
        # The firmware map counts RAM that the kernel reserves for itself, so
        # it is at least MemTotal and not far above it.
        ram = read_usable_ram()
        meminfo = dict(
            line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line
        )
        mem_total = int(meminfo["MemTotal"].split()[0]) * 1024
        assert mem_total <= ram <= mem_total * 1.25


class TestSizes:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [("4096", 4096), ("512M", 512 * MIB), ("16G", 16 * GIB), ("16GiB", 16 * GIB), ("1t", 1 << 40), ("8 K", 8192)],
    )
    def test_parse_size(self, text: str, expected: int):
        assert parse_size(text) == expected

    @pytest.mark.parametrize("text", ["", "G", "1.5G", "-1G", "16GB", "12X"])
    def test_parse_size_invalid(self, text: str):
        with pytest.raises(InvalidInputError, match="invalid size"):
            parse_size(text)

    @pytest.mark.parametrize(
        ("text", "expected"),
        [("64M", 64 * MIB), ("256MiB", 256 * MIB), ("16G", 16 * GIB), ("16GB", 16 * GIB), ("1 tb", 1 << 40)],
    )
    def test_parse_memory_size(self, text: str, expected: int):
        assert parse_memory_size(text) == expected

    @pytest.mark.parametrize("text", ["256", "", "8X", "1.5G", "8 B"])
    def test_parse_memory_size_needs_unit(self, text: str):
        with pytest.raises(InvalidInputError, match="a whole number with a unit is required"):
            parse_memory_size(text)

    @pytest.mark.parametrize("text", ["63M", "65535K", "0G"])
    def test_parse_memory_size_minimum(self, text: str):
        with pytest.raises(InvalidInputError, match=f"memory size '{text}' is below the minimum of 64M"):
            parse_memory_size(text)

    def test_slot_size_rounds_up_and_adds_header_room(self):
        assert compute_slot_size(4 * GIB) == 4 * GIB + MIB
        assert compute_slot_size(4 * GIB + 1) == 4 * GIB + 2 * MIB
        # 0xfffa0000 bytes of RAM round up to 4 GiB.
        assert compute_slot_size(Q35_RAM) == 4 * GIB + MIB

    def test_store_size_two_slots_by_default(self):
        assert compute_store_size(4 * GIB) == MIB + 2 * (4 * GIB + MIB) + MIB
        assert compute_store_size(4 * GIB, 3) == MIB + 3 * (4 * GIB + MIB) + MIB

    def test_invalid_counts_and_sizes(self):
        with pytest.raises(InvalidInputError):
            compute_store_size(4 * GIB, 0)
        with pytest.raises(InvalidInputError):
            compute_slot_size(0)
