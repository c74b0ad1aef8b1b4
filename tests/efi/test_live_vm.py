"""Live ESP discovery and placement inside the test bed's Linux guest, on a mounted vfat ESP.

The host kernel has no vfat driver, so this is where a real mount is tested:
the guest's /init mounts the ESP at /boot/efi, and the guest has no udev, so
discovery reads the GPT of /dev/vda itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from switchos.efi.fatimage import FatImage
from testbed import standin
from testbed.machine import Machine

SCRIPT = r"""
set -e
python3 - <<'PYTHON'
from pathlib import Path
from switchos.efi.esp import find_live_esp
from switchos.efi.payload import verify_local_payload
from switchos.efi.placement import MountedEsp, commit_placement, place_payload

location = find_live_esp()
print("esp", location.device, location.disk, location.partition_number, location.start,
      location.size, location.sector_size, location.scheme, location.partition_signature,
      location.mount_point)
esp = MountedEsp(location.mount_point)
old = verify_local_payload(Path("/boot/efi/switchos-guest/old.efi"))
new = verify_local_payload(Path("/boot/efi/switchos-guest/new.efi"))
actions = [place_payload(esp, old).action.value, place_payload(esp, old).action.value]
replaced = place_payload(esp, new)
actions.append(replaced.action.value)
backup_kept = (location.mount_point / "EFI/SwitchOS/switchos-x64.efi.bak").read_bytes() == old.path.read_bytes()
commit_placement(esp, replaced)
print("actions", *actions)
print("backup", backup_kept, (location.mount_point / "EFI/SwitchOS/switchos-x64.efi.bak").exists())
PYTHON
"""


@pytest.fixture
def guest_machine(tmp_path: Path) -> Iterator[Machine]:
    built = Machine(tmp_path / "machine", guest="cloud")
    yield built
    built.remove()


@pytest.mark.vm
def test_live_placement_in_guest(guest_machine: Machine, tmp_path: Path) -> None:
    old = standin.build("driver", tmp_path / "old", version="0.0.9").read_bytes()
    new = standin.build("driver", tmp_path / "new").read_bytes()
    guest_machine.esp_volume.write("\\switchos-guest\\old.efi", old)
    guest_machine.esp_volume.write("\\switchos-guest\\new.efi", new)

    run, result = guest_machine.run_guest(SCRIPT)

    assert run.exit_status == 0, result.transcript()
    lines = {line.split()[0]: line.split()[1:] for line in run.output if line.split()}
    esp = guest_machine.esp
    assert lines["esp"] == [
        "vda1", "vda", str(esp.number), str(esp.start_lba), str(esp.size_lba), "512", "gpt",
        str(esp.guid), "/boot/efi",
    ], run.text
    assert lines["actions"] == ["created", "unchanged", "replaced"], run.text
    assert lines["backup"] == ["True", "False"], run.text

    # After the guest powered off, the host reads the placed file with mtools and
    # fsck.fat finds the file system clean.
    placed = guest_machine.esp_volume.read("\\EFI\\SwitchOS\\switchos-x64.efi")
    assert hashlib.sha256(placed).hexdigest() == hashlib.sha256(new).hexdigest()
    FatImage(
        guest_machine.system_image, esp.start_lba * 512, esp.size_lba * 512
    ).check()
