"""The install record \\EFI\\SwitchOS\\install.json: what an install changed.

Uninstall and repair, on Linux or Windows, read it to know which variables
SwitchOS created and what the boot order was before. Format (version 1):

    {
      "format": 1,
      "installer_version": "0.1.0",
      "payload": {"sha256": "<hex>", "version": "1.4.0" or null},
      "entries": [{"variable": "Driver0003"}, {"variable": "Boot0007"}],
      "original_boot_order": [1, 0] or null,
      "original_driver_order": [] or null,
      "snapshot_store": {"partuuid": "<uuid>"} or null
    }

A null order means the variable did not exist before the install.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from switchos.efi.placement import PAYLOAD_DIR, EspFiles, write_file_atomic
from switchos.errors import SwitchOSError

RECORD_PATH = PAYLOAD_DIR / "install.json"
RECORD_FORMAT = 1

# Load option variable names: Boot####, Driver####, SysPrep#### with four
# uppercase hex digits (UEFI 2.10, section 3.3, "Globally Defined Variables").
ENTRY_NAME_PATTERN = re.compile(r"(Boot|Driver|SysPrep)[0-9A-F]{4}")
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")


class InstallRecordError(SwitchOSError):
    """install.json is missing fields or has invalid values."""


@dataclass(frozen=True)
class InstallRecord:
    """Changes made by one install; orders are tuples of load option numbers."""

    installer_version: str
    payload_sha256: str
    payload_version: str | None
    entries: tuple[str, ...]
    original_boot_order: tuple[int, ...] | None
    original_driver_order: tuple[int, ...] | None
    snapshot_store_partuuid: uuid.UUID | None

    def to_json(self) -> str:
        document = {
            "format": RECORD_FORMAT,
            "installer_version": self.installer_version,
            "payload": {"sha256": self.payload_sha256, "version": self.payload_version},
            "entries": [{"variable": name} for name in self.entries],
            "original_boot_order": _order_to_json(self.original_boot_order),
            "original_driver_order": _order_to_json(self.original_driver_order),
            "snapshot_store": (
                {"partuuid": str(self.snapshot_store_partuuid)}
                if self.snapshot_store_partuuid
                else None
            ),
        }
        return json.dumps(document, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> InstallRecord:
        """Parse and validate a record; raise InstallRecordError listing every problem."""
        try:
            document = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InstallRecordError(f"install record is not valid JSON: {error}") from None
        if not isinstance(document, dict):
            raise InstallRecordError("install record is not a JSON object")
        problems: list[str] = []
        if document.get("format") != RECORD_FORMAT:
            problems.append(
                f"format is {document.get('format')!r}; this installer reads format {RECORD_FORMAT}"
            )
        installer_version = document.get("installer_version")
        if not isinstance(installer_version, str) or not installer_version:
            problems.append("installer_version is missing or not a string")

        payload = document.get("payload")
        sha256: Any = None
        version: Any = None
        if not isinstance(payload, dict):
            problems.append("payload is missing or not an object")
        else:
            sha256 = payload.get("sha256")
            version = payload.get("version")
            if not isinstance(sha256, str) or not SHA256_PATTERN.fullmatch(sha256):
                problems.append("payload.sha256 is not 64 lowercase hexadecimal digits")
            if version is not None and not isinstance(version, str):
                problems.append("payload.version is neither a string nor null")

        entries = _parse_entries(document.get("entries"), problems)
        boot_order = _parse_order(document, "original_boot_order", problems)
        driver_order = _parse_order(document, "original_driver_order", problems)
        store = _parse_store(document.get("snapshot_store"), problems)
        if problems or not isinstance(installer_version, str):
            raise InstallRecordError(
                "install record is invalid: " + "; ".join(problems),
                hint="repair cannot trust this record; reinstall to write a new one",
            )
        return cls(
            installer_version=installer_version,
            payload_sha256=sha256,
            payload_version=version,
            entries=entries,
            original_boot_order=boot_order,
            original_driver_order=driver_order,
            snapshot_store_partuuid=store,
        )


def _order_to_json(order: tuple[int, ...] | None) -> list[int] | None:
    return None if order is None else list(order)


def _parse_entries(value: Any, problems: list[str]) -> tuple[str, ...]:
    if not isinstance(value, list):
        problems.append("entries is missing or not a list")
        return ()
    names = []
    for index, item in enumerate(value):
        name = item.get("variable") if isinstance(item, dict) else None
        if not isinstance(name, str) or not ENTRY_NAME_PATTERN.fullmatch(name):
            problems.append(f"entries[{index}] is not a Boot####, Driver#### or SysPrep#### name")
        else:
            names.append(name)
    return tuple(names)


def _parse_order(document: dict[str, Any], key: str, problems: list[str]) -> tuple[int, ...] | None:
    if key not in document:
        problems.append(f"{key} is missing")
        return None
    value = document[key]
    if value is None:
        return None
    if not isinstance(value, list) or not all(
        isinstance(item, int) and not isinstance(item, bool) and 0 <= item <= 0xFFFF
        for item in value
    ):
        problems.append(f"{key} is not a list of numbers from 0 to 65535")
        return None
    return tuple(value)


def _parse_store(value: Any, problems: list[str]) -> uuid.UUID | None:
    if value is None:
        return None
    partuuid = value.get("partuuid") if isinstance(value, dict) else None
    try:
        return uuid.UUID(partuuid)
    except (TypeError, ValueError, AttributeError):
        problems.append("snapshot_store.partuuid is not a UUID")
        return None


def write_install_record(esp: EspFiles, record: InstallRecord) -> bool:
    """Write the record atomically; return False when the same record is already there."""
    esp.make_dirs(PAYLOAD_DIR)
    changed = write_file_atomic(esp, RECORD_PATH, record.to_json().encode())
    if changed:
        esp.check()
    return changed


def read_install_record(esp: EspFiles) -> InstallRecord | None:
    """Return the record on the ESP, None when there is none; raise InstallRecordError when invalid."""
    data = esp.read_bytes(RECORD_PATH)
    return None if data is None else InstallRecord.from_json(data)
