"""WindowsStore against a FAKE of the Win32 firmware calls.

The real functions (kernel32, advapi32, ntdll) exist only on Windows and
cannot run here. FakeFirmwareApi imitates their documented contracts: a
missing variable fails with ERROR_ENVVAR_NOT_FOUND, a small buffer with
ERROR_INSUFFICIENT_BUFFER, size 0 deletes, and the enumeration returns a
chain of XVARIABLE_NAME records or STATUS_BUFFER_TOO_SMALL with the size it
needs. These tests check WindowsStore's sizing, parsing and error mapping,
not Windows itself.
"""

from __future__ import annotations

import struct
import uuid

import pytest
from switchos.boot_entries import windows
from switchos.boot_entries.store import (
    EFI_GLOBAL_VARIABLE,
    SWITCHOS_VENDOR,
    FirmwareVariableError,
    VariableAccessDeniedError,
    VariableAttribute,
    VariableRejectedError,
    VariableStoreError,
    VariableStoreFullError,
    VariableStoreReadOnlyError,
    VariableStoreUnavailableError,
)
from switchos.boot_entries.windows import (
    NtStatusError,
    WindowsStore,
    format_vendor,
    parse_variable_names,
)

from switchos.win32 import Win32Error


def variable_name_record(name: str, vendor: uuid.UUID, *, last: bool) -> bytes:
    body = vendor.bytes_le + (name + "\0").encode("utf-16-le")
    padding = b"\0" * (-(4 + len(body)) % 8)
    next_offset = 0 if last else 4 + len(body) + len(padding)
    return struct.pack("<I", next_offset) + body + padding


class FakeFirmwareApi:
    """A FAKE of the Win32 firmware variable calls, holding variables in a dict."""

    def __init__(self) -> None:
        self.variables: dict[tuple[str, str], tuple[bytes, int]] = {}
        self.privilege_enabled = False
        self.privilege_error: int | None = None
        self.fail_with: int | None = None
        self.enumerate_status: int | None = None
        self.get_sizes: list[int] = []
        self.enumerate_sizes: list[int] = []

    def enable_system_environment_privilege(self) -> None:
        if self.privilege_error is not None:
            raise Win32Error(self.privilege_error)
        self.privilege_enabled = True

    def _check(self, vendor: str) -> None:
        assert self.privilege_enabled, "called before the privilege was enabled"
        assert vendor.startswith("{"), vendor
        assert vendor.endswith("}"), vendor
        if self.fail_with is not None:
            raise Win32Error(self.fail_with)

    def get_variable(self, name: str, vendor: str, size: int) -> tuple[bytes, int]:
        self._check(vendor)
        self.get_sizes.append(size)
        stored = self.variables.get((name, vendor.lower()))
        if stored is None:
            raise Win32Error(windows.ERROR_ENVVAR_NOT_FOUND)
        data, attributes = stored
        if len(data) > size:
            raise Win32Error(windows.ERROR_INSUFFICIENT_BUFFER)
        return data, attributes

    def set_variable(self, name: str, vendor: str, data: bytes, attributes: int) -> None:
        self._check(vendor)
        key = (name, vendor.lower())
        if not data:
            if key not in self.variables:
                raise Win32Error(windows.ERROR_ENVVAR_NOT_FOUND)
            del self.variables[key]
            return
        self.variables[key] = (data, attributes)

    def enumerate_variable_names(self, size: int) -> bytes:
        assert self.privilege_enabled
        self.enumerate_sizes.append(size)
        if self.enumerate_status is not None:
            raise NtStatusError(self.enumerate_status)
        keys = list(self.variables)
        if not keys:
            raise NtStatusError(windows.STATUS_VARIABLE_NOT_FOUND)
        buffer = b"".join(
            variable_name_record(name, uuid.UUID(vendor), last=index == len(keys) - 1)
            for index, (name, vendor) in enumerate(keys)
        )
        if len(buffer) > size:
            raise NtStatusError(windows.STATUS_BUFFER_TOO_SMALL, len(buffer))
        return buffer


@pytest.fixture
def api() -> FakeFirmwareApi:
    return FakeFirmwareApi()


def test_vendor_format_has_braces() -> None:
    assert format_vendor(EFI_GLOBAL_VARIABLE) == "{8BE4DF61-93CA-11D2-AA0D-00E098032B8C}"


def test_store_enables_privilege(api: FakeFirmwareApi) -> None:
    WindowsStore(api)

    assert api.privilege_enabled


@pytest.mark.parametrize("code", [windows.ERROR_NOT_ALL_ASSIGNED, windows.ERROR_PRIVILEGE_NOT_HELD])
def test_privilege_missing_raises(api: FakeFirmwareApi, code: int) -> None:
    api.privilege_error = code

    with pytest.raises(VariableAccessDeniedError) as raised:
        WindowsStore(api)

    assert "SeSystemEnvironmentPrivilege" in raised.value.message
    assert raised.value.hint is not None
    assert "Run as administrator" in raised.value.hint


def test_set_then_get(api: FakeFirmwareApi) -> None:
    store = WindowsStore(api)
    attributes = VariableAttribute.NON_VOLATILE | VariableAttribute.BOOTSERVICE_ACCESS

    store.set("SwitchOSStatus", b"\x01\x02", vendor=SWITCHOS_VENDOR, attributes=attributes)
    variable = store.get("SwitchOSStatus", SWITCHOS_VENDOR)

    assert variable is not None
    assert variable.name == "SwitchOSStatus"
    assert variable.vendor == SWITCHOS_VENDOR
    assert variable.attributes == attributes
    assert variable.data == b"\x01\x02"


