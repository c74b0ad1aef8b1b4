"""In a Linux guest: the snapshot disk is found on virtio-blk, NVMe and SATA at its PCI address.

The machine pins the extra virtio-blk and NVMe controllers to PCI slots the test
chooses, so the expected addresses come from QEMU's command line, not from the
code under test. SATA disks sit on q35's built-in AHCI controller (0000:00:1f.2),
``ide.N`` being port N. The guest lists the disks, suspends to S3, lists them
again, adds a device-mapper holder, and prepares a store on the 4Kn NVMe disk,
which the host then checks with sgdisk.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from disk_helpers import GIB, MIB, attached_loop, sgdisk_partitions, sgdisk_verify

from switchos.partition.layout import SWITCHOS_PARTITION_NAME, read_gpt_partition_ids
from switchos.partition.store import read_store
from testbed.machine import Bus, Machine

VIRTIO_SLOT = 0x05
NVME_SLOT = 0x06

GUEST_SCRIPT = r"""
set -e
list() { echo "$1 $(switchos disk list --json | tr -d '\n')"; }
list before-s3
echo deep > /sys/power/mem_sleep
echo mem > /sys/power/state
list after-s3
dmsetup create switchos-holder --table "0 2048 linear /dev/vdb 0"
list with-holder
dmsetup remove switchos-holder
python3 - <<'EOF'
import json
from pathlib import Path
from switchos.partition.layout import StoreGeometry, prepare_new_table
from switchos.partition.memory import compute_slot_size

result = prepare_new_table(Path("/dev/nvme0n1"), StoreGeometry(compute_slot_size(1 << 30), 2), wipe=True)
print("prepared " + json.dumps({
    "partition_path": str(result.partition_path),
    "partition_guid": str(result.partition_guid),
    "offset": result.offset,
    "size": result.size,
    "sector": result.logical_sector_size,
    "store_uuid": str(result.superblock.store_uuid),
}))
EOF
echo "inspect $(switchos disk inspect --json /dev/nvme0n1p1 | tr -d '\n')"
"""


class PinnedMachine(Machine):
    """A test machine whose extra virtio-blk and NVMe controllers sit in chosen PCI slots."""

    pci_slots: dict[str, int]

    def qemu_argv(self) -> list[str]:
        argv = super().qemu_argv()
        for index, argument in enumerate(argv):
            for drive, slot in self.pci_slots.items():
                if argument.startswith(("virtio-blk-pci,", "nvme,")) and f"drive={drive}," in argument:
                    argv[index] = f"{argument},addr={slot:#04x}"
        return argv


def by_tag(lines: list[str]) -> dict[str, str]:
    tagged = {}
    for line in lines:
        tag, _, rest = line.partition(" ")
        tagged[tag] = rest
    return tagged


def disks_by_size(document: dict) -> dict[int, dict]:
    return {disk["size"]: disk for disk in document["disks"]}


@pytest.mark.vm
def test_guest_finds_disks_on_each_bus(tmp_path: Path):
    machine = PinnedMachine(tmp_path / "machine", guest="generic", memory_mib=1024)
    try:
        # Distinct sizes identify the disks in the guest's output.
        virtio = machine.add_disk(4 * GIB, bus=Bus.VIRTIO_BLK)
        nvme = machine.add_disk(5 * GIB, bus=Bus.NVME, sector_size=4096)
        sata0 = machine.add_disk(6 * GIB, bus=Bus.SATA)
        sata1 = machine.add_disk(7 * GIB, bus=Bus.SATA)
        machine.pci_slots = {"disk0": VIRTIO_SLOT, "disk1": NVME_SLOT}
        run, result = machine.run_guest(GUEST_SCRIPT, timeout=600)

        assert run.exit_status == 0, result.transcript()
        output = by_tag(run.output)
        before = json.loads(output["before-s3"])
        disks = disks_by_size(before)

        # 1 GiB of guest RAM, of which OVMF keeps a few MiB: two slots of
        # nearly 1 GiB each plus the headers.
        assert 2 * 960 * MIB < before["required_size"] <= 2 * GIB + 4 * MIB

        virtio_disk = disks[virtio.size]
        assert virtio_disk["name"] == "vdb"
        assert virtio_disk["bus"] == "virtio-blk"
        assert virtio_disk["pci_address"] == f"0000:00:{VIRTIO_SLOT:02x}.0"
        assert virtio_disk["eligible"], virtio_disk

        nvme_disk = disks[nvme.size]
        assert nvme_disk["bus"] == "nvme"
        assert nvme_disk["pci_address"] == f"0000:00:{NVME_SLOT:02x}.0"
        assert nvme_disk["nvme_namespace"] == 1
        assert nvme_disk["logical_sector_size"] == 4096
        assert nvme_disk["eligible"], nvme_disk

        for image, port in ((sata0, 0), (sata1, 1)):
            sata_disk = disks[image.size]
            assert sata_disk["bus"] == "sata"
            assert sata_disk["pci_address"] == "0000:00:1f.2"
            assert sata_disk["sata_port"] == port
            assert sata_disk["eligible"], sata_disk

        # The system disk contains the mounted ESP and is too small for the store.
        system = next(disk for disk in before["disks"] if disk["name"] == "vda")
        assert {item["reason"] for item in system["exclusions"]} == {"mounted", "esp-disk", "too-small"}

        # After S3 the same disks are at the same addresses.
        after = json.loads(output["after-s3"])
        assert after == before
        assert result.qmp_events.index("SUSPEND") < result.qmp_events.index("WAKEUP")

        # A device-mapper target over vdb makes it a holder's disk.
        held = disks_by_size(json.loads(output["with-holder"]))[virtio.size]
        assert [item["reason"] for item in held["exclusions"]] == ["holder"]
        assert held["exclusions"][0]["detail"].startswith("held by dm-")

        # The store prepared in the guest on the 4Kn NVMe disk.
        prepared = json.loads(output["prepared"])
        assert prepared["partition_path"] == "/dev/nvme0n1p1"
        assert prepared["sector"] == 4096
        assert prepared["offset"] == MIB
        inspected = json.loads(output["inspect"])
        assert inspected["healthy"]
        assert inspected["primary"]["store_uuid"] == prepared["store_uuid"]

        with attached_loop(nvme.path, sector_size=4096) as device:
            sgdisk_verify(device)
            (row,) = sgdisk_partitions(device)
            assert row[1] == MIB // 4096
            assert row[4] == SWITCHOS_PARTITION_NAME
            assert str(read_gpt_partition_ids(device, 1).unique_guid) == prepared["partition_guid"]
            store = read_store(device, offset=prepared["offset"], size=prepared["size"])
            assert store.healthy
            assert str(store.primary.store_uuid) == prepared["store_uuid"]
    finally:
        machine.remove()
