"""Power adapters: Linux against constructed sysfs and procfs trees and real processes,
Windows against a FAKE of the powrprof and advapi32 calls.

The host's /sys/power is never read or written: every LinuxPower here gets a
sysfs root in tmp_path.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from switchos.installer.power import (
    ERROR_ACCESS_DENIED,
    POWER_CAPABILITIES_FORMAT,
    POWER_CAPABILITIES_SIZE,
    LinuxPower,
    MemSleep,
    PowerCapabilities,
    S3UnavailableError,
    SuspendFailedError,
    SuspendInProgressError,
    WindowsPower,
)

from switchos.win32 import ERROR_NOT_ALL_ASSIGNED, Win32Error


def make_sys(root: Path, *, state: str | None = "freeze mem disk", mem_sleep: str | None = "s2idle [deep]") -> Path:
    power = root / "sys" / "power"
    power.mkdir(parents=True)
    if state is not None:
        (power / "state").write_text(state + "\n")
    if mem_sleep is not None:
        (power / "mem_sleep").write_text(mem_sleep + "\n")
    return root / "sys"


def linux_power(tmp_path: Path, sys_root: Path, proc_root: Path | None = None) -> LinuxPower:
    if proc_root is None:
        proc_root = tmp_path / "proc"
        proc_root.mkdir(exist_ok=True)
    return LinuxPower(sys_root=sys_root, proc_root=proc_root, dev_root=tmp_path / "dev")


@pytest.mark.parametrize(
    ("text", "modes", "current"),
    [
        ("s2idle [deep]\n", ("s2idle", "deep"), "deep"),
        ("[s2idle] deep\n", ("s2idle", "deep"), "s2idle"),
        ("[s2idle]\n", ("s2idle",), "s2idle"),
        ("", (), None),
    ],
)
def test_mem_sleep_parse(text: str, modes: tuple[str, ...], current: str | None):
    assert MemSleep.parse(text) == MemSleep(modes, current)


def test_linux_check_s3_passes(tmp_path: Path):
    linux_power(tmp_path, make_sys(tmp_path)).check_s3()


def test_linux_check_s3_passes_without_mem_sleep(tmp_path: Path):
    # Kernels before 4.10 have no mem_sleep file, and there "mem" is S3.
    linux_power(tmp_path, make_sys(tmp_path, mem_sleep=None)).check_s3()


def test_linux_check_s3_without_mem_state(tmp_path: Path):
    power = linux_power(tmp_path, make_sys(tmp_path, state="freeze disk"))
    with pytest.raises(S3UnavailableError, match="lists freeze disk, not mem") as caught:
        power.check_s3()
    assert "firmware setup" in (caught.value.hint or "")


def test_linux_check_s3_with_empty_state(tmp_path: Path):
    # The state file of a machine without sleep support is empty.
    power = linux_power(tmp_path, make_sys(tmp_path, state=""))
    with pytest.raises(S3UnavailableError, match="lists nothing, not mem"):
        power.check_s3()


def test_linux_check_s3_with_s2idle_only(tmp_path: Path):
    power = linux_power(tmp_path, make_sys(tmp_path, mem_sleep="[s2idle]"))
    with pytest.raises(S3UnavailableError, match="lists s2idle, not deep") as caught:
        power.check_s3()
    assert "suspend-to-idle" in (caught.value.hint or "")


def test_linux_check_s3_without_sysfs(tmp_path: Path):
    power = linux_power(tmp_path, tmp_path / "no-sys")
    with pytest.raises(S3UnavailableError, match="cannot read"):
        power.check_s3()


class SuspendObserver:
    """A clock for LinuxPower that records the power files whenever the suspend reads the time.

    LinuxPower reads the clock right before it writes ``mem`` to the state
    file and again after it restored mem_sleep, so the records show the mode
    in force during the suspend and the mode left afterwards.
    """

    def __init__(self, sys_root: Path) -> None:
        self.power = sys_root / "power"
        self.records: list[tuple[str | None, str]] = []

    def __call__(self) -> float:
        mem_sleep = self.power / "mem_sleep"
        mode = mem_sleep.read_text() if mem_sleep.exists() else None
        self.records.append((mode, (self.power / "state").read_text()))
        return float(len(self.records))


def observed_power(tmp_path: Path, sys_root: Path) -> tuple[LinuxPower, SuspendObserver]:
    observer = SuspendObserver(sys_root)
    (tmp_path / "proc").mkdir(exist_ok=True)
    power = LinuxPower(sys_root=sys_root, proc_root=tmp_path / "proc", dev_root=tmp_path / "dev", clock=observer)
    return power, observer


def test_linux_suspend_selects_deep_and_restores_s2idle(tmp_path: Path):
    sys_root = make_sys(tmp_path, mem_sleep="[s2idle] deep")
    power, observer = observed_power(tmp_path, sys_root)

    result = power.suspend()

    assert observer.records == [("deep", "freeze mem disk\n"), ("s2idle", "mem")]
    assert result.sleep_state == "deep"
    assert result.elapsed == 1.0


def test_linux_suspend_keeps_deep_untouched(tmp_path: Path):
    sys_root = make_sys(tmp_path, mem_sleep="s2idle [deep]")
    power, observer = observed_power(tmp_path, sys_root)

    power.suspend()

    assert observer.records == [("s2idle [deep]\n", "freeze mem disk\n"), ("s2idle [deep]\n", "mem")]


@pytest.mark.timeout(30)
def test_linux_suspend_write_blocks_until_read(tmp_path: Path):
    # The real state file returns from write() only after the resume; a FIFO
    # also blocks the writer until a reader takes the data.
    sys_root = make_sys(tmp_path)
    state = sys_root / "power" / "state"
    state.unlink()
    os.mkfifo(state)
    taken: list[str] = []

    def read() -> None:
        with open(state) as fifo:
            taken.append(fifo.read())

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    linux_power(tmp_path, sys_root).suspend()
    thread.join(timeout=10)
    assert taken == ["mem"]


def test_linux_suspend_failure_restores_mode(tmp_path: Path):
    sys_root = make_sys(tmp_path, mem_sleep="[s2idle] deep")
    state = sys_root / "power" / "state"
    state.unlink()
    state.mkdir()  # opening a directory for writing fails with EISDIR

    with pytest.raises(SuspendFailedError, match="cannot suspend through .*state") as caught:
        linux_power(tmp_path, sys_root).suspend()

    assert caught.value.hint is not None
    assert (sys_root / "power" / "mem_sleep").read_text() == "s2idle"


def test_linux_suspend_without_mem_sleep(tmp_path: Path):
    sys_root = make_sys(tmp_path, mem_sleep=None)
    power, observer = observed_power(tmp_path, sys_root)
    power.suspend()
    assert observer.records == [(None, "freeze mem disk\n"), (None, "mem")]
    assert not (sys_root / "power" / "mem_sleep").exists()


def test_linux_idle_with_empty_proc(tmp_path: Path):
    power = linux_power(tmp_path, make_sys(tmp_path))
    assert power.find_sleep_in_progress() is None
    power.check_idle()


def wait_for_open(pid: int, path: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") == str(path) for fd in os.listdir(f"/proc/{pid}/fd")):
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"process {pid} never opened {path}")


def test_linux_detects_process_holding_power_state(tmp_path: Path):
    # A real process keeps the (constructed) state file open, as a writer
    # to the real /sys/power/state does until the machine resumes.
    sys_root = make_sys(tmp_path)
    state = sys_root / "power" / "state"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; f = open(sys.argv[1], 'a'); time.sleep(60)", str(state)]
    )
    try:
        wait_for_open(holder.pid, state)
        power = LinuxPower(sys_root=sys_root, proc_root=Path("/proc"), dev_root=tmp_path / "dev")
        with pytest.raises(SuspendInProgressError, match=f"process {holder.pid} .* has {state} open") as caught:
            power.check_idle()
        assert "wait until the machine has resumed" in (caught.value.hint or "")
    finally:
        holder.kill()
        holder.wait()


def test_linux_detects_running_sleep_program(tmp_path: Path):
    program = tmp_path / "systemd-sleep"
    shutil.copy("/bin/sleep", program)
    sleeper = subprocess.Popen([str(program), "60"])
    try:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{sleeper.pid}/comm").read_text().strip() != "systemd-sleep":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        power = LinuxPower(sys_root=make_sys(tmp_path), proc_root=Path("/proc"), dev_root=tmp_path / "dev")
        with pytest.raises(SuspendInProgressError, match=f"process {sleeper.pid} \\(systemd-sleep\\) is running"):
            power.check_idle()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_linux_detects_hibernation_through_dev_snapshot(tmp_path: Path):
    # A constructed procfs: uswsusp's s2disk keeps /dev/snapshot open while it hibernates.
    process = tmp_path / "proc" / "4242"
    (process / "fd").mkdir(parents=True)
    (process / "comm").write_text("hibernator\n")
    os.symlink(tmp_path / "dev" / "snapshot", process / "fd" / "3")
    (tmp_path / "proc" / "self").mkdir()
    power = LinuxPower(sys_root=make_sys(tmp_path), proc_root=tmp_path / "proc", dev_root=tmp_path / "dev")

    with pytest.raises(SuspendInProgressError, match=r"process 4242 \(hibernator\) has .*/dev/snapshot open"):
        power.check_idle()


def test_linux_ignores_own_process(tmp_path: Path):
    process = tmp_path / "proc" / "77"
    (process / "fd").mkdir(parents=True)
    sys_root = make_sys(tmp_path)
    os.symlink(sys_root / "power" / "state", process / "fd" / "5")
    power = LinuxPower(sys_root=sys_root, proc_root=tmp_path / "proc", dev_root=tmp_path / "dev", own_pid=77)
    assert power.find_sleep_in_progress() is None


# -- Windows ------------------------------------------------------------------


def capabilities_bytes(*, s3: bool, aoac: bool, s4: bool = True) -> bytes:
    """SYSTEM_POWER_CAPABILITIES as winnt.h lays it out: 32 bytes, 3 x 2 DWORDs, 5 enums."""
    flags = [0] * 32
    flags[0] = 1  # PowerButtonPresent
    flags[5] = int(s3)  # SystemS3
    flags[6] = int(s4)  # SystemS4
    flags[8] = int(s4)  # HiberFilePresent
    flags[20] = int(aoac)  # AoAc
    return struct.pack(POWER_CAPABILITIES_FORMAT, *flags, 0, 0, 0, 0, 0, 0, 4, 4, 4, 1, 1)


class FakePowerApi:
    """A FAKE of GetPwrCapabilities, AdjustTokenPrivileges and SetSuspendState.

    The real calls exist only on Windows. This fake returns the bytes it was
    given and raises Win32Error where the real call would fail with
    GetLastError() set, so these tests check WindowsPower's logic only.
    """

    def __init__(self, capabilities: bytes) -> None:
        self.capabilities = capabilities
        self.capabilities_error: int | None = None
        self.privilege_error: int | None = None
        self.suspend_error: int | None = None
        self.calls: list[tuple[str, object]] = []

    def get_power_capabilities(self) -> bytes:
        self.calls.append(("GetPwrCapabilities", None))
        if self.capabilities_error is not None:
            raise Win32Error(self.capabilities_error)
        return self.capabilities

    def enable_shutdown_privilege(self) -> None:
        self.calls.append(("AdjustTokenPrivileges", "SeShutdownPrivilege"))
        if self.privilege_error is not None:
            raise Win32Error(self.privilege_error)

    def set_suspend_state(self, *, hibernate: bool, force: bool, wakeup_events_disabled: bool) -> None:
        self.calls.append(("SetSuspendState", (hibernate, force, wakeup_events_disabled)))
        if self.suspend_error is not None:
            raise Win32Error(self.suspend_error)


def test_power_capabilities_layout():
    assert POWER_CAPABILITIES_SIZE == 76
    parsed = PowerCapabilities.from_bytes(capabilities_bytes(s3=True, aoac=False, s4=False))
    assert parsed == PowerCapabilities(system_s3=True, system_s4=False, hiber_file_present=False, aoac=False)
    raw = bytearray(76)
    raw[20] = 1
    assert PowerCapabilities.from_bytes(bytes(raw)).aoac


def test_power_capabilities_rejects_short_buffer():
    with pytest.raises(SuspendFailedError, match="returned 40 bytes, expected 76"):
        PowerCapabilities.from_bytes(bytes(40))


def test_windows_check_s3_passes():
    WindowsPower(FakePowerApi(capabilities_bytes(s3=True, aoac=False))).check_s3()


def test_windows_check_s3_rejects_modern_standby():
    power = WindowsPower(FakePowerApi(capabilities_bytes(s3=False, aoac=True)))
    with pytest.raises(S3UnavailableError, match="Modern Standby") as caught:
        power.check_s3()
    assert "powercfg /a" in (caught.value.hint or "")


def test_windows_check_s3_rejects_missing_s3():
    power = WindowsPower(FakePowerApi(capabilities_bytes(s3=False, aoac=False)))
    with pytest.raises(S3UnavailableError, match="cannot sleep in S3"):
        power.check_s3()


def test_windows_check_s3_reports_api_failure():
    api = FakePowerApi(b"")
    api.capabilities_error = ERROR_ACCESS_DENIED
    with pytest.raises(S3UnavailableError, match="GetPwrCapabilities failed with Windows error 5"):
        WindowsPower(api).check_s3()


def test_windows_suspend_enables_privilege_then_sleeps():
    api = FakePowerApi(capabilities_bytes(s3=True, aoac=False))
    ticks = iter([100.0, 112.5])
    result = WindowsPower(api, clock=lambda: next(ticks)).suspend()
    assert api.calls == [
        ("AdjustTokenPrivileges", "SeShutdownPrivilege"),
        ("SetSuspendState", (False, False, False)),
    ]
    assert result.elapsed == 12.5


def test_windows_suspend_without_privilege():
    api = FakePowerApi(capabilities_bytes(s3=True, aoac=False))
    api.privilege_error = ERROR_NOT_ALL_ASSIGNED
    with pytest.raises(SuspendFailedError, match="SeShutdownPrivilege .*1300") as caught:
        WindowsPower(api).suspend()
    assert "elevated" in (caught.value.hint or "")
    assert ("SetSuspendState", (False, False, False)) not in api.calls


def test_windows_suspend_failure():
    api = FakePowerApi(capabilities_bytes(s3=True, aoac=False))
    api.suspend_error = ERROR_ACCESS_DENIED
    with pytest.raises(SuspendFailedError, match="SetSuspendState failed with Windows error 5") as caught:
        WindowsPower(api).suspend()
    assert "powercfg /requests" in (caught.value.hint or "")
