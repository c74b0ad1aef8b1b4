"""The Windows variable store: the firmware environment functions of kernel32.

``GetFirmwareEnvironmentVariableExW`` and ``SetFirmwareEnvironmentVariableExW``
read and write one variable; both need ``SeSystemEnvironmentPrivilege``
enabled in the process token, which only an elevated administrator has.

Windows documents no function that enumerates firmware variables. ``list()``
uses the undocumented ``NtEnumerateSystemEnvironmentValuesEx`` from ntdll,
because ``boot list`` must find Boot#### entries that no order variable
names. Its buffer is a chain of XVARIABLE_NAME records, the layout that
ntddsysenv.h documents for the matching IOCTL_SYSENV_ENUM_VARIABLES::

    0   ULONG  NextEntryOffset   bytes to the next record, 0 in the last one
    4   GUID   VendorGuid
    20  WCHAR  Name[]            UTF-16LE, ends with a 0x0000 code unit

The ctypes calls sit in ``Kernel32FirmwareApi``, a thin adapter without
logic. ``WindowsStore`` adds buffer sizing, parsing and error mapping. It
takes any object with the adapter's methods, so tests run it on Linux.
"""

from __future__ import annotations

import ctypes
import struct
import sys
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from switchos.boot_entries.store import (
    BOOT_VARIABLE_ATTRIBUTES,
    EFI_GLOBAL_VARIABLE,
    FirmwareVariableError,
    Variable,
    VariableAccessDeniedError,
    VariableAttribute,
    VariableRejectedError,
    VariableStoreError,
    VariableStoreFullError,
    VariableStoreReadOnlyError,
    VariableStoreUnavailableError,
)

from switchos.win32 import ERROR_NOT_ALL_ASSIGNED, Win32Error, enable_privilege

# Win32 error codes (winerror.h).
ERROR_INVALID_FUNCTION = 1
ERROR_ACCESS_DENIED = 5
ERROR_NOT_ENOUGH_MEMORY = 8
ERROR_INVALID_DATA = 13
ERROR_OUTOFMEMORY = 14
ERROR_WRITE_PROTECT = 19
ERROR_NOT_SUPPORTED = 50
ERROR_INVALID_PARAMETER = 87
ERROR_INSUFFICIENT_BUFFER = 122
ERROR_ENVVAR_NOT_FOUND = 203
ERROR_IO_DEVICE = 1117
ERROR_PRIVILEGE_NOT_HELD = 1314
ERROR_NO_SYSTEM_RESOURCES = 1450

# NTSTATUS values (ntstatus.h) that NtEnumerateSystemEnvironmentValuesEx returns.
STATUS_SUCCESS = 0x00000000
STATUS_NOT_IMPLEMENTED = 0xC0000002
STATUS_NO_MEMORY = 0xC0000017
STATUS_ACCESS_DENIED = 0xC0000022
STATUS_BUFFER_TOO_SMALL = 0xC0000023
STATUS_PRIVILEGE_NOT_HELD = 0xC0000061
STATUS_VARIABLE_NOT_FOUND = 0xC0000100

# SYSTEM_ENVIRONMENT_INFORMATION_CLASS: names and vendor GUIDs, no values.
SYSTEM_ENVIRONMENT_NAME_INFORMATION = 1

# NextEntryOffset (u32) and VendorGuid (16 bytes, EFI_GUID byte order).
VARIABLE_NAME_HEADER = struct.Struct("<I16s")

SE_SYSTEM_ENVIRONMENT_NAME = "SeSystemEnvironmentPrivilege"

# GetFirmwareEnvironmentVariableExW does not report the size it needs, so the
# store doubles its buffer from the first size up to the last.
FIRST_BUFFER_SIZE = 4 * 1024
MAX_BUFFER_SIZE = 4 * 1024 * 1024

_ADMINISTRATOR_HINT = "run switchos from an elevated prompt (Run as administrator)"

