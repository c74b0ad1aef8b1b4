"""The data behind ``switchos boot list``: boot variables, entries and inconsistencies.

Reading is lenient throughout: a malformed entry or order variable becomes a
reported problem next to everything that could be read, never an exception.
Only the store itself (missing, unreadable) raises.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from switchos.boot_entries.load_option import (
    LoadOptionListing,
    decode_ucs2_text,
    format_optional_data,
    parse_lenient,
)
from switchos.boot_entries.order import (
    OPTION_NUMBER,
    OptionKind,
    OrderError,
    check_consistency,
    normalize_file_path,
    parse_order,
)
from switchos.boot_entries.store import EFI_GLOBAL_VARIABLE, VariableStore

# The folder on the ESP that contains SwitchOS's images, in normalize_file_path form.
SWITCHOS_FOLDER = "\\efi\\switchos\\"

# Version of the structure that to_dict() returns; raise it on incompatible changes.
LISTING_FORMAT_VERSION = 1


class ProblemKind(enum.Enum):
    """The kinds of inconsistency ``boot list`` reports, spelled as in its JSON output."""

    LISTED_MISSING = "listed-missing"
    UNLISTED = "unlisted"
    DUPLICATE = "duplicate"
    MALFORMED = "malformed"


@dataclass(frozen=True)
class Problem:
    """One inconsistency: its kind, the variable it concerns and, for entries, the number.

    ``variable`` is the order variable for order problems and the malformed
    variable itself for MALFORMED; ``message`` carries the decoder's error.
    """

    kind: ProblemKind
    variable: str
    number: int | None = None
    entry_kind: OptionKind | None = None
    message: str | None = None

    @property
    def entry(self) -> str | None:
        """The entry's variable name (``Boot0007``), when the problem concerns one."""
        if self.number is None or self.entry_kind is None:
            return None
        return self.entry_kind.variable_name(self.number)


@dataclass(frozen=True)
class Entry:
    """One Boot#### or Driver#### variable, decoded as far as possible."""

    kind: OptionKind
    number: int
    variable_name: str
    attributes: int | None
    active: bool
    description: str | None
    device_path: str | None
    file_path: str | None
    optional_data: bytes | None
    ours: bool
    error: str | None

    @property
    def optional_data_text(self) -> str:
        """Optional data as efibootmgr -v renders it after the device path."""
        return format_optional_data(self.optional_data or b"")

    @property
    def optional_data_ucs2(self) -> str | None:
        """Optional data decoded as text, when it is NUL-terminated UCS-2 of printable characters."""
        return decode_options_text(self.optional_data)


@dataclass(frozen=True)
class BootListing:
    """Everything ``boot list`` shows. Numbers are None when the variable is absent or malformed."""

    boot_current: int | None
    boot_next: int | None
    timeout: int | None
    boot_order: tuple[int, ...] | None
    driver_order: tuple[int, ...] | None
    entries: tuple[Entry, ...]
    problems: tuple[Problem, ...]

    def to_dict(self) -> dict[str, Any]:
        """Return the listing as JSON-ready data with fixed keys, for ``boot list --json``."""
        return {
            "format_version": LISTING_FORMAT_VERSION,
            "boot_current": self.boot_current,
            "boot_next": self.boot_next,
            "timeout": self.timeout,
            "boot_order": None if self.boot_order is None else list(self.boot_order),
            "driver_order": None if self.driver_order is None else list(self.driver_order),
            "entries": [_entry_dict(entry) for entry in self.entries],
            "problems": [_problem_dict(problem) for problem in self.problems],
        }


def read_listing(store: VariableStore) -> BootListing:
    """Read the boot variables and every Boot####/Driver#### entry from ``store``.

    Raises only the store's VariableStoreError; malformed variables become
    MALFORMED problems.
    """
    problems: list[Problem] = []
    boot_current = _read_number(store, "BootCurrent", problems)
    boot_next = _read_number(store, "BootNext", problems)
    timeout = _read_number(store, "Timeout", problems)

    entries = tuple(_read_entries(store))
    for entry in entries:
        if entry.error is not None:
            problems.append(
                Problem(ProblemKind.MALFORMED, entry.variable_name, entry.number, entry.kind, entry.error)
            )

    boot_order = _read_order(store, OptionKind.BOOT, problems)
    driver_order = _read_order(store, OptionKind.DRIVER, problems)
    return BootListing(boot_current, boot_next, timeout, boot_order, driver_order, entries, tuple(problems))


