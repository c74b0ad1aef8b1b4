"""Helpers of the runtime tests: a snapshot store image, constructed system roots, a payload fake."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from switchos.boot_entries.store import (
    MemoryStore,
    Variable,
    VariableAttribute,
    VariableRejectedError,
    VariableStoreError,
)
from switchos.efi.command import COMMAND_ATTRIBUTES, COMMAND_VARIABLE, COMMAND_VENDOR
from switchos.efi.status import STATUS_VARIABLE, STATUS_VENDOR
from switchos.partition.memory import compute_slot_size
from switchos.partition.store import (
    SlotEntry,
    SlotState,
    Superblock,
    initialize_store,
    read_store,
    required_store_size,
)

MIB = 1 << 20
RAM_SIZE = 64 * MIB
SLOT_COUNT = 4
BS_RT = VariableAttribute.BOOTSERVICE_ACCESS | VariableAttribute.RUNTIME_ACCESS


class PayloadVariables(MemoryStore):
    """A FAKE of firmware variables with the payload's runtime hooks, for tests without QEMU.

    It imitates the runtime stand-in (tests/testbed/standin/hooks.c): a
    SET_CORE_ACTION write of 4 or 8 bytes with BS|RT becomes the pending
    command, and SwitchOSStatus reads end with the pending-* lines. Without
    hooks it rejects the write as OVMF does for a volatile variable at
    runtime. The VM tests check the same behaviour against the real stand-in.
    """

    def __init__(self, *, status: bytes | None = b"protocol=1\nversion=0.1.0\nloaded-as=runtime-driver\noptions=\n",
                 hooks: bool = True) -> None:
        super().__init__()
        self.base_status = status
        self.hooks = hooks
        self.pending = b""
        self.writes: list[tuple[bytes, VariableAttribute]] = []

    def get(self, name: str, vendor: uuid.UUID = COMMAND_VENDOR) -> Variable | None:
        if (name, vendor) == (STATUS_VARIABLE, STATUS_VENDOR) and self.base_status is not None:
            data = self.base_status
            if self.hooks:
                action = int.from_bytes(self.pending[:4], "little") if self.pending else 0
                slot = int.from_bytes(self.pending[4:8], "little") if len(self.pending) == 8 else 0
                data += f"pending-action={action}\npending-slot={slot}\npending-data={self.pending.hex().upper()}\n".encode()
            return Variable(name, vendor, BS_RT, data)
        return super().get(name, vendor)

    def set(self, name: str, data: bytes, *, vendor: uuid.UUID = COMMAND_VENDOR,
            attributes: VariableAttribute = BS_RT) -> None:
        if (name, vendor) != (COMMAND_VARIABLE, COMMAND_VENDOR):
            super().set(name, data, vendor=vendor, attributes=attributes)
            return
        self.writes.append((bytes(data), VariableAttribute(attributes)))
        if not self.hooks or attributes != COMMAND_ATTRIBUTES or len(data) not in (4, 8):
            raise VariableRejectedError("writing SET_CORE_ACTION failed: the firmware rejected the variable")
        self.pending = bytes(data)


class BrokenVariables(MemoryStore):
    """A variable store whose every read fails, as efivarfs does without root."""

    def get(self, name: str, vendor: uuid.UUID = COMMAND_VENDOR) -> Variable | None:
        raise VariableStoreError("reading failed: permission denied")


def make_store_image(path: Path, *, slot_count: int = SLOT_COUNT, ram_size: int = RAM_SIZE) -> Superblock:
    slot_size = compute_slot_size(ram_size)
    with open(path, "wb") as file:
        file.truncate(required_store_size(slot_size, slot_count))
    return initialize_store(path, slot_size=slot_size, slot_count=slot_count, created_at=1_700_000_000)


def write_entry(path: Path, superblock: Superblock, entry: SlotEntry) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, entry.to_bytes(), superblock.slot_entry_offset(entry.index))
    finally:
        os.close(fd)


def read_entry(path: Path, index: int) -> SlotEntry | None:
    return read_store(path).slots[index].entry


def valid_entry(index: int, label: str, *, ram_size: int = RAM_SIZE) -> SlotEntry:
    return SlotEntry(index=index, state=SlotState.VALID, created_at=1_700_000_100, ram_size=ram_size,
                     image_size=ram_size, label=label, os_name="Windows", os_version="11", host_name="box")


def make_roots(tmp_path: Path, *, state: str = "freeze mem disk\n", mem_sleep: str = "[s2idle] deep\n") -> dict[str, Path]:
    """Constructed /sys, /proc, /dev and /etc trees; the power files are plain files."""
    roots = {name: tmp_path / name for name in ("sys", "proc", "dev", "etc")}
    for root in roots.values():
        root.mkdir(exist_ok=True)
    (roots["sys"] / "power").mkdir(exist_ok=True)
    (roots["sys"] / "power" / "state").write_text(state)
    (roots["sys"] / "power" / "mem_sleep").write_text(mem_sleep)
    (roots["etc"] / "os-release").write_text('NAME="Debian GNU/Linux"\nVERSION_ID="12"\n')
    return roots
