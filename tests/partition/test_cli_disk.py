"""``switchos disk list`` and ``switchos disk inspect`` as a user runs them."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from disk_helpers import GIB, MIB, make_disk, make_sparse

from switchos.cli import main
from switchos.errors import ExitCode
from switchos.partition.layout import StoreGeometry, prepare_new_table
from switchos.partition.store import initialize_store, read_store


@pytest.fixture
def fake_machine(tmp_path: Path) -> dict[str, Path]:
    """A q35 guest with 4 GiB of RAM: vda (system, virtio), vdb (virtio, blank), nvme0n1 (blank, 4Kn), sda (AHCI, too small)."""
    sys_root, proc_root, dev_root = tmp_path / "sys", tmp_path / "proc", tmp_path / "dev"
    make_disk(sys_root, "pci0000:00/0000:00:02.0/virtio1/block/vda", "vda", sectors=64 * GIB // 512, device_number="254:0",
              partitions=((1, 2048, 1048576), (2, 1050624, 40000000)))
    make_disk(sys_root, "pci0000:00/0000:00:03.0/virtio2/block/vdb", "vdb", sectors=64 * GIB // 512,
              device_number="254:16")
    make_disk(sys_root, "pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1", "nvme0n1", sectors=32 * GIB // 512,
              logical=4096, device_number="259:0", attributes={"nsid": "1"})
    make_disk(sys_root, "pci0000:00/0000:00:1f.2/ata3/host2/target2:0:0/2:0:0:0/block/sda", "sda",
              sectors=2 * GIB // 512, device_number="8:0")
    port_no = sys_root / "devices/pci0000:00/0000:00:1f.2/ata3/ata_port/ata3/port_no"
    port_no.parent.mkdir(parents=True)
    port_no.write_text("3\n")
    memmap = sys_root / "firmware" / "memmap" / "0"
    memmap.mkdir(parents=True)
    (memmap / "start").write_text("0x100000000\n")
    (memmap / "end").write_text("0x1ffffffff\n")
    (memmap / "type").write_text("System RAM\n")
    (proc_root / "self").mkdir(parents=True)
    (proc_root / "self" / "mountinfo").write_text(
        "27 1 254:2 / / rw,relatime - ext4 /dev/vda2 rw\n"
        "28 27 254:1 / /boot/efi rw,relatime - vfat /dev/vda1 rw\n"
    )
    (proc_root / "swaps").write_text("Filename\tType\tSize\tUsed\tPriority\n")
    dev_root.mkdir()
    return {"sys": sys_root, "proc": proc_root, "dev": dev_root}


def run_cli(*args: str, input: str | None = None):
    return CliRunner().invoke(main, list(args), input=input)


def roots(machine: dict[str, Path]) -> list[str]:
    return ["--sys-root", str(machine["sys"]), "--proc-root", str(machine["proc"]), "--dev-root", str(machine["dev"])]


class TestList:
    def test_table(self, fake_machine):
        result = run_cli("disk", "list", *roots(fake_machine))
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert lines[0] == "The snapshot store needs 8196 MiB for 2 slots."
        assert lines[1].split() == ["DEVICE", "SIZE", "SECTOR", "BUS", "STATUS"]
        rows = {Path(line.split()[0]).name: line for line in lines[2:6]}
        assert rows["vdb"].split()[0] == str(fake_machine["dev"] / "vdb")
        assert rows["vdb"].endswith("candidate")
        assert "virtio-blk 0000:00:03.0" in rows["vdb"]
        assert rows["nvme0n1"].endswith("candidate")
        assert "4096/4096" in rows["nvme0n1"]
        assert "nvme 0000:00:04.0 ns 1" in rows["nvme0n1"]
        assert rows["sda"].endswith("excluded: too-small")
        assert "sata 0000:00:1f.2 port 2" in rows["sda"]
        assert rows["vda"].endswith("excluded: mounted, system-disk, esp-disk")
        assert "  sda: too-small: needs 8196 MiB, has 2 GiB" in lines
        assert "  vda: esp-disk: holds the ESP (vda1 on /boot/efi)" in lines

    def test_json(self, fake_machine):
        result = run_cli("disk", "list", "--json", "--slots", "1", "--memory", "1G", *roots(fake_machine))
        assert result.exit_code == 0, result.output
        document = json.loads(result.output)
        assert document["required_size"] == MIB + (GIB + MIB) + MIB
        disks = {disk["name"]: disk for disk in document["disks"]}
        assert disks["sda"]["eligible"]
        assert disks["sda"]["sata_port"] == 2
        assert disks["nvme0n1"]["nvme_namespace"] == 1
        assert disks["nvme0n1"]["logical_sector_size"] == 4096
        assert disks["vdb"]["pci_address"] == "0000:00:03.0"
        assert [item["reason"] for item in disks["vda"]["exclusions"]] == ["mounted", "system-disk", "esp-disk"]
        assert disks["vda"]["partitions"][1] == {
            "name": "vda2", "number": 2, "start": 1050624 * 512, "size": 40000000 * 512, "holders": [],
        }

    def test_bus_option(self, fake_machine):
        result = run_cli("disk", "list", "--json", "--bus", "nvme", *roots(fake_machine))
        disks = {disk["name"]: disk for disk in json.loads(result.output)["disks"]}
        assert disks["nvme0n1"]["eligible"]
        assert [item["reason"] for item in disks["vdb"]["exclusions"]] == ["unsupported-bus"]

    def test_invalid_memory(self, fake_machine):
        result = run_cli("disk", "list", "--memory", "lots", *roots(fake_machine))
        assert result.exit_code == ExitCode.INVALID_INPUT
        assert "error: invalid memory size 'lots'" in result.output
        assert "hint: use K, M, G or T" in result.output

    def test_memory_without_unit(self, fake_machine):
        result = run_cli("disk", "list", "--memory", "256", *roots(fake_machine))
        assert result.exit_code == ExitCode.INVALID_INPUT
        assert "error: invalid memory size '256'" in result.output

    def test_unreadable_memory_warns(self, fake_machine):
        for entry in (fake_machine["sys"] / "firmware" / "memmap" / "0").iterdir():
            entry.unlink()
        result = run_cli("disk", "list", *roots(fake_machine))
        assert result.exit_code == 0
        assert "warning: cannot read the memory map" in result.output
        assert "too-small" not in result.output


class TestInspect:
    def test_healthy_image(self, tmp_path: Path):
        image = make_sparse(tmp_path / "disk.img", GIB)
        laid_out = prepare_new_table(image, StoreGeometry(100 * MIB, 2), wipe=True)
        result = run_cli("disk", "inspect", str(image))
        assert result.exit_code == 0, result.output
        assert f"Store on {image} at byte 1048576, 202 MiB" in result.output
        assert "  primary superblock: valid" in result.output
        assert f"  store UUID: {laid_out.superblock.store_uuid}" in result.output
        assert "  slots: 2 of 100 MiB" in result.output
        assert "  slot 1: free" in result.output

    def test_json(self, tmp_path: Path):
        image = make_sparse(tmp_path / "disk.img", GIB)
        superblock = initialize_store(image, slot_size=100 * MIB, slot_count=3)
        result = run_cli("disk", "inspect", "--json", str(image))
        document = json.loads(result.output)
        assert document["healthy"]
        assert document["offset"] == 0
        assert document["primary"]["store_uuid"] == str(superblock.store_uuid)
        assert [slot["state"] for slot in document["slots"]] == ["free"] * 3

    def test_damaged_and_repaired(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
        # CliRunner's stdin is no terminal; the questions below need one.
        monkeypatch.setattr("switchos.cli_confirm.stdin_is_terminal", lambda: True)
        image = make_sparse(tmp_path / "disk.img", GIB)
        prepare_new_table(image, StoreGeometry(100 * MIB, 2), wipe=True)
        with open(image, "r+b") as handle:
            handle.seek(MIB + 32)
            handle.write(b"\xff")

        damaged = run_cli("disk", "inspect", str(image))
        assert damaged.exit_code == ExitCode.FAILURE
        assert "  primary superblock: INVALID: invalid superblock: crc32c at byte 0xc" in damaged.output
        assert f"error: the snapshot store on {image} is damaged" in damaged.stderr
        assert (
            f"hint: the backup superblock is valid: 'switchos disk inspect --repair {image}' "
            "restores the primary superblock from it"
        ) in damaged.stderr

        dry = run_cli("disk", "inspect", "--repair", "--dry-run", str(image))
        assert dry.exit_code == 0
        assert "nothing written" in dry.output
        assert read_store(image, offset=MIB, size=202 * MIB).primary is None

        declined = run_cli("disk", "inspect", "--repair", str(image), input="n\n")
        assert declined.exit_code == ExitCode.USER_ABORT
        assert "error: did not repair the primary superblock; nothing was changed" in declined.stderr
        assert read_store(image, offset=MIB, size=202 * MIB).primary is None

        confirmed = run_cli("disk", "inspect", "--repair", str(image), input="y\n")
        assert confirmed.exit_code == 0, confirmed.output
        assert "Rewrote the primary superblock" in confirmed.output
        assert read_store(image, offset=MIB, size=202 * MIB).healthy

        again = run_cli("disk", "inspect", "--repair", "-y", str(image))
        assert again.exit_code == ExitCode.NOTHING_TO_DO
        assert "nothing to repair" in again.output

    def test_no_store(self, tmp_path: Path):
        image = make_sparse(tmp_path / "blank.img", 64 * MIB)
        result = run_cli("disk", "inspect", str(image))
        assert result.exit_code == ExitCode.NOTHING_TO_DO
        assert f"error: no snapshot store found on {image}" in result.output
        assert "hint: give the SwitchOS partition" in result.output

    def test_missing_file_is_invalid_input(self, tmp_path: Path):
        missing = tmp_path / "missing.img"
        result = run_cli("disk", "inspect", str(missing))
        assert result.exit_code == ExitCode.INVALID_INPUT
        assert result.stderr.splitlines() == [
            f"error: {missing} does not exist",
            "hint: give the disk, its SwitchOS partition or an image file that contains the snapshot store",
        ]

    def test_repair_without_terminal_needs_yes(self, tmp_path: Path):
        image = make_sparse(tmp_path / "disk.img", GIB)
        prepare_new_table(image, StoreGeometry(100 * MIB, 2), wipe=True)
        damage_primary(image, MIB)

        result = run_cli("disk", "inspect", "--repair", str(image))

        assert result.exit_code == ExitCode.INVALID_INPUT
        assert "Aborted!" not in result.output
        assert "error: cannot ask whether to repair the primary superblock: standard input is not a terminal" \
            in result.stderr
        assert "hint: pass --yes to repair the primary superblock without the question" in result.stderr
        assert read_store(image, offset=MIB, size=202 * MIB).primary is None

    def test_repair_declined_in_terminal(self, tmp_path: Path):
        image = make_sparse(tmp_path / "disk.img", GIB)
        prepare_new_table(image, StoreGeometry(100 * MIB, 2), wipe=True)
        damage_primary(image, MIB)

        returncode, output = run_in_terminal(["disk", "inspect", "--repair", str(image)], answer="n")

        assert returncode == ExitCode.USER_ABORT, output
        assert "Rewrite the primary superblock" in output
        assert "error: did not repair the primary superblock; nothing was changed" in output
        assert read_store(image, offset=MIB, size=202 * MIB).primary is None

    def test_wiped_headers_are_no_store(self, tmp_path: Path):
        image = make_sparse(tmp_path / "disk.img", GIB)
        laid_out = prepare_new_table(image, StoreGeometry(100 * MIB, 2), wipe=True)
        store_size = laid_out.superblock.store_size
        # What 'uninstall --wipe-snapshots' does: zero both superblock blocks.
        with open(image, "r+b") as handle:
            for offset in (MIB, MIB + store_size - 4096):
                handle.seek(offset)
                handle.write(bytes(4096))

        result = run_cli("disk", "inspect", str(image))

        assert result.exit_code == ExitCode.NOTHING_TO_DO, result.output
        assert "  primary superblock: blank (all zero)" in result.stdout
        assert "  backup superblock: blank (all zero)" in result.stdout
        assert "damaged" not in result.output
        assert f"error: no snapshot store on {image}: both superblocks are blank (all zero)" in result.stderr
        assert "hint: prepare a snapshot store with 'switchos install'" in result.stderr

        repair = run_cli("disk", "inspect", "--repair", "-y", str(image))
        assert repair.exit_code == ExitCode.NOTHING_TO_DO

        document = json.loads(run_cli("disk", "inspect", "--json", str(image)).stdout)
        assert document["blank"] is True
        assert document["healthy"] is False

    def test_foreign_magic_shown_as_text_or_hex(self, tmp_path: Path):
        image = make_sparse(tmp_path / "disk.img", GIB)
        laid_out = prepare_new_table(image, StoreGeometry(100 * MIB, 2), wipe=True)
        backup_offset = laid_out.superblock.store_size - 4096
        with open(image, "r+b") as handle:
            handle.seek(MIB)
            handle.write(b"NOTSTORE")
            handle.seek(MIB + backup_offset)
            handle.write(b"\x00\x01\x02\x03\x04\x05\x06\x07")

        result = run_cli("disk", "inspect", str(image))

        assert result.exit_code == ExitCode.FAILURE
        assert '  primary superblock: INVALID: invalid superblock: magic at byte 0x0: "NOTSTORE", ' \
            'expected "SWOSSNAP"' in result.stdout
        assert f"magic at byte {backup_offset:#x}: hex 0001020304050607, expected" in result.stdout
        assert "b'" not in result.output
        assert "Hint:" not in result.output
        assert "hint: neither superblock is valid, so this is not a SwitchOS snapshot store" in result.stderr


def damage_primary(image: Path, store_offset: int) -> None:
    with open(image, "r+b") as handle:
        handle.seek(store_offset + 32)
        handle.write(b"\xff")


def run_in_terminal(args: list[str], *, answer: str) -> tuple[int, str]:
    """Run switchos with a pseudo-terminal as stdin, type ``answer`` and Enter; return exit code and output."""
    leader, follower = pty.openpty()
    try:
        # The terminal buffers the typed line until the prompt reads it.
        os.write(leader, answer.encode() + b"\n")
        process = subprocess.run(
            [sys.executable, "-m", "switchos", *args], stdin=follower, capture_output=True, timeout=60, check=False,
            # Outside the checkout, so that the installed package is imported.
            cwd=Path(args[-1]).parent,
        )
    finally:
        os.close(leader)
        os.close(follower)
    return process.returncode, process.stdout.decode() + process.stderr.decode()

