"""Boot order policy: numbered entries, BootOrder/DriverOrder and BootNext.

The rules that keep other entries undisturbed:

- Only the entry we pass is moved or removed. Every other number in an order
  variable keeps its place, including duplicates and numbers without an entry.
- Writes happen in a crash-safe order: an entry is written before it is
  listed, and unlisted before it is deleted. A crash in between leaves an
  unlisted entry, which ``check_consistency`` reports, never an order that
  points at a half-written entry of ours.
- Inconsistencies are reported, not repaired.
"""

from __future__ import annotations

import enum
import re
import struct
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from switchos.boot_entries.device_path import CodecError, SignatureType
from switchos.boot_entries.load_option import LoadOption
from switchos.boot_entries.store import (
    BOOT_VARIABLE_ATTRIBUTES,
    EFI_GLOBAL_VARIABLE,
    VariableStore,
    VariableStoreError,
)

# BootOrder, DriverOrder and BootNext hold UINT16 option numbers, little-endian.
OPTION_NUMBER = struct.Struct("<H")
MAX_OPTION_NUMBER = 0xFFFF


class OrderError(CodecError):
    """An order variable (BootOrder, DriverOrder, BootNext) is malformed."""


class OptionKind(enum.Enum):
    """The two kinds of numbered load options and their variable names."""

    BOOT = "Boot"
    DRIVER = "Driver"

    @property
    def order_variable(self) -> str:
        return f"{self.value}Order"

    def variable_name(self, number: int) -> str:
        """Return ``Boot####``/``Driver####`` with four uppercase hex digits, as UEFI requires."""
        if not 0 <= number <= MAX_OPTION_NUMBER:
            raise ValueError(f"option number {number} is outside 0..0xFFFF")
        return f"{self.value}{number:04X}"

    def parse_variable_name(self, name: str) -> int | None:
        """Return the number of a ``Boot####``/``Driver####`` name, or None for any other name.

        Lowercase hex digits are accepted too, so a variable named that way
        still counts as taken. Names with more characters (such as
        ``Boot001_BbsIndex``) are not options.
        """
        match = re.fullmatch(rf"{self.value}([0-9A-Fa-f]{{4}})", name)
        return int(match.group(1), 16) if match else None


def parse_order(data: bytes, *, name: str = "BootOrder") -> tuple[int, ...]:
    """Decode an order variable; raise OrderError at the last byte if the length is odd."""
    if len(data) % 2:
        raise OrderError(
            f"{name} has an odd length of {len(data)} bytes, not a list of UINT16 numbers",
            offset=len(data) - 1,
        )
    return tuple(number for (number,) in OPTION_NUMBER.iter_unpack(data))


def format_order(numbers: Iterable[int]) -> bytes:
    """Encode option numbers as an order variable."""
    return b"".join(OPTION_NUMBER.pack(number) for number in numbers)


def read_order(store: VariableStore, kind: OptionKind) -> tuple[int, ...]:
    """Return the numbers in BootOrder/DriverOrder; an absent variable is an empty order."""
    variable = store.get(kind.order_variable)
    if variable is None:
        return ()
    return parse_order(variable.data, name=kind.order_variable)


def _write_order(store: VariableStore, kind: OptionKind, numbers: Iterable[int]) -> None:
    """Write the order variable, keeping its attributes; an empty order deletes it.

    SetVariable with no data deletes a variable (UEFI 2.10, section 8.2), so
    deleting is what firmware would do, and some stores reject empty data.
    """
    data = format_order(numbers)
    if not data:
        store.delete(kind.order_variable)
        return
    existing = store.get(kind.order_variable)
    attributes = existing.attributes if existing is not None else BOOT_VARIABLE_ATTRIBUTES
    store.set(kind.order_variable, data, attributes=attributes)


