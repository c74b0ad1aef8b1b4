"""Test machines: OVMF, a GPT system disk with systemd-boot on its ESP, extra blank disks.

Both the tests and ``scripts/demo`` use this module. A machine lives in a work folder of
its own; everything QEMU runs is killed when a boot ends, whichever way it ends.
"""

from __future__ import annotations

import enum
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from testbed import guest as guest_module
from testbed.disk import MIB, FatVolume, Partition, make_esp_image, make_sparse_image
from testbed.firmware import Ovmf, VarsFile, find_ovmf, hard_drive_file_path, load_option, make_vars_file
from testbed.qemu import SYSTEMD_BOOT_MARKER, BootResult, EventKind, QemuProcess, classify

SYSTEMD_BOOT_SOURCE = Path("/usr/lib/systemd/boot/efi/systemd-bootx64.efi")
SYSTEMD_BOOT_PATH = "\\EFI\\systemd\\systemd-bootx64.efi"
FALLBACK_PATH = "\\EFI\\BOOT\\BOOTX64.EFI"
GUEST_FOLDER = "\\switchos-guest"
LINUX_BOOT_MANAGER = "Linux Boot Manager"
LINUX_BOOT_MANAGER_NUMBER = 0x0001


class Bus(enum.Enum):
    """How an extra disk is attached to the machine."""

    VIRTIO_BLK = "virtio-blk"
    NVME = "nvme"
    SATA = "sata"


@dataclass(frozen=True)
class ExtraDisk:
    """A blank disk image attached next to the system disk."""

    path: Path
    size: int
    bus: Bus
    sector_size: int
    serial: str