def test_get_missing_returns_none(api: FakeFirmwareApi) -> None:
    assert WindowsStore(api).get("Boot0007") is None


def test_get_grows_buffer(api: FakeFirmwareApi) -> None:
    store = WindowsStore(api)
    store.set("Large", b"\x5a" * 20_000)

    variable = store.get("Large")

    assert variable is not None
    assert variable.data == b"\x5a" * 20_000
    assert api.get_sizes == [4096, 8192, 16384, 32768]


def test_get_too_large_raises(api: FakeFirmwareApi) -> None:
    store = WindowsStore(api)
    api.variables[("Huge", format_vendor(EFI_GLOBAL_VARIABLE).lower())] = (b"\0" * (windows.MAX_BUFFER_SIZE + 1), 7)

    with pytest.raises(FirmwareVariableError) as raised:
        store.get("Huge")

    assert "Windows error 122" in raised.value.message


def test_delete_and_delete_missing(api: FakeFirmwareApi) -> None:
    store = WindowsStore(api)
    store.set("Boot0003", b"x")

    store.delete("Boot0003")
    store.delete("Boot0003")

    assert store.get("Boot0003") is None


def test_empty_data_rejected(api: FakeFirmwareApi) -> None:
    with pytest.raises(VariableRejectedError):
        WindowsStore(api).set("Boot0003", b"")


def test_list_sorted(api: FakeFirmwareApi) -> None:
    store = WindowsStore(api)
    store.set("BootOrder", b"\x00\x00")
    store.set("Boot0000", b"x")
    store.set("SwitchOSStatus", b"y", vendor=SWITCHOS_VENDOR)

    assert store.list() == [
        ("Boot0000", EFI_GLOBAL_VARIABLE),
        ("BootOrder", EFI_GLOBAL_VARIABLE),
        ("SwitchOSStatus", SWITCHOS_VENDOR),
    ]


def test_list_grows_buffer_to_reported_size(api: FakeFirmwareApi) -> None:
    store = WindowsStore(api)
    for number in range(300):
        store.set(f"Boot{number:04X}", b"x")

    names = store.list()

    assert len(names) == 300
    assert api.enumerate_sizes[0] == windows.FIRST_BUFFER_SIZE
    assert len(api.enumerate_sizes) == 2
    assert api.enumerate_sizes[1] > 2 * windows.FIRST_BUFFER_SIZE


def test_list_empty(api: FakeFirmwareApi) -> None:
    assert WindowsStore(api).list() == []


def test_parse_names_rejects_bad_offset() -> None:
    record = bytearray(variable_name_record("Boot0000", EFI_GLOBAL_VARIABLE, last=True))
    struct.pack_into("<I", record, 0, 4)

    with pytest.raises(FirmwareVariableError) as raised:
        parse_variable_names(bytes(record))

    assert "offset 0" in raised.value.message


def test_parse_names_rejects_missing_nul() -> None:
    record = struct.pack("<I", 0) + EFI_GLOBAL_VARIABLE.bytes_le + "Boot".encode("utf-16-le")

    with pytest.raises(FirmwareVariableError) as raised:
        parse_variable_names(record)

    assert "terminating NUL" in raised.value.message


@pytest.mark.parametrize(
    ("code", "error_class", "cause"),
    [
        (windows.ERROR_INVALID_FUNCTION, VariableStoreUnavailableError, "legacy BIOS"),
        (windows.ERROR_PRIVILEGE_NOT_HELD, VariableAccessDeniedError, "SeSystemEnvironmentPrivilege"),
        (windows.ERROR_ACCESS_DENIED, VariableAccessDeniedError, "access denied"),
        (windows.ERROR_NO_SYSTEM_RESOURCES, VariableStoreFullError, "NVRAM"),
        (windows.ERROR_NOT_ENOUGH_MEMORY, VariableStoreFullError, "NVRAM"),
        (windows.ERROR_INVALID_PARAMETER, VariableRejectedError, "rejected"),
        (windows.ERROR_WRITE_PROTECT, VariableStoreReadOnlyError, "write-protected"),
        (windows.ERROR_IO_DEVICE, FirmwareVariableError, "device error"),
        (31, FirmwareVariableError, "Windows error 31"),
    ],
)
def test_write_error_mapping(
    api: FakeFirmwareApi, code: int, error_class: type[VariableStoreError], cause: str
) -> None:
    store = WindowsStore(api)
    api.fail_with = code

    with pytest.raises(error_class) as raised:
        store.set("Boot0005", b"x")

    assert type(raised.value) is error_class
    assert raised.value.message.startswith("writing Boot0005 failed: ")
    assert cause in raised.value.message
    assert raised.value.hint


def test_legacy_bios_exit_code(api: FakeFirmwareApi) -> None:
    store = WindowsStore(api)
    api.fail_with = windows.ERROR_INVALID_FUNCTION

    with pytest.raises(VariableStoreUnavailableError) as raised:
        store.get("BootOrder")

    assert raised.value.exit_code == 5


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (windows.STATUS_NOT_IMPLEMENTED, VariableStoreUnavailableError),
        (windows.STATUS_PRIVILEGE_NOT_HELD, VariableAccessDeniedError),
        (0xC0000001, FirmwareVariableError),
    ],
)
def test_list_error_mapping(api: FakeFirmwareApi, status: int, error_class: type[VariableStoreError]) -> None:
    store = WindowsStore(api)
    api.enumerate_status = status

    with pytest.raises(error_class) as raised:
        store.list()

    assert raised.value.message.startswith("listing firmware variables failed: ")


def test_real_api_unavailable_off_windows() -> None:
    with pytest.raises(VariableStoreUnavailableError) as raised:
        WindowsStore()

    assert "only on Windows" in raised.value.message