def list_entries(store: VariableStore, kind: OptionKind) -> tuple[int, ...]:
    """Return the numbers of all existing Boot####/Driver#### variables, sorted."""
    numbers = {
        number
        for name, vendor in store.list()
        if vendor == EFI_GLOBAL_VARIABLE and (number := kind.parse_variable_name(name)) is not None
    }
    return tuple(sorted(numbers))


def read_entry(store: VariableStore, kind: OptionKind, number: int) -> LoadOption | None:
    """Return the decoded entry, or None when it does not exist; raise CodecError if it is malformed."""
    variable = store.get(kind.variable_name(number))
    if variable is None:
        return None
    return LoadOption.from_bytes(variable.data)


def find_free_number(store: VariableStore, kind: OptionKind) -> int:
    """Return the lowest number with neither a variable nor a place in the order variable.

    A number that the order lists without an entry is not reused, because
    firmware may re-create that entry. Raises VariableStoreError when all
    65536 numbers are taken.
    """
    taken = set(list_entries(store, kind)) | set(read_order(store, kind))
    for number in range(MAX_OPTION_NUMBER + 1):
        if number not in taken:
            return number
    raise VariableStoreError(
        f"No free {kind.value}#### number is left",
        hint="Delete unused boot entries, for example with efibootmgr -B.",
    )


def normalize_file_path(path: str) -> str:
    """Return a file path in the form used to compare paths: backslashes, one leading, casefolded.

    FAT is case-insensitive and some firmware upper-cases the paths it stores.
    """
    parts = [part for part in path.replace("/", "\\").split("\\") if part]
    return ("\\" + "\\".join(parts)).casefold()


def entry_matches(option: LoadOption, partition_guid: uuid.UUID, path: str) -> bool:
    """Return whether the option loads ``path`` from the GPT partition ``partition_guid``."""
    hard_drive = option.device_path.hard_drive()
    file_path = option.device_path.file_path()
    return (
        hard_drive is not None
        and hard_drive.signature_type == SignatureType.GUID
        and hard_drive.signature == partition_guid
        and file_path is not None
        and normalize_file_path(file_path) == normalize_file_path(path)
    )


def find_entries(store: VariableStore, kind: OptionKind, partition_guid: uuid.UUID, path: str) -> tuple[int, ...]:
    """Return the numbers of all entries that load ``path`` from the partition, sorted.

    Entries that cannot be decoded are skipped; they are not ours to judge.
    """
    matches = []
    for number in list_entries(store, kind):
        try:
            option = read_entry(store, kind, number)
        except CodecError:
            continue
        if option is not None and entry_matches(option, partition_guid, path):
            matches.append(number)
    return tuple(matches)


def find_entry(store: VariableStore, kind: OptionKind, partition_guid: uuid.UUID, path: str) -> int | None:
    """Return the lowest-numbered entry that loads ``path`` from the partition, or None.

    The match is on the HD() node's partition GUID and on the file path,
    compared case-insensitively with slashes normalised. The description and
    optional data are ignored, so a renamed entry is still found.
    """
    matches = find_entries(store, kind, partition_guid, path)
    return matches[0] if matches else None


def insert_first(store: VariableStore, kind: OptionKind, number: int) -> None:
    """Put ``number`` first in the order variable and leave every other number where it is.

    Earlier occurrences of ``number`` are removed so it appears once. The
    entry must exist already: write it with ``create_entry`` first. Raises
    VariableStoreError if it does not exist.
    """
    if store.get(kind.variable_name(number)) is None:
        raise VariableStoreError(
            f"Cannot list {kind.variable_name(number)} in {kind.order_variable}: the entry does not exist",
            hint="Create the entry before adding it to the order.",
        )
    order = read_order(store, kind)
    new_order = (number,) + tuple(existing for existing in order if existing != number)
    if new_order != order:
        _write_order(store, kind, new_order)


def remove_from_order(store: VariableStore, kind: OptionKind, number: int) -> bool:
    """Remove every occurrence of ``number`` from the order variable; return whether it was listed.

    An order left empty is deleted.
    """
    order = read_order(store, kind)
    if number not in order:
        return False
    _write_order(store, kind, (existing for existing in order if existing != number))
    return True