class Machine:
    """One OVMF QEMU machine with systemd-boot installed as a Linux distribution does.

    ``guest`` adds the Linux guest (kernel flavour "cloud" or "generic") to the ESP
    as systemd-boot's only entry. Without a guest, the entry points to no kernel,
    so a boot ends in systemd-boot's menu.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        guest: str | None = None,
        memory_mib: int = 1024,
        disk_size: int = 1024 * MIB,
        esp_size: int = 256 * MIB,
        menu_timeout: int = 1,
    ) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.memory_mib = memory_mib
        self.ovmf: Ovmf = find_ovmf()
        self.system_image = workdir / "system.img"
        self.vars_path = make_vars_file(self.ovmf, workdir / "OVMF_VARS.fd")
        self.esp: Partition = make_esp_image(self.system_image, size=disk_size, esp_size=esp_size)
        self.esp_volume = FatVolume(self.system_image, self.esp)
        self.disks: list[ExtraDisk] = []
        self.guest_flavour = guest
        self._boot_count = 0
        self._install_systemd_boot(menu_timeout)

    def _install_systemd_boot(self, menu_timeout: int) -> None:
        """Install systemd-boot the way ``bootctl install`` does on a distribution."""
        volume = self.esp_volume
        volume.write(SYSTEMD_BOOT_PATH, SYSTEMD_BOOT_SOURCE)
        volume.write(FALLBACK_PATH, SYSTEMD_BOOT_SOURCE)
        volume.write("\\loader\\loader.conf", f"timeout {menu_timeout}\ndefault guest.conf\n".encode())
        if self.guest_flavour is not None:
            files = guest_module.build_guest(self.guest_flavour)
            volume.write(f"{GUEST_FOLDER}\\vmlinuz", files.kernel)
            initrd_lines = []
            for index, part in enumerate(files.initrd_parts):
                name = f"initrd{index}.img"
                volume.write(f"{GUEST_FOLDER}\\{name}", part)
                initrd_lines.append(f"initrd {GUEST_FOLDER}\\{name}\n")
            entry = (
                f"title {SYSTEMD_BOOT_MARKER} Linux guest\n"
                f"linux {GUEST_FOLDER}\\vmlinuz\n"
                + "".join(initrd_lines)
                + "options console=ttyS0,115200 panic=-1 quiet loglevel=3\n"
            )
        else:
            entry = (
                f"title {SYSTEMD_BOOT_MARKER} no guest\n"
                f"linux {GUEST_FOLDER}\\missing-kernel\n"
            )
        volume.write("\\loader\\entries\\guest.conf", entry.encode())
        self.add_load_option("Boot", LINUX_BOOT_MANAGER_NUMBER, LINUX_BOOT_MANAGER, SYSTEMD_BOOT_PATH)

    def vars(self) -> VarsFile:
        """Open the machine's variables file; call ``save()`` on it to write changes."""
        return VarsFile(self.vars_path)

    def add_load_option(
        self,
        kind: str,
        number: int,
        description: str,
        esp_path: str,
        *,
        optional_data: bytes = b"",
        first: bool = True,
    ) -> None:
        """Write ``Boot####`` or ``Driver####`` for a file on the ESP and list it in the order.

        The entry is encoded with virt-firmware, not with the project's codec, so
        tests of the project compare against an independent implementation.
        """
        if kind not in ("Boot", "Driver"):
            raise ValueError(f"load option kind {kind!r} is not Boot or Driver")
        device_path = hard_drive_file_path(
            partition_number=self.esp.number,
            start_lba=self.esp.start_lba,
            size_lba=self.esp.size_lba,
            partition_guid=self.esp.guid,
            path=esp_path,
        )
        variables = self.vars()
        variables.add_entry(kind, number, load_option(description, device_path, optional_data), first=first)
        variables.save()

    def add_disk(
        self, size: int, *, bus: Bus = Bus.VIRTIO_BLK, sector_size: int = 512, name: str | None = None
    ) -> ExtraDisk:
        """Attach a blank sparse disk image of ``size`` bytes on ``bus``."""
        if sector_size not in (512, 4096):
            raise ValueError(f"sector size {sector_size} is not 512 or 4096")
        if bus is Bus.SATA and sector_size != 512:
            raise ValueError("QEMU's SATA disks (ide-hd) only have 512-byte logical sectors")
        index = len(self.disks)
        path = self.workdir / f"{name or f'disk{index}'}.img"
        make_sparse_image(path, size)
        disk = ExtraDisk(path=path, size=size, bus=bus, sector_size=sector_size, serial=f"SWOSTEST{index:04d}")
        self.disks.append(disk)
        return disk

    def qemu_argv(self) -> list[str]:
        argv = [
            "qemu-system-x86_64",
            "-machine", "q35,accel=tcg",
            # No default CD-ROM, network card or VGA, so the firmware finds only our disks.
            "-nodefaults",
            "-m", str(self.memory_mib),
            "-smp", "1",
            "-display", "none",
            "-nic", "none",
            "-no-reboot",
            # S3 is disabled on QEMU's q35 chipset unless this is set.
            "-global", "ICH9-LPC.disable_s3=0",
            "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={self.ovmf.code}",
            "-drive", f"if=pflash,format=raw,unit=1,file={self.vars_path}",
            "-drive", f"if=none,format=raw,id=system,file={self.system_image}",
            # No bootindex: OVMF would otherwise rewrite BootOrder from QEMU's list.
            "-device", "virtio-blk-pci,drive=system,serial=SWOSSYSTEM",
        ]
        sata_port = 0
        for index, disk in enumerate(self.disks):
            drive = f"disk{index}"
            argv += ["-drive", f"if=none,format=raw,id={drive},file={disk.path}"]
            sizes = f"logical_block_size={disk.sector_size},physical_block_size={disk.sector_size}"
            if disk.bus is Bus.VIRTIO_BLK:
                argv += ["-device", f"virtio-blk-pci,drive={drive},serial={disk.serial},{sizes}"]
            elif disk.bus is Bus.NVME:
                argv += ["-device", f"nvme,drive={drive},serial={disk.serial},{sizes}"]
            else:
                # q35's built-in AHCI controller has six ports, ide.0 to ide.5.
                argv += ["-device", f"ide-hd,drive={drive},bus=ide.{sata_port},serial={disk.serial}"]
                sata_port += 1
        return argv

    def boot(
        self,
        *,
        timeout: float = 180,
        until: Callable[[list[str]], bool] | None = None,
        wake_after_suspend: float | None = 2.0,
    ) -> BootResult:
        """Boot the machine and follow its console until it powers off, ``until`` or timeout.

        When the guest suspends to S3, it is woken through QMP ``system_wakeup``
        after ``wake_after_suspend`` seconds (None leaves it asleep).
        """
        self._boot_count += 1
        run_folder = self.workdir / f"boot{self._boot_count}"
        run_folder.mkdir()

        def wake(process: QemuProcess) -> None:
            if wake_after_suspend is None:
                return
            time.sleep(wake_after_suspend)
            assert process.qmp is not None
            process.qmp.command("system_wakeup")

        with QemuProcess(self.qemu_argv(), workdir=run_folder) as process:
            return process.wait(timeout=timeout, until=until, on_suspend=wake)

    def boot_to_systemd_boot(self, *, timeout: float = 120) -> BootResult:
        """Boot until systemd-boot's menu appears, then stop the machine."""
        return self.boot(
            timeout=timeout,
            until=lambda lines: any(classify(line) is EventKind.SYSTEMD_BOOT for line in lines),
        )

    def run_guest(self, script: str, *, timeout: float = 300) -> tuple[guest_module.GuestRun, BootResult]:
        """Run a shell script as root in the Linux guest and return its output and the boot."""
        if self.guest_flavour is None:
            raise ValueError("this machine has no Linux guest; create it with guest='cloud'")
        self.esp_volume.write(f"{GUEST_FOLDER}\\run.sh", script.encode())
        result = self.boot(timeout=timeout)
        return guest_module.parse_guest_output(result.console), result

    def remove(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)
