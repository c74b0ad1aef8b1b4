"""The install wizard driven through a pseudo-terminal, as a person would answer it."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pexpect
import pytest

from installer_helpers import OfflineMachine, load_option_text, make_offline_machine
from switchos.errors import ExitCode
from testbed import standin

SWITCHOS = str(Path(sys.executable).parent / "switchos")
DOWN = "\x1b[B"


@pytest.fixture
def offline(tmp_path: Path) -> OfflineMachine:
    built = make_offline_machine(tmp_path / "machine")
    yield built
    built.machine.remove()


def spawn(offline: OfflineMachine, *extra: str) -> pexpect.spawn:
    environment = dict(os.environ, TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1", COLUMNS="200", LINES="50")
    child = pexpect.spawn(
        SWITCHOS, ["install", *offline.target_args, *extra], env=environment, encoding="utf-8",
        timeout=60, dimensions=(50, 200),
    )
    return child


def finish(child: pexpect.spawn) -> int:
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus


def test_wizard_answers_every_prompt(offline: OfflineMachine):
    payload = standin.build("app")
    child = spawn(offline)

    child.expect("Where does the payload come from")
    child.sendline("")
    child.expect("Payload file")
    child.sendline(str(payload))
    child.expect("application")
    child.expect("trial boot")
    child.send("n")
    child.expect("RAM size")
    child.sendline("256M")
    child.expect("Snapshot slots")
    child.sendline("")
    child.expect("The store needs")
    child.expect("Disk for the snapshot store")
    child.sendline("")
    child.expect("Layout of the snapshot disk")
    child.sendline("")
    child.expect("Type its name")
    child.sendline("snapshots.img")
    child.expect("Apply this plan")
    child.send("y")
    child.expect("install: done")

    assert finish(child) == 0, child.before
    order = offline.order("BootOrder")
    assert order[1:] == [0x0001]
    entry = offline.machine.vars().get(f"Boot{order[0]:04X}")
    assert "chain=\\EFI\\systemd\\systemd-bootx64.efi" in load_option_text(entry)
    status = json.loads(offline.invoke("status", *offline.target_args, "--json").stdout)
    assert status["snapshot_store"]["slots"] == 2


def test_wizard_and_yes_build_same_plan(offline: OfflineMachine):
    payload = standin.build("driver")
    unattended = offline.invoke(*offline.install_args("driver", "--dry-run"))
    assert unattended.exit_code == 0, unattended.output
    expected_steps = [line.strip() for line in unattended.stdout.splitlines() if line.strip()[:2] in ("1.", "2.", "3.", "4.", "5.")]

    child = spawn(offline, "--payload", str(payload), "--memory", "256M", "--dry-run")
    child.expect("trial boot")
    child.send("n")
    child.expect("Snapshot slots")
    child.sendline("")
    child.expect("Disk for the snapshot store")
    child.sendline("")
    child.expect("Layout of the snapshot disk")
    child.sendline("")
    child.expect("Type its name")
    child.sendline("snapshots.img")
    child.expect(pexpect.EOF)
    output = child.before.replace("\r", "")

    for step in expected_steps:
        assert step in output, output


def test_wizard_ctrl_c_changes_nothing(offline: OfflineMachine):
    before = offline.checksums()
    child = spawn(offline, "--payload", str(standin.build("driver")))

    child.expect("trial boot")
    child.send("n")
    child.expect("RAM size")
    child.sendline("256M")
    child.expect("Snapshot slots")
    child.sendintr()

    assert finish(child) == ExitCode.USER_ABORT
    assert "nothing was changed" in child.before
    assert offline.checksums() == before


def test_wizard_declined_plan_changes_nothing(offline: OfflineMachine):
    before = offline.checksums()
    child = spawn(offline, "--payload", str(standin.build("driver")), "--memory", "256M", "--no-snapshot-disk")

    child.expect("trial boot")
    child.send("n")
    child.expect("Apply this plan")
    child.send("n")

    assert finish(child) == ExitCode.USER_ABORT
    assert offline.checksums() == before


def test_wizard_asks_before_upstream_payload(offline: OfflineMachine):
    before = offline.checksums()
    upstream = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"
    child = spawn(offline, "--payload", upstream, "--memory", "256M")

    child.expect("has no .swos metadata section")
    child.expect("Install it as the upstream SwitchOS application")
    child.send("n")

    assert finish(child) == ExitCode.USER_ABORT
    assert offline.checksums() == before


def test_wizard_trial_question_for_driver(offline: OfflineMachine):
    child = spawn(offline, "--payload", str(standin.build("driver")), "--memory", "256M", "--no-snapshot-disk")

    child.expect("trial boot first")
    child.expect("runs at every boot until")
    child.sendintr()

    assert finish(child) == ExitCode.USER_ABORT
