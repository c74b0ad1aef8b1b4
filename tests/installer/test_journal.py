"""The journal and plans on an in-memory variable store: order, rollback and rendering."""

from __future__ import annotations

import json

import pytest

from switchos.boot_entries.order import OptionKind, read_order
from switchos.boot_entries.store import MemoryStore, VariableStoreFullError
from switchos.errors import ExitCode
from switchos.installer import steps
from switchos.installer.journal import Journal, PartlyRolledBackError, RollbackFailedError, RolledBackError
from switchos.installer.plan import Plan, Step

ENTRY = b"\x01\x00\x00\x00entry"


def failing_step(message: str = "injected") -> Step:
    def apply() -> None:
        raise VariableStoreFullError(message, hint="free some NVRAM")

    return Step("fail", "a step that fails", apply)


def test_journal_applies_steps_in_order():
    store = MemoryStore()
    plan = Plan("install", "memory", (
        steps.write_variable_step(store, "create-entry", "Driver0000", lambda: ENTRY, "create Driver0000"),
        steps.insert_first_step(store, OptionKind.DRIVER, 0, position=None),
    ))
    seen = []

    journal = Journal(on_step=lambda index, step: seen.append((index, step.action)))
    journal.apply(plan)

    assert seen == [(1, "create-entry"), (2, "order-first")]
    assert read_order(store, OptionKind.DRIVER) == (0,)
    assert [finished.step.action for finished in journal.finished] == ["create-entry", "order-first"]


def test_journal_rolls_back_in_reverse():
    store = MemoryStore()
    store.set("DriverOrder", b"\x05\x00")
    store.set("Driver0005", ENTRY)
    undone: list[str] = []
    plan = Plan("install", "memory", (
        steps.write_variable_step(store, "create-entry", "Driver0000", lambda: ENTRY, "create Driver0000"),
        steps.insert_first_step(store, OptionKind.DRIVER, 0, position=None),
        Step("record", "note the undo order", lambda: (lambda: undone.append("record"))),
        failing_step(),
    ))

    with pytest.raises(RolledBackError) as raised:
        Journal().apply(plan)

    error = raised.value
    assert error.exit_code == ExitCode.ROLLED_BACK
    assert error.message.startswith("step failed: a step that fails: injected")
    restored = error.message.split("Restored:\n")[1].splitlines()
    assert restored == [
        "  - note the undo order",
        "  - add Driver0000 to DriverOrder as its first entry, so firmware runs it",
        "  - create Driver0000",
    ]
    assert error.hint == "free some NVRAM"
    assert undone == ["record"]
    assert store.get("Driver0000") is None
    assert read_order(store, OptionKind.DRIVER) == (5,)


def test_journal_reports_kept_steps():
    plan = Plan("install", "memory", (Step("prepare", "prepare the disk", lambda: None), failing_step()))

    with pytest.raises(PartlyRolledBackError) as raised:
        Journal().apply(plan)

    assert raised.value.exit_code == ExitCode.FAILURE
    assert "harmless" not in raised.value.message
    assert "Not undone (the previous contents cannot be restored" in raised.value.message
    assert raised.value.message.endswith("):\n  - prepare the disk")


def test_journal_reports_failed_undo():
    def broken_undo() -> None:
        raise VariableStoreFullError("undo failed too")

    plan = Plan("install", "memory", (Step("a", "first step", lambda: broken_undo), failing_step()))

    with pytest.raises(RollbackFailedError) as raised:
        Journal().apply(plan)

    assert raised.value.exit_code == ExitCode.FAILURE
    assert "Still changed:\n  - first step (undo failed: undo failed too)" in raised.value.message


def test_remove_last_entry_deletes_order():
    store = MemoryStore()
    store.set("Driver0000", ENTRY)
    store.set("DriverOrder", b"\x00\x00")

    undo = steps.remove_from_order_step(store, OptionKind.DRIVER, 0).apply()

    assert store.get("DriverOrder") is None
    undo()
    assert store.get("DriverOrder").data == b"\x00\x00"


def test_remove_entry_keeps_others_in_place():
    store = MemoryStore()
    store.set("BootOrder", bytes.fromhex("0300 0700 0100".replace(" ", "")))

    steps.remove_from_order_step(store, OptionKind.BOOT, 7).apply()

    assert read_order(store, OptionKind.BOOT) == (3, 1)


def test_plan_renders_text_and_json():
    plan = Plan(
        "install", "a machine",
        (Step("create-entry", "create Driver0000", lambda: None, {"variable": "Driver0000"}),),
        summary=("ESP: here",), notes=("a fact",),
    )

    assert plan.format_text().splitlines() == [
        "Plan for install on a machine:",
        "  ESP: here",
        "Steps:",
        "  1. create Driver0000",
        "Note: a fact",
    ]
    document = json.loads(plan.format_json())
    assert document["steps"] == [{"action": "create-entry", "description": "create Driver0000", "variable": "Driver0000"}]
    assert document["notes"] == ["a fact"]


def test_empty_plan_says_nothing_to_do():
    plan = Plan("repair", "a machine", ())

    assert plan.empty
    assert "Steps: none" in plan.format_text()