# The error class, cause and hint for each Win32 error code of the variable calls.
_WIN32_ERRORS: dict[int, tuple[type[VariableStoreError], str, str]] = {
    ERROR_INVALID_FUNCTION: (
        VariableStoreUnavailableError,
        "Windows booted in legacy BIOS mode and has no UEFI variables",
        "SwitchOS needs a machine that boots Windows in UEFI mode",
    ),
    ERROR_PRIVILEGE_NOT_HELD: (
        VariableAccessDeniedError,
        f"the process does not hold {SE_SYSTEM_ENVIRONMENT_NAME}",
        _ADMINISTRATOR_HINT,
    ),
    ERROR_NOT_ALL_ASSIGNED: (
        VariableAccessDeniedError,
        f"the user account does not have {SE_SYSTEM_ENVIRONMENT_NAME}",
        _ADMINISTRATOR_HINT,
    ),
    ERROR_ACCESS_DENIED: (VariableAccessDeniedError, "access denied", _ADMINISTRATOR_HINT),
    ERROR_NO_SYSTEM_RESOURCES: (
        VariableStoreFullError,
        "the firmware variable storage (NVRAM) is full",
        "delete unused boot entries (bcdedit /enum firmware lists them); some "
        "firmware frees the space of deleted variables only after a reboot",
    ),
    ERROR_NOT_ENOUGH_MEMORY: (
        VariableStoreFullError,
        "the firmware variable storage (NVRAM) or system memory is exhausted",
        "delete unused boot entries and retry after a reboot",
    ),
    ERROR_OUTOFMEMORY: (
        VariableStoreFullError,
        "the firmware variable storage (NVRAM) or system memory is exhausted",
        "delete unused boot entries and retry after a reboot",
    ),
    ERROR_INVALID_PARAMETER: (
        VariableRejectedError,
        "the firmware rejected the variable's name, attributes or data",
        "check the attributes; firmware rejects plain writes to authenticated variables",
    ),
    ERROR_INVALID_DATA: (
        VariableRejectedError,
        "the firmware rejected the variable's data",
        "check the data against the variable's format",
    ),
    ERROR_WRITE_PROTECT: (
        VariableStoreReadOnlyError,
        "the firmware reports the variable as write-protected",
        "check the firmware setup for a setting that locks boot entries",
    ),
    ERROR_NOT_SUPPORTED: (
        VariableStoreReadOnlyError,
        "the firmware does not support changing variables while Windows runs",
        "change boot entries in the firmware setup instead",
    ),
    ERROR_IO_DEVICE: (
        FirmwareVariableError,
        "the firmware reported a device error",
        "retry once; if it fails again, reboot and check for a firmware update",
    ),
}

# The error class, cause and hint for each NTSTATUS of the enumeration call.
_NTSTATUS_ERRORS: dict[int, tuple[type[VariableStoreError], str, str]] = {
    STATUS_NOT_IMPLEMENTED: _WIN32_ERRORS[ERROR_INVALID_FUNCTION],
    STATUS_PRIVILEGE_NOT_HELD: _WIN32_ERRORS[ERROR_PRIVILEGE_NOT_HELD],
    STATUS_ACCESS_DENIED: _WIN32_ERRORS[ERROR_ACCESS_DENIED],
    STATUS_NO_MEMORY: _WIN32_ERRORS[ERROR_NOT_ENOUGH_MEMORY],
}



class NtStatusError(Exception):
    """An ntdll call returned a failure NTSTATUS; ``length`` is the size it reported."""

    def __init__(self, status: int, length: int = 0) -> None:
        super().__init__(f"NTSTATUS 0x{status:08X}")
        self.status = status
        self.length = length


class FirmwareApi(Protocol):
    """The Windows calls WindowsStore makes; Kernel32FirmwareApi is the real one."""

    def enable_system_environment_privilege(self) -> None:
        """Enable SeSystemEnvironmentPrivilege in the process token; raise Win32Error."""
        ...

    def get_variable(self, name: str, vendor: str, size: int) -> tuple[bytes, int]:
        """Return (data, attributes) read into a buffer of ``size`` bytes; raise Win32Error."""
        ...

    def set_variable(self, name: str, vendor: str, data: bytes, attributes: int) -> None:
        """Write the variable, or delete it when ``data`` is empty; raise Win32Error."""
        ...

    def enumerate_variable_names(self, size: int) -> bytes:
        """Return the XVARIABLE_NAME chain read into ``size`` bytes; raise NtStatusError."""
        ...


