"""switchos snapshot in the test-bed Linux guest, against the real stand-in payload and OVMF.

The partition code prepares the snapshot disk's store offline, before the
boot. The stand-in is registered as Driver0000 with load options that name
the store's partition, as an install does.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from switchos.partition.layout import LayoutKind, LayoutResult, StoreGeometry, prepare_layout
from switchos.partition.memory import compute_slot_size
from testbed import standin
from testbed.firmware import ucs2_options
from testbed.machine import Bus, Machine

pytestmark = pytest.mark.vm

VENDOR = "e21c66ed-bc2e-4d30-ac5e-1b968002c541"
EFIVARS = "/sys/firmware/efi/efivars"
PAYLOAD_ESP_PATH = "\\EFI\\SwitchOS\\switchos-x64.efi"
STATUS_MARKER = "status-begin"


def prepare_snapshot_disk(machine: Machine) -> LayoutResult:
    # Slots sized for all of the guest's RAM, as the installer sizes them.
    geometry = StoreGeometry(slot_size=compute_slot_size(machine.memory_mib << 20), slot_count=2)
    disk = machine.add_disk(geometry.required_size + (8 << 20), bus=Bus.VIRTIO_BLK)
    return prepare_layout(LayoutKind.NEW_TABLE, disk.path, geometry, wipe=True)


def register_standin(machine: Machine, flavour: str, options: str) -> None:
    machine.esp_volume.write(PAYLOAD_ESP_PATH, standin.build(flavour))
    machine.add_load_option("Driver", 0x0000, "SwitchOS stand-in", PAYLOAD_ESP_PATH,
                            optional_data=ucs2_options(options))


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    built = Machine(tmp_path / "machine", guest="cloud")
    yield built
    built.remove()


def script(command: str) -> str:
    """Run ``command``, then print its exit status, SwitchOSStatus and the command variable's presence."""
    return f"""
{command}
echo "cli-exit=$?"
echo {STATUS_MARKER}
tail -c +5 {EFIVARS}/SwitchOSStatus-{VENDOR}
if [ -e {EFIVARS}/SET_CORE_ACTION-{VENDOR} ]; then echo command-file=present; else echo command-file=absent; fi
"""


def cli_exit(output: list[str]) -> int:
    line = next(line for line in output if line.startswith("cli-exit="))
    return int(line.split("=", 1)[1])


def status_lines(output: list[str]) -> dict[str, str]:
    start = output.index(STATUS_MARKER) + 1
    values = {}
    for line in output[start:]:
        key, separator, value = line.partition("=")
        if separator and re.fullmatch(r"[a-z-]+", key):
            values[key] = value
    return values


def test_vm_create_lazy_sends_contract_bytes(machine: Machine):
    layout = prepare_snapshot_disk(machine)
    register_standin(machine, "runtime", f"store=partition:{layout.partition_guid}")

    run, result = machine.run_guest(script(
        "switchos snapshot create --lazy --label vmtest 2>&1\nswitchos snapshot list --json 2>&1"
    ))

    assert run.exit_status == 0, result.transcript()
    assert cli_exit(run.output) == 0, run.text
    assert any("Sent the store command for slot 0 (SET_CORE_ACTION 0100000000000000); "
               "the payload acknowledged it." in line for line in run.output), run.text
    status = status_lines(run.output)
    # The stand-in's GetVariable hook reports exactly the bytes it took.
    assert status["pending-action"] == "1", run.text
    assert status["pending-slot"] == "0", run.text
    assert status["pending-data"] == "0100000000000000", run.text
    assert status["loaded-as"] == "runtime-driver"
    # The hook kept the write from the firmware, so no variable stays behind.
    assert status["command-file"] == "absent"
    assert '"label": "vmtest"' in run.text
    assert '"state": "pending"' in run.text
    assert "SUSPEND" not in result.qmp_events


def test_vm_create_suspends_and_resumes(machine: Machine):
    layout = prepare_snapshot_disk(machine)
    register_standin(machine, "runtime", f"store=partition:{layout.partition_guid}")

    run, result = machine.run_guest(script("switchos snapshot create --label s3 2>&1"))

    assert run.exit_status == 0, result.transcript()
    assert cli_exit(run.output) == 0, run.text
    assert "SUSPEND" in result.qmp_events, result.qmp_events
    assert "WAKEUP" in result.qmp_events, result.qmp_events
    assert result.qmp_events.index("SUSPEND") < result.qmp_events.index("WAKEUP")
    suspending = next(i for i, line in enumerate(run.output) if line.startswith("Suspending to S3"))
    resumed = next(i for i, line in enumerate(run.output) if line.startswith("The machine resumed after"))
    assert suspending < resumed, run.text
    assert status_lines(run.output)["pending-data"] == "0100000000000000"


def test_vm_create_without_payload_stops_before_suspend(machine: Machine):
    prepare_snapshot_disk(machine)

    run, result = machine.run_guest(script("switchos snapshot create 2>&1"))

    assert run.exit_status == 0, result.transcript()
    assert cli_exit(run.output) == 1, run.text
    assert any(line.startswith("error: the payload did not run during this boot") for line in run.output), run.text
    assert any(line.startswith("hint: ") for line in run.output), run.text
    assert "SUSPEND" not in result.qmp_events
    assert not any(line.startswith("Suspending") for line in run.output)


def test_vm_driver_without_hooks_is_rejected(machine: Machine):
    # The boot-service stand-in publishes SwitchOSStatus but hooks nothing, so
    # OVMF itself rejects the volatile write after ExitBootServices.
    layout = prepare_snapshot_disk(machine)
    register_standin(machine, "driver", f"store=partition:{layout.partition_guid}")

    run, result = machine.run_guest(script("switchos snapshot create 2>&1"))

    assert run.exit_status == 0, result.transcript()
    assert cli_exit(run.output) == 1, run.text
    assert any("error: the payload did not accept the store command: writing SET_CORE_ACTION" in line
               for line in run.output), run.text
    # efivarfs leaves an empty file after a rejected first write; none may stay behind.
    assert status_lines(run.output)["command-file"] == "absent", run.text
    assert "SUSPEND" not in result.qmp_events
