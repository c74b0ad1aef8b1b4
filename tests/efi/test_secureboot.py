"""Secure Boot state from a variable store, and the decision on unsigned payloads."""

from __future__ import annotations

import pytest

from switchos.boot_entries.store import EFI_GLOBAL_VARIABLE, MemoryStore, Variable, VariableAttribute
from switchos.efi.secureboot import (
    SecureBootError,
    SecureBootState,
    check_payload_bootable,
    read_secure_boot_state,
)

READ_ONLY = VariableAttribute.BOOTSERVICE_ACCESS | VariableAttribute.RUNTIME_ACCESS


def store_with(secure_boot: bytes | None, setup_mode: bytes | None) -> MemoryStore:
    variables = []
    if secure_boot is not None:
        variables.append(Variable("SecureBoot", EFI_GLOBAL_VARIABLE, READ_ONLY, secure_boot))
    if setup_mode is not None:
        variables.append(Variable("SetupMode", EFI_GLOBAL_VARIABLE, READ_ONLY, setup_mode))
    return MemoryStore(variables)


@pytest.mark.parametrize(
    ("secure_boot", "setup_mode", "enforcing", "text"),
    [
        (b"\x01", b"\x00", True, "Secure Boot: enabled"),
        (b"\x00", b"\x00", False, "Secure Boot: disabled"),
        (b"\x00", b"\x01", False, "Secure Boot: setup mode (no platform key, images are not verified)"),
        (None, None, False, "Secure Boot: not supported by this firmware (no SecureBoot variable)"),
    ],
)
def test_state_from_store(secure_boot: bytes | None, setup_mode: bytes | None, enforcing: bool, text: str) -> None:
    state = read_secure_boot_state(store_with(secure_boot, setup_mode))
    assert state.enforcing is enforcing
    assert state.describe() == text


def test_unsigned_payload_rejected_when_enforcing() -> None:
    state = read_secure_boot_state(store_with(b"\x01", b"\x00"))
    with pytest.raises(SecureBootError) as error:
        check_payload_bootable(state, has_signature=False)
    assert "no Authenticode signature" in error.value.message
    assert error.value.hint is not None
    assert "enroll the signing key" in error.value.hint
    assert "disable Secure Boot" in error.value.hint


def test_signed_payload_passes_when_enforcing() -> None:
    check_payload_bootable(SecureBootState(secure_boot=True, setup_mode=False), has_signature=True)


@pytest.mark.parametrize("state", [
    SecureBootState(secure_boot=False, setup_mode=False),
    SecureBootState(secure_boot=True, setup_mode=True),
    SecureBootState(secure_boot=None, setup_mode=None),
])
def test_unsigned_payload_passes_when_not_enforcing(state: SecureBootState) -> None:
    check_payload_bootable(state, has_signature=False)
