"""Candidate selection: every exclusion reason, triggered by the situation it describes."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from disk_helpers import GIB, MIB, device_mapper_available, dm_linear, mounted, sh, swap_on

from switchos.partition.blockdev import Bus, DiskAddress, BlockDevice, PartitionInfo
from switchos.partition.candidates import (
    DiskCandidate,
    ExclusionReason,
    Mount,
    SystemUsage,
    assess_disks,
    find_candidates,
    parse_mountinfo,
    parse_swaps,
)

ALL_BUSES = frozenset(Bus)


def candidate_for(device: Path, **kwargs) -> DiskCandidate:
    """Assess this machine's disks and return the one for ``device``."""
    candidates = find_candidates(**kwargs)
    by_name = {candidate.device.name: candidate for candidate in candidates}
    return by_name[device.name]


def make_partition(device: Path) -> Path:
    """Create one partition on ``device``, make its node appear, and format it as ext4."""
    sh("sgdisk", "--new=1:1M:+16M", device)
    # partx adds the node even where the kernel cannot parse GPT itself.
    sh("partx", "--update", device)
    node = Path(f"{device}p1")
    sh("mkfs.ext4", "-q", node)
    return node


class TestParsing:
    def test_mountinfo_with_escapes(self):
        text = (
            "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
            "90 27 259:1 / /tmp/my\\040mount rw,relatime shared:5 - vfat /dev/loop0p1 rw\n"
            "91 27 0:45 / /mnt/btrfs rw - btrfs /dev/sdb2 rw\n"
        )
        assert parse_mountinfo(text) == (
            Mount("254:0", "/", "ext4", "/dev/vda"),
            Mount("259:1", "/tmp/my mount", "vfat", "/dev/loop0p1"),
            Mount("0:45", "/mnt/btrfs", "btrfs", "/dev/sdb2"),
        )

    def test_swaps(self, tmp_path: Path):
        text = (
            "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
            "/dev/sdz2                               partition\t8388604\t\t0\t\t-2\n"
            "/no/such/swap\\040file                   file\t\t1024\t\t0\t\t-3\n"
        )
        swaps = parse_swaps(text, dev_root=tmp_path)
        assert [(swap.filename, swap.kind, swap.device_number) for swap in swaps] == [
            ("/dev/sdz2", "partition", None),
            ("/no/such/swap file", "file", None),
        ]


def fake_disk(name: str, number: str, *, bus: Bus = Bus.VIRTIO_BLK, size: int = 100 * GIB,
              slaves: tuple[str, ...] = (), partitions: tuple[PartitionInfo, ...] = ()) -> BlockDevice:
    return BlockDevice(
        name=name, device_number=number, size=size, logical_sector_size=512, physical_sector_size=512,
        rotational=False, removable=False, read_only=False, model="", holders=(), slaves=slaves,
        partitions=partitions, address=DiskAddress(bus=bus, sysfs_path=f"/sys/block/{name}"),
    )


class TestAssessOnRecords:
    def test_root_through_device_mapper_marks_disk_below(self):
        # / on dm-0 (LVM or dm-crypt) whose slave is vdb1: vdb is the system disk.
        part = PartitionInfo("vdb1", 1, "254:17", MIB, 50 * GIB, False, ("dm-0",))
        vdb = fake_disk("vdb", "254:16", partitions=(part,))
        dm = fake_disk("dm-0", "253:0", bus=Bus.VIRTUAL, slaves=("vdb1",))
        vdc = fake_disk("vdc", "254:32")
        usage = SystemUsage((Mount("253:0", "/", "ext4", "/dev/mapper/root"),), ())
        result = {c.device.name: c for c in assess_disks([vdb, dm, vdc], usage)}
        assert result["vdb"].reasons == {ExclusionReason.MOUNTED, ExclusionReason.HOLDER, ExclusionReason.SYSTEM_DISK}
        assert result["vdc"].eligible

    def test_boot_mount_is_esp_when_fat(self):
        vda = fake_disk("vda", "254:0", partitions=(PartitionInfo("vda1", 1, "254:1", MIB, GIB, False, ()),))
        vdb = fake_disk("vdb", "254:16", partitions=(PartitionInfo("vdb1", 1, "254:17", MIB, GIB, False, ()),))
        usage = SystemUsage(
            (Mount("254:1", "/boot", "vfat", "/dev/vda1"), Mount("254:17", "/srv", "ext4", "/dev/vdb1")), ()
        )
        first, second = assess_disks([vda, vdb], usage)
        assert first.reasons == {ExclusionReason.MOUNTED, ExclusionReason.SYSTEM_DISK, ExclusionReason.ESP_DISK}
        assert second.reasons == {ExclusionReason.MOUNTED}

    def test_esp_mount_marks_esp_disk(self):
        part = PartitionInfo("nvme0n1p1", 1, "259:1", MIB, 512 * MIB, False, ())
        nvme = fake_disk("nvme0n1", "259:0", bus=Bus.NVME, partitions=(part,))
        usage = SystemUsage((Mount("259:1", "/boot/efi", "vfat", "/dev/nvme0n1p1"),), ())
        (candidate,) = assess_disks([nvme], usage)
        assert candidate.reasons == {ExclusionReason.MOUNTED, ExclusionReason.ESP_DISK}
        assert "nvme0n1p1 on /boot/efi" in candidate.exclusions[1].detail

    def test_tiny_namespace_too_small(self):
        # A second NVMe namespace of 8 KiB, as Apple SSDs expose.
        tiny = fake_disk("nvme0n2", "259:5", bus=Bus.NVME, size=8192)
        (candidate,) = assess_disks([tiny], SystemUsage((), ()), required_size=10 * GIB)
        assert candidate.reasons == {ExclusionReason.TOO_SMALL}
        assert candidate.exclusions[0].detail == "needs 10 GiB, has 8 KiB"


