"""Run a QEMU machine under TCG, follow its serial console and talk to it over QMP."""

from __future__ import annotations

import enum
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# Escape sequences that OVMF's terminal driver and systemd-boot's menu write to
# the serial console: CSI sequences and charset selections.
ANSI_ESCAPE = re.compile(rb"\x1b(\[[0-9;?=<>]*[ -/]*[@-~]|[()][0-9A-Za-z]|[=>78cDEHM])")


class EventKind(enum.Enum):
    """What produced a console line, as far as the test bed can tell."""

    FIRMWARE = "firmware"
    STANDIN = "standin"
    SYSTEMD_BOOT = "systemd-boot"
    KERNEL = "kernel"
    GUEST = "guest"
    QMP = "qmp"


@dataclass(frozen=True)
class Event:
    kind: EventKind
    text: str


# systemd-boot prints nothing of its own when it boots an entry at once, so the
# test bed gives it a one-second menu. Its entry titles start with this marker,
# and the menu's own lines (systemd-boot 252) identify it when no entry is valid.
SYSTEMD_BOOT_MARKER = "SwitchOS test bed:"
SYSTEMD_BOOT_LINES = re.compile(r"^(Boot in \d+ s\.|Reboot Into Firmware Interface)$")
GUEST_PREFIX = "switchos-guest:"
STANDIN_PREFIX = "switchos-standin:"


def classify(line: str) -> EventKind | None:
    """Return the event kind of one cleaned console line, or None for noise."""
    if line.startswith("BdsDxe:"):
        return EventKind.FIRMWARE
    if STANDIN_PREFIX in line:
        return EventKind.STANDIN
    if SYSTEMD_BOOT_MARKER in line or SYSTEMD_BOOT_LINES.match(line):
        return EventKind.SYSTEMD_BOOT
    if line.startswith(GUEST_PREFIX):
        return EventKind.GUEST
    if line.startswith("EFI stub:") or re.match(r"^\[\s*\d+\.\d+\] ", line):
        return EventKind.KERNEL
    return None


def clean_console(raw: bytes) -> list[str]:
    """Strip escape sequences and carriage returns and split the console into lines."""
    text = ANSI_ESCAPE.sub(b"\n", raw).replace(b"\r", b"\n")
    lines = text.decode(errors="replace").split("\n")
    return [line.strip() for line in lines if line.strip()]


def console_events(lines: Sequence[str]) -> list[Event]:
    """Return the ordered events in a cleaned console, one per distinct kind-and-text run."""
    events: list[Event] = []
    for line in lines:
        kind = classify(line)
        if kind is None:
            continue
        event = Event(kind, line)
        # systemd-boot redraws its menu every second; one event per redraw run is enough.
        if events and events[-1] == event:
            continue
        events.append(event)
    return events


