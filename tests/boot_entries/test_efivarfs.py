"""EfivarfsStore on tmpfs mounts that stand in for efivarfs.

tmpfs shares the file format (the test writes the bytes efivarfs expects) and
supports FS_IMMUTABLE_FL, so the flag handling is checked with chattr/lsattr.
Errors come from real failures: a read-only mount, a full tmpfs, a non-root
process. EINVAL and EIO only come from firmware, so only their mapping is
checked here; the guest test covers the real efivarfs.
"""

from __future__ import annotations

import errno
import os
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from switchos.boot_entries import efivarfs
from switchos.boot_entries.efivarfs import EfivarfsStore, map_os_error, parse_file_name
from switchos.boot_entries.store import (
    EFI_GLOBAL_VARIABLE,
    SWITCHOS_VENDOR,
    FirmwareVariableError,
    VariableAccessDeniedError,
    VariableAttribute,
    VariableRejectedError,
    VariableStoreError,
    VariableStoreFullError,
    VariableStoreReadOnlyError,
    VariableStoreUnavailableError,
)

BOOT_FILE = "Boot0001-8be4df61-93ca-11d2-aa0d-00e098032b8c"


def mount_tmpfs(target: Path, size: str) -> None:
    target.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", target], check=True)


@pytest.fixture
def efivars(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "efivars"
    mount_tmpfs(root, "1m")
    try:
        yield root
    finally:
        subprocess.run(["chattr", "-R", "-i", root], check=False, capture_output=True)
        subprocess.run(["umount", root], check=True)


def lsattr_flags(path: Path) -> str:
    output = subprocess.run(["lsattr", "-d", path], check=True, capture_output=True, text=True).stdout
    return output.split()[0]


def test_file_name_round_trip() -> None:
    name = efivarfs.format_file_name("Boot0001", EFI_GLOBAL_VARIABLE)

    assert name == BOOT_FILE
    assert parse_file_name(name) == ("Boot0001", EFI_GLOBAL_VARIABLE)


@pytest.mark.parametrize(
    "file_name",
    ["Boot0001", "-8be4df61-93ca-11d2-aa0d-00e098032b8c", "Boot0001-not-a-guid-at-all-000000000000"],
)
def test_parse_file_name_rejects_malformed(file_name: str) -> None:
    assert parse_file_name(file_name) is None


def test_variable_name_with_dash_parses() -> None:
    assert parse_file_name(f"My-Var-{SWITCHOS_VENDOR}") == ("My-Var", SWITCHOS_VENDOR)


@pytest.mark.root
def test_set_writes_attributes_then_data(efivars: Path) -> None:
    store = EfivarfsStore(efivars)

    store.set("Boot0001", b"\x01\x00\x00\x00payload")

    raw = (efivars / BOOT_FILE).read_bytes()
    assert raw[:4] == struct.pack("<I", 0x7)
    assert raw[4:] == b"\x01\x00\x00\x00payload"


@pytest.mark.root
def test_set_uses_one_write_call(efivars: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Records the calls and passes them on to the real os.write: efivarfs
    # hands every write() to SetVariable(), so a split write would corrupt it.
    calls: list[bytes] = []
    real_write = os.write

    def recording_write(fd: int, data: bytes) -> int:
        calls.append(bytes(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", recording_write)
    EfivarfsStore(efivars).set("BootOrder", b"\x01\x00\x02\x00")

    assert calls == [b"\x07\x00\x00\x00\x01\x00\x02\x00"]


@pytest.mark.root
def test_get_reads_what_set_wrote(efivars: Path) -> None:
    store = EfivarfsStore(efivars)
    attributes = VariableAttribute.NON_VOLATILE | VariableAttribute.BOOTSERVICE_ACCESS

    store.set("SwitchOSStatus", b"\xaa" * 100_000, vendor=SWITCHOS_VENDOR, attributes=attributes)
    variable = store.get("SwitchOSStatus", SWITCHOS_VENDOR)

    assert variable is not None
    assert variable.name == "SwitchOSStatus"
    assert variable.vendor == SWITCHOS_VENDOR
    assert variable.attributes == attributes
    assert variable.data == b"\xaa" * 100_000


@pytest.mark.root
def test_rewrite_shorter_data_truncates(efivars: Path) -> None:
    store = EfivarfsStore(efivars)

    store.set("BootOrder", b"\x01\x00\x02\x00\x03\x00")
    store.set("BootOrder", b"\x03\x00")

    assert (efivars / f"BootOrder-{EFI_GLOBAL_VARIABLE}").read_bytes() == b"\x07\x00\x00\x00\x03\x00"


@pytest.mark.root
def test_get_missing_returns_none(efivars: Path) -> None:
    assert EfivarfsStore(efivars).get("Boot0009") is None


@pytest.mark.root
def test_empty_file_is_not_a_variable(efivars: Path) -> None:
    # efivarfs leaves such a file behind after a failed first write.
    (efivars / BOOT_FILE).touch()
    store = EfivarfsStore(efivars)

    assert store.get("Boot0001") is None
    assert store.list() == []


@pytest.mark.root
def test_list_sorted_and_skips_foreign_files(efivars: Path) -> None:
    store = EfivarfsStore(efivars)
    store.set("BootOrder", b"\x00\x00")
    store.set("Boot0000", b"x")
    store.set("SwitchOSStatus", b"y", vendor=SWITCHOS_VENDOR)
    (efivars / "README").write_text("not a variable")

    assert store.list() == [
        ("Boot0000", EFI_GLOBAL_VARIABLE),
        ("BootOrder", EFI_GLOBAL_VARIABLE),
        ("SwitchOSStatus", SWITCHOS_VENDOR),
    ]


@pytest.mark.root
def test_delete_removes_file(efivars: Path) -> None:
    store = EfivarfsStore(efivars)
    store.set("Boot0001", b"x")

    store.delete("Boot0001")
    store.delete("Boot0001")

    assert not (efivars / BOOT_FILE).exists()
    assert store.get("Boot0001") is None


@pytest.mark.root
def test_rewrite_immutable_restores_flag(efivars: Path) -> None:
    store = EfivarfsStore(efivars)
    store.set("Boot0001", b"old")
    path = efivars / BOOT_FILE
    subprocess.run(["chattr", "+i", path], check=True)

    store.set("Boot0001", b"new")

    assert path.read_bytes()[4:] == b"new"
    assert "i" in lsattr_flags(path)


@pytest.mark.root
def test_rewrite_mutable_leaves_flag_clear(efivars: Path) -> None:
    store = EfivarfsStore(efivars)
    store.set("Boot0001", b"old")

    store.set("Boot0001", b"new")

    assert "i" not in lsattr_flags(efivars / BOOT_FILE)


@pytest.mark.root
def test_delete_immutable_variable(efivars: Path) -> None:
    store = EfivarfsStore(efivars)
    store.set("Boot0001", b"x")
    subprocess.run(["chattr", "+i", efivars / BOOT_FILE], check=True)

    store.delete("Boot0001")

    assert not (efivars / BOOT_FILE).exists()


@pytest.mark.root
def test_read_only_mount_raises(efivars: Path) -> None:
    store = EfivarfsStore(efivars)
    store.set("Boot0001", b"x")
    subprocess.run(["mount", "-o", "remount,ro", efivars], check=True)

    with pytest.raises(VariableStoreReadOnlyError) as raised:
        store.set("Boot0002", b"y")

    assert BOOT_FILE.replace("0001", "0002") in raised.value.message
    assert "read-only" in raised.value.message
    assert raised.value.hint is not None
    assert f"mount -o remount,rw {efivars}" in raised.value.hint
    with pytest.raises(VariableStoreReadOnlyError):
        store.delete("Boot0001")
    assert store.get("Boot0001") is not None


@pytest.mark.root
def test_full_store_raises_and_cleans_up(tmp_path: Path) -> None:
    root = tmp_path / "small"
    mount_tmpfs(root, "16k")
    try:
        # A filler file takes every free block, so the next write fails whole
        # with ENOSPC, as efivarfs does, instead of being cut short.
        with pytest.raises(OSError) as filling:
            (root / "filler").write_bytes(b"\0" * 64 * 1024)
        assert filling.value.errno == errno.ENOSPC
        store = EfivarfsStore(root)

        with pytest.raises(VariableStoreFullError) as raised:
            store.set("Boot0001", b"\x00" * 4096)

        assert BOOT_FILE in raised.value.message
        assert "NVRAM" in raised.value.message
        assert raised.value.hint is not None
        assert "efibootmgr" in raised.value.hint
        assert not (root / BOOT_FILE).exists()
    finally:
        subprocess.run(["umount", root], check=True)


@pytest.mark.root
def test_non_root_write_raises_access_denied() -> None:
    # A child process drops to the "nobody" user, as a user who forgot sudo.
    # It imports everything first because the interpreter may sit in a folder
    # only root can read, and the mount sits outside pytest's private tmp_path.
    parent = Path(tempfile.mkdtemp(prefix="switchos-efivars-"))
    parent.chmod(0o755)
    efivars = parent / "efivars"
    mount_tmpfs(efivars, "1m")
    try:
        check_non_root_errors(efivars)
    finally:
        subprocess.run(["umount", efivars], check=True)
        efivars.rmdir()
        parent.rmdir()


def check_non_root_errors(efivars: Path) -> None:
    EfivarfsStore(efivars).set("Boot0001", b"x")
    script = f"""
import os, sys
from pathlib import Path
from switchos.boot_entries.efivarfs import EfivarfsStore
from switchos.boot_entries.store import VariableAccessDeniedError
import switchos.errors, encodings.utf_8, struct, fcntl, errno
os.setgid(65534)
os.setuid(65534)
store = EfivarfsStore(Path({str(efivars)!r}))
for action in (lambda: store.set("Boot0002", b"y"), lambda: store.set("Boot0001", b"y"),
               lambda: store.delete("Boot0001")):
    try:
        action()
    except VariableAccessDeniedError as error:
        print(type(error).__name__, error.message, "|", error.hint)
    else:
        print("no error")
"""
    # The working directory is not the repository, whose switchos/ folder
    # would shadow the installed package.
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=efivars.parent, capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stderr

    lines = result.stdout.splitlines()
    assert len(lines) == 3
    for line in lines:
        assert line.startswith("VariableAccessDeniedError")
        assert "permission denied" in line
        assert "run as root" in line
    assert "Boot0002-" in lines[0]
    assert "Boot0001-" in lines[2]
    assert (efivars / BOOT_FILE).read_bytes()[4:] == b"x"


def test_missing_root_raises_unavailable(tmp_path: Path) -> None:
    with pytest.raises(VariableStoreUnavailableError) as raised:
        EfivarfsStore(tmp_path / "absent").list()

    assert "does not exist" in raised.value.message
    assert raised.value.hint is not None
    assert "mount -t efivarfs" in raised.value.hint


def test_invalid_name_rejected(tmp_path: Path) -> None:
    with pytest.raises(VariableRejectedError):
        EfivarfsStore(tmp_path).set("../Boot0001", b"x")


@pytest.mark.parametrize(
    ("number", "error_class", "cause"),
    [
        (errno.ENOSPC, VariableStoreFullError, "NVRAM"),
        (errno.EINVAL, VariableRejectedError, "rejected"),
        (errno.EROFS, VariableStoreReadOnlyError, "read-only"),
        (errno.EPERM, VariableAccessDeniedError, "permission denied"),
        (errno.EACCES, VariableAccessDeniedError, "permission denied"),
        (errno.EIO, FirmwareVariableError, "firmware reported an error"),
    ],
)
def test_errno_mapping(number: int, error_class: type[VariableStoreError], cause: str) -> None:
    error = map_os_error(OSError(number, os.strerror(number)), action="writing", variable=BOOT_FILE)

    assert type(error) is error_class
    assert error.message.startswith(f"writing {BOOT_FILE} failed: ")
    assert cause in error.message
    assert error.hint


def test_unknown_errno_keeps_strerror() -> None:
    error = map_os_error(OSError(errno.ENOMEM, os.strerror(errno.ENOMEM)), action="reading", variable=BOOT_FILE)

    assert os.strerror(errno.ENOMEM) in error.message

