"""Install inside the test-bed Linux guest: live efivarfs, the ESP mounted at /boot/efi.

The first boot installs, before the firmware has run the payload. The second
boot of the same machine shows the payload loaded through ``switchos status``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from testbed import standin
from testbed.machine import Bus, Machine
from testbed.qemu import EventKind

pytestmark = pytest.mark.vm

PAYLOAD_ON_ESP = "\\standin\\driver.efi"
# The guest has 1 GiB of RAM, so one slot needs a little more than 1 GiB.
SNAPSHOT_DISK_SIZE = 2 << 30

INSTALL_SCRIPT = """
switchos status --json > /tmp/before.json; echo "status-before-exit=$?"
switchos install --yes --payload /boot/efi/standin/driver.efi --slots 1 --wipe 2> /tmp/ambiguous.txt
echo "ambiguous-exit=$?"
echo "ambiguous=$(tr '\n' ' ' < /tmp/ambiguous.txt)"
switchos install --yes --payload /boot/efi/standin/driver.efi --snapshot-disk /dev/vdb --slots 1 --wipe
echo "install-exit=$?"
switchos install --yes --payload /boot/efi/standin/driver.efi --snapshot-disk /dev/vdb --slots 1 --wipe > /dev/null 2>&1
echo "second-install-exit=$?"
efibootmgr -v -r | grep -i switchos
sgdisk -p /dev/vdb | grep -i 'SwitchOS snapshots'
echo "before=$(tr -d '\\n' < /tmp/before.json)"
"""

STATUS_SCRIPT = """
switchos status --json > /tmp/status.json; echo "status-exit=$?"
echo "status=$(tr -d '\\n' < /tmp/status.json)"
switchos status
"""


def value_of(lines: list[str], key: str) -> str:
    for line in lines:
        if line.startswith(f"{key}="):
            return line.split("=", 1)[1]
    raise AssertionError(f"no {key}= line in {lines}")


def test_live_install_then_status_after_reboot(tmp_path: Path):
    machine = Machine(tmp_path / "machine", guest="cloud")
    try:
        machine.add_disk(SNAPSHOT_DISK_SIZE, bus=Bus.VIRTIO_BLK, name="snapshots")
        # A second candidate makes an unattended install without --snapshot-disk ambiguous.
        machine.add_disk(SNAPSHOT_DISK_SIZE, bus=Bus.NVME, name="second")
        machine.esp_volume.write(PAYLOAD_ON_ESP, standin.build("driver"))

        install, first_boot = machine.run_guest(INSTALL_SCRIPT)
        status, second_boot = machine.run_guest(STATUS_SCRIPT)
    finally:
        machine.remove()

    assert install.exit_status == 0, first_boot.transcript()
    assert first_boot.first_index(EventKind.STANDIN) is None, first_boot.transcript()
    before = json.loads(value_of(install.output, "before"))
    assert before["installed"] is False
    assert value_of(install.output, "status-before-exit") == "0"
    assert value_of(install.output, "ambiguous-exit") == "2", install.text
    ambiguous = value_of(install.output, "ambiguous")
    assert "2 disks could hold the snapshot store" in ambiguous
    assert "--snapshot-disk /dev/vdb" in ambiguous
    assert "--snapshot-disk /dev/nvme0n1" in ambiguous
    assert value_of(install.output, "install-exit") == "0", install.text
    assert value_of(install.output, "second-install-exit") == "3", install.text
    assert any("SwitchOS" in line and "switchos-x64.efi" in line.lower() for line in install.output), install.text
    assert any("SwitchOS snapshots" in line for line in install.output), install.text

    assert status.exit_status == 0, second_boot.transcript()
    assert value_of(status.output, "status-exit") == "0"
    report = json.loads(value_of(status.output, "status"))
    assert report["installed"] is True
    assert report["loaded_this_boot"] is True
    assert report["payload_status"]["loaded-as"] == "driver"
    assert report["payload_status"]["options"].startswith("store=partition:")
    assert report["method"] == "driver"
    assert report["order_position"] == 0
    assert report["snapshot_store"]["health"] == "healthy"
    assert report["snapshot_store"]["slots"] == 1
    assert report["s3"]["supported"] is True
    assert report["problems"] == []
    assert "payload ran during this boot: yes" in status.output


TRIAL_INSTALL_SCRIPT = """
switchos install --yes --trial-boot --no-snapshot-disk --payload /boot/efi/standin/app.efi
echo "install-exit=$?"
switchos status --json > /tmp/status.json
echo "status=$(tr -d '\\n' < /tmp/status.json)"
efibootmgr | grep -E '^Boot(Next|Order)'
"""

TRIAL_STATUS_SCRIPT = """
switchos status --json > /tmp/status.json; echo "status-exit=$?"
echo "status=$(tr -d '\\n' < /tmp/status.json)"
efibootmgr | grep -E '^Boot(Next|Order)'
"""


def test_live_trial_boot_promoted_after_payload_ran(tmp_path: Path):
    machine = Machine(tmp_path / "machine", guest="cloud")
    try:
        machine.esp_volume.write("\\standin\\app.efi", standin.build("app"))

        install, _first_boot = machine.run_guest(TRIAL_INSTALL_SCRIPT)
        trial, trial_boot = machine.run_guest(TRIAL_STATUS_SCRIPT)
    finally:
        machine.remove()

    assert value_of(install.output, "install-exit") == "0", install.text
    pending = json.loads(value_of(install.output, "status"))
    assert pending["trial"].startswith("pending"), pending
    entry = pending["entry"]
    number = entry.removeprefix("Boot")
    assert f"BootNext: {number}" in install.output, install.text
    assert not any(line.startswith(f"BootOrder: {number}") for line in install.output), install.text

    started = trial_boot.first_index(EventKind.STANDIN, "started")
    assert started is not None, trial_boot.transcript()
    assert "kind=application" in trial_boot.events[started].text
    report = json.loads(value_of(trial.output, "status"))
    assert report["loaded_this_boot"] is True
    assert report["trial"].startswith("passed"), report
    assert report["order_position"] == 0
    assert any(line.startswith(f"BootOrder: {number},") for line in trial.output), trial.text
