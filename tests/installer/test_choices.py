"""Choices without a terminal: answers files, flag precedence and ambiguity."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchos.errors import InvalidInputError, UnsupportedMachineError
from switchos.installer.config import InstallOptions, merge_options, read_answers
from switchos.installer.install import find_disk, require_single, require_wipe_in_plan
from switchos.installer.plan import Plan, Step
from switchos.installer.model import SnapshotDisk
from switchos.partition.layout import LayoutKind

DISK_A = SnapshotDisk(Path("/dev/vdb"), "vdb", 8 << 30, "/dev/vdb (8 GiB, virtio-blk)")
DISK_B = SnapshotDisk(Path("/dev/nvme0n1"), "nvme0n1", 16 << 30, "/dev/nvme0n1 (16 GiB, nvme)")
SYSTEM = SnapshotDisk(Path("/dev/vda"), "vda", 8 << 30, "/dev/vda", ("system-disk: holds /",))


def test_two_candidate_disks_rejected():
    with pytest.raises(InvalidInputError) as raised:
        require_single([DISK_A, DISK_B, SYSTEM])

    assert "2 disks could hold the snapshot store" in raised.value.message
    assert "/dev/vdb (8 GiB, virtio-blk)" in raised.value.message
    assert raised.value.hint == "choose one with --snapshot-disk /dev/vdb or --snapshot-disk /dev/nvme0n1"


def test_single_candidate_chosen():
    assert require_single([SYSTEM, DISK_A]) is DISK_A


def test_no_candidate_lists_reasons():
    with pytest.raises(UnsupportedMachineError) as raised:
        require_single([SYSTEM])

    assert "system-disk: holds /" in raised.value.message
    assert "--no-snapshot-disk" in raised.value.hint


@pytest.mark.parametrize("name", ["/dev/nvme0n1", "nvme0n1"])
def test_find_disk_by_path_or_name(name: str):
    assert find_disk([DISK_A, DISK_B], name) is DISK_B


def test_find_disk_rejects_excluded():
    with pytest.raises(InvalidInputError, match="system-disk"):
        find_disk([SYSTEM], "vda")


def wipe_plan(*, needs_wipe: bool) -> Plan:
    details = {"needs_wipe": needs_wipe, "layout": "new-table", "disk_description": "/dev/vdb (1 GiB)"}
    return Plan("install", "memory", (Step("prepare-snapshot-disk", "prepare", lambda: None, details),))


def test_destructive_layout_needs_wipe():
    with pytest.raises(InvalidInputError) as raised:
        require_wipe_in_plan(wipe_plan(needs_wipe=True))
    assert raised.value.message == "the new-table layout erases /dev/vdb (1 GiB)"
    assert "--wipe" in raised.value.hint
    require_wipe_in_plan(wipe_plan(needs_wipe=False))


def test_answers_file_parsed(tmp_path: Path):
    answers = tmp_path / "answers.toml"
    answers.write_text('payload = "/p.efi"\nsnapshot-disk = "/dev/vdb"\nlayout = "free-space"\nslots = 3\nmemory = "8G"\n')

    options = merge_options({}, read_answers(answers))

    assert options == InstallOptions(
        payload=Path("/p.efi"), snapshot_disk="/dev/vdb", layout=LayoutKind.FREE_SPACE, slots=3, memory=8 << 30
    )


def test_flags_win_over_answers(tmp_path: Path):
    answers = tmp_path / "answers.toml"
    answers.write_text('payload = "/from-file.efi"\nslots = 3\nwipe = true\n')

    options = merge_options({"payload": Path("/flag.efi"), "slots": None, "wipe": None}, read_answers(answers))

    assert options.payload == Path("/flag.efi")
    assert options.slots == 3
    assert options.wipe is True


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("slots = \"two\"\n", "slots has the wrong type (str)"),
        ("wipe = 1\n", "wipe has the wrong type (int)"),
        ("slots = true\n", "slots has the wrong type (bool)"),
        ("payload = [\n", "is not valid TOML"),
    ],
)
def test_answers_file_problems(tmp_path: Path, text: str, problem: str):
    answers = tmp_path / "answers.toml"
    answers.write_text(text)

    with pytest.raises(InvalidInputError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        read_answers(answers)


def test_invalid_layout_in_answers(tmp_path: Path):
    answers = tmp_path / "answers.toml"
    answers.write_text('layout = "raid"\n')

    with pytest.raises(InvalidInputError) as raised:
        merge_options({}, read_answers(answers))
    assert "new-table" in raised.value.hint
