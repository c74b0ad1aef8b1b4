"""SwitchOSStatus: the volatile variable in which the payload reports that it ran.

The data is ASCII text of ``key=value`` lines, each ended by "\\n", without a
terminating NUL (docs/payload-contract.md lists the keys). The payload sets
the variable with BS|RT and without NV, so it exists only in a boot during
which the payload ran. A protocol-1 payload with runtime hooks serves the
variable from its GetVariable hook and appends the pending command:

    pending-action=<decimal action, 0 when none>
    pending-slot=<decimal slot index, 0 when none>
    pending-data=<the accepted SET_CORE_ACTION bytes as hex, empty when none>

The ``options=`` value repeats the load options the payload was started with,
which are ``key=value`` words separated by spaces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from switchos.boot_entries.store import SWITCHOS_VENDOR
from switchos.errors import SwitchOSError

STATUS_VARIABLE = "SwitchOSStatus"
STATUS_VENDOR = SWITCHOS_VENDOR

KEY_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]*")
DECIMAL_PATTERN = re.compile(r"[0-9]{1,10}")
HEX_PATTERN = re.compile(r"(?:[0-9A-Fa-f]{2})*")
UINT32_MAX = 0xFFFF_FFFF

# Keys with a field of their own, in the order to_bytes() writes them.
KNOWN_KEYS = (
    "protocol",
    "version",
    "loaded-as",
    "options",
    "resumed-slot",
    "pending-action",
    "pending-slot",
    "pending-data",
)
PENDING_KEYS = ("pending-action", "pending-slot", "pending-data")


class StatusFormatError(SwitchOSError):
    """SwitchOSStatus is not valid key=value text; ``problems`` lists every invalid line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(
            "invalid SwitchOSStatus: " + "; ".join(problems),
            hint="the payload that ran during this boot does not follow the payload contract; "
            "reinstall a payload built for this version of switchos",
        )
        self.problems = tuple(problems)


@dataclass(frozen=True)
class PendingCommand:
    """The command a payload's GetVariable hook reports as accepted; data is empty when none is."""

    action: int
    slot: int
    data: bytes


@dataclass(frozen=True)
class PayloadStatus:
    """The contents of SwitchOSStatus; ``extra`` keeps unknown keys in their order."""

    protocol: int
    version: str | None = None
    loaded_as: str | None = None
    options: str | None = None
    resumed_slot: int | None = None
    pending: PendingCommand | None = None
    extra: tuple[tuple[str, str], ...] = ()

    @property
    def load_options(self) -> dict[str, str]:
        """The ``options=`` words parsed as key=value pairs (empty when there are none)."""
        return parse_load_options(self.options or "")

    def to_bytes(self) -> bytes:
        """Return the variable data: the known keys in KNOWN_KEYS order, then ``extra``."""
        lines = [f"protocol={self.protocol}"]
        if self.version is not None:
            lines.append(f"version={self.version}")
        if self.loaded_as is not None:
            lines.append(f"loaded-as={self.loaded_as}")
        if self.options is not None:
            lines.append(f"options={self.options}")
        if self.resumed_slot is not None:
            lines.append(f"resumed-slot={self.resumed_slot}")
        if self.pending is not None:
            lines.append(f"pending-action={self.pending.action}")
            lines.append(f"pending-slot={self.pending.slot}")
            lines.append(f"pending-data={self.pending.data.hex().upper()}")
        lines.extend(f"{key}={value}" for key, value in self.extra)
        return "".join(line + "\n" for line in lines).encode("ascii")

    @classmethod
    def from_bytes(cls, data: bytes) -> PayloadStatus:
        """Parse the variable data; raise StatusFormatError listing every invalid line."""
        problems: list[str] = []
        values = _split_lines(data, problems)

        protocol = _parse_decimal(values, "protocol", problems)
        if "protocol" not in values:
            problems.append("the protocol key is missing")
        resumed_slot = _parse_decimal(values, "resumed-slot", problems)

        pending: PendingCommand | None = None
        present = [key for key in PENDING_KEYS if key in values]
        if present and len(present) != len(PENDING_KEYS):
            missing = ", ".join(key for key in PENDING_KEYS if key not in values)
            problems.append(f"{', '.join(present)} given without {missing}")
        elif present:
            action = _parse_decimal(values, "pending-action", problems)
            slot = _parse_decimal(values, "pending-slot", problems)
            raw = values["pending-data"]
            if not HEX_PATTERN.fullmatch(raw):
                problems.append(f"pending-data {raw!r} is not hexadecimal bytes")
            elif action is not None and slot is not None:
                pending = PendingCommand(action, slot, bytes.fromhex(raw))

        if problems:
            raise StatusFormatError(problems)
        assert protocol is not None
        return cls(
            protocol=protocol,
            version=values.get("version"),
            loaded_as=values.get("loaded-as"),
            options=values.get("options"),
            resumed_slot=resumed_slot,
            pending=pending,
            extra=tuple((key, value) for key, value in values.items() if key not in KNOWN_KEYS),
        )


def _split_lines(data: bytes, problems: list[str]) -> dict[str, str]:
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as error:
        problems.append(f"byte {error.start} is not ASCII")
        return {}
    if text and not text.endswith("\n"):
        problems.append("the last line does not end with a newline")
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        key, separator, value = line.partition("=")
        if not separator or not KEY_PATTERN.fullmatch(key):
            problems.append(f"line {number} {line!r} is not key=value")
            continue
        if not value.isprintable():
            problems.append(f"line {number}: the value of {key} contains control characters")
            continue
        if key in values:
            problems.append(f"line {number}: {key} appears a second time")
            continue
        values[key] = value
    return values


def _parse_decimal(values: dict[str, str], key: str, problems: list[str]) -> int | None:
    raw = values.get(key)
    if raw is None:
        return None
    if not DECIMAL_PATTERN.fullmatch(raw) or int(raw) > UINT32_MAX:
        problems.append(f"{key} {raw!r} is not a decimal UINT32")
        return None
    return int(raw)


def parse_load_options(text: str) -> dict[str, str]:
    """Split load options text into key=value words; words without "=" map to an empty value.

    A later word overrides an earlier one with the same key, as a payload
    reading the words in order would.
    """
    options: dict[str, str] = {}
    for word in text.split():
        key, _, value = word.partition("=")
        options[key] = value
    return options


def format_load_options(options: dict[str, str]) -> str:
    """Join key=value pairs into load options text; raise ValueError for spaces or "=" in a key."""
    words = []
    for key, value in options.items():
        if not key or "=" in key or any(character.isspace() for character in key + value):
            raise ValueError(f"load option {key}={value} contains a space or an invalid key")
        words.append(f"{key}={value}")
    return " ".join(words)
