"""Offline installs booted in OVMF: the stand-in payload must start before systemd-boot."""

from __future__ import annotations

from pathlib import Path

import pytest

from installer_helpers import OfflineMachine, make_offline_machine
from testbed.qemu import BootResult, EventKind

pytestmark = pytest.mark.vm


@pytest.fixture
def offline(tmp_path: Path) -> OfflineMachine:
    built = make_offline_machine(tmp_path / "machine")
    yield built
    built.machine.remove()


def standin_then_loader(result: BootResult) -> tuple[int, int]:
    """Return the indexes of the stand-in's start line and of systemd-boot's menu, failing when one is missing."""
    assert not result.timed_out, result.transcript()
    started = result.first_index(EventKind.STANDIN, "started")
    loader = result.first_index(EventKind.SYSTEMD_BOOT)
    assert started is not None, result.transcript()
    assert loader is not None, result.transcript()
    return started, loader


def offline_order(variables: dict[str, bytes]) -> list[int]:
    data = variables["BootOrder"]
    return [int.from_bytes(data[i : i + 2], "little") for i in range(0, len(data), 2)]


def test_driver_install_boots_then_uninstall(offline: OfflineMachine):
    installed = offline.invoke(*offline.install_args("driver", "--yes"))
    assert installed.exit_code == 0, installed.output

    result = offline.machine.boot_to_systemd_boot()

    started, loader = standin_then_loader(result)
    assert started < loader
    assert "kind=driver" in result.events[started].text
    assert 'options="store=partition:' in result.events[started].text

    # The first boot added the firmware's own entries (UiApp, the shell) to
    # BootOrder, so compare with the variables as they are before uninstall.
    booted = offline.variables()
    removed = offline.invoke("uninstall", *offline.target_args, "--yes")
    assert removed.exit_code == 0, removed.output

    ours = {"Driver0000", "DriverOrder"}
    assert offline.variables() == {name: data for name, data in booted.items() if name not in ours}
    after = offline.machine.boot_to_systemd_boot()
    assert not after.timed_out, after.transcript()
    # NOTE: on the second and later boots of a machine OVMF connects the
    # serial console after it has started Driver#### images, so a driver's
    # start line would be missing even if it ran. The variables above are the
    # proof that no driver is registered; this boot shows the machine still
    # reaches systemd-boot.
    assert after.first_index(EventKind.STANDIN) is None, after.transcript()
    assert after.first_index(EventKind.SYSTEMD_BOOT) is not None


def test_application_install_boots_and_repair(offline: OfflineMachine):
    installed = offline.invoke(*offline.install_args("app", "--yes"))
    assert installed.exit_code == 0, installed.output
    ours = offline.order("BootOrder")[0]

    result = offline.machine.boot_to_systemd_boot()

    started, loader = standin_then_loader(result)
    assert started < loader
    assert "kind=application" in result.events[started].text
    firmware_starts = [e.text for e in result.events[:loader] if e.text.startswith("BdsDxe: starting")]
    assert len(firmware_starts) == 1, firmware_starts
    assert f"Boot{ours:04X}" in firmware_starts[0], firmware_starts

    # Firmware or another OS moves our entry to the end of BootOrder.
    files = offline.machine.vars()
    files.set_order("BootOrder", [n for n in files.order("BootOrder") if n != ours] + [ours])
    files.save()
    moved = offline.machine.boot_to_systemd_boot()
    assert moved.first_index(EventKind.STANDIN) is None, moved.transcript()

    repaired = offline.invoke("repair", *offline.target_args, "--yes")
    assert repaired.exit_code == 0, repaired.output
    assert offline.order("BootOrder")[0] == ours

    again = offline.machine.boot_to_systemd_boot()
    started, loader = standin_then_loader(again)
    assert started < loader

    booted = offline.variables()
    removed = offline.invoke("uninstall", *offline.target_args, "--yes")
    assert removed.exit_code == 0, removed.output
    expected_order = [n for n in offline_order(booted) if n != ours]
    assert offline.order("BootOrder") == expected_order
    unchanged = {name: data for name, data in booted.items() if name not in (f"Boot{ours:04X}", "BootOrder")}
    assert {name: data for name, data in offline.variables().items() if name != "BootOrder"} == unchanged

    after = offline.machine.boot_to_systemd_boot()
    assert not after.timed_out, after.transcript()
    assert after.first_index(EventKind.STANDIN) is None, after.transcript()
    starts = [e.text for e in after.events if e.text.startswith("BdsDxe: starting")]
    assert starts and '"Linux Boot Manager"' in starts[0], starts


def test_stopped_install_boots_then_completes(offline: OfflineMachine):
    from test_faults import build_plan

    # Crash after the application's entry is written but before BootOrder lists it.
    plan = build_plan(offline, "app")
    assert [step.action for step in plan.steps][3] == "create-entry"
    for step in plan.steps[:4]:
        step.apply()

    stopped = offline.machine.boot_to_systemd_boot()

    assert not stopped.timed_out, stopped.transcript()
    assert stopped.first_index(EventKind.STANDIN) is None, stopped.transcript()
    assert stopped.first_index(EventKind.SYSTEMD_BOOT) is not None

    completed = offline.invoke(*offline.install_args("app", "--yes"))
    assert completed.exit_code == 0, completed.output
    result = offline.machine.boot_to_systemd_boot()
    started, loader = standin_then_loader(result)
    assert started < loader


def test_rolled_back_install_boots(offline: OfflineMachine):
    from test_faults import WriteCounter, build_plan

    from switchos.installer.journal import Journal, PartlyRolledBackError

    # The last write of a driver install is DriverOrder; fail it so every
    # step is undone except the prepared snapshot disk, which is kept.
    counter = WriteCounter(fail_at=8)
    with pytest.raises(PartlyRolledBackError):
        Journal().apply(build_plan(offline, "driver", counter))
    assert counter.failed_write == "set DriverOrder"

    result = offline.machine.boot_to_systemd_boot()

    assert not result.timed_out, result.transcript()
    assert result.first_index(EventKind.STANDIN) is None, result.transcript()
    assert result.first_index(EventKind.SYSTEMD_BOOT) is not None