class QmpClient:
    """A minimal QMP client: commands, and a list of the asynchronous events received."""

    def __init__(self, path: Path, *, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self._socket.connect(str(path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                self._socket.close()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"QMP socket {path} did not open within {timeout} s")
                time.sleep(0.1)
        self._file = self._socket.makefile("rwb")
        self.events: list[dict[str, object]] = []
        self._lock = threading.Lock()
        self._replies: list[dict[str, object]] = []
        self._reply_ready = threading.Condition(self._lock)
        self._read()  # greeting
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()
        self.command("qmp_capabilities")

    def _read(self) -> dict[str, object] | None:
        line = self._file.readline()
        if not line:
            return None
        return json.loads(line)

    def _read_loop(self) -> None:
        while True:
            try:
                message = self._read()
            except (OSError, ValueError):
                message = None
            with self._lock:
                if message is None:
                    self._replies.append({"error": {"desc": "QMP connection closed"}})
                    self._reply_ready.notify_all()
                    return
                if "event" in message:
                    self.events.append(message)
                else:
                    self._replies.append(message)
                    self._reply_ready.notify_all()

    def command(self, name: str, **arguments: object) -> object:
        request: dict[str, object] = {"execute": name}
        if arguments:
            request["arguments"] = arguments
        with self._lock:
            self._replies.clear()
            self._file.write(json.dumps(request).encode() + b"\n")
            self._file.flush()
            if not self._reply_ready.wait_for(lambda: bool(self._replies), timeout=30):
                raise TimeoutError(f"QMP command {name} got no reply")
            reply = self._replies.pop(0)
        if "error" in reply:
            raise RuntimeError(f"QMP command {name} failed: {reply['error']}")
        return reply.get("return")

    def event_names(self) -> list[str]:
        with self._lock:
            return [str(event["event"]) for event in self.events]

    def close(self) -> None:
        try:
            self._socket.close()
        except OSError:
            pass


@dataclass
class BootResult:
    """What one boot showed: the cleaned console, its events and the QMP events."""

    console: list[str]
    events: list[Event]
    qmp_events: list[str]
    exit_status: int | None
    timed_out: bool
    raw_console: bytes = field(repr=False, default=b"")

    def kinds(self) -> list[EventKind]:
        """Return the event kinds in order, with repeats of the same kind collapsed."""
        kinds: list[EventKind] = []
        for event in self.events:
            if not kinds or kinds[-1] != event.kind:
                kinds.append(event.kind)
        return kinds

    def first_index(self, kind: EventKind, contains: str = "") -> int | None:
        for index, event in enumerate(self.events):
            if event.kind == kind and contains in event.text:
                return index
        return None

    def transcript(self) -> str:
        return "\n".join(self.console)


class QemuProcess:
    """One running QEMU; use as a context manager so it is killed on every exit path."""

    def __init__(self, argv: list[str], *, workdir: Path) -> None:
        self.console_path = workdir / "console.log"
        self.qmp_path = workdir / "qmp.sock"
        self.argv = [
            *argv,
            "-chardev",
            f"file,id=console,path={self.console_path}",
            "-serial",
            "chardev:console",
            "-qmp",
            f"unix:{self.qmp_path},server=on,wait=off",
        ]
        self.stderr_path = workdir / "qemu.stderr"
        self.process: subprocess.Popen[bytes] | None = None
        self.qmp: QmpClient | None = None

    def __enter__(self) -> QemuProcess:
        self.console_path.write_bytes(b"")
        with open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,
            )
        try:
            self.qmp = QmpClient(self.qmp_path)
        except Exception:
            self.kill()
            raise RuntimeError(f"QEMU did not start: {self.stderr_path.read_text().strip()}")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill()

    def kill(self) -> None:
        if self.qmp is not None:
            self.qmp.close()
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def console(self) -> bytes:
        return self.console_path.read_bytes()

    def wait(
        self,
        *,
        timeout: float,
        until: Callable[[list[str]], bool] | None = None,
        on_suspend: Callable[[QemuProcess], None] | None = None,
    ) -> BootResult:
        """Follow the console until QEMU exits, ``until(lines)`` is true, or the timeout."""
        assert self.process is not None and self.qmp is not None
        deadline = time.monotonic() + timeout
        handled_suspends = 0
        timed_out = False
        while True:
            lines = clean_console(self.console())
            if until is not None and until(lines):
                break
            if self.process.poll() is not None:
                break
            suspends = self.qmp.event_names().count("SUSPEND")
            if on_suspend is not None and suspends > handled_suspends:
                handled_suspends = suspends
                on_suspend(self)
            if time.monotonic() > deadline:
                timed_out = True
                break
            time.sleep(0.2)
        raw = self.console()
        lines = clean_console(raw)
        return BootResult(
            console=lines,
            events=console_events(lines),
            qmp_events=self.qmp.event_names(),
            exit_status=self.process.poll(),
            timed_out=timed_out,
            raw_console=raw,
        )
