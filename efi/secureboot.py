"""Secure Boot state of a machine, and whether a payload can run under it."""

from __future__ import annotations

from dataclasses import dataclass

from switchos.boot_entries.store import EFI_GLOBAL_VARIABLE, VariableStore
from switchos.errors import SwitchOSError


class SecureBootError(SwitchOSError):
    """Secure Boot is enforcing and the payload carries no signature."""


@dataclass(frozen=True)
class SecureBootState:
    """The SecureBoot and SetupMode variables (UEFI 2.10, section 3.3); None when missing."""

    secure_boot: bool | None
    setup_mode: bool | None

    @property
    def enforcing(self) -> bool:
        """True when firmware verifies every image it loads.

        SecureBoot=1 with SetupMode=0 means a platform key is enrolled and
        image verification is on. In setup mode firmware loads unsigned images.
        """
        return bool(self.secure_boot) and not self.setup_mode

    def describe(self) -> str:
        if self.secure_boot is None:
            return "Secure Boot: not supported by this firmware (no SecureBoot variable)"
        if self.enforcing:
            return "Secure Boot: enabled"
        if self.setup_mode:
            return "Secure Boot: setup mode (no platform key, images are not verified)"
        return "Secure Boot: disabled"


def read_secure_boot_state(store: VariableStore) -> SecureBootState:
    """Read SecureBoot and SetupMode from ``store``; each is one byte, 1 meaning on."""
    return SecureBootState(
        secure_boot=_read_flag(store, "SecureBoot"),
        setup_mode=_read_flag(store, "SetupMode"),
    )


def _read_flag(store: VariableStore, name: str) -> bool | None:
    variable = store.get(name, EFI_GLOBAL_VARIABLE)
    if variable is None or not variable.data:
        return None
    return variable.data[0] == 1


def check_payload_bootable(state: SecureBootState, *, has_signature: bool) -> None:
    """Raise SecureBootError when firmware would refuse to load the payload.

    A signed payload passes even though its signature is not verified here:
    whether firmware trusts the signing key is known only when it loads it.
    """
    if state.enforcing and not has_signature:
        raise SecureBootError(
            "Secure Boot is enabled and the payload has no Authenticode signature, "
            "so firmware would refuse to load it",
            hint="either sign the payload (sbsign) and enroll the signing key in db or "
            "with shim's MOK list (mokutil --import), or disable Secure Boot in the "
            "firmware setup",
        )
