"""Shared helpers of the installer tests: test-bed machines and offline command lines."""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner, Result

from switchos.cli import main
from testbed import standin
from testbed.machine import Machine

MIB = 1 << 20
SNAPSHOT_DISK_SIZE = 1024 * MIB
# RAM of the offline target: two slots of 257 MiB fit the 1 GiB snapshot disk.
TARGET_MEMORY = "256M"
SWITCHOS_FILES = ("/EFI/SwitchOS/switchos-x64.efi", "/EFI/SwitchOS/install.json")
STATUS_VENDOR = "e21c66ed-bc2e-4d30-ac5e-1b968002c541"


@dataclass
class OfflineMachine:
    """A test-bed machine with a blank snapshot disk, driven through offline flags."""

    machine: Machine
    snapshot_image: Path

    @property
    def target_args(self) -> list[str]:
        return [
            "--image", str(self.machine.system_image),
            "--vars", str(self.machine.vars_path),
            "--snapshot-image", str(self.snapshot_image),
        ]

    def install_args(self, flavour: str, *extra: str) -> list[str]:
        return [
            "install", *self.target_args, "--payload", str(standin.build(flavour)),
            "--memory", TARGET_MEMORY, "--wipe", *extra,
        ]

    def invoke(self, *args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)

    def variables(self) -> dict[str, bytes]:
        """Return every variable's data by name, read with virt-firmware (not our store)."""
        files = self.machine.vars()
        return {name: files.get(name) or b"" for name in files.names()}

    def order(self, name: str) -> list[int]:
        return self.machine.vars().order(name)

    def esp_files(self) -> list[str]:
        return [path.lower() for path in self.machine.esp_volume.listing()]

    def checksums(self) -> dict[str, str]:
        return {
            path.name: hashlib.sha256(path.read_bytes()).hexdigest()
            for path in (self.machine.system_image, self.machine.vars_path, self.snapshot_image)
        }


def make_offline_machine(workdir: Path, *, guest: str | None = None) -> OfflineMachine:
    machine = Machine(workdir, guest=guest)
    disk = machine.add_disk(SNAPSHOT_DISK_SIZE, name="snapshots")
    return OfflineMachine(machine, disk.path)


def load_option_text(data: bytes) -> str:
    """Return the optional data of a load option decoded as UCS-2, read independently of our codec.

    Layout: attributes (u32), FilePathListLength (u16), the description up to
    its NUL, the device paths, then the optional data.
    """
    _attributes, path_length = struct.unpack_from("<IH", data)
    position = 6
    while data[position : position + 2] != b"\0\0":
        position += 2
    optional = data[position + 2 + path_length :]
    return optional.decode("utf-16-le").rstrip("\0")


def load_option_description(data: bytes) -> str:
    position = 6
    while data[position : position + 2] != b"\0\0":
        position += 2
    return data[6:position].decode("utf-16-le")
