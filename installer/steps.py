"""Step factories shared by install, uninstall and repair.

Each factory returns a Step whose apply reads the current value first, makes
one change, and returns an undo that writes the value it read back. Writes go
through the target's VariableStore and EspFiles only.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import PurePosixPath

from switchos.boot_entries.order import (
    OptionKind,
    OrderError,
    clear_boot_next,
    insert_first,
    read_boot_next,
    read_order,
    remove_from_order,
    set_boot_next,
)
from switchos.boot_entries.store import BOOT_VARIABLE_ATTRIBUTES, EFI_GLOBAL_VARIABLE, VariableStore
from switchos.efi.placement import EspFiles, ImageEsp, MountedEsp, to_firmware_path, write_file_atomic
from switchos.installer.plan import Step, Undo


def restore_variable(store: VariableStore, name: str) -> Undo:
    """Return an undo that puts variable ``name`` back as it is now (or deletes it if absent)."""
    previous = store.get(name, EFI_GLOBAL_VARIABLE)

    def undo() -> None:
        if previous is None:
            store.delete(name)
        else:
            store.set(name, previous.data, attributes=previous.attributes)

    return undo


def restore_file(esp: EspFiles, path: PurePosixPath) -> Undo:
    """Return an undo that puts the ESP file back as it is now (or deletes it if absent)."""
    previous = esp.read_bytes(path)

    def undo() -> None:
        if previous is None:
            esp.delete(path)
        else:
            write_file_atomic(esp, path, previous)

    return undo


def write_variable_step(
    store: VariableStore, action: str, name: str, make_data: Callable[[], bytes], description: str
) -> Step:
    """Make a step that writes Boot####/Driver#### ``name`` with the bytes ``make_data`` returns at apply time."""

    def apply() -> Undo:
        undo = restore_variable(store, name)
        store.set(name, make_data(), attributes=BOOT_VARIABLE_ATTRIBUTES)
        return undo

    return Step(action, description, apply, {"variable": name})


def delete_variable_step(store: VariableStore, name: str, description: str) -> Step:
    def apply() -> Undo:
        undo = restore_variable(store, name)
        store.delete(name)
        return undo

    return Step("delete-entry", description, apply, {"variable": name})


def insert_first_step(store: VariableStore, kind: OptionKind, number: int, *, position: int | None) -> Step:
    """Make a step that lists the entry first in its order variable; ``position`` is its index now."""
    name = kind.variable_name(number)
    if position is None:
        description = f"add {name} to {kind.order_variable} as its first entry, so firmware runs it"
    else:
        description = f"move {name} from position {position + 1} to the first position in {kind.order_variable}"

    def apply() -> Undo:
        undo = restore_variable(store, kind.order_variable)
        insert_first(store, kind, number)
        return undo

    return Step("order-first", description, apply, {"variable": kind.order_variable, "entry": name})


def remove_from_order_step(store: VariableStore, kind: OptionKind, number: int) -> Step:
    name = kind.variable_name(number)

    def apply() -> Undo:
        undo = restore_variable(store, kind.order_variable)
        if all(listed == number for listed in read_order(store, kind)):
            # An order holding only our entry is deleted rather than written
            # empty: the OVMF variables file store rejects empty data, and a
            # missing order variable is what the machine had before install.
            store.delete(kind.order_variable)
        else:
            remove_from_order(store, kind, number)
        return undo

    return Step(
        "order-remove",
        f"remove {name} from {kind.order_variable}, keeping the other entries as they are",
        apply,
        {"variable": kind.order_variable, "entry": name},
    )


def set_boot_next_step(store: VariableStore, number: int) -> Step:
    name = OptionKind.BOOT.variable_name(number)

    def apply() -> Undo:
        undo = restore_variable(store, "BootNext")
        set_boot_next(store, number)
        return undo

    return Step("boot-next", f"set BootNext to {name}, so it runs once at the next boot", apply, {"entry": name})


def clear_boot_next_step(store: VariableStore) -> Step:
    def apply() -> Undo:
        undo = restore_variable(store, "BootNext")
        clear_boot_next(store)
        return undo

    return Step("boot-next-clear", "clear BootNext, which points at a SwitchOS entry", apply, {})


def write_file_step(
    esp: EspFiles, action: str, path: PurePosixPath, make_data: Callable[[], bytes], description: str
) -> Step:
    def apply() -> Undo:
        undo = restore_file(esp, path)
        esp.make_dirs(path.parent)
        write_file_atomic(esp, path, make_data())
        esp.check()
        return undo

    return Step(action, description, apply, {"path": to_firmware_path(path)})


def delete_file_step(esp: EspFiles, path: PurePosixPath, *, action: str = "delete-file") -> Step:
    def apply() -> Undo:
        undo = restore_file(esp, path)
        esp.delete(path)
        esp.check()
        return undo

    return Step(action, f"delete {to_firmware_path(path)} from the ESP", apply, {"path": to_firmware_path(path)})


def order_position(store: VariableStore, kind: OptionKind, number: int) -> int | None:
    order = read_order(store, kind)
    return order.index(number) if number in order else None


def boot_next_points_at(store: VariableStore, numbers: set[int]) -> bool:
    try:
        return read_boot_next(store) in numbers
    except OrderError:
        # A malformed BootNext is not ours; leave it for the firmware to ignore.
        return False


def remove_empty_dir(esp: EspFiles, path: PurePosixPath) -> bool:
    """Remove folder ``path`` from the ESP when it is empty; return whether it was removed."""
    if isinstance(esp, MountedEsp):
        try:
            os.rmdir(esp.root / path)
        except OSError as error:
            if error.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                return False
            raise
        return True
    if isinstance(esp, ImageEsp):
        if not esp.fat.exists(path) or esp.fat.list_names(path):
            return False
        esp.fat.remove_dir(path)
        return True
    return False


def remove_empty_dir_step(esp: EspFiles, path: PurePosixPath) -> Step:
    """Make a step that removes the folder ``path`` if nothing is left in it when the step runs."""

    def apply() -> Undo:
        removed = remove_empty_dir(esp, path)

        def undo() -> None:
            if removed:
                esp.make_dirs(path)

        return undo

    folder = to_firmware_path(path)
    return Step("remove-folder", f"remove the folder {folder} from the ESP if it is empty", apply, {"path": folder})
