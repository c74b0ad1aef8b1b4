"""Fixtures for the runtime tests: a store image and a SnapshotSystem on constructed roots."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from runtime_helpers import RAM_SIZE, PayloadVariables, make_roots, make_store_image  # noqa: E402

from switchos.boot_entries.store import MemoryStore  # noqa: E402
from switchos.installer.power import LinuxPower  # noqa: E402
from switchos.installer.snapshot import SnapshotSystem  # noqa: E402
from switchos.partition.store import Superblock  # noqa: E402


@pytest.fixture
def store_image(tmp_path: Path) -> tuple[Path, Superblock]:
    image = tmp_path / "snapshots.img"
    return image, make_store_image(image)


@pytest.fixture
def make_system(tmp_path: Path, store_image: tuple[Path, Superblock]) -> Callable[..., SnapshotSystem]:
    """Build a SnapshotSystem on constructed roots, the store image and a payload fake."""

    def build(variables: MemoryStore | None = None, *, uid: int = 0, roots: dict[str, Path] | None = None,
              store_path: Path | None = store_image[0], ram_size: int = RAM_SIZE,
              esp_root: Path | None = None) -> SnapshotSystem:
        roots = roots or make_roots(tmp_path)
        power = LinuxPower(sys_root=roots["sys"], proc_root=roots["proc"], dev_root=roots["dev"])
        esp = esp_root if esp_root is not None else tmp_path / "esp"
        esp.mkdir(exist_ok=True)
        return SnapshotSystem(
            variables=variables if variables is not None else PayloadVariables(),
            power=power,
            sys_root=roots["sys"],
            proc_root=roots["proc"],
            dev_root=roots["dev"],
            etc_root=roots["etc"],
            esp_root=esp,
            store_path=store_path,
            uid=uid,
            is_windows=False,
            clock=lambda: 1_800_000_000.0,
            sync=lambda: None,
            ram_size=lambda: ram_size,
        )

    return build
