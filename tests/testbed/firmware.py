"""OVMF firmware files, found through QEMU's firmware descriptors, and boot variables."""

from __future__ import annotations

import json
import shutil
import struct
import uuid
from dataclasses import dataclass
from pathlib import Path

from virt.firmware.efi import bootentry, devpath, ucs16
from virt.firmware.efi.efivar import EfiVar
from virt.firmware.varstore.edk2 import Edk2VarStore

DESCRIPTOR_FOLDERS = (Path("/usr/share/qemu/firmware"), Path("/etc/qemu/firmware"))

LOAD_OPTION_ACTIVE = 0x1


@dataclass(frozen=True)
class Ovmf:
    """One OVMF build: its code file and the template of its variables file."""

    code: Path
    vars_template: Path
    features: frozenset[str]


def find_ovmf(*, secure_boot: bool = False) -> Ovmf:
    """Find an x86_64 OVMF build with S3 support through QEMU's firmware descriptors."""
    candidates: list[tuple[str, Ovmf]] = []
    for folder in DESCRIPTOR_FOLDERS:
        for descriptor in sorted(folder.glob("*.json")):
            spec = json.loads(descriptor.read_text())
            if "uefi" not in spec.get("interface-types", []):
                continue
            mapping = spec.get("mapping", {})
            if mapping.get("device") != "flash" or "nvram-template" not in mapping:
                continue
            if not any(target.get("architecture") == "x86_64" for target in spec.get("targets", [])):
                continue
            features = frozenset(spec.get("features", []))
            if ("secure-boot" in features) != secure_boot or "enrolled-keys" in features:
                continue
            if "acpi-s3" not in features:
                continue
            ovmf = Ovmf(
                code=Path(mapping["executable"]["filename"]),
                vars_template=Path(mapping["nvram-template"]["filename"]),
                features=features,
            )
            if ovmf.code.is_file() and ovmf.vars_template.is_file():
                candidates.append((descriptor.name, ovmf))
    if not candidates:
        raise FileNotFoundError(
            "no OVMF firmware descriptor with S3 support found in "
            f"{', '.join(map(str, DESCRIPTOR_FOLDERS))}; install the Debian package ovmf"
        )
    # Descriptor file names start with a priority number; the lowest wins, as in QEMU.
    return sorted(candidates)[0][1]


def make_vars_file(ovmf: Ovmf, target: Path) -> Path:
    """Copy the firmware's empty variables template to ``target``."""
    shutil.copyfile(ovmf.vars_template, target)
    return target


def hard_drive_file_path(
    *, partition_number: int, start_lba: int, size_lba: int, partition_guid: uuid.UUID, path: str
) -> bytes:
    """Return the device path HD(...,GPT,...)/File(path) as bytes, built with virt-firmware."""
    disk = devpath.DevicePathElem()
    disk.set_gpt(partition_number, start_lba, size_lba, str(partition_guid))
    file = devpath.DevicePathElem()
    file.set_filepath(path)
    path_list = devpath.DevicePath()
    path_list.append(disk)
    path_list.append(file)
    return bytes(path_list)


def load_option(description: str, device_path: bytes, optional_data: bytes = b"") -> bytes:
    """Encode an EFI_LOAD_OPTION with virt-firmware, independently of the project's codec."""
    entry = bootentry.BootEntry(
        attr=LOAD_OPTION_ACTIVE,
        title=ucs16.from_string(description),
        devicepath=devpath.DevicePath(device_path),
        optdata=optional_data or None,
    )
    return bytes(entry)


def ucs2_options(text: str) -> bytes:
    """Encode load options text as NUL-terminated UCS-2, as efibootmgr -u does."""
    return (text + "\0").encode("utf-16-le")


class VarsFile:
    """Read and change the boot variables in an OVMF variables file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._store = Edk2VarStore(str(path))
        self._variables = self._store.get_varlist()

    def get(self, name: str) -> bytes | None:
        variable = self._variables.get(name)
        return None if variable is None else bytes(variable.data)

    def names(self) -> list[str]:
        return sorted(self._variables)

    def set(self, name: str, data: bytes) -> None:
        variable = self._variables.get(name)
        if variable is None:
            variable = EfiVar(ucs16.from_string(name))
            self._variables[name] = variable
        variable.data = bytes(data)
        variable.update_time()

    def delete(self, name: str) -> None:
        self._variables.pop(name, None)

    def order(self, name: str = "BootOrder") -> list[int]:
        data = self.get(name) or b""
        return list(struct.unpack(f"<{len(data) // 2}H", data))

    def set_order(self, name: str, numbers: list[int]) -> None:
        self.set(name, struct.pack(f"<{len(numbers)}H", *numbers))

    def add_entry(self, kind: str, number: int, option: bytes, *, first: bool = True) -> None:
        """Write ``Boot####`` or ``Driver####`` and list it in the matching order variable."""
        self.set(f"{kind}{number:04X}", option)
        order_name = f"{kind}Order"
        order = [n for n in self.order(order_name) if n != number]
        order = [number, *order] if first else [*order, number]
        self.set_order(order_name, order)

    def save(self) -> None:
        self._store.write_varstore(str(self.path), self._variables)
