"""Install options, from command-line flags and an answers file (``--config answers.toml``).

The answers file uses the flag names with ``_`` or ``-`` as keys, including
the target flags (``image``, ``vars``, ``snapshot-image``, ``esp-partition``,
``esp-path``), for example::

    payload = "/srv/switchos/switchos-x64.efi"
    snapshot_disk = "/dev/nvme1n1"
    layout = "new-table"
    slots = 2
    wipe = true

A flag given on the command line wins over the same key in the file.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from switchos.errors import InvalidInputError
from switchos.partition.layout import LayoutKind
from switchos.partition.memory import DEFAULT_SLOT_COUNT, parse_memory_size


@dataclass(frozen=True)
class InstallOptions:
    """Every choice an install can take from flags or the answers file; None means "decide"."""

    payload: Path | None = None
    payload_url: str | None = None
    payload_sha256: str | None = None
    channel: str | None = None
    snapshot_disk: str | None = None
    no_snapshot_disk: bool = False
    layout: LayoutKind | None = None
    partition: int | None = None
    slots: int = DEFAULT_SLOT_COUNT
    memory: int | None = None
    wipe: bool = False
    trial_boot: bool = False
    upstream_payload: bool = False


# Keys of the answers file that choose the target, as the flags of the same names do.
TARGET_KEYS = ("image", "vars", "snapshot_image", "esp_partition", "esp_path")

# Keys of the answers file and the type each value must have.
_ANSWER_TYPES: dict[str, type | tuple[type, ...]] = {
    "image": str,
    "vars": str,
    "snapshot_image": str,
    "esp_partition": int,
    "esp_path": str,
    "payload": str,
    "payload_url": str,
    "payload_sha256": str,
    "channel": str,
    "snapshot_disk": str,
    "no_snapshot_disk": bool,
    "layout": str,
    "partition": int,
    "slots": int,
    "memory": (str, int),
    "wipe": bool,
    "trial_boot": bool,
    "upstream_payload": bool,
}


def parse_layout(value: str) -> LayoutKind:
    try:
        return LayoutKind(value)
    except ValueError:
        choices = ", ".join(kind.value for kind in LayoutKind)
        raise InvalidInputError(f"invalid layout {value!r}", hint=f"choose one of: {choices}") from None


def answer_keys() -> list[str]:
    """Return the keys an answers file accepts, spelled as the flags are."""
    return sorted(key.replace("_", "-") for key in _ANSWER_TYPES)


def read_answers(path: Path) -> dict[str, Any]:
    """Read and check an answers file; raise InvalidInputError listing every problem."""
    try:
        document = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidInputError(f"answers file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise InvalidInputError(f"answers file {path} is not valid TOML: {error}") from None
    answers: dict[str, Any] = {}
    problems: list[str] = []
    for raw_key, value in document.items():
        key = raw_key.replace("-", "_")
        expected = _ANSWER_TYPES.get(key)
        if expected is None:
            problems.append(f"unknown key {raw_key!r}")
        elif not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            problems.append(f"{raw_key} has the wrong type ({type(value).__name__})")
        else:
            answers[key] = value
    if problems:
        known = ", ".join(answer_keys())
        raise InvalidInputError(
            f"answers file {path} is invalid: " + "; ".join(problems), hint=f"known keys: {known}"
        )
    return answers


def merge_options(flags: dict[str, Any], answers: dict[str, Any]) -> InstallOptions:
    """Combine flag values (None when not given) with answers; flags win."""
    merged: dict[str, Any] = {}
    for field in dataclasses.fields(InstallOptions):
        value = flags.get(field.name)
        if value is None or value is False:
            value = answers.get(field.name, value)
        if value is not None:
            merged[field.name] = value
    if "payload" in merged:
        merged["payload"] = Path(merged["payload"])
    if isinstance(merged.get("layout"), str):
        merged["layout"] = parse_layout(merged["layout"])
    if isinstance(merged.get("memory"), str):
        merged["memory"] = parse_memory_size(merged["memory"])
    slots = merged.get("slots", DEFAULT_SLOT_COUNT)
    if slots < 1:
        raise InvalidInputError(f"invalid slot count {slots}", hint="use at least one slot")
    return InstallOptions(**merged)
