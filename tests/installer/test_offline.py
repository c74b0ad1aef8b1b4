"""Offline install, uninstall, repair and status on test-bed images, checked without booting."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from installer_helpers import (
    STATUS_VENDOR,
    OfflineMachine,
    load_option_description,
    load_option_text,
    make_offline_machine,
)
from switchos.errors import ExitCode
from testbed import standin
from testbed.machine import SYSTEMD_BOOT_PATH


@pytest.fixture
def offline(tmp_path: Path) -> OfflineMachine:
    built = make_offline_machine(tmp_path / "machine")
    yield built
    built.machine.remove()


def sgdisk_verify(image: Path) -> str:
    return subprocess.run(["sgdisk", "-v", str(image)], capture_output=True, text=True, check=True).stdout


def test_dry_run_changes_nothing(offline: OfflineMachine):
    before = offline.checksums()

    result = offline.invoke(*offline.install_args("driver", "--dry-run", "--json"))

    assert result.exit_code == 0, result.output
    assert offline.checksums() == before
    plan = json.loads(result.stdout)
    actions = [step["action"] for step in plan["steps"]]
    assert actions == ["prepare-snapshot-disk", "place-payload", "write-record", "create-entry", "order-first"]


def test_dry_run_text_lists_steps(offline: OfflineMachine):
    before = offline.checksums()

    result = offline.invoke(*offline.install_args("app", "--dry-run"))

    assert result.exit_code == 0, result.output
    assert offline.checksums() == before
    assert "1. prepare the snapshot store" in result.stdout
    assert f"chain={SYSTEMD_BOOT_PATH}" in result.stdout


def test_install_driver_registers_first(offline: OfflineMachine):
    original_boot_order = offline.order("BootOrder")

    result = offline.invoke(*offline.install_args("driver", "--yes"))

    assert result.exit_code == 0, result.output
    assert offline.order("DriverOrder") == [0x0000]
    assert offline.order("BootOrder") == original_boot_order
    entry = offline.machine.vars().get("Driver0000")
    assert entry is not None
    assert load_option_description(entry) == "SwitchOS"
    options = load_option_text(entry)
    assert options.startswith("store=partition:")
    assert "chain=" not in options
    files = offline.esp_files()
    assert any(path.endswith("/efi/switchos/switchos-x64.efi") for path in files), files
    assert any(path.endswith("/efi/switchos/install.json") for path in files), files
    assert offline.machine.esp_volume.read("\\EFI\\SwitchOS\\switchos-x64.efi") == standin.build("driver").read_bytes()
    record = json.loads(offline.machine.esp_volume.read("\\EFI\\SwitchOS\\install.json"))
    assert record["entries"] == [{"variable": "Driver0000"}]
    assert record["original_boot_order"] == original_boot_order
    assert options == f"store=partition:{record['snapshot_store']['partuuid']}"
    assert "No problems found" in sgdisk_verify(offline.snapshot_image)


def test_install_application_chains_previous_loader(offline: OfflineMachine):
    result = offline.invoke(*offline.install_args("app", "--yes"))

    assert result.exit_code == 0, result.output
    order = offline.order("BootOrder")
    assert order[1:] == [0x0001]
    ours = offline.machine.vars().get(f"Boot{order[0]:04X}")
    assert ours is not None
    options = load_option_text(ours).split()
    assert options[0].startswith("store=partition:")
    assert options[1] == f"chain={SYSTEMD_BOOT_PATH}"
    assert offline.order("DriverOrder") == []


def test_second_install_joins_record(offline: OfflineMachine):
    first = offline.invoke(*offline.install_args("driver", "--yes"))
    assert first.exit_code == 0, first.output
    before = offline.checksums()

    second = offline.invoke(*offline.install_args("driver", "--yes"))

    assert second.exit_code == ExitCode.NOTHING_TO_DO, second.output
    assert "already installed (entries Driver0000): checking the machine against the install record" in second.stdout
    assert offline.checksums() == before
    dry_run = offline.invoke(*offline.install_args("driver", "--dry-run"))
    assert dry_run.exit_code == ExitCode.NOTHING_TO_DO, dry_run.output
    repair = offline.invoke("repair", *offline.target_args, "--dry-run")
    assert repair.exit_code == ExitCode.NOTHING_TO_DO, repair.output


def test_install_without_wipe_rejected(offline: OfflineMachine):
    before = offline.checksums()
    args = [arg for arg in offline.install_args("driver", "--yes") if arg != "--wipe"]

    result = offline.invoke(*args)

    assert result.exit_code == ExitCode.INVALID_INPUT, result.output
    assert "pass --wipe" in result.stderr
    assert offline.checksums() == before


def test_install_without_yes_off_terminal_rejected(offline: OfflineMachine):
    args = offline.install_args("driver")

    result = offline.invoke(*args)

    assert result.exit_code == ExitCode.INVALID_INPUT
    assert "--yes" in result.stderr


def test_install_refuses_two_esps(offline: OfflineMachine):
    image = offline.machine.system_image
    subprocess.run(["sgdisk", "--new=2:0:+32M", "--typecode=2:ef00", str(image)], check=True, capture_output=True)
    before = offline.checksums()

    result = offline.invoke(*offline.install_args("driver", "--yes"))

    assert result.exit_code == ExitCode.FAILURE, result.output
    assert "2 EFI System Partitions (partitions 1, 2)" in result.stderr
    assert "hint: choose one with --esp-partition N" in result.stderr
    assert offline.checksums() == before

    missing = offline.invoke(*offline.install_args("driver", "--yes", "--esp-partition", "3"))

    assert missing.exit_code == ExitCode.INVALID_INPUT, missing.output
    assert f"error: --esp-partition 3: {image} has no partition 3" in missing.stderr

    chosen = offline.invoke(*offline.install_args("driver", "--yes", "--esp-partition", "1"))

    assert chosen.exit_code == 0, chosen.output
    assert offline.order("DriverOrder") == [0x0000]


def test_uninstall_restores_variables(offline: OfflineMachine):
    original = offline.variables()
    installed = offline.invoke(*offline.install_args("app", "--yes"))
    assert installed.exit_code == 0, installed.output

    result = offline.invoke("uninstall", *offline.target_args, "--yes")

    assert result.exit_code == 0, result.output
    assert offline.variables() == original
    files = offline.esp_files()
    assert not any("switchos-x64.efi" in path or "install.json" in path for path in files), files
    assert not any("/efi/switchos" in path for path in files), files
    again = offline.invoke("uninstall", *offline.target_args, "--yes")
    assert again.exit_code == ExitCode.NOTHING_TO_DO


def test_uninstall_keeps_order_changes_of_others(offline: OfflineMachine):
    installed = offline.invoke(*offline.install_args("app", "--yes"))
    assert installed.exit_code == 0, installed.output
    ours = offline.order("BootOrder")[0]
    # Another tool adds an entry after the install; uninstall must keep it.
    offline.machine.add_load_option("Boot", 0x0009, "Other OS", "\\EFI\\other\\loader.efi", first=True)

    result = offline.invoke("uninstall", *offline.target_args, "--yes")

    assert result.exit_code == 0, result.output
    assert offline.order("BootOrder") == [0x0009, 0x0001]
    assert offline.machine.vars().get(f"Boot{ours:04X}") is None


def test_repair_puts_entry_first_again(offline: OfflineMachine):
    installed = offline.invoke(*offline.install_args("app", "--yes"))
    assert installed.exit_code == 0, installed.output
    ours = offline.order("BootOrder")[0]
    files = offline.machine.vars()
    files.set_order("BootOrder", [0x0001, ours])
    files.save()

    status = offline.invoke("status", *offline.target_args, "--json")
    assert json.loads(status.stdout)["order_position"] == 1

    result = offline.invoke("repair", *offline.target_args, "--yes")

    assert result.exit_code == 0, result.output
    assert offline.order("BootOrder") == [ours, 0x0001]
    assert f"move Boot{ours:04X} from position" in result.stdout


def test_repair_replaces_changed_payload(offline: OfflineMachine):
    installed = offline.invoke(*offline.install_args("driver", "--yes"))
    assert installed.exit_code == 0, installed.output
    offline.machine.esp_volume.write("\\EFI\\SwitchOS\\switchos-x64.efi", b"damaged")

    without_payload = offline.invoke("repair", *offline.target_args, "--yes")
    assert without_payload.exit_code == ExitCode.INVALID_INPUT
    assert "--payload" in without_payload.stderr

    result = offline.invoke("repair", *offline.target_args, "--yes", "--payload", str(standin.build("driver")))

    assert result.exit_code == 0, result.output
    assert offline.machine.esp_volume.read("\\EFI\\SwitchOS\\switchos-x64.efi") == standin.build("driver").read_bytes()


def test_repair_removes_duplicate_entry(offline: OfflineMachine):
    installed = offline.invoke(*offline.install_args("driver", "--yes"))
    assert installed.exit_code == 0, installed.output
    offline.machine.add_load_option("Driver", 0x0005, "SwitchOS copy", "\\EFI\\SWITCHOS\\SWITCHOS-X64.EFI", first=False)

    result = offline.invoke("repair", *offline.target_args, "--yes")

    assert result.exit_code == 0, result.output
    assert offline.order("DriverOrder") == [0x0000]
    assert offline.machine.vars().get("Driver0005") is None


def test_repair_restores_primary_superblock(offline: OfflineMachine):
    installed = offline.invoke(*offline.install_args("driver", "--yes"))
    assert installed.exit_code == 0, installed.output
    status = json.loads(offline.invoke("status", *offline.target_args, "--json").stdout)
    assert status["snapshot_store"]["health"] == "healthy"
    # The SwitchOS partition starts at 1 MiB; damage its primary superblock's magic.
    with offline.snapshot_image.open("r+b") as disk:
        disk.seek(1 << 20)
        disk.write(b"XXXXXXXX")
    damaged = json.loads(offline.invoke("status", *offline.target_args, "--json").stdout)
    assert damaged["snapshot_store"]["health"].startswith("primary superblock damaged")

    result = offline.invoke("repair", *offline.target_args, "--yes")

    assert result.exit_code == 0, result.output
    repaired = json.loads(offline.invoke("status", *offline.target_args, "--json").stdout)
    assert repaired["snapshot_store"]["health"] == "healthy"


def test_repair_without_install_is_nothing_to_do(offline: OfflineMachine):
    result = offline.invoke("repair", *offline.target_args, "--yes")

    assert result.exit_code == ExitCode.NOTHING_TO_DO
    assert "not installed" in result.stderr
    assert "error:" not in result.stderr
    uninstall = offline.invoke("uninstall", *offline.target_args, "--yes", "--dry-run")
    assert uninstall.exit_code == ExitCode.NOTHING_TO_DO
    assert "error:" not in uninstall.stderr


def test_status_json_reports_install(offline: OfflineMachine):
    before = json.loads(offline.invoke("status", *offline.target_args, "--json").stdout)
    assert before["installed"] is False
    installed = offline.invoke(*offline.install_args("driver", "--yes"))
    assert installed.exit_code == 0, installed.output

    status = json.loads(offline.invoke("status", *offline.target_args, "--json").stdout)

    assert status["installed"] is True
    assert status["payload_version"] == standin.VERSION
    assert status["method"] == "driver"
    assert status["entry"] == "Driver0000"
    assert status["order_position"] == 0
    assert status["loaded_this_boot"] is None
    assert status["snapshot_store"]["slots"] == 2
    assert status["snapshot_store"]["slots_used"] == 0
    assert status["problems"] == []
    assert STATUS_VENDOR not in json.dumps(status)


def test_config_file_answers(offline: OfflineMachine, tmp_path: Path):
    answers = tmp_path / "answers.toml"
    answers.write_text(
        f'payload = "{standin.build("driver")}"\nmemory = "256M"\nwipe = true\nslots = 1\n'
    )

    result = offline.invoke("install", *offline.target_args, "--config", str(answers), "--yes")

    assert result.exit_code == 0, result.output
    status = json.loads(offline.invoke("status", *offline.target_args, "--json").stdout)
    assert status["snapshot_store"]["slots"] == 1


def test_config_file_unknown_key(offline: OfflineMachine, tmp_path: Path):
    answers = tmp_path / "answers.toml"
    answers.write_text('payload = "x.efi"\ncolour = "blue"\n')

    result = offline.invoke("install", *offline.target_args, "--config", str(answers), "--yes")

    assert result.exit_code == ExitCode.INVALID_INPUT
    assert "unknown key 'colour'" in result.stderr


def test_install_offline_needs_memory(offline: OfflineMachine):
    args = [arg for arg in offline.install_args("driver", "--yes") if arg not in ("--memory", "256M")]

    result = offline.invoke(*args)

    assert result.exit_code == ExitCode.INVALID_INPUT
    assert "--memory" in result.stderr


def test_trial_boot_application_uses_boot_next(offline: OfflineMachine):
    original_order = offline.order("BootOrder")

    result = offline.invoke(*offline.install_args("app", "--yes", "--trial-boot"))

    assert result.exit_code == 0, result.output
    assert offline.order("BootOrder") == original_order
    boot_next = offline.machine.vars().get("BootNext")
    assert boot_next is not None
    status = json.loads(offline.invoke("status", *offline.target_args, "--json").stdout)
    assert status["trial"].startswith("pending")


def test_install_upstream_application_whole_disk(offline: OfflineMachine):
    # systemd-boot has no .swos section, so it stands for the upstream
    # payload: protocol 0, an application with a whole-disk store.
    upstream = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"
    args = offline.install_args("app", "--yes")
    args[args.index("--payload") + 1] = upstream
    before = offline.checksums()

    refused = offline.invoke(*args)

    assert refused.exit_code == ExitCode.INVALID_INPUT, refused.output
    assert f"error: payload {upstream} has no .swos metadata section" in refused.stderr
    assert "hint: if it is the upstream SwitchOS application, pass --upstream-payload" in refused.stderr
    assert offline.checksums() == before

    result = offline.invoke(*args, "--upstream-payload")

    assert result.exit_code == 0, result.output
    assert "layout whole-disk" in result.stdout
    assert "treated as the upstream SwitchOS application" in result.stdout
    with offline.snapshot_image.open("rb") as disk:
        assert disk.read(8) == b"SWOSSNAP"
    order = offline.order("BootOrder")
    entry = offline.machine.vars().get(f"Boot{order[0]:04X}")
    assert load_option_text(entry) == "store=whole-disk"

    status = json.loads(offline.invoke("status", *offline.target_args, "--json").stdout)
    assert status["snapshot_store"]["layout"] == "whole-disk"
    assert status["snapshot_store"]["path"] == str(offline.snapshot_image)
    assert status["snapshot_store"]["health"] == "healthy"
    assert status["snapshot_store"]["slots"] == 2


def test_install_free_space_keeps_partitions(offline: OfflineMachine):
    image = str(offline.snapshot_image)
    subprocess.run(["sgdisk", "--new=1:0:+64M", "--typecode=1:8300", image], check=True, capture_output=True)
    before = subprocess.run(["sgdisk", "-i", "1", image], capture_output=True, text=True, check=True).stdout
    args = [arg for arg in offline.install_args("driver", "--yes", "--layout", "free-space") if arg != "--wipe"]

    result = offline.invoke(*args)

    assert result.exit_code == 0, result.output
    assert "erasing" not in result.stdout
    after = subprocess.run(["sgdisk", "-i", "1", image], capture_output=True, text=True, check=True).stdout
    assert after == before
    table = subprocess.run(["sgdisk", "-p", image], capture_output=True, text=True, check=True).stdout
    assert "SwitchOS snapshots" in table
    assert "No problems found" in sgdisk_verify(offline.snapshot_image)


def test_install_refused_under_secure_boot(offline: OfflineMachine):
    files = offline.machine.vars()
    files.set("SecureBoot", b"\x01")
    files.set("SetupMode", b"\x00")
    files.save()
    before = offline.checksums()

    result = offline.invoke(*offline.install_args("driver", "--yes"))

    assert result.exit_code == ExitCode.FAILURE, result.output
    assert "Secure Boot is enabled and the payload has no Authenticode signature" in result.stderr
    assert "sbsign" in result.stderr
    assert offline.checksums() == before


def test_invalid_record_rewritten_or_removed(offline: OfflineMachine):
    installed = offline.invoke(*offline.install_args("driver", "--yes"))
    assert installed.exit_code == 0, installed.output
    offline.machine.esp_volume.write("\\EFI\\SwitchOS\\install.json", b"{not json")

    status = json.loads(offline.invoke("status", *offline.target_args, "--json").stdout)
    assert status["installed"] is False
    assert "install record is not valid JSON" in status["problems"][0]

    again = offline.invoke(*offline.install_args("driver", "--yes"))
    assert again.exit_code == 0, again.output
    assert "install record is invalid and is written again" in again.stdout
    assert json.loads(offline.machine.esp_volume.read("\\EFI\\SwitchOS\\install.json"))["entries"] == [
        {"variable": "Driver0000"}
    ]

    offline.machine.esp_volume.write("\\EFI\\SwitchOS\\install.json", b"[]")
    removed = offline.invoke("uninstall", *offline.target_args, "--yes")
    assert removed.exit_code == 0, removed.output
    assert offline.machine.vars().get("Driver0000") is None
    assert not offline.machine.esp_volume.exists("\\EFI\\SwitchOS\\install.json")


def test_uninstall_dry_run_then_wipe_snapshots(offline: OfflineMachine):
    installed = offline.invoke(*offline.install_args("driver", "--yes"))
    assert installed.exit_code == 0, installed.output
    before = offline.checksums()

    dry_run = offline.invoke("uninstall", *offline.target_args, "--wipe-snapshots", "--dry-run", "--json")

    assert dry_run.exit_code == 0, dry_run.output
    assert offline.checksums() == before
    actions = [step["action"] for step in json.loads(dry_run.stdout)["steps"]]
    assert actions == [
        "order-remove", "delete-entry", "delete-file", "wipe-snapshot-store", "delete-record", "remove-folder",
    ]

    result = offline.invoke("uninstall", *offline.target_args, "--wipe-snapshots", "--yes")

    assert result.exit_code == 0, result.output
    with offline.snapshot_image.open("rb") as disk:
        disk.seek(1 << 20)
        assert disk.read(4096) == bytes(4096)
    assert "SwitchOS snapshots" in subprocess.run(
        ["sgdisk", "-p", str(offline.snapshot_image)], capture_output=True, text=True, check=True
    ).stdout


def test_repair_dry_run_changes_nothing(offline: OfflineMachine):
    installed = offline.invoke(*offline.install_args("driver", "--yes"))
    assert installed.exit_code == 0, installed.output
    files = offline.machine.vars()
    files.delete("Driver0000")
    files.save()
    before = offline.checksums()

    result = offline.invoke("repair", *offline.target_args, "--dry-run")

    assert result.exit_code == 0, result.output
    assert "create Driver0000" in result.stdout
    assert "payload: \\EFI\\SwitchOS\\switchos-x64.efi on the ESP" in result.stdout
    assert "recorded-payload.efi" not in result.stdout
    assert offline.checksums() == before


def test_install_without_payload_or_channel(offline: OfflineMachine, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("SWITCHOS_CHANNEL_URL", raising=False)
    before = offline.checksums()

    result = offline.invoke("install", *offline.target_args, "--memory", "256M", "--wipe", "--yes")

    assert result.exit_code == ExitCode.INVALID_INPUT, result.output
    assert "--channel-url" not in result.stderr
    assert "hint: pass --payload PATH, --payload-url URL with --payload-sha256 HEX, or --channel URL" in result.stderr
    assert offline.checksums() == before


@pytest.mark.parametrize("link", ["same-path", "symlink", "hardlink"])
@pytest.mark.parametrize("layout", ["new-table", "whole-disk"])
def test_snapshot_image_holding_esp_rejected(offline: OfflineMachine, tmp_path: Path, link: str, layout: str):
    system_image = offline.machine.system_image
    snapshot_image = tmp_path / "alias.img"
    if link == "same-path":
        snapshot_image = system_image
    elif link == "symlink":
        snapshot_image.symlink_to(system_image)
    else:
        snapshot_image.hardlink_to(system_image)
    before = offline.checksums()

    result = offline.invoke(
        "install", "--image", str(system_image), "--vars", str(offline.machine.vars_path),
        "--snapshot-image", str(snapshot_image), "--payload", str(standin.build("driver")),
        "--memory", "256M", "--layout", layout, "--wipe", "--yes",
    )

    assert result.exit_code == ExitCode.INVALID_INPUT, result.output
    assert f"error: --snapshot-image {snapshot_image} cannot hold the snapshot store" in result.stderr
    assert "it contains the ESP" in result.stderr
    assert "hint: pass a separate disk as --snapshot-image" in result.stderr
    assert offline.checksums() == before


def test_existing_partition_esp_rejected(offline: OfflineMachine):
    system_image = offline.machine.system_image
    before = offline.checksums()

    result = offline.invoke(
        "install", "--image", str(system_image), "--vars", str(offline.machine.vars_path),
        "--snapshot-image", str(system_image), "--payload", str(standin.build("driver")),
        "--memory", "256M", "--layout", "existing-partition", "--partition", "1", "--wipe", "--dry-run",
    )

    assert result.exit_code == ExitCode.INVALID_INPUT, result.output
    assert f"error: --partition 1 of {system_image} is the ESP" in result.stderr
    assert offline.checksums() == before


def test_driver_trial_plan_wording(offline: OfflineMachine):
    result = offline.invoke(*offline.install_args("driver", "--dry-run", "--trial-boot", "--slots", "1"))
    text = " ".join(result.stdout.split())

    assert result.exit_code == 0, result.output
    assert "1 slot of 257 MiB each (the RAM size rounded up to a whole MiB, plus 1 MiB for the slot header)" in text
    assert "1 slots" not in text
    assert "until then the driver runs at every boot" in text
    assert "add Driver0000 to DriverOrder as its first entry" in text
    assert "not yet listed" not in text
    assert "Snapshots can only be written" not in text
    assert "disks on these buses: virtio-blk" in text
    assert "because an image has no bus of its own" in text


def test_status_without_snapshot_image_hints(offline: OfflineMachine):
    installed = offline.invoke(*offline.install_args("driver", "--yes"))
    assert installed.exit_code == 0, installed.output
    image_args = offline.target_args[:4]

    result = offline.invoke("status", *image_args)

    assert result.exit_code == 0, result.output
    assert "snapshot store: not found (no disk has that partition); pass --snapshot-image" in result.stdout


def test_small_snapshot_image_hints_truncate(offline: OfflineMachine, tmp_path: Path):
    small = tmp_path / "small.img"
    small.write_bytes(b"")
    os.truncate(small, 100 * 1024 * 1024)
    args = offline.install_args("driver", "--yes")
    args[args.index("--snapshot-image") + 1] = str(small)

    result = offline.invoke(*args)

    assert result.exit_code == ExitCode.INVALID_INPUT, result.output
    assert f"error: --snapshot-image {small} is too small for the snapshot store: it needs 516MiB" in result.stderr
    assert "the image has 100MiB" in result.stderr
    assert f"hint: grow the image with: truncate -s 516M {small}; or pass fewer --slots" in result.stderr


def test_dry_run_without_wipe_shows_plan(offline: OfflineMachine):
    args = [arg for arg in offline.install_args("driver", "--dry-run") if arg != "--wipe"]
    before = offline.checksums()

    result = offline.invoke(*args)

    assert result.exit_code == ExitCode.INVALID_INPUT, result.output
    assert "erasing its contents (needs --wipe)" in result.stdout
    assert "5. add Driver0000 to DriverOrder" in result.stdout
    assert "error: the new-table layout erases disk image" in result.stderr
    assert "hint: pass --wipe to confirm" in result.stderr
    assert offline.checksums() == before


def test_repair_without_payload_lists_other_fixes(offline: OfflineMachine):
    installed = offline.invoke(*offline.install_args("driver", "--yes"))
    assert installed.exit_code == 0, installed.output
    offline.machine.esp_volume.delete("\\EFI\\SwitchOS\\switchos-x64.efi")
    files = offline.machine.vars()
    files.delete("Driver0000")
    files.save()

    result = offline.invoke("repair", *offline.target_args, "--dry-run")

    assert result.exit_code == ExitCode.INVALID_INPUT, result.output
    assert "error: the payload file \\EFI\\SwitchOS\\switchos-x64.efi is missing or changed" in result.stderr
    assert "with the payload, repair also fixes: Driver0000 is missing" in result.stderr
    assert "hint: pass the payload file with --payload" in result.stderr
