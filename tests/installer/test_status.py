"""Status and trial boots on a live-style target: an in-memory store and an ESP folder.

Live targets need efivarfs and a mounted ESP; here the store is a MemoryStore
and the ESP a plain folder, behind the same interfaces, so the boot id and
SwitchOSStatus of "later boots" can be set by the test.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from switchos.boot_entries.device_path import make_file_path
from switchos.boot_entries.load_option import LoadOption, LoadOptionAttribute
from switchos.boot_entries.order import OptionKind, read_order
from switchos.boot_entries.store import SWITCHOS_VENDOR, MemoryStore, VariableAttribute
from switchos.efi.esp import EspLocation
from switchos.efi.payload import verify_local_payload
from switchos.efi.placement import MountedEsp
from switchos.efi.record import read_install_record
from switchos.installer.install import InstallChoices, build_install_plan
from switchos.installer.journal import Journal
from switchos.installer.model import SystemRoots, Target, TargetMode
from switchos.installer.status import parse_status_variable, read_status
from testbed import standin

ESP_GUID = uuid.UUID("11111111-2222-4333-8444-555555555555")
LOADER_PATH = "\\EFI\\systemd\\systemd-bootx64.efi"
STATUS_TEXT = b"protocol=1\nversion=0.1.0\nloaded-as=driver\noptions=store=none\n"


class LiveLike:
    """A live-mode target over a MemoryStore, an ESP folder and fake /proc and /sys roots."""

    def __init__(self, root: Path) -> None:
        self.store = MemoryStore()
        self.esp_root = root / "esp"
        self.esp_root.mkdir()
        self.roots = SystemRoots(sys=root / "sys", proc=root / "proc", dev=root / "dev", run=root / "run")
        (self.roots.proc / "sys" / "kernel" / "random").mkdir(parents=True)
        (self.roots.sys / "power").mkdir(parents=True)
        self.set_boot_id("boot-1")
        loader = LoadOption(
            LoadOptionAttribute.ACTIVE, "Linux Boot Manager", make_file_path(1, 2048, 524288, ESP_GUID, LOADER_PATH)
        )
        self.store.set("Boot0001", loader.to_bytes())
        self.store.set("BootOrder", b"\x01\x00")

    def set_boot_id(self, boot_id: str) -> None:
        (self.roots.proc / "sys" / "kernel" / "random" / "boot_id").write_text(boot_id + "\n")

    def payload_ran(self) -> None:
        attributes = VariableAttribute.BOOTSERVICE_ACCESS | VariableAttribute.RUNTIME_ACCESS
        self.store.set("SwitchOSStatus", STATUS_TEXT, vendor=SWITCHOS_VENDOR, attributes=attributes)

    def target(self) -> Target:
        esp_files = MountedEsp(self.esp_root)
        location = EspLocation(
            device="vda1", disk="vda", partition_number=1, start=2048, size=524288, sector_size=512,
            scheme="gpt", partition_signature=str(ESP_GUID), mount_point=self.esp_root,
        )
        return Target(
            TargetMode.LIVE, self.store, location, esp_files, read_install_record(esp_files),
            roots=self.roots, description="a live-like test target",
        )

    def install(self, flavour: str, *, trial_boot: bool) -> None:
        payload = verify_local_payload(standin.build(flavour))
        plan = build_install_plan(self.target(), InstallChoices(payload=payload, store=None, trial_boot=trial_boot))
        Journal().apply(plan)


@pytest.fixture
def live(tmp_path: Path) -> LiveLike:
    return LiveLike(tmp_path)


def test_driver_trial_pending_in_same_boot(live: LiveLike):
    live.install("driver", trial_boot=True)

    status = read_status(live.target())

    assert status.trial == "pending: reboot to try the payload"
    assert read_order(live.store, OptionKind.DRIVER) == (0,)
    assert (live.esp_root / "EFI" / "SwitchOS" / "trial.json").exists()


def test_driver_trial_promoted_when_payload_ran(live: LiveLike):
    live.install("driver", trial_boot=True)
    live.set_boot_id("boot-2")
    live.payload_ran()

    status = read_status(live.target())

    assert status.loaded_this_boot is True
    assert status.trial.startswith("passed")
    assert status.order_position == 0
    assert not (live.esp_root / "EFI" / "SwitchOS" / "trial.json").exists()
    assert read_status(live.target()).trial is None


def test_driver_trial_withdrawn_when_payload_missing(live: LiveLike):
    live.install("driver", trial_boot=True)
    live.set_boot_id("boot-2")

    status = read_status(live.target())

    assert status.loaded_this_boot is False
    assert status.trial.startswith("failed")
    assert read_order(live.store, OptionKind.DRIVER) == ()
    assert live.store.get("Driver0000") is not None
    assert any("trial boot did not run the payload" in problem for problem in status.problems)


def test_application_trial_promoted_into_boot_order(live: LiveLike):
    live.install("app", trial_boot=True)
    assert read_order(live.store, OptionKind.BOOT) == (1,)
    assert live.store.get("BootNext").data == b"\x00\x00"
    # The firmware clears BootNext when it boots the entry once.
    live.store.delete("BootNext")
    live.set_boot_id("boot-2")
    live.payload_ran()

    status = read_status(live.target())

    assert status.trial.startswith("passed")
    assert read_order(live.store, OptionKind.BOOT) == (0, 1)


def test_install_after_trial_ends_it(live: LiveLike):
    live.install("app", trial_boot=True)

    live.install("app", trial_boot=False)

    assert read_order(live.store, OptionKind.BOOT) == (0, 1)
    assert not (live.esp_root / "EFI" / "SwitchOS" / "trial.json").exists()


@pytest.mark.parametrize(
    ("mem_sleep", "supported"),
    [("s2idle [deep]\n", True), ("[s2idle] deep\n", True), ("s2idle\n", False), (None, False)],
)
def test_s3_support_from_mem_sleep(live: LiveLike, mem_sleep: str | None, supported: bool):
    if mem_sleep is not None:
        (live.roots.sys / "power" / "mem_sleep").write_text(mem_sleep)

    status = read_status(live.target())

    assert status.installed is False
    assert status.s3["supported"] is supported
    assert status.loaded_this_boot is False


def test_status_variable_parsed():
    values = parse_status_variable(STATUS_TEXT + b"no separator\n")

    assert values == {"protocol": "1", "version": "0.1.0", "loaded-as": "driver", "options": "store=none"}
