"""Fault injection: installs stopped after each step, and write errors at each write.

A stopped install is a crash: the first k steps ran and nothing undid them.
A write error comes from wrappers around the target's variable store and ESP
that raise the store's real error type on the Nth write, so the journal rolls
back. Either way the machine must stay bootable (checked through the
variables and the ESP files with virt-firmware and mtools), and the next
install must complete it. test_vm_faults.py boots representative cases.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path, PurePosixPath

import pytest

from installer_helpers import TARGET_MEMORY, OfflineMachine, load_option_text, make_offline_machine
from switchos.boot_entries.store import EFI_GLOBAL_VARIABLE, VariableAttribute, VariableStoreFullError
from switchos.efi.fatimage import FatImage, FatImageError
from switchos.errors import ExitCode
from switchos.installer.config import InstallOptions
from switchos.installer.discovery import discover_offline
from switchos.installer.install import build_install_plan, resolve_choices
from switchos.installer.journal import Journal, PartlyRolledBackError
from switchos.installer.plan import Plan
from switchos.installer.source import acquire_payload
from switchos.partition.memory import parse_size
from testbed import standin
from testbed.disk import FatVolume
from testbed.firmware import VarsFile

FLAVOURS = ("driver", "app")


class WriteCounter:
    """Counts writes to the store and the ESP together and fails the Nth one, if set."""

    def __init__(self, fail_at: int | None) -> None:
        self.fail_at = fail_at
        self.writes = 0
        self.failed_write: str | None = None

    def count(self, write: str, error: Exception) -> None:
        self.writes += 1
        if self.writes == self.fail_at:
            self.failed_write = write
            raise error


class FailingStore:
    """A VariableStore wrapper whose Nth write raises VariableStoreFullError, as a full NVRAM does."""

    def __init__(self, inner, counter: WriteCounter) -> None:
        self.inner = inner
        self.counter = counter

    def get(self, name: str, vendor: uuid.UUID = EFI_GLOBAL_VARIABLE):
        return self.inner.get(name, vendor)

    def list(self):
        return self.inner.list()

    def set(self, name: str, data: bytes, *, vendor: uuid.UUID = EFI_GLOBAL_VARIABLE, attributes=None) -> None:
        self.counter.count(f"set {name}", VariableStoreFullError(f"writing {name} failed: injected NVRAM full"))
        kwargs = {"vendor": vendor}
        if attributes is not None:
            kwargs["attributes"] = VariableAttribute(attributes)
        self.inner.set(name, data, **kwargs)

    def delete(self, name: str, vendor: uuid.UUID = EFI_GLOBAL_VARIABLE) -> None:
        self.counter.count(f"delete {name}", VariableStoreFullError(f"deleting {name} failed: injected"))
        self.inner.delete(name, vendor)


class FailingEsp:
    """An EspFiles wrapper whose Nth write raises FatImageError, the error of a failed mtools write."""

    def __init__(self, inner, counter: WriteCounter) -> None:
        self.inner = inner
        self.counter = counter

    def read_bytes(self, path: PurePosixPath):
        return self.inner.read_bytes(path)

    def free_bytes(self) -> int:
        return self.inner.free_bytes()

    def check(self) -> None:
        self.inner.check()

    def _fail(self, write: str) -> None:
        self.counter.count(write, FatImageError(f"{write} failed: injected write error"))

    def write_bytes(self, path: PurePosixPath, data: bytes) -> None:
        self._fail(f"write {path}")
        self.inner.write_bytes(path, data)

    def replace(self, source: PurePosixPath, target: PurePosixPath) -> None:
        self._fail(f"rename {source}")
        self.inner.replace(source, target)

    def delete(self, path: PurePosixPath) -> None:
        self._fail(f"delete {path}")
        self.inner.delete(path)

    def make_dirs(self, path: PurePosixPath) -> None:
        self._fail(f"mkdir {path}")
        self.inner.make_dirs(path)


def build_plan(offline: OfflineMachine, flavour: str, counter: WriteCounter | None = None) -> Plan:
    target = discover_offline(
        offline.machine.system_image, offline.machine.vars_path, snapshot_image=offline.snapshot_image
    )
    if counter is not None:
        target.store = FailingStore(target.store, counter)
        target.esp_files = FailingEsp(target.esp_files, counter)
    options = InstallOptions(payload=standin.build(flavour), memory=parse_size(TARGET_MEMORY), wipe=True)
    return build_install_plan(target, resolve_choices(target, acquire_payload(options), options))


def check_bootable(offline: OfflineMachine) -> None:
    """Assert that firmware would reach systemd-boot: every listed entry and its files exist.

    Reads the variables with virt-firmware and the ESP with mtools, not with
    the project's code.
    """
    files = VarsFile(offline.machine.vars_path)
    volume = FatVolume(offline.machine.system_image, offline.machine.esp)
    listing = [path.lower() for path in volume.listing()]

    def exists(esp_path: str) -> bool:
        expected = esp_path.replace("\\", "/").lower()
        return any(path.endswith(expected) for path in listing)

    for kind in ("Driver", "Boot"):
        for number in files.order(f"{kind}Order"):
            data = files.get(f"{kind}{number:04X}")
            assert data is not None, f"{kind}Order lists missing {kind}{number:04X}"
            path_text = data.decode("utf-16-le", errors="ignore")
            if "switchos-x64.efi" in path_text.lower():
                assert exists("\\EFI\\SwitchOS\\switchos-x64.efi"), listing
                for word in load_option_text(data).split():
                    if word.startswith("chain="):
                        assert exists(word.removeprefix("chain=")), listing
    first = files.order("BootOrder")[0]
    assert files.get(f"Boot{first:04X}") is not None


def install_again(offline: OfflineMachine, flavour: str) -> None:
    result = offline.invoke(*offline.install_args(flavour, "--yes"))
    assert result.exit_code == 0, result.output
    status = json.loads(offline.invoke("status", *offline.target_args, "--json").stdout)
    assert status["order_position"] == 0, status
    assert status["problems"] == [], status
    assert status["snapshot_store"]["health"] == "healthy", status


class Pristine:
    """Sparse copies of a fresh machine's files, restored before each fault case."""

    def __init__(self, offline: OfflineMachine, folder: Path) -> None:
        self.offline = offline
        self.folder = folder
        folder.mkdir()
        for path in self.paths:
            subprocess.run(["cp", "--sparse=always", str(path), str(folder / path.name)], check=True)

    @property
    def paths(self) -> list[Path]:
        machine = self.offline.machine
        return [machine.system_image, machine.vars_path, self.offline.snapshot_image]

    def restore(self) -> None:
        for path in self.paths:
            subprocess.run(["cp", "--sparse=always", str(self.folder / path.name), str(path)], check=True)