def decode_options_text(optional_data: bytes | None) -> str | None:
    """Return optional data as text when it is NUL-terminated UCS-2LE of printable characters, else None.

    SwitchOS writes its payload options (``store=partition:<PARTUUID>``) this
    way, as EFI stub kernels expect their command line. efibootmgr -v shows
    such data as hex unless given --unicode. Binary data can pass this test by
    chance, so callers show the text next to the raw data, never in place of it.
    """
    if optional_data is None or len(optional_data) % 2 or not optional_data.endswith(b"\0\0"):
        return None
    text = decode_ucs2_text(optional_data)
    if not text or not text.isprintable():
        return None
    return text


def is_ours(file_path: str | None) -> bool:
    """Return whether an entry's File() path lies under \\EFI\\SwitchOS\\, compared case-insensitively.

    NOTE: the install record also names the entries SwitchOS created; this
    path rule misses an entry of ours whose file was given another path.
    """
    return file_path is not None and normalize_file_path(file_path).startswith(SWITCHOS_FOLDER)


def _read_number(store: VariableStore, name: str, problems: list[Problem]) -> int | None:
    variable = store.get(name)
    if variable is None:
        return None
    if len(variable.data) != OPTION_NUMBER.size:
        problems.append(
            Problem(
                ProblemKind.MALFORMED,
                name,
                message=f"{name} is {len(variable.data)} bytes long instead of 2",
            )
        )
        return None
    # BootCurrent, BootNext (option numbers) and Timeout (seconds) are all UINT16.
    (number,) = OPTION_NUMBER.unpack(variable.data)
    return int(number)


def _read_order(store: VariableStore, kind: OptionKind, problems: list[Problem]) -> tuple[int, ...] | None:
    variable = store.get(kind.order_variable)
    order = None
    if variable is not None:
        try:
            order = parse_order(variable.data, name=kind.order_variable)
        except OrderError as error:
            problems.append(Problem(ProblemKind.MALFORMED, kind.order_variable, message=error.message))
            # The complete UINT16 numbers before the odd last byte are still shown.
            return parse_order(variable.data[:-1])

    report = check_consistency(store, kind)
    for number in report.listed_missing:
        problems.append(Problem(ProblemKind.LISTED_MISSING, kind.order_variable, number, kind))
    for number in report.duplicates:
        problems.append(Problem(ProblemKind.DUPLICATE, kind.order_variable, number, kind))
    for number in report.unlisted:
        problems.append(Problem(ProblemKind.UNLISTED, kind.order_variable, number, kind))
    return order


def _read_entries(store: VariableStore) -> list[Entry]:
    found: list[tuple[OptionKind, int, str]] = []
    for name, vendor in store.list():
        if vendor != EFI_GLOBAL_VARIABLE:
            continue
        for kind in OptionKind:
            number = kind.parse_variable_name(name)
            if number is not None:
                found.append((kind, number, name))

    entries = []
    # Boot entries first, each kind sorted by number, as efibootmgr prints them.
    for kind, number, name in sorted(found, key=lambda item: (item[0] is OptionKind.DRIVER, item[1], item[2])):
        variable = store.get(name)
        if variable is None:
            continue
        entries.append(_make_entry(kind, number, name, parse_lenient(variable.data)))
    return entries


def _make_entry(kind: OptionKind, number: int, name: str, listing: LoadOptionListing) -> Entry:
    file_path = listing.device_path.file_path() if listing.device_path is not None else None
    return Entry(
        kind=kind,
        number=number,
        variable_name=name,
        attributes=None if listing.attributes is None else int(listing.attributes),
        active=listing.active,
        description=listing.description,
        device_path=None if listing.device_path is None else listing.device_path.format(),
        file_path=file_path,
        optional_data=listing.optional_data,
        ours=is_ours(file_path),
        error=None if listing.error is None else listing.error.message,
    )


def _entry_dict(entry: Entry) -> dict[str, Any]:
    optional_data = entry.optional_data
    return {
        "name": entry.variable_name,
        "kind": entry.kind.value.lower(),
        "number": entry.number,
        "attributes": entry.attributes,
        "active": entry.active,
        "description": entry.description,
        "device_path": entry.device_path,
        "file_path": entry.file_path,
        "optional_data": None if optional_data is None else optional_data.hex(),
        "optional_data_text": entry.optional_data_ucs2,
        "ours": entry.ours,
        "error": entry.error,
    }


def _problem_dict(problem: Problem) -> dict[str, Any]:
    return {
        "kind": problem.kind.value,
        "variable": problem.variable,
        "entry": problem.entry,
        "message": problem.message,
    }

