"""Block device discovery and bus addresses, on sysfs trees modeled on QEMU q35 guests.

The trees follow the paths a Debian 12 guest kernel shows for
``-device virtio-blk-pci``, ``-device nvme`` and ``-device ide-hd`` on the q35
AHCI controller (0000:00:1f.2). The guest test checks the same code on a real
guest kernel.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from disk_helpers import make_disk

from switchos.partition.blockdev import (
    Bus,
    list_block_devices,
    partition_device_name,
    read_block_device,
    read_disk_address,
)


VIRTIO = "pci0000:00/0000:00:03.0/virtio2/block/vdb"
NVME = "pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1"
AHCI = "pci0000:00/0000:00:1f.2/ata3/host2/target2:0:0/2:0:0:0/block/sda"


class TestAddresses:
    def test_virtio_blk(self, tmp_path: Path):
        make_disk(tmp_path, VIRTIO, "vdb")
        address = read_disk_address("vdb", sys_root=tmp_path)
        assert address.bus is Bus.VIRTIO_BLK
        assert address.pci_address == "0000:00:03.0"
        assert address.pci_path == ("0000:00:03.0",)
        assert address.sysfs_path == "/sys/devices/" + VIRTIO
        assert address.describe() == "virtio-blk 0000:00:03.0"

    def test_virtio_blk_behind_bridge(self, tmp_path: Path):
        make_disk(tmp_path, "pci0000:00/0000:00:1c.0/0000:01:00.0/virtio3/block/vdc", "vdc")
        address = read_disk_address("vdc", sys_root=tmp_path)
        assert address.pci_address == "0000:01:00.0"
        assert address.pci_path == ("0000:00:1c.0", "0000:01:00.0")

    def test_nvme_namespace_from_nsid(self, tmp_path: Path):
        make_disk(tmp_path, NVME.replace("nvme0n1", "nvme0n2"), "nvme0n2", attributes={"nsid": "2"})
        address = read_disk_address("nvme0n2", sys_root=tmp_path)
        assert address.bus is Bus.NVME
        assert address.pci_address == "0000:00:04.0"
        assert address.nvme_namespace == 2
        assert address.describe() == "nvme 0000:00:04.0 ns 2"

    def test_nvme_namespace_from_name(self, tmp_path: Path):
        make_disk(tmp_path, NVME, "nvme0n1")
        assert read_disk_address("nvme0n1", sys_root=tmp_path).nvme_namespace == 1

    def test_nvme_multipath_head(self, tmp_path: Path):
        # With native multipath the namespace node sits under the subsystem and
        # its controller links to the PCI function.
        controller = tmp_path / "devices" / "pci0000:00/0000:00:05.0/nvme/nvme1"
        controller.mkdir(parents=True)
        make_disk(tmp_path, "virtual/nvme-subsystem/nvme-subsys1/nvme1n1", "nvme1n1", attributes={"nsid": "1"})
        subsystem = tmp_path / "devices" / "virtual/nvme-subsystem/nvme-subsys1"
        os.symlink(os.path.relpath(controller, subsystem), subsystem / "nvme1")
        address = read_disk_address("nvme1n1", sys_root=tmp_path)
        assert address.bus is Bus.NVME
        assert address.pci_address == "0000:00:05.0"
        assert address.nvme_namespace == 1

    def test_ahci_port_from_port_no(self, tmp_path: Path):
        make_disk(tmp_path, AHCI, "sda")
        port_no = tmp_path / "devices/pci0000:00/0000:00:1f.2/ata3/ata_port/ata3/port_no"
        port_no.parent.mkdir(parents=True)
        port_no.write_text("3\n")
        address = read_disk_address("sda", sys_root=tmp_path)
        assert address.bus is Bus.SATA
        assert address.pci_address == "0000:00:1f.2"
        assert address.sata_port == 2
        assert address.scsi_address == (2, 0, 0, 0)
        assert address.describe() == "sata 0000:00:1f.2 port 2"

    def test_ahci_port_from_sibling_order(self, tmp_path: Path):
        # Without port_no, the port is the position among the controller's ataN
        # directories: q35's ICH9 AHCI has six, ata1 to ata6 when it is the
        # first controller.
        make_disk(tmp_path, AHCI.replace("ata3", "ata5").replace("host2", "host4"), "sdb")
        controller = tmp_path / "devices/pci0000:00/0000:00:1f.2"
        for index in (1, 2, 3, 4, 6):
            (controller / f"ata{index}").mkdir()
        assert read_disk_address("sdb", sys_root=tmp_path).sata_port == 4

    def test_scsi_usb_loop_virtual(self, tmp_path: Path):
        make_disk(tmp_path, "pci0000:00/0000:00:06.0/virtio4/host6/target6:0:1/6:0:1:0/block/sdc", "sdc")
        make_disk(tmp_path, "pci0000:00/0000:00:1d.0/usb2/2-1/2-1:1.0/host7/target7:0:0/7:0:0:0/block/sdd", "sdd")
        make_disk(tmp_path, "virtual/block/loop3", "loop3", attributes={"loop/backing_file": "/tmp/x.img"})
        make_disk(tmp_path, "virtual/block/zram0", "zram0")
        make_disk(tmp_path, "platform/host/odd0/block/xyz", "xyz")
        scsi = read_disk_address("sdc", sys_root=tmp_path)
        assert (scsi.bus, scsi.scsi_address, scsi.pci_address) == (Bus.SCSI, (6, 0, 1, 0), "0000:00:06.0")
        assert read_disk_address("sdd", sys_root=tmp_path).bus is Bus.USB
        assert read_disk_address("loop3", sys_root=tmp_path).bus is Bus.LOOP
        assert read_disk_address("zram0", sys_root=tmp_path).bus is Bus.VIRTUAL
        assert read_disk_address("xyz", sys_root=tmp_path).bus is Bus.UNKNOWN


class TestDevices:
    def test_sizes_in_bytes_for_4096_sectors(self, tmp_path: Path):
        # sysfs counts 512-byte units even on a 4Kn disk: a 512 MiB partition
        # at LBA 256 (4096-byte sectors) shows start 2048 and size 1048576.
        make_disk(
            tmp_path, NVME, "nvme0n1", sectors=61279344 * 8, logical=4096,
            partitions=((1, 2048, 1048576), (2, 1050624, 489183232)),
            attributes={"device/model": "APPLE SSD AP0256J", "nsid": "1"},
        )
        device = read_block_device("nvme0n1", sys_root=tmp_path)
        assert device is not None
        assert device.size == 251000193024
        assert device.logical_sector_size == 4096
        assert device.model == "APPLE SSD AP0256J"
        assert [(p.name, p.number, p.start, p.size) for p in device.partitions] == [
            ("nvme0n1p1", 1, 1024 * 1024, 512 * 1024 * 1024),
            ("nvme0n1p2", 2, 1050624 * 512, 489183232 * 512),
        ]
        assert device.find_partition(2) is device.partitions[1]
        assert device.find_partition(3) is None

    def test_hidden_and_unattached_loop_left_out(self, tmp_path: Path):
        make_disk(tmp_path, VIRTIO, "vdb")
        make_disk(tmp_path, "virtual/nvme-subsystem/nvme-subsys0/nvme0c0n1", "nvme0c0n1", attributes={"hidden": "1"})
        make_disk(tmp_path, "virtual/block/loop0", "loop0", sectors=0)
        make_disk(tmp_path, "virtual/block/loop1", "loop1", attributes={"loop/backing_file": "/tmp/a b.img"})
        devices = list_block_devices(sys_root=tmp_path)
        assert [device.name for device in devices] == ["loop1", "vdb"]
        assert devices[0].backing_file == "/tmp/a b.img"

    def test_flags(self, tmp_path: Path):
        make_disk(tmp_path, VIRTIO, "vdb", attributes={"ro": "1", "removable": "1"})
        device = read_block_device("vdb", sys_root=tmp_path)
        assert device is not None
        assert device.read_only
        assert device.removable
        assert device.rotational

    @pytest.mark.parametrize(
        ("disk", "number", "expected"),
        [("sda", 1, "sda1"), ("vdb", 12, "vdb12"), ("nvme0n1", 1, "nvme0n1p1"), ("loop7", 2, "loop7p2")],
    )
    def test_partition_names(self, disk: str, number: int, expected: str):
        assert partition_device_name(disk, number) == expected


class TestThisMachine:
    def test_system_disk_found(self):
        # Reading this machine's sysfs is harmless; its system disk is on
        # virtio-blk at the PCI function its sysfs path names.
        devices = {device.name: device for device in list_block_devices()}
        root_number = os.stat("/").st_dev
        root_name = Path(f"/sys/dev/block/{os.major(root_number)}:{os.minor(root_number)}").resolve().name
        disk = devices.get(root_name)
        if disk is None:
            pytest.skip(f"the root file system is on {root_name}, not on a whole disk")
        assert disk.size > 0
        resolved = Path("/sys/block", root_name).resolve()
        assert disk.address.sysfs_path == str(resolved)
        if disk.address.pci_address:
            assert disk.address.pci_address in resolved.parts