@pytest.fixture(scope="module")
def machines(tmp_path_factory: pytest.TempPathFactory):
    built = {}
    for flavour in FLAVOURS:
        folder = tmp_path_factory.mktemp(f"faults-{flavour}")
        offline = make_offline_machine(folder / "machine")
        built[flavour] = (offline, Pristine(offline, folder / "pristine"))
    yield built
    for offline, _pristine in built.values():
        offline.machine.remove()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_install_stopped_after_each_step(machines, flavour: str):
    offline, pristine = machines[flavour]
    pristine.restore()
    step_count = len(build_plan(offline, flavour).steps)
    assert step_count == 5

    for stop_after in range(1, step_count):
        pristine.restore()
        plan = build_plan(offline, flavour)
        for step in plan.steps[:stop_after]:
            step.apply()

        check_bootable(offline)
        if offline.machine.esp_volume.exists("\\EFI\\SwitchOS\\install.json"):
            # With the record written, repair alone must finish the install.
            repaired = offline.invoke("repair", *offline.target_args, "--yes")
            assert repaired.exit_code == 0, repaired.output
            status = json.loads(offline.invoke("status", *offline.target_args, "--json").stdout)
            assert status["order_position"] == 0, status
            assert status["problems"] == [], status
        else:
            install_again(offline, flavour)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_write_error_at_each_write_rolls_back(machines, flavour: str):
    offline, pristine = machines[flavour]
    pristine.restore()
    counter = WriteCounter(fail_at=None)
    Journal().apply(build_plan(offline, flavour, counter))
    total = counter.writes
    assert total >= 6

    for fail_at in range(1, total + 1):
        pristine.restore()
        original = offline.variables()
        counter = WriteCounter(fail_at=fail_at)
        plan = build_plan(offline, flavour, counter)

        # The snapshot disk is prepared first and never counted as a write,
        # so every injected fault leaves it prepared: a partial rollback.
        with pytest.raises(PartlyRolledBackError) as raised:
            Journal().apply(plan)

        assert raised.value.exit_code == ExitCode.FAILURE
        assert counter.failed_write is not None
        assert "injected" in raised.value.message
        assert offline.variables() == original, counter.failed_write
        check_bootable(offline)
        install_again(offline, flavour)


def test_full_esp_rolls_back_through_cli(machines, tmp_path: Path):
    offline, pristine = machines["driver"]
    pristine.restore()
    original = offline.variables()
    # Fill the ESP until less room is left than the payload needs.
    esp = offline.machine.esp
    free = FatImage(offline.machine.system_image, esp.start_lba * 512, esp.size_lba * 512).free_bytes()
    filler = tmp_path / "filler.bin"
    with filler.open("wb") as file:
        file.truncate(free - 64 * 1024)
    offline.machine.esp_volume.write("\\filler.bin", filler)

    result = offline.invoke(*offline.install_args("driver", "--yes"))

    # The prepared snapshot disk cannot be restored, so this is not a full rollback.
    assert result.exit_code == ExitCode.FAILURE, result.output
    assert "step failed: copy the payload" in result.stderr
    assert "bytes free" in result.stderr
    assert "Not undone (the previous contents cannot be restored" in result.stderr
    assert "  - prepare the snapshot store on" in result.stderr
    assert offline.variables() == original
    check_bootable(offline)