class WindowsStore:
    """Firmware variables of the running Windows system.

    Creating the store enables SeSystemEnvironmentPrivilege, so an account
    without it fails here, before any change.
    """

    def __init__(self, api: FirmwareApi | None = None) -> None:
        self._api = api if api is not None else Kernel32FirmwareApi()
        try:
            self._api.enable_system_environment_privilege()
        except Win32Error as error:
            raise map_win32_error(error.code, action="enabling", variable=SE_SYSTEM_ENVIRONMENT_NAME) from error

    def get(self, name: str, vendor: uuid.UUID = EFI_GLOBAL_VARIABLE) -> Variable | None:
        """Return the variable, or None when it does not exist."""
        _check_name(name)
        size = FIRST_BUFFER_SIZE
        while True:
            try:
                data, attributes = self._api.get_variable(name, format_vendor(vendor), size)
            except Win32Error as error:
                if error.code == ERROR_ENVVAR_NOT_FOUND:
                    return None
                if error.code == ERROR_INSUFFICIENT_BUFFER and size < MAX_BUFFER_SIZE:
                    size *= 2
                    continue
                raise map_win32_error(error.code, action="reading", variable=name) from error
            return Variable(name, vendor, VariableAttribute(attributes), data)

    def set(
        self,
        name: str,
        data: bytes,
        *,
        vendor: uuid.UUID = EFI_GLOBAL_VARIABLE,
        attributes: VariableAttribute = BOOT_VARIABLE_ATTRIBUTES,
    ) -> None:
        """Create or replace the variable.

        Empty data is rejected, because SetFirmwareEnvironmentVariableExW
        deletes a variable written with size 0.
        """
        _check_name(name)
        if not data:
            raise VariableRejectedError(
                f"writing {name} failed: the data is empty",
                hint="delete the variable instead of writing it empty",
            )
        try:
            self._api.set_variable(name, format_vendor(vendor), bytes(data), int(attributes))
        except Win32Error as error:
            raise map_win32_error(error.code, action="writing", variable=name) from error

    def delete(self, name: str, vendor: uuid.UUID = EFI_GLOBAL_VARIABLE) -> None:
        """Delete the variable; deleting a missing variable is not an error."""
        _check_name(name)
        try:
            self._api.set_variable(name, format_vendor(vendor), b"", 0)
        except Win32Error as error:
            if error.code == ERROR_ENVVAR_NOT_FOUND:
                return
            raise map_win32_error(error.code, action="deleting", variable=name) from error

    def list(self) -> list[tuple[str, uuid.UUID]]:
        """Return the name and vendor GUID of every variable, sorted."""
        size = FIRST_BUFFER_SIZE
        while True:
            try:
                buffer = self._api.enumerate_variable_names(size)
            except NtStatusError as error:
                if error.status == STATUS_VARIABLE_NOT_FOUND:
                    return []
                if error.status == STATUS_BUFFER_TOO_SMALL and size < MAX_BUFFER_SIZE:
                    size = max(size * 2, error.length)
                    continue
                raise map_ntstatus(error.status) from error
            variables = parse_variable_names(buffer)
            return sorted(variables, key=lambda key: (key[0], str(key[1])))


def format_vendor(vendor: uuid.UUID) -> str:
    """Return the GUID text the Win32 functions expect: ``{XXXXXXXX-...}`` in braces."""
    return "{" + str(vendor).upper() + "}"


def parse_variable_names(buffer: bytes) -> list[tuple[str, uuid.UUID]]:
    """Parse a chain of XVARIABLE_NAME records into (name, vendor GUID) pairs.

    Raises FirmwareVariableError with the offset when a record runs past the
    buffer or its offset does not advance.
    """
    variables: list[tuple[str, uuid.UUID]] = []
    offset = 0
    while offset < len(buffer):
        if offset + VARIABLE_NAME_HEADER.size > len(buffer):
            raise _malformed_names(offset, "the record header runs past the end")
        next_offset, vendor_bytes = VARIABLE_NAME_HEADER.unpack_from(buffer, offset)
        end = offset + next_offset if next_offset else len(buffer)
        if end > len(buffer) or (next_offset and next_offset <= VARIABLE_NAME_HEADER.size):
            raise _malformed_names(offset, f"the next record offset {next_offset} is invalid")

        name_bytes = buffer[offset + VARIABLE_NAME_HEADER.size : end]
        terminator = _find_ucs2_nul(name_bytes)
        if terminator is None:
            raise _malformed_names(offset, "the name has no terminating NUL")
        name = name_bytes[:terminator].decode("utf-16-le", errors="replace")
        variables.append((name, uuid.UUID(bytes_le=vendor_bytes)))

        if not next_offset:
            break
        offset = end
    return variables


def map_win32_error(code: int, *, action: str, variable: str) -> VariableStoreError:
    """Return the VariableStoreError subclass for a Win32 error code."""
    known = _WIN32_ERRORS.get(code)
    if known is None:
        return FirmwareVariableError(
            f"{action} {variable} failed: Windows error {code}",
            hint="look the code up with: certutil -error " + str(code),
        )
    error_class, cause, hint = known
    return error_class(f"{action} {variable} failed: {cause}", hint=hint)


def map_ntstatus(status: int) -> VariableStoreError:
    """Return the VariableStoreError subclass for an NTSTATUS of the enumeration call."""
    known = _NTSTATUS_ERRORS.get(status)
    if known is None:
        return FirmwareVariableError(
            f"listing firmware variables failed: NTSTATUS 0x{status:08X}",
            hint="retry once; if it fails again, reboot and check for a firmware update",
        )
    error_class, cause, hint = known
    return error_class(f"listing firmware variables failed: {cause}", hint=hint)


