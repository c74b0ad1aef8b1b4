"""The interface over every place firmware variables live, and an in-memory store."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from typing import Protocol

from switchos.errors import ExitCode, SwitchOSError

# UEFI 2.10, section 3.3: the vendor GUID of the globally defined variables.
EFI_GLOBAL_VARIABLE = uuid.UUID("8be4df61-93ca-11d2-aa0d-00e098032b8c")

# The vendor GUID of SwitchOS's own variables (SwitchOSStatus, SET_CORE_ACTION).
SWITCHOS_VENDOR = uuid.UUID("e21c66ed-bc2e-4d30-ac5e-1b968002c541")


class VariableAttribute(enum.IntFlag):
    """EFI_VARIABLE_* attribute bits (UEFI 2.10, section 8.2)."""

    NON_VOLATILE = 0x01
    BOOTSERVICE_ACCESS = 0x02
    RUNTIME_ACCESS = 0x04
    HARDWARE_ERROR_RECORD = 0x08
    AUTHENTICATED_WRITE_ACCESS = 0x10
    TIME_BASED_AUTHENTICATED_WRITE_ACCESS = 0x20
    APPEND_WRITE = 0x40
    ENHANCED_AUTHENTICATED_ACCESS = 0x80


# The attributes of Boot####, Driver####, BootOrder and DriverOrder.
BOOT_VARIABLE_ATTRIBUTES = (
    VariableAttribute.NON_VOLATILE
    | VariableAttribute.BOOTSERVICE_ACCESS
    | VariableAttribute.RUNTIME_ACCESS
)


@dataclass(frozen=True)
class Variable:
    """One firmware variable: its name, vendor GUID, attributes and data."""

    name: str
    vendor: uuid.UUID
    attributes: VariableAttribute
    data: bytes


class VariableStoreError(SwitchOSError):
    """Reading or writing a firmware variable failed."""


class VariableStoreFullError(VariableStoreError):
    """The variable store has no room left for the write (NVRAM full)."""


class VariableRejectedError(VariableStoreError):
    """The firmware rejected the variable's name, attributes or data."""


class VariableStoreReadOnlyError(VariableStoreError):
    """The variable store is mounted or opened read-only."""


class VariableAccessDeniedError(VariableStoreError):
    """The process lacks the right to change the variable (not root, or immutable)."""


class FirmwareVariableError(VariableStoreError):
    """The firmware reported an internal error while reading or writing."""


class VariableStoreUnavailableError(VariableStoreError):
    """The machine or file offers no UEFI variables at all (legacy BIOS, wrong path)."""

    exit_code = ExitCode.UNSUPPORTED_MACHINE


class VariableStore(Protocol):
    """Firmware variables of one machine, live (efivarfs, Windows) or offline (a file)."""

    def get(self, name: str, vendor: uuid.UUID = EFI_GLOBAL_VARIABLE) -> Variable | None:
        """Return the variable, or None when it does not exist."""
        ...

    def set(
        self,
        name: str,
        data: bytes,
        *,
        vendor: uuid.UUID = EFI_GLOBAL_VARIABLE,
        attributes: VariableAttribute = BOOT_VARIABLE_ATTRIBUTES,
    ) -> None:
        """Create or replace the variable."""
        ...

    def delete(self, name: str, vendor: uuid.UUID = EFI_GLOBAL_VARIABLE) -> None:
        """Delete the variable; deleting a missing variable is not an error."""
        ...

    def list(self) -> list[tuple[str, uuid.UUID]]:
        """Return the name and vendor GUID of every variable, sorted."""
        ...


class MemoryStore:
    """A variable store held in a dict, for unit tests of the boot order policy."""

    def __init__(self, variables: list[Variable] | None = None) -> None:
        self._variables: dict[tuple[str, uuid.UUID], Variable] = {}
        for variable in variables or []:
            self._variables[(variable.name, variable.vendor)] = variable

    def get(self, name: str, vendor: uuid.UUID = EFI_GLOBAL_VARIABLE) -> Variable | None:
        return self._variables.get((name, vendor))

    def set(
        self,
        name: str,
        data: bytes,
        *,
        vendor: uuid.UUID = EFI_GLOBAL_VARIABLE,
        attributes: VariableAttribute = BOOT_VARIABLE_ATTRIBUTES,
    ) -> None:
        self._variables[(name, vendor)] = Variable(name, vendor, VariableAttribute(attributes), bytes(data))

    def delete(self, name: str, vendor: uuid.UUID = EFI_GLOBAL_VARIABLE) -> None:
        self._variables.pop((name, vendor), None)

    def list(self) -> list[tuple[str, uuid.UUID]]:
        return sorted(self._variables, key=lambda key: (key[0], str(key[1])))