def create_entry(
    store: VariableStore, kind: OptionKind, option: LoadOption, *, number: int | None = None
) -> int:
    """Write ``option`` as Boot####/Driver#### without listing it; return its number.

    Without ``number`` the lowest free number is used. With it, an existing
    entry of that number is replaced, which is how an entry of ours is
    updated in place. List the entry
    afterwards with ``insert_first``, so a crash in between leaves an
    unlisted entry rather than an order pointing at nothing.
    """
    if number is None:
        number = find_free_number(store, kind)
    store.set(kind.variable_name(number), option.to_bytes(), attributes=BOOT_VARIABLE_ATTRIBUTES)
    return number


def add_entry_first(store: VariableStore, kind: OptionKind, option: LoadOption) -> int:
    """Create the entry, then list it first; return its number."""
    number = create_entry(store, kind, option)
    insert_first(store, kind, number)
    return number


def delete_entry(store: VariableStore, kind: OptionKind, number: int) -> None:
    """Unlist ``number`` (and clear BootNext if it points there), then delete the entry."""
    remove_from_order(store, kind, number)
    if kind is OptionKind.BOOT and read_boot_next(store) == number:
        clear_boot_next(store)
    store.delete(kind.variable_name(number))


@dataclass(frozen=True)
class OrderReport:
    """Inconsistencies between an order variable and the existing entries.

    ``listed_missing``: numbers in the order without an entry, in order.
    ``unlisted``: existing entries the order does not list, sorted.
    ``duplicates``: numbers the order lists more than once, in order of first
    appearance.
    """

    kind: OptionKind
    order: tuple[int, ...]
    listed_missing: tuple[int, ...]
    unlisted: tuple[int, ...]
    duplicates: tuple[int, ...]

    @property
    def consistent(self) -> bool:
        return not (self.listed_missing or self.unlisted or self.duplicates)


def check_consistency(store: VariableStore, kind: OptionKind) -> OrderReport:
    """Compare the order variable with the existing entries; report without changing anything.

    Raises OrderError if the order variable itself is malformed.
    """
    order = read_order(store, kind)
    existing = set(list_entries(store, kind))
    seen: set[int] = set()
    missing: list[int] = []
    duplicates: list[int] = []
    for number in order:
        if number in seen:
            if number not in duplicates:
                duplicates.append(number)
            continue
        seen.add(number)
        if number not in existing:
            missing.append(number)
    unlisted = tuple(sorted(existing - seen))
    return OrderReport(kind, order, tuple(missing), unlisted, tuple(duplicates))


def read_boot_next(store: VariableStore) -> int | None:
    """Return BootNext, or None when it is not set; raise OrderError unless it is 2 bytes."""
    variable = store.get("BootNext")
    if variable is None:
        return None
    if len(variable.data) != OPTION_NUMBER.size:
        raise OrderError(
            f"BootNext is {len(variable.data)} bytes long instead of 2",
            offset=min(len(variable.data), OPTION_NUMBER.size),
        )
    number: int = OPTION_NUMBER.unpack(variable.data)[0]
    return number


def set_boot_next(store: VariableStore, number: int) -> None:
    """Make firmware boot Boot#### once at the next start; raise VariableStoreError if it does not exist."""
    if store.get(OptionKind.BOOT.variable_name(number)) is None:
        raise VariableStoreError(
            f"Cannot set BootNext to {OptionKind.BOOT.variable_name(number)}: the entry does not exist",
            hint="Create the entry first.",
        )
    store.set("BootNext", OPTION_NUMBER.pack(number), attributes=BOOT_VARIABLE_ATTRIBUTES)


def clear_boot_next(store: VariableStore) -> None:
    """Delete BootNext; clearing an unset BootNext is not an error."""
    store.delete("BootNext")
