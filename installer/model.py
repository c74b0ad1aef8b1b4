"""The discovered machine: what discovery found and what plans are built from.

A Target is either the running system (efivarfs, a mounted ESP, block devices
from sysfs) or a pair of offline files (a disk image holding the ESP and an
OVMF variables file), optionally with a second disk image for snapshots.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from switchos.boot_entries.load_option import LoadOption
from switchos.boot_entries.order import OptionKind
from switchos.boot_entries.store import VariableStore
from switchos.efi.esp import EspLocation
from switchos.efi.placement import EspFiles
from switchos.efi.record import InstallRecord


class TargetMode(enum.Enum):
    """Where the target machine's variables and ESP live."""

    LIVE = "live"
    OFFLINE = "offline"


@dataclass(frozen=True)
class SnapshotDisk:
    """A disk (or disk image) that may hold the snapshot store.

    ``path`` is what the layout code opens: /dev/<name> or an image file.
    ``exclusions`` lists why the disk cannot be used; empty means eligible.
    """

    path: Path
    name: str
    size: int
    description: str
    exclusions: tuple[str, ...] = ()

    @property
    def eligible(self) -> bool:
        return not self.exclusions


@dataclass(frozen=True)
class SystemRoots:
    """Roots of the live system's pseudo file systems, parameters so tests point them elsewhere."""

    sys: Path = Path("/sys")
    proc: Path = Path("/proc")
    dev: Path = Path("/dev")
    run: Path = Path("/run")


@dataclass
class Target:
    """One machine as discovered: its variable store, ESP, install record and disks.

    ``record`` is the install record found on the ESP, or None; when the file
    exists but is invalid, ``record_problem`` states why and ``record`` is None,
    so install writes a new one and uninstall still finds our entries by
    their file path. The store and
    the ESP files are the live objects that plans write through, so a test can
    wrap them to inject faults.
    """

    mode: TargetMode
    store: VariableStore
    esp: EspLocation
    esp_files: EspFiles
    record: InstallRecord | None
    disks: list[SnapshotDisk] = field(default_factory=list)
    roots: SystemRoots = field(default_factory=SystemRoots)
    description: str = ""
    record_problem: str | None = None

    @property
    def esp_partuuid(self) -> uuid.UUID:
        return uuid.UUID(self.esp.partition_signature)


@dataclass(frozen=True)
class LoaderEntry:
    """A numbered load option as read from the store."""

    kind: OptionKind
    number: int
    option: LoadOption

    @property
    def name(self) -> str:
        return self.kind.variable_name(self.number)

    @property
    def file_path(self) -> str | None:
        return self.option.device_path.file_path()
