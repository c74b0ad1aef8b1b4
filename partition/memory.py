"""RAM sizing: how much memory a snapshot holds, and so how large a slot must be."""

from __future__ import annotations

import re
from pathlib import Path

from switchos.errors import InvalidInputError, UnsupportedMachineError
from switchos.partition.store import MIB, SLOT_HEADER_ROOM, align_up, required_store_size

DEFAULT_SLOT_COUNT = 2

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1 << 10, "kib": 1 << 10,
    "m": 1 << 20, "mib": 1 << 20,
    "g": 1 << 30, "gib": 1 << 30,
    "t": 1 << 40, "tib": 1 << 40,
}
_SIZE_PATTERN = re.compile(r"\s*(\d+)\s*([a-zA-Z]*)\s*")


class MemorySizeError(UnsupportedMachineError):
    """This machine's RAM size cannot be read."""


def parse_size(text: str) -> int:
    """Parse a size such as ``8G``, ``8GiB``, ``512M`` or ``4096``; units are powers of 1024."""
    match = _SIZE_PATTERN.fullmatch(text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _SIZE_UNITS:
        raise InvalidInputError(
            f"invalid size {text!r}",
            hint="give a whole number with an optional unit K, M, G or T (powers of 1024), for example 16G",
        )
    return int(match.group(1)) * _SIZE_UNITS[unit]


# RAM sizes are quoted in binary units, so KB, MB, GB and TB mean powers of 1024 here as well.
_MEMORY_UNITS = {
    "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
    "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
    "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
    "t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40,
}
# Below this, a value is far more likely a unit left out (256 for 256M) than a real machine.
MIN_MEMORY_SIZE = 64 << 20


def parse_memory_size(text: str) -> int:
    """Parse a RAM size such as ``8G``, ``8GiB``, ``8GB`` or ``512M`` into bytes.

    A unit is required and every unit is a power of 1024. Raises
    InvalidInputError for a missing or unknown unit and for sizes below
    MIN_MEMORY_SIZE.
    """
    match = _SIZE_PATTERN.fullmatch(text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _MEMORY_UNITS:
        raise InvalidInputError(
            f"invalid memory size {text!r}: a whole number with a unit is required",
            hint="use K, M, G or T (or KiB, MiB, GiB, TiB, KB, MB, GB, TB, all powers of 1024), for example 16G",
        )
    size = int(match.group(1)) * _MEMORY_UNITS[unit]
    if size < MIN_MEMORY_SIZE:
        raise InvalidInputError(
            f"memory size {text!r} is below the minimum of {MIN_MEMORY_SIZE >> 20}M",
            hint="give the target's RAM size with its unit, for example 8G",
        )
    return size


def read_usable_ram(*, sys_root: Path = Path("/sys"), proc_root: Path = Path("/proc")) -> int:
    """Return the bytes of usable RAM: the "System RAM" ranges of the firmware memory map.

    Reads ``/sys/firmware/memmap`` (the map the firmware handed to the kernel)
    and falls back to the top-level "System RAM" lines of ``/proc/iomem``.
    Raises MemorySizeError when neither gives a size, for example when
    ``/proc/iomem`` is read without root and shows every address as zero.
    """
    total = _read_firmware_memmap(sys_root / "firmware" / "memmap")
    if total:
        return total
    return _read_iomem(proc_root / "iomem")


def _read_firmware_memmap(memmap: Path) -> int:
    total = 0
    if not memmap.is_dir():
        return 0
    for entry in memmap.iterdir():
        try:
            kind = (entry / "type").read_text().strip()
            if kind != "System RAM":
                continue
            start = int((entry / "start").read_text(), 16)
            end = int((entry / "end").read_text(), 16)
        except (OSError, ValueError):
            continue
        # "end" is inclusive.
        total += end - start + 1
    return total


def _read_iomem(iomem: Path) -> int:
    try:
        lines = iomem.read_text().splitlines()
    except OSError as error:
        raise MemorySizeError(
            f"cannot read the memory map: {iomem}: {error.strerror}",
            hint="pass the RAM size with --memory SIZE",
        ) from error
    total = 0
    found = False
    all_zero = True
    for line in lines:
        # Nested resources are indented; only top-level lines describe RAM ranges.
        if line[:1].isspace() or ":" not in line:
            continue
        span, _, name = line.partition(" : ")
        if name.strip() != "System RAM":
            continue
        found = True
        start_text, _, end_text = span.partition("-")
        try:
            start, end = int(start_text, 16), int(end_text, 16)
        except ValueError:
            continue
        all_zero = all_zero and start == 0 and end == 0
        total += end - start + 1 if end >= start else 0
    if found and all_zero:
        # Without CAP_SYS_ADMIN the kernel prints every range as 00000000-00000000.
        raise MemorySizeError(
            f"{iomem} shows zero addresses, which happens when it is read without root",
            hint="run as root or pass the RAM size with --memory SIZE",
        )
    if not total:
        raise MemorySizeError(f"no System RAM range found in {iomem}", hint="pass the RAM size with --memory SIZE")
    return total


def compute_slot_size(ram_size: int) -> int:
    """Return the slot size for ``ram_size`` bytes of RAM: RAM rounded up to 1 MiB plus the slot header room."""
    if ram_size <= 0:
        raise InvalidInputError(f"invalid RAM size {ram_size}", hint="give a positive size, for example 16G")
    return align_up(ram_size, MIB) + SLOT_HEADER_ROOM


def compute_store_size(ram_size: int, slot_count: int = DEFAULT_SLOT_COUNT) -> int:
    """Return the bytes a store with ``slot_count`` slots for ``ram_size`` bytes of RAM needs."""
    if slot_count < 1:
        raise InvalidInputError(f"invalid slot count {slot_count}", hint="use at least one slot")
    return required_store_size(compute_slot_size(ram_size), slot_count)
