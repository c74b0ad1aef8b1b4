"""Suspend to S3 on Linux and on Windows, behind one small interface.

The payload saves or restores RAM only during an S3 suspend (ACPI sleep state
"suspend to RAM"). Suspend-to-idle (Linux ``s2idle``) and Windows Modern
Standby never leave the OS, so the payload never runs in them.

Linux: ``/sys/power/state`` lists ``mem`` when the kernel can suspend, and
``/sys/power/mem_sleep`` selects what ``mem`` means, for example ``s2idle
[deep]`` (the bracketed entry is the current choice, ``deep`` is S3). Writing
``mem`` to ``/sys/power/state`` suspends and returns after the resume.

Windows: ``GetPwrCapabilities`` reports S3 and AoAc (Always On, Always
Connected, that is Modern Standby); ``SetSuspendState`` suspends and returns
after the resume. The ctypes calls sit in ``PowrProfApi``, a thin adapter
without logic, so tests run ``WindowsPower`` against a fake of it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from switchos.errors import SwitchOSError, UnsupportedMachineError
from switchos.win32 import Win32Error, enable_privilege

MEM_SLEEP_S3 = "deep"
MEM_SLEEP_IDLE = "s2idle"
STATE_SUSPEND = "mem"

# Programs that suspend or hibernate the machine while they run: systemd's,
# pm-utils' and uswsusp's.
SLEEP_PROGRAMS = frozenset(
    {"systemd-sleep", "pm-suspend", "pm-hibernate", "pm-suspend-hybrid", "s2ram", "s2disk", "s2both"}
)


class S3UnavailableError(UnsupportedMachineError):
    """The machine cannot suspend to S3, the only sleep state in which the payload runs."""


class SuspendInProgressError(SwitchOSError):
    """Another suspend or a hibernation is under way."""


class SuspendFailedError(SwitchOSError):
    """The OS refused or failed to suspend."""


@dataclass(frozen=True)
class SuspendResult:
    """The result of a suspend: seconds from the request to the return after resume."""

    elapsed: float
    sleep_state: str


class PowerControl(Protocol):
    """Suspend to S3 on the running OS."""

    def check_s3(self) -> None:
        """Raise S3UnavailableError when S3 cannot be entered."""
        ...

    def check_idle(self) -> None:
        """Raise SuspendInProgressError when a suspend or hibernation is under way."""
        ...

    def suspend(self) -> SuspendResult:
        """Suspend to S3 and return after the resume; raise SuspendFailedError."""
        ...


@dataclass(frozen=True)
class MemSleep:
    """The contents of ``/sys/power/mem_sleep``: the modes offered and the current one."""

    modes: tuple[str, ...]
    current: str | None

    @classmethod
    def parse(cls, text: str) -> MemSleep:
        modes: list[str] = []
        current = None
        for word in text.split():
            if word.startswith("[") and word.endswith("]"):
                word = word[1:-1]
                current = word
            modes.append(word)
        return cls(tuple(modes), current)


class LinuxPower:
    """S3 through ``/sys/power``; ``sys_root`` and ``proc_root`` point elsewhere in tests.

    ``own_pid`` is left out of the search for other suspends, since this
    process may hold the power files open itself.
    """

    def __init__(
        self,
        *,
        sys_root: Path = Path("/sys"),
        proc_root: Path = Path("/proc"),
        dev_root: Path = Path("/dev"),
        own_pid: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sys_root = Path(sys_root)
        self.proc_root = Path(proc_root)
        self.dev_root = Path(dev_root)
        self.own_pid = os.getpid() if own_pid is None else own_pid
        self._clock = clock

    @property
    def state_path(self) -> Path:
        return self.sys_root / "power" / "state"

    @property
    def mem_sleep_path(self) -> Path:
        return self.sys_root / "power" / "mem_sleep"

    def read_mem_sleep(self) -> MemSleep | None:
        """Return the mem_sleep modes, or None on kernels without the file (before 4.10, where mem is S3)."""
        try:
            return MemSleep.parse(self.mem_sleep_path.read_text())
        except FileNotFoundError:
            return None

    def check_s3(self) -> None:
        try:
            states = self.state_path.read_text().split()
        except OSError as error:
            raise S3UnavailableError(
                f"cannot read {self.state_path}: {error.strerror}",
                hint="the kernel offers no system sleep states here; check that sysfs is mounted",
            ) from error
        if STATE_SUSPEND not in states:
            listed = " ".join(states) or "nothing"
            raise S3UnavailableError(
                f"the kernel cannot suspend to RAM: {self.state_path} lists {listed}, not {STATE_SUSPEND}",
                hint="enable S3 (often called 'S3' or 'Linux' sleep) in the firmware setup",
            )
        mem_sleep = self.read_mem_sleep()
        if mem_sleep is not None and MEM_SLEEP_S3 not in mem_sleep.modes:
            listed = " ".join(mem_sleep.modes) or "nothing"
            raise S3UnavailableError(
                f"the machine offers no S3 sleep: {self.mem_sleep_path} lists {listed}, not {MEM_SLEEP_S3}",
                hint="enable S3 in the firmware setup; SwitchOS cannot work with suspend-to-idle "
                "(Modern Standby) alone",
            )

    def check_idle(self) -> None:
        busy = self.find_sleep_in_progress()
        if busy is not None:
            raise SuspendInProgressError(
                f"another suspend or hibernation is in progress: {busy}",
                hint="wait until the machine has resumed and that program has exited, then retry",
            )

    def find_sleep_in_progress(self) -> str | None:
        """Describe another process that is suspending or hibernating, or return None.

        A process that writes ``/sys/power/state`` keeps it open until the
        resume, uswsusp keeps ``/dev/snapshot`` open while it hibernates, and
        the programs in SLEEP_PROGRAMS run for as long as their sleep lasts.
        """
        targets = {str(self.state_path), str(self.sys_root / "power" / "disk"), str(self.dev_root / "snapshot")}
        try:
            entries = list(os.scandir(self.proc_root))
        except OSError:
            return None
        for entry in entries:
            if not entry.name.isdigit() or int(entry.name) == self.own_pid:
                continue
            process = Path(entry.path)
            name = _read_text(process / "comm").strip()
            if name in SLEEP_PROGRAMS:
                return f"process {entry.name} ({name}) is running"
            for target in _open_files(process / "fd"):
                if target in targets:
                    return f"process {entry.name} ({name or 'unknown'}) has {target} open"
        return None

    def suspend(self) -> SuspendResult:
        """Suspend to S3, selecting ``deep`` in mem_sleep for this suspend when needed.

        The previous mem_sleep mode is written back after the resume, also
        when the suspend fails.
        """
        mem_sleep = self.read_mem_sleep()
        restore = None
        if mem_sleep is not None and mem_sleep.current != MEM_SLEEP_S3:
            restore = mem_sleep.current
            self._write(self.mem_sleep_path, MEM_SLEEP_S3, "select S3 in")
        start = self._clock()
        try:
            self._write(self.state_path, STATE_SUSPEND, "suspend through")
        finally:
            if restore is not None:
                self._write(self.mem_sleep_path, restore, "restore the sleep mode in")
        return SuspendResult(elapsed=self._clock() - start, sleep_state=MEM_SLEEP_S3)

    def _write(self, path: Path, value: str, action: str) -> None:
        try:
            # O_TRUNC as a shell's "echo deep > file" does; sysfs ignores it.
            fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
        except OSError as error:
            raise _suspend_error(error, action, path, value) from error
        try:
            # One write: the kernel acts on each write() call as a whole.
            os.write(fd, value.encode("ascii"))
        except OSError as error:
            raise _suspend_error(error, action, path, value) from error
        finally:
            os.close(fd)


def _suspend_error(error: OSError, action: str, path: Path, value: str) -> SuspendFailedError:
    if error.errno == errno.EBUSY:
        hint = "a wakeup event or another suspend got in the way; retry in a few seconds"
    elif error.errno in (errno.EACCES, errno.EPERM):
        hint = "run as root"
    elif error.errno == errno.EINVAL:
        hint = f"the kernel does not accept {value!r} here; check {path.parent}"
    else:
        hint = "check the kernel log (dmesg) for the driver that blocked the suspend"
    return SuspendFailedError(f"cannot {action} {path} (writing {value!r}): {error.strerror}", hint=hint)


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _open_files(fd_folder: Path) -> list[str]:
    try:
        names = os.listdir(fd_folder)
    except OSError:
        return []
    targets = []
    for name in names:
        try:
            targets.append(os.readlink(fd_folder / name))
        except OSError:
            continue
    return targets


# SYSTEM_POWER_CAPABILITIES (winnt.h), 76 bytes: 15 BOOLEANs from
# PowerButtonPresent to ProcessorThrottle, ProcessorMinThrottle,
# ProcessorMaxThrottle, FastSystemS4, Hiberboot, WakeAlarmPresent, AoAc,
# DiskSpinDown, HiberFileType, AoAcConnectivitySupported, spare3[6],
# SystemBatteriesPresent, BatteriesAreShortTerm, BatteryScale[3] (two DWORDs
# each) and five SYSTEM_POWER_STATE values.
POWER_CAPABILITIES_FORMAT = "<32B6I5i"
POWER_CAPABILITIES_SIZE = struct.calcsize(POWER_CAPABILITIES_FORMAT)
CAPABILITY_OFFSETS = {"SystemS3": 5, "SystemS4": 6, "HiberFilePresent": 8, "AoAc": 20}

# Win32 error codes (winerror.h).
ERROR_ACCESS_DENIED = 5
ERROR_PRIVILEGE_NOT_HELD = 1314

SE_SHUTDOWN_NAME = "SeShutdownPrivilege"


@dataclass(frozen=True)
class PowerCapabilities:
    """The fields of SYSTEM_POWER_CAPABILITIES that decide whether S3 is usable."""

    system_s3: bool
    system_s4: bool
    hiber_file_present: bool
    aoac: bool

    @classmethod
    def from_bytes(cls, data: bytes) -> PowerCapabilities:
        if len(data) < POWER_CAPABILITIES_SIZE:
            raise SuspendFailedError(
                f"GetPwrCapabilities returned {len(data)} bytes, expected {POWER_CAPABILITIES_SIZE}"
            )
        fields = struct.unpack_from(POWER_CAPABILITIES_FORMAT, data)
        return cls(
            system_s3=bool(fields[CAPABILITY_OFFSETS["SystemS3"]]),
            system_s4=bool(fields[CAPABILITY_OFFSETS["SystemS4"]]),
            hiber_file_present=bool(fields[CAPABILITY_OFFSETS["HiberFilePresent"]]),
            aoac=bool(fields[CAPABILITY_OFFSETS["AoAc"]]),
        )



class PowerApi(Protocol):
    """The Windows calls WindowsPower makes; PowrProfApi is the real one."""

    def get_power_capabilities(self) -> bytes:
        """Return the SYSTEM_POWER_CAPABILITIES bytes; raise Win32Error."""
        ...

    def enable_shutdown_privilege(self) -> None:
        """Enable SeShutdownPrivilege in the process token; raise Win32Error."""
        ...

    def set_suspend_state(self, *, hibernate: bool, force: bool, wakeup_events_disabled: bool) -> None:
        """Call SetSuspendState, which returns after the resume; raise Win32Error."""
        ...


class WindowsPower:
    """S3 through powrprof; ``api`` defaults to the real PowrProfApi."""

    def __init__(self, api: PowerApi | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._api = api if api is not None else PowrProfApi()
        self._clock = clock

    def read_capabilities(self) -> PowerCapabilities:
        try:
            return PowerCapabilities.from_bytes(self._api.get_power_capabilities())
        except Win32Error as error:
            raise S3UnavailableError(
                f"GetPwrCapabilities failed with Windows error {error.code}",
                hint="check the power settings with: powercfg /a",
            ) from error

    def check_s3(self) -> None:
        capabilities = self.read_capabilities()
        if capabilities.aoac:
            raise S3UnavailableError(
                "the machine uses Modern Standby (S0 low power idle) instead of S3",
                hint="switch the firmware setup to S3 sleep if it offers it; powercfg /a lists the states",
            )
        if not capabilities.system_s3:
            raise S3UnavailableError(
                "Windows reports that the machine cannot sleep in S3",
                hint="enable S3 in the firmware setup and install the chipset drivers; "
                "powercfg /a says what blocks it",
            )

    def check_idle(self) -> None:
        # NOTE: Windows offers no call that reports a suspend in progress, and
        # SetSuspendState fails on its own when one is; nothing to check here.
        return None

    def suspend(self) -> SuspendResult:
        try:
            self._api.enable_shutdown_privilege()
        except Win32Error as error:
            raise SuspendFailedError(
                f"cannot enable {SE_SHUTDOWN_NAME} (Windows error {error.code})",
                hint="run switchos from an elevated (administrator) prompt",
            ) from error
        start = self._clock()
        try:
            # Not forced, so applications may still veto the suspend; wake
            # events stay enabled so the user can wake the machine.
            self._api.set_suspend_state(hibernate=False, force=False, wakeup_events_disabled=False)
        except Win32Error as error:
            raise SuspendFailedError(
                f"SetSuspendState failed with Windows error {error.code}",
                hint="an application or driver blocked the suspend; powercfg /requests lists them",
            ) from error
        return SuspendResult(elapsed=self._clock() - start, sleep_state="S3")


class PowrProfApi:
    """The real PowerApi: ctypes calls into powrprof, kernel32 and advapi32, Windows only.

    NOTE: this class cannot run on the Linux machines that test SwitchOS; the
    tests run WindowsPower against a fake with the same methods instead.
    """

    _powrprof: Any
    _kernel32: Any
    _advapi32: Any
    _wintypes: Any
    _get_last_error: Callable[[], int]

    def __init__(self) -> None:
        if sys.platform != "win32":
            raise S3UnavailableError("the Windows power functions exist only on Windows")
        from ctypes import wintypes

        self._wintypes = wintypes
        windll: Any = getattr(ctypes, "WinDLL")
        self._powrprof = windll("powrprof", use_last_error=True)
        self._kernel32 = windll("kernel32", use_last_error=True)
        self._advapi32 = windll("advapi32", use_last_error=True)
        self._get_last_error = getattr(ctypes, "get_last_error")
        self._powrprof.GetPwrCapabilities.restype = wintypes.BOOLEAN
        self._powrprof.GetPwrCapabilities.argtypes = [ctypes.c_void_p]
        self._powrprof.SetSuspendState.restype = wintypes.BOOLEAN
        self._powrprof.SetSuspendState.argtypes = [wintypes.BOOLEAN, wintypes.BOOLEAN, wintypes.BOOLEAN]

    def get_power_capabilities(self) -> bytes:
        buffer = ctypes.create_string_buffer(POWER_CAPABILITIES_SIZE)
        if not self._powrprof.GetPwrCapabilities(buffer):
            raise Win32Error(self._get_last_error())
        return buffer.raw

    def enable_shutdown_privilege(self) -> None:
        enable_privilege(
            SE_SHUTDOWN_NAME,
            kernel32=self._kernel32,
            advapi32=self._advapi32,
            get_last_error=self._get_last_error,
        )

    def set_suspend_state(self, *, hibernate: bool, force: bool, wakeup_events_disabled: bool) -> None:
        if not self._powrprof.SetSuspendState(hibernate, force, wakeup_events_disabled):
            raise Win32Error(self._get_last_error())


def is_windows_administrator() -> bool:
    """Return whether this Windows process runs elevated (shell32 IsUserAnAdmin); False elsewhere."""
    if sys.platform != "win32":
        return False
    windll: Any = getattr(ctypes, "windll")
    return bool(windll.shell32.IsUserAnAdmin())


def make_power_control(
    *, sys_root: Path = Path("/sys"), proc_root: Path = Path("/proc"), dev_root: Path = Path("/dev")
) -> PowerControl:
    """Return the power adapter of the running OS."""
    if sys.platform == "win32":
        return WindowsPower()
    return LinuxPower(sys_root=sys_root, proc_root=proc_root, dev_root=dev_root)