def _check_name(name: str) -> None:
    if not name or "\0" in name:
        raise VariableRejectedError(f"invalid variable name {name!r}", hint="a variable name is non-empty")


def _find_ucs2_nul(data: bytes) -> int | None:
    for index in range(0, len(data) - 1, 2):
        if data[index] == 0 and data[index + 1] == 0:
            return index
    return None


def _malformed_names(offset: int, cause: str) -> FirmwareVariableError:
    return FirmwareVariableError(
        f"listing firmware variables failed: malformed variable name record at offset {offset}: {cause}",
        hint="report this with the Windows version; reading single variables still works",
    )


class Kernel32FirmwareApi:
    """The real FirmwareApi: ctypes calls into kernel32, advapi32 and ntdll, Windows only.

    NOTE: this class cannot run on the Linux machines that test SwitchOS; the
    tests run WindowsStore against a fake with the same methods instead.
    """

    # Declared here because type checkers on Linux treat the assignments
    # after the platform check in __init__ as unreachable.
    _wintypes: Any
    _kernel32: Any
    _advapi32: Any
    _ntdll: Any
    _get_last_error: Callable[[], int]

    def __init__(self) -> None:
        if sys.platform != "win32":
            raise VariableStoreUnavailableError(
                "the Windows firmware variable functions exist only on Windows",
                hint="on Linux, use the efivarfs store (--efivars PATH)",
            )
        from ctypes import wintypes

        self._wintypes = wintypes
        windll: Any = getattr(ctypes, "WinDLL")
        self._kernel32 = windll("kernel32", use_last_error=True)
        self._advapi32 = windll("advapi32", use_last_error=True)
        self._ntdll = windll("ntdll")
        self._get_last_error = getattr(ctypes, "get_last_error")
        self._declare_signatures()

    def _declare_signatures(self) -> None:
        # Without declared types ctypes passes ints as 32-bit values, which
        # truncates handles on 64-bit Windows. enable_privilege declares the
        # token calls it makes.
        wintypes = self._wintypes
        kernel32, ntdll = self._kernel32, self._ntdll
        kernel32.GetFirmwareEnvironmentVariableExW.restype = wintypes.DWORD
        kernel32.GetFirmwareEnvironmentVariableExW.argtypes = [
            wintypes.LPCWSTR, wintypes.LPCWSTR, ctypes.c_void_p, wintypes.DWORD, ctypes.POINTER(wintypes.DWORD)
        ]
        kernel32.SetFirmwareEnvironmentVariableExW.restype = wintypes.BOOL
        kernel32.SetFirmwareEnvironmentVariableExW.argtypes = [
            wintypes.LPCWSTR, wintypes.LPCWSTR, ctypes.c_void_p, wintypes.DWORD, wintypes.DWORD
        ]
        ntdll.NtEnumerateSystemEnvironmentValuesEx.restype = wintypes.LONG
        ntdll.NtEnumerateSystemEnvironmentValuesEx.argtypes = [
            wintypes.ULONG, ctypes.c_void_p, ctypes.POINTER(wintypes.ULONG)
        ]

    def enable_system_environment_privilege(self) -> None:
        enable_privilege(
            SE_SYSTEM_ENVIRONMENT_NAME,
            kernel32=self._kernel32,
            advapi32=self._advapi32,
            get_last_error=self._get_last_error,
        )

    def get_variable(self, name: str, vendor: str, size: int) -> tuple[bytes, int]:
        buffer = ctypes.create_string_buffer(size)
        attributes = self._wintypes.DWORD()
        length = self._kernel32.GetFirmwareEnvironmentVariableExW(
            name, vendor, buffer, size, ctypes.byref(attributes)
        )
        if length == 0:
            raise Win32Error(self._get_last_error())
        return buffer.raw[:length], int(attributes.value)

    def set_variable(self, name: str, vendor: str, data: bytes, attributes: int) -> None:
        buffer = ctypes.create_string_buffer(data, len(data)) if data else None
        if not self._kernel32.SetFirmwareEnvironmentVariableExW(name, vendor, buffer, len(data), attributes):
            raise Win32Error(self._get_last_error())

    def enumerate_variable_names(self, size: int) -> bytes:
        buffer = ctypes.create_string_buffer(size)
        length = self._wintypes.ULONG(size)
        status = self._ntdll.NtEnumerateSystemEnvironmentValuesEx(
            SYSTEM_ENVIRONMENT_NAME_INFORMATION, buffer, ctypes.byref(length)
        )
        status &= 0xFFFFFFFF
        if status != STATUS_SUCCESS:
            raise NtStatusError(status, int(length.value))
        return buffer.raw[: length.value]
