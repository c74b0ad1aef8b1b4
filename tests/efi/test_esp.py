"""ESP discovery: fake proc/sys/run/dev trees, disk images, and a real loop device."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from switchos.efi.esp import (
    EspNotFoundError,
    SystemRoots,
    find_image_esp,
    find_live_esp,
    parse_mountinfo,
    partuuid,
)
from switchos.efi.gpt import ESP_TYPE_GUID, GptError, detect_gpt
from switchos.errors import InvalidInputError

LINUX_TYPE = "0fc63daf-8483-4772-8e79-3d69d8477de4"
ESP_TYPE = str(ESP_TYPE_GUID)
ROOT_LINE = "22 1 8:3 / / rw,relatime shared:1 - ext4 /dev/sda3 rw\n"


def mount_line(mount_id: int, device: str, root: str, mount_point: str, fstype: str = "vfat",
               source: str = "/dev/sda1") -> str:
    return (f"{mount_id} 22 {device} {root} {mount_point} rw,relatime shared:{mount_id} - "
            f"{fstype} {source} rw,fmask=0077,dmask=0077\n")


@dataclass
class FakeSystem:
    root: Path

    @property
    def roots(self) -> SystemRoots:
        return SystemRoots(proc=self.root / "proc", sys=self.root / "sys",
                           run=self.root / "run", dev=self.root / "dev")

    def write_mountinfo(self, *lines: str) -> None:
        path = self.root / "proc" / "self" / "mountinfo"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(ROOT_LINE + "".join(lines))

    def add_partition(self, disk: str, number: int, major: int, minor: int, *, start: int, size: int,
                      sector_size: int = 512, udev_type: str | None = None,
                      udev_uuid: str | None = None, scheme: str = "gpt") -> None:
        """Lay out sysfs like the kernel: /sys/dev/block/M:m links to the partition folder."""
        disk_dir = self.root / "sys" / "devices" / "pci0000:00" / "block" / disk
        name = f"{disk}p{number}" if disk[-1].isdigit() else f"{disk}{number}"
        part_dir = disk_dir / name
        part_dir.mkdir(parents=True, exist_ok=True)
        (disk_dir / "queue").mkdir(exist_ok=True)
        (disk_dir / "queue" / "logical_block_size").write_text(f"{sector_size}\n")
        (part_dir / "partition").write_text(f"{number}\n")
        (part_dir / "start").write_text(f"{start}\n")
        (part_dir / "size").write_text(f"{size}\n")
        link = self.root / "sys" / "dev" / "block" / f"{major}:{minor}"
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(part_dir, link.parent))
        if udev_type is not None:
            data = self.root / "run" / "udev" / "data" / f"b{major}:{minor}"
            data.parent.mkdir(parents=True, exist_ok=True)
            data.write_text(
                f"S:disk/by-partuuid/{udev_uuid}\nE:ID_PART_ENTRY_SCHEME={scheme}\n"
                f"E:ID_PART_ENTRY_TYPE={udev_type}\nE:ID_PART_ENTRY_UUID={udev_uuid}\n"
                f"E:ID_PART_ENTRY_NUMBER={number}\nG:systemd\n"
            )


@pytest.fixture
def fake(tmp_path: Path) -> FakeSystem:
    return FakeSystem(tmp_path / "root")


PARTUUID = "3f1b2a9c-5d4e-4f60-8a7b-9c0d1e2f3a4b"


def test_mountinfo_parses_escapes() -> None:
    (entry,) = parse_mountinfo(mount_line(30, "8:1", "/", "/mnt/my\\040esp"))
    assert str(entry.mount_point) == "/mnt/my esp"
    assert (entry.major, entry.minor, entry.fstype, entry.root) == (8, 1, "vfat", "/")


def test_live_esp_from_udev(fake: FakeSystem) -> None:
    fake.write_mountinfo(mount_line(30, "8:1", "/", "/boot/efi"))
    fake.add_partition("sda", 1, 8, 1, start=2048, size=1048576, udev_type=ESP_TYPE, udev_uuid=PARTUUID)
    location = find_live_esp(fake.roots)
    assert location.mount_point == Path("/boot/efi")
    assert (location.device, location.disk, location.partition_number) == ("sda1", "sda", 1)
    assert (location.start, location.size, location.sector_size) == (2048, 1048576, 512)
    assert partuuid(location) == uuid.UUID(PARTUUID)


def test_live_esp_sizes_in_4k_sectors(fake: FakeSystem) -> None:
    # sysfs counts 512-byte units even on a 4096-byte-sector disk; HD() needs logical sectors.
    fake.write_mountinfo(mount_line(30, "259:1", "/", "/efi", source="/dev/nvme0n1p1"))
    fake.add_partition("nvme0n1", 1, 259, 1, start=2048, size=4194304, sector_size=4096,
                       udev_type=ESP_TYPE, udev_uuid=PARTUUID)
    location = find_live_esp(fake.roots)
    assert (location.start, location.size, location.sector_size) == (256, 524288, 4096)
    assert location.offset_bytes == 2048 * 512


def test_live_esp_wrong_type_rejected(fake: FakeSystem) -> None:
    fake.write_mountinfo(mount_line(30, "8:1", "/", "/boot/efi"))
    fake.add_partition("sda", 1, 8, 1, start=2048, size=1024, udev_type=LINUX_TYPE, udev_uuid=PARTUUID)
    with pytest.raises(EspNotFoundError) as error:
        find_live_esp(fake.roots)
    assert f"/boot/efi is FAT but its partition type is {LINUX_TYPE}" in error.value.message
    assert "--esp-path" in (error.value.hint or "")


def test_live_esp_path_wrong_type_hint(fake: FakeSystem) -> None:
    fake.write_mountinfo(mount_line(30, "8:1", "/", "/mnt/esp"))
    fake.add_partition("sda", 1, 8, 1, start=2048, size=1024, udev_type=LINUX_TYPE, udev_uuid=PARTUUID)
    with pytest.raises(InvalidInputError) as error:
        find_live_esp(fake.roots, esp_path=Path("/mnt/esp"))
    assert "sgdisk --typecode=1:ef00 /dev/sda" in (error.value.hint or "")


def test_live_esp_none_mounted(fake: FakeSystem) -> None:
    fake.write_mountinfo()
    with pytest.raises(EspNotFoundError, match="no EFI System Partition is mounted"):
        find_live_esp(fake.roots)


def test_live_esp_bind_mount_ignored(fake: FakeSystem) -> None:
    # A bind mount of a folder inside the FAT file system is not the ESP's root.
    fake.write_mountinfo(mount_line(30, "8:1", "/EFI", "/boot/efi"))
    fake.add_partition("sda", 1, 8, 1, start=2048, size=1024, udev_type=ESP_TYPE, udev_uuid=PARTUUID)
    with pytest.raises(EspNotFoundError):
        find_live_esp(fake.roots)
    with pytest.raises(InvalidInputError, match="mounts only the folder /EFI"):
        find_live_esp(fake.roots, esp_path=Path("/boot/efi"))


def test_live_esp_two_disks_listed(fake: FakeSystem) -> None:
    other = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"
    fake.write_mountinfo(mount_line(30, "8:1", "/", "/efi"),
                         mount_line(31, "8:17", "/", "/boot/efi", source="/dev/sdb1"))
    fake.add_partition("sda", 1, 8, 1, start=2048, size=1024, udev_type=ESP_TYPE, udev_uuid=PARTUUID)
    fake.add_partition("sdb", 1, 8, 17, start=2048, size=1024, udev_type=ESP_TYPE, udev_uuid=other)
    with pytest.raises(EspNotFoundError) as error:
        find_live_esp(fake.roots)
    assert "found 2 EFI System Partitions" in error.value.message
    assert PARTUUID in error.value.message
    assert other in error.value.message
    chosen = find_live_esp(fake.roots, esp_path=Path("/boot/efi/"))
    assert chosen.disk == "sdb"


def test_live_esp_same_partition_twice_counts_once(fake: FakeSystem) -> None:
    fake.write_mountinfo(mount_line(30, "8:1", "/", "/efi"), mount_line(31, "8:1", "/", "/boot/efi"))
    fake.add_partition("sda", 1, 8, 1, start=2048, size=1024, udev_type=ESP_TYPE, udev_uuid=PARTUUID)
    assert find_live_esp(fake.roots).mount_point == Path("/efi")


def test_live_esp_stacked_mount_uses_top(fake: FakeSystem) -> None:
    # Two ESPs mounted on /boot/efi one after the other: only the last is visible.
    other = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"
    fake.write_mountinfo(mount_line(30, "8:1", "/", "/boot/efi"),
                         mount_line(31, "8:17", "/", "/boot/efi", source="/dev/sdb1"))
    fake.add_partition("sda", 1, 8, 1, start=2048, size=1024, udev_type=ESP_TYPE, udev_uuid=PARTUUID)
    fake.add_partition("sdb", 1, 8, 17, start=2048, size=1024, udev_type=ESP_TYPE, udev_uuid=other)
    assert find_live_esp(fake.roots).partition_signature == other


def test_live_esp_untriggered_automount(fake: FakeSystem) -> None:
    fake.write_mountinfo("31 22 0:40 / /efi rw,relatime shared:9 - autofs systemd-1 rw,fd=40,direct\n")
    with pytest.raises(EspNotFoundError) as error:
        find_live_esp(fake.roots)
    assert "/efi is an automount that is not mounted yet (run ls /efi)" in error.value.message


def test_live_esp_triggered_automount(fake: FakeSystem) -> None:
    fake.write_mountinfo("31 22 0:40 / /efi rw,relatime shared:9 - autofs systemd-1 rw,fd=40,direct\n",
                         mount_line(32, "8:1", "/", "/efi"))
    fake.add_partition("sda", 1, 8, 1, start=2048, size=1024, udev_type=ESP_TYPE, udev_uuid=PARTUUID)
    assert find_live_esp(fake.roots).mount_point == Path("/efi")


def test_live_esp_path_not_mounted(fake: FakeSystem) -> None:
    fake.write_mountinfo()
    with pytest.raises(InvalidInputError, match="is not a mount point"):
        find_live_esp(fake.roots, esp_path=Path("/srv/esp"))


def test_live_esp_path_not_fat(fake: FakeSystem) -> None:
    fake.write_mountinfo()
    with pytest.raises(InvalidInputError, match=r"has file system type ext4, not FAT \(vfat\)"):
        find_live_esp(fake.roots, esp_path=Path("/"))


def test_live_esp_mbr_from_udev(fake: FakeSystem) -> None:
    fake.write_mountinfo(mount_line(30, "179:1", "/", "/boot/efi", source="/dev/mmcblk0p1"))
    fake.add_partition("mmcblk0", 1, 179, 1, start=2048, size=1024, udev_type="0xef",
                       udev_uuid="1a2b3c4d-01", scheme="dos")
    location = find_live_esp(fake.roots)
    assert (location.scheme, location.partition_signature) == ("dos", "1a2b3c4d-01")
    assert partuuid(location) is None


def make_gpt_image(path: Path, *partitions: tuple[str, str]) -> None:
    """Create a 64 MiB image with 16 MiB partitions of the given (type code, GUID)."""
    with path.open("wb") as file:
        file.truncate(64 * 1024 * 1024)
    arguments = ["sgdisk", "--clear"]
    for number, (type_code, guid) in enumerate(partitions, start=1):
        arguments += [f"--new={number}:0:+16M", f"--typecode={number}:{type_code}",
                      f"--partition-guid={number}:{guid}"]
    subprocess.run([*arguments, str(path)], check=True, capture_output=True)


def test_live_esp_from_gpt_without_udev(fake: FakeSystem) -> None:
    fake.write_mountinfo(mount_line(30, "8:2", "/", "/boot/efi", source="/dev/sda2"))
    fake.add_partition("sda", 2, 8, 2, start=34816, size=32768)
    (fake.root / "dev").mkdir(parents=True)
    make_gpt_image(fake.root / "dev" / "sda", ("8300", str(uuid.uuid4())), ("ef00", PARTUUID))
    location = find_live_esp(fake.roots)
    assert location.scheme == "gpt"
    assert location.partition_signature == PARTUUID


def test_live_esp_from_mbr_without_udev(fake: FakeSystem) -> None:
    fake.write_mountinfo(mount_line(30, "8:1", "/", "/boot/efi"))
    fake.add_partition("sda", 1, 8, 1, start=2048, size=32768)
    disk = fake.root / "dev" / "sda"
    disk.parent.mkdir(parents=True)
    with disk.open("wb") as file:
        file.truncate(32 * 1024 * 1024)
    subprocess.run(["sfdisk", "--quiet", str(disk)], input=b"label: dos\nlabel-id: 0x1a2b3c4d\n2048,32768,ef\n",
                   check=True, capture_output=True)
    location = find_live_esp(fake.roots)
    assert (location.scheme, location.partition_signature) == ("dos", "1a2b3c4d-01")


def test_image_esp_found(tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    make_gpt_image(image, ("8300", str(uuid.uuid4())), ("ef00", PARTUUID))
    location = find_image_esp(image)
    # sgdisk, which we did not write, reports the same start and end sectors.
    info = subprocess.run(["sgdisk", "--info=2", str(image)], check=True, capture_output=True, text=True).stdout
    assert f"First sector: {location.start} " in info
    assert f"Last sector: {location.start + location.size - 1} " in info
    assert PARTUUID.upper() in info
    assert location.partition_number == 2
    assert location.offset_bytes == location.start * 512


def test_image_two_esps_need_choice(tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    make_gpt_image(image, ("ef00", str(uuid.uuid4())), ("ef00", PARTUUID))
    with pytest.raises(EspNotFoundError, match=r"2 EFI System Partitions \(partitions 1, 2\)"):
        find_image_esp(image)
    assert find_image_esp(image, partition_number=2).partition_signature == PARTUUID


def test_image_without_esp(tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    make_gpt_image(image, ("8300", str(uuid.uuid4())))
    with pytest.raises(EspNotFoundError, match="has no EFI System Partition"):
        find_image_esp(image)
    with pytest.raises(EspNotFoundError, match="not the EFI System Partition type"):
        find_image_esp(image, partition_number=1)


def test_image_corrupt_gpt(tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    make_gpt_image(image, ("ef00", PARTUUID))
    with image.open("r+b") as file:
        file.seek(512 + 40)
        file.write(b"\xff")
    with image.open("rb") as file, pytest.raises(GptError, match="CRC32"):
        detect_gpt(file)


# --- A real loop device -----------------------------------------------------------


@pytest.fixture
def loop_partition(tmp_path: Path) -> Iterator[tuple[str, int, int]]:
    """A GPT image on a loop device with its partitions added; yields (loop, major, minor) of the ESP."""
    if os.geteuid() != 0:
        pytest.skip("needs root for loop devices")
    image = tmp_path / "disk.img"
    make_gpt_image(image, ("8300", str(uuid.uuid4())), ("ef00", PARTUUID))
    loop = subprocess.run(["losetup", "--find", "--show", str(image)],
                          check=True, capture_output=True, text=True).stdout.strip()
    try:
        # The test kernel does not scan partition tables itself (losetup
        # --partscan adds nothing), so partx adds the partitions with BLKPG.
        subprocess.run(["partx", "--add", loop], check=True, capture_output=True)
        name = f"{Path(loop).name}p2"
        major, minor = Path(f"/sys/class/block/{name}/dev").read_text().strip().split(":")
        yield loop, int(major), int(minor)
    finally:
        subprocess.run(["partx", "--delete", loop], check=False, capture_output=True)
        subprocess.run(["losetup", "--detach", loop], check=True)


@pytest.mark.root
def test_live_esp_on_loop_device(loop_partition: tuple[str, int, int], tmp_path: Path) -> None:
    # This kernel has no vfat driver, so nothing can be mounted: the mount table
    # is fake, while sysfs and the partition table are the kernel's and the
    # loop device's own (read from /dev, as without udev).
    loop, major, minor = loop_partition
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "mountinfo").write_text(
        ROOT_LINE + mount_line(40, f"{major}:{minor}", "/", "/boot/efi", source=f"{loop}p2")
    )
    roots = SystemRoots(proc=proc, sys=Path("/sys"), run=tmp_path / "run", dev=Path("/dev"))
    location = find_live_esp(roots)
    assert location.device == f"{Path(loop).name}p2"
    assert location.disk == Path(loop).name
    assert location.partition_number == 2
    assert location.partition_signature == PARTUUID
    info = subprocess.run(["sgdisk", "--info=2", loop], check=True, capture_output=True, text=True).stdout
    assert f"First sector: {location.start} " in info
    assert f"Last sector: {location.start + location.size - 1} " in info
