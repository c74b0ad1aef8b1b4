"""Trial boots: register the payload for the next boot only, promote it once it ran.

The marker \\EFI\\SwitchOS\\trial.json names the entry on trial and the Linux
boot id at install time (null offline). ``switchos status`` in a later boot
promotes the entry when SwitchOSStatus shows the payload ran, and withdraws
it when it did not. An application on trial is started through BootNext,
which the firmware clears after one boot. Firmware has no DriverNext, so a
driver on trial is listed in DriverOrder and withdrawn by status when it did
not run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from switchos.efi.placement import PAYLOAD_DIR
from switchos.installer.model import Target, TargetMode

TRIAL_PATH = PAYLOAD_DIR / "trial.json"


@dataclass(frozen=True)
class TrialMarker:
    """The entry on trial (``Boot0004``) and the boot id of the boot that set it up."""

    entry: str
    boot_id: str | None

    def to_json(self) -> str:
        return json.dumps({"entry": self.entry, "boot_id": self.boot_id}) + "\n"

    @classmethod
    def from_json(cls, data: bytes) -> TrialMarker | None:
        """Parse a marker; None when it is unreadable (then status ignores it)."""
        try:
            document = json.loads(data)
            entry = document["entry"]
            boot_id = document.get("boot_id")
        except (ValueError, KeyError, TypeError):
            return None
        if not isinstance(entry, str) or not (boot_id is None or isinstance(boot_id, str)):
            return None
        return cls(entry, boot_id)


def read_boot_id(target: Target) -> str | None:
    """Return the running kernel's boot id (changes at every boot), None offline or when unreadable."""
    if target.mode is TargetMode.OFFLINE:
        return None
    try:
        return (target.roots.proc / "sys" / "kernel" / "random" / "boot_id").read_text().strip()
    except OSError:
        return None


def read_trial(target: Target) -> TrialMarker | None:
    data = target.esp_files.read_bytes(TRIAL_PATH)
    return None if data is None else TrialMarker.from_json(data)
