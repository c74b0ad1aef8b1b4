"""``switchos snapshot`` as the user sees it: output, exit codes, errors with hints.

The commands run against constructed system roots, a snapshot store image
and a FAKE of the payload's variable hooks (runtime/runtime_helpers.py). The
VM tests in runtime/ run the same commands against the real stand-in.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent / "runtime"))

from runtime_helpers import (  # noqa: E402
    RAM_SIZE,
    PayloadVariables,
    make_roots,
    make_store_image,
    read_entry,
    valid_entry,
    write_entry,
)

from switchos.cli import main  # noqa: E402
from switchos.errors import ExitCode  # noqa: E402
from switchos.installer.power import LinuxPower  # noqa: E402
from switchos.installer.snapshot import SnapshotSystem  # noqa: E402
from switchos.partition.store import SlotEntry, SlotState, Superblock  # noqa: E402


@pytest.fixture
def image(tmp_path: Path) -> tuple[Path, Superblock]:
    path = tmp_path / "snapshots.img"
    return path, make_store_image(path)


def make_system(tmp_path: Path, image: Path, variables: PayloadVariables | None = None, *, uid: int = 0,
                mem_sleep: str = "[s2idle] deep\n") -> SnapshotSystem:
    roots = make_roots(tmp_path, mem_sleep=mem_sleep)
    (tmp_path / "esp").mkdir(exist_ok=True)
    return SnapshotSystem(
        variables=variables if variables is not None else PayloadVariables(),
        power=LinuxPower(sys_root=roots["sys"], proc_root=roots["proc"], dev_root=roots["dev"]),
        sys_root=roots["sys"], proc_root=roots["proc"], dev_root=roots["dev"], etc_root=roots["etc"],
        esp_root=tmp_path / "esp", store_path=image, uid=uid, is_windows=False,
        clock=lambda: 1_800_000_000.0, sync=lambda: None, ram_size=lambda: RAM_SIZE,
    )


def invoke(system: SnapshotSystem, *args: str, input: str | None = None):
    return CliRunner().invoke(main, ["snapshot", *args], obj=system, input=input)


def test_cli_list_table(tmp_path, image):
    path, superblock = image
    write_entry(path, superblock, valid_entry(1, "windows"))
    system = make_system(tmp_path, path, PayloadVariables(status=b"protocol=1\nresumed-slot=1\n"))

    result = invoke(system, "list")

    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["SLOT", "STATE", "LABEL", "OS", "HOST", "CREATED", "RAM"]
    assert lines[1].split() == ["0", "free"]
    assert lines[2].split() == ["*", "1", "valid", "windows", "Windows", "11", "box", "2023-11-14T22:15:00Z", "64", "MiB"]
    assert "4 slots of 65 MiB, numbered from 0" in result.stderr


def test_cli_list_json(tmp_path, image):
    path, superblock = image
    write_entry(path, superblock, valid_entry(2, "linux"))

    result = invoke(make_system(tmp_path, path), "list", "--json")

    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["store"]["uuid"] == str(superblock.store_uuid)
    assert document["store"]["healthy"] is True
    assert document["store"]["slot_numbering"] == "0-based"
    assert [slot["slot"] for slot in document["slots"]] == [0, 1, 2, 3]
    assert document["payload"]["protocol"] == 1
    assert [slot["state"] for slot in document["slots"]] == ["free", "free", "valid", "free"]
    assert document["slots"][2]["label"] == "linux"
    assert document["slots"][2]["ram_size"] == RAM_SIZE


def test_cli_create_lazy(tmp_path, image):
    path, _ = image
    variables = PayloadVariables()

    result = invoke(make_system(tmp_path, path, variables), "create", "--label", "work", "--lazy")

    assert result.exit_code == 0, result.stderr
    assert "Sent the store command for slot 0 (SET_CORE_ACTION 0100000000000000); the payload acknowledged it." \
        in result.stderr
    assert "waits for the next suspend" in result.stderr
    assert result.stdout == ""
    assert read_entry(path, 0).label == "work"


def test_cli_create_suspends_and_reports_resume(tmp_path, image):
    path, _ = image
    system = make_system(tmp_path, path)

    result = invoke(system, "create", "--slot", "3")

    assert result.exit_code == 0, result.stderr
    assert "Suspending to S3" in result.stderr
    assert "The machine resumed after" in result.stderr
    assert "Slot 3 is now pending." in result.stderr
    assert "warning: the payload did not mark the slot valid" in result.stderr
    assert (system.sys_root / "power" / "state").read_text() == "mem"


def test_cli_create_without_payload(tmp_path, image):
    path, _ = image
    result = invoke(make_system(tmp_path, path, PayloadVariables(status=None)), "create")

    assert result.exit_code == ExitCode.FAILURE
    assert result.stderr.startswith("error: the payload did not run during this boot")
    assert "hint: " in result.stderr
    assert "Suspending" not in result.stderr


def test_cli_create_without_s3(tmp_path, image):
    path, _ = image
    result = invoke(make_system(tmp_path, path, mem_sleep="[s2idle]\n"), "create", "--lazy")
    assert result.exit_code == ExitCode.UNSUPPORTED_MACHINE
    assert "error: the machine offers no S3 sleep" in result.stderr


def test_cli_not_root(tmp_path, image):
    path, _ = image
    result = invoke(make_system(tmp_path, path, uid=1000), "list")
    assert result.exit_code == ExitCode.FAILURE
    assert result.stderr.splitlines() == [
        "error: switchos snapshot needs root, but runs as user id 1000",
        "hint: run it with sudo",
    ]


def test_cli_switch_lazy(tmp_path, image):
    path, superblock = image
    write_entry(path, superblock, valid_entry(0, "windows"))
    variables = PayloadVariables()

    result = invoke(make_system(tmp_path, path, variables), "switch", "windows", "--lazy")

    assert result.exit_code == 0, result.stderr
    assert "Sent the switch command for slot 0 (SET_CORE_ACTION 0200000000000000)" in result.stderr
    assert variables.pending == bytes.fromhex("0200000000000000")


def test_cli_switch_unknown_target(tmp_path, image):
    path, _ = image
    result = invoke(make_system(tmp_path, path), "switch", "linux")
    assert result.exit_code == ExitCode.INVALID_INPUT
    assert "error: no snapshot has the label 'linux'" in result.stderr
    assert "hint: list the slots with: switchos snapshot list" in result.stderr


def test_cli_delete_asks_first(tmp_path, image, monkeypatch):
    # CliRunner's stdin is no terminal; the question needs one.
    monkeypatch.setattr("switchos.cli_confirm.stdin_is_terminal", lambda: True)
    path, superblock = image
    write_entry(path, superblock, valid_entry(1, "old"))
    system = make_system(tmp_path, path)

    declined = invoke(system, "delete", "old", input="n\n")
    assert declined.exit_code == ExitCode.USER_ABORT
    assert "Delete the snapshot in slot 1 ('old', valid)?" in declined.stderr
    assert "error: did not delete the snapshot in slot 1; nothing was changed" in declined.stderr
    assert "Aborted!" not in declined.stderr
    assert read_entry(path, 1) == valid_entry(1, "old")

    accepted = invoke(system, "delete", "old", input="y\n")
    assert accepted.exit_code == 0, accepted.stderr
    assert "Slot 1 is free." in accepted.stderr
    assert read_entry(path, 1) == SlotEntry(index=1)


def test_cli_delete_yes(tmp_path, image):
    path, superblock = image
    write_entry(path, superblock, valid_entry(2, "old"))
    result = invoke(make_system(tmp_path, path), "delete", "2", "-y")
    assert result.exit_code == 0, result.stderr
    assert read_entry(path, 2).state is SlotState.FREE


def test_cli_store_option_overrides(tmp_path, image):
    path, _ = image
    other = tmp_path / "other.img"
    make_store_image(other, slot_count=2)
    result = invoke(make_system(tmp_path, path), "--store", str(other), "list", "--json")
    assert result.exit_code == 0, result.stderr
    assert len(json.loads(result.stdout)["slots"]) == 2


def test_cli_help_lists_commands():
    result = CliRunner().invoke(main, ["snapshot", "--help"])
    assert result.exit_code == 0
    for command in ("list", "create", "switch", "delete"):
        assert command in result.output


def test_cli_create_label_too_long(tmp_path, image):
    path, _ = image
    variables = PayloadVariables()
    result = invoke(make_system(tmp_path, path, variables), "create", "--lazy", "--label", "x" * 65)
    assert result.exit_code == ExitCode.INVALID_INPUT
    assert "error: slot label" in result.stderr
    assert "hint: use a label of at most 64 bytes" in result.stderr
    assert variables.writes == []


def test_cli_delete_without_terminal_needs_yes(tmp_path, image):
    path, superblock = image
    write_entry(path, superblock, valid_entry(0, "old"))

    result = invoke(make_system(tmp_path, path), "delete", "0")

    assert result.exit_code == ExitCode.INVALID_INPUT
    assert "Aborted!" not in result.stderr
    assert result.stderr.splitlines() == [
        "error: cannot ask whether to delete the snapshot in slot 0: standard input is not a terminal",
        "hint: pass --yes to delete the snapshot in slot 0 without the question",
    ]
    assert read_entry(path, 0) == valid_entry(0, "old")


def test_cli_delete_end_of_input_aborts(tmp_path, image, monkeypatch):
    monkeypatch.setattr("switchos.cli_confirm.stdin_is_terminal", lambda: True)
    path, superblock = image
    write_entry(path, superblock, valid_entry(0, "old"))

    result = invoke(make_system(tmp_path, path), "delete", "0", input="")

    assert result.exit_code == ExitCode.USER_ABORT
    assert "Aborted!" not in result.stderr
    assert read_entry(path, 0) == valid_entry(0, "old")


@pytest.mark.parametrize("command", [["list"], ["create", "--lazy"], ["switch", "0", "--lazy"], ["delete", "0", "-y"]])
def test_cli_store_after_subcommand(tmp_path, image, command):
    path, _ = image
    other = tmp_path / "other.img"
    other_superblock = make_store_image(other, slot_count=2)
    write_entry(other, other_superblock, valid_entry(0, "other"))
    system = make_system(tmp_path, path)
    system.store_path = tmp_path / "missing.img"

    result = invoke(system, *command, "--store", str(other))

    assert result.exit_code == 0, result.stderr
    assert system.store_path == other


def test_cli_subcommand_store_wins_over_group(tmp_path, image):
    path, _ = image
    other = tmp_path / "other.img"
    make_store_image(other, slot_count=2)
    result = invoke(make_system(tmp_path, path), "--store", str(path), "list", "--json", "--store", str(other))
    assert result.exit_code == 0, result.stderr
    assert len(json.loads(result.stdout)["slots"]) == 2


def test_cli_missing_store_is_invalid_input(tmp_path, image):
    path, _ = image
    missing = tmp_path / "missing.img"
    for args in (["--store", str(missing), "list"], ["list", "--store", str(missing)]):
        result = invoke(make_system(tmp_path, path), *args)
        assert result.exit_code == ExitCode.INVALID_INPUT, result.stderr
        assert result.stderr.splitlines()[0] == f"error: {missing} does not exist"


def test_cli_create_dry_run(tmp_path, image):
    path, _ = image
    variables = PayloadVariables()
    system = make_system(tmp_path, path, variables)

    result = invoke(system, "create", "--slot", "1", "--label", "try", "--dry-run")

    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Dry run: every check passed; nothing was written and the machine stays awake.",
        "Would mark slot 1 pending, for the payload to save this OS into.",
        "Would send the store command for slot 1: write "
        "SET_CORE_ACTION-e21c66ed-bc2e-4d30-ac5e-1b968002c541 = 0100000001000000 (hex).",
        "Would then suspend to S3; the payload saves the RAM before the machine sleeps.",
        "Not checked: whether the payload accepts the command, which shows only when it is sent.",
    ]
    assert variables.writes == []
    assert read_entry(path, 1) == SlotEntry(index=1)
    assert (system.sys_root / "power" / "state").read_text() == "freeze mem disk\n"


def test_cli_create_dry_run_fails_checks(tmp_path, image):
    path, _ = image
    result = invoke(make_system(tmp_path, path, mem_sleep="[s2idle]\n"), "create", "--dry-run")
    assert result.exit_code == ExitCode.UNSUPPORTED_MACHINE
    assert "error: the machine offers no S3 sleep" in result.stderr
    assert "Dry run" not in result.output


def test_cli_switch_dry_run_lazy(tmp_path, image):
    path, superblock = image
    write_entry(path, superblock, valid_entry(2, "windows"))
    variables = PayloadVariables()
    system = make_system(tmp_path, path, variables)

    result = invoke(system, "switch", "windows", "--dry-run", "--lazy")

    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1] == "Would mark slot 0 pending, for the payload to save this OS into."
    assert lines[2].startswith("Would send the switch command for slot 2: write SET_CORE_ACTION-")
    assert lines[2].endswith(" = 0200000002000000 (hex).")
    assert lines[3] == "Would then wait for the next suspend to S3 that you start (--lazy)."
    assert variables.writes == []
    assert read_entry(path, 0) == SlotEntry(index=0)


def test_cli_help_states_slot_numbering():
    for command in ([], ["list"], ["switch"], ["delete"], ["create"]):
        result = CliRunner().invoke(main, ["snapshot", *command, "--help"])
        assert result.exit_code == 0
        assert "from 0" in " ".join(result.output.split()), command