class TestThisMachine:
    def test_system_disk_excluded(self):
        root = os.stat("/").st_dev
        name = Path(f"/sys/dev/block/{os.major(root)}:{os.minor(root)}").resolve().name
        candidates = {candidate.device.name: candidate for candidate in find_candidates()}
        if name not in candidates:
            pytest.skip(f"/ is on {name}, which is not a whole disk")
        assert ExclusionReason.SYSTEM_DISK in candidates[name].reasons
        assert ExclusionReason.MOUNTED in candidates[name].reasons


@pytest.mark.root
class TestRealSituations:
    def test_clean_loop_excluded_only_for_bus(self, loop_device: Callable[..., Path]):
        device = loop_device(256 * MIB)
        candidate = candidate_for(device, required_size=128 * MIB)
        assert candidate.reasons == {ExclusionReason.UNSUPPORTED_BUS}
        assert "loop is not among the payload's buses" in candidate.exclusions[0].detail
        assert candidate_for(device, required_size=128 * MIB, supported_buses=ALL_BUSES).eligible

    def test_mounted_partition(self, loop_device: Callable[..., Path], tmp_path: Path):
        device = loop_device(64 * MIB)
        node = make_partition(device)
        with mounted(node, tmp_path / "mnt") as mount_point:
            candidate = candidate_for(device, supported_buses=ALL_BUSES)
            assert candidate.reasons == {ExclusionReason.MOUNTED}
            assert candidate.exclusions[0].detail == f"{node.name} on {mount_point}"
        assert candidate_for(device, supported_buses=ALL_BUSES).eligible

    def test_swap(self, loop_device: Callable[..., Path]):
        device = loop_device(64 * MIB)
        with swap_on(device):
            candidate = candidate_for(device, supported_buses=ALL_BUSES)
            assert candidate.reasons == {ExclusionReason.SWAP}
            assert candidate.exclusions[0].detail == f"{device} (partition)"
        assert candidate_for(device, supported_buses=ALL_BUSES).eligible

    def test_device_mapper_holder(self, loop_device: Callable[..., Path]):
        if not device_mapper_available():
            pytest.skip("this kernel has no device-mapper driver (dmsetup version fails)")
        device = loop_device(64 * MIB)
        with dm_linear(f"switchos-test-{os.getpid()}", device, 64 * MIB // 512):
            candidate = candidate_for(device, supported_buses=ALL_BUSES)
            assert candidate.reasons == {ExclusionReason.HOLDER}
            assert candidate.exclusions[0].detail.startswith("held by dm-")
        assert candidate_for(device, supported_buses=ALL_BUSES).eligible

    def test_read_only(self, loop_device: Callable[..., Path]):
        device = loop_device(64 * MIB, read_only=True)
        candidate = candidate_for(device, supported_buses=ALL_BUSES)
        assert candidate.reasons == {ExclusionReason.READ_ONLY}

    def test_too_small(self, loop_device: Callable[..., Path]):
        device = loop_device(64 * MIB)
        candidate = candidate_for(device, supported_buses=ALL_BUSES, required_size=GIB)
        assert candidate.reasons == {ExclusionReason.TOO_SMALL}
        assert candidate.exclusions[0].detail == "needs 1 GiB, has 64 MiB"

    def test_esp_disk_in_private_mount_namespace(self, loop_device: Callable[..., Path]):
        # Mount a partition at /boot/efi inside a private mount namespace, over
        # a tmpfs on /boot, so this machine's /boot is never touched. It is
        # ext4 because some test kernels are built without vfat.
        # 256 MiB fits one slot for the smallest --memory the CLI takes, 64M.
        device = loop_device(256 * MIB)
        node = make_partition(device)
        script = (
            "mount -t tmpfs switchos-test /boot && mkdir /boot/efi && "
            f"mount {node} /boot/efi && "
            f"{sys.executable} -m switchos disk list --json --bus loop --slots 1 --memory 64M"
        )
        result = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            capture_output=True, check=False, cwd="/",
        )
        assert result.returncode == 0, result.stderr.decode()
        disks = {disk["name"]: disk for disk in json.loads(result.stdout)["disks"]}
        reasons = {item["reason"]: item["detail"] for item in disks[device.name]["exclusions"]}
        assert set(reasons) == {"mounted", "esp-disk"}
        assert reasons["esp-disk"] == f"holds the ESP ({node.name} on /boot/efi)"
        # The namespace is gone with its process, and the mount with it.
        assert candidate_for(device, supported_buses=ALL_BUSES).eligible

    def test_swap_file_on_mounted_loop(self, loop_device: Callable[..., Path], tmp_path: Path):
        device = loop_device(128 * MIB)
        sh("mkfs.ext4", "-q", device)
        with contextlib.ExitStack() as stack:
            mount_point = stack.enter_context(mounted(device, tmp_path / "mnt"))
            swap_file = mount_point / "swapfile"
            sh("dd", "if=/dev/zero", f"of={swap_file}", "bs=1M", "count=16")
            swap_file.chmod(0o600)
            stack.enter_context(swap_on(swap_file))
            candidate = candidate_for(device, supported_buses=ALL_BUSES)
            assert candidate.reasons == {ExclusionReason.MOUNTED, ExclusionReason.SWAP}
            assert candidate.exclusions[1].detail == f"{swap_file} (file)"
