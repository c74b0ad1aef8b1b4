"""Win32 helpers shared by the Windows adapters (firmware variables, suspend).

NOTE: this code runs only on Windows. The Linux machines that test SwitchOS
run the adapters above it against fakes of their Win32 calls instead.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

# winerror.h: AdjustTokenPrivileges succeeded but the token lacks the privilege.
ERROR_NOT_ALL_ASSIGNED = 1300

# winnt.h access rights and privilege attribute.
TOKEN_ADJUST_PRIVILEGES = 0x0020
TOKEN_QUERY = 0x0008
SE_PRIVILEGE_ENABLED = 0x00000002


class Win32Error(Exception):
    """A Win32 call failed with the given GetLastError() code."""

    def __init__(self, code: int) -> None:
        super().__init__(f"Windows error {code}")
        self.code = code


def enable_privilege(
    name: str, *, kernel32: Any, advapi32: Any, get_last_error: Callable[[], int]
) -> None:
    """Enable privilege ``name`` (such as SeShutdownPrivilege) in this process's token.

    ``kernel32`` and ``advapi32`` are ctypes WinDLL objects loaded with
    use_last_error=True. Raises Win32Error when a call fails or the token does
    not contain the privilege.
    """
    from ctypes import wintypes

    class Luid(ctypes.Structure):
        _fields_ = [("LowPart", wintypes.DWORD), ("HighPart", wintypes.LONG)]

    class TokenPrivileges(ctypes.Structure):
        # TOKEN_PRIVILEGES with room for one LUID_AND_ATTRIBUTES.
        _fields_ = [("PrivilegeCount", wintypes.DWORD), ("Luid", Luid), ("Attributes", wintypes.DWORD)]

    # Without declared types ctypes passes ints as 32-bit values, which
    # truncates handles on 64-bit Windows.
    kernel32.GetCurrentProcess.restype = wintypes.HANDLE
    kernel32.GetCurrentProcess.argtypes = []
    kernel32.CloseHandle.argtypes = [wintypes.HANDLE]
    advapi32.OpenProcessToken.restype = wintypes.BOOL
    advapi32.OpenProcessToken.argtypes = [wintypes.HANDLE, wintypes.DWORD, ctypes.POINTER(wintypes.HANDLE)]
    advapi32.LookupPrivilegeValueW.restype = wintypes.BOOL
    advapi32.AdjustTokenPrivileges.restype = wintypes.BOOL

    token = wintypes.HANDLE()
    process = kernel32.GetCurrentProcess()
    if not advapi32.OpenProcessToken(process, TOKEN_ADJUST_PRIVILEGES | TOKEN_QUERY, ctypes.byref(token)):
        raise Win32Error(get_last_error())
    try:
        luid = Luid()
        if not advapi32.LookupPrivilegeValueW(None, name, ctypes.byref(luid)):
            raise Win32Error(get_last_error())
        privileges = TokenPrivileges(1, luid, SE_PRIVILEGE_ENABLED)
        if not advapi32.AdjustTokenPrivileges(token, False, ctypes.byref(privileges), 0, None, None):
            raise Win32Error(get_last_error())
        # AdjustTokenPrivileges succeeds even when the token lacks the
        # privilege, and reports that through GetLastError.
        if get_last_error() == ERROR_NOT_ALL_ASSIGNED:
            raise Win32Error(ERROR_NOT_ALL_ASSIGNED)
    finally:
        kernel32.CloseHandle(token)
