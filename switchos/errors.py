"""The one exception hierarchy of SwitchOS, and the exit codes it maps to.

Library code raises these; only the command-line layer turns them into output
and an exit code.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Process exit codes of the ``switchos`` command, as documented in its help."""

    OK = 0
    FAILURE = 1
    INVALID_INPUT = 2
    NOTHING_TO_DO = 3
    USER_ABORT = 4
    UNSUPPORTED_MACHINE = 5
    ROLLED_BACK = 6


class SwitchOSError(Exception):
    """An error the user can act on: what failed, on which value, and what to do next.

    ``message`` states what failed and on which value; ``hint`` is the one thing
    to do next, or None.
    """

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\nhint: {self.hint}"
        return self.message


class InvalidInputError(SwitchOSError):
    """A flag, file or answer given by the user is invalid."""

    exit_code = ExitCode.INVALID_INPUT


class UnsupportedMachineError(SwitchOSError):
    """The machine cannot run SwitchOS as it is (no UEFI, no S3, no usable disk)."""

    exit_code = ExitCode.UNSUPPORTED_MACHINE


class UserAbortError(SwitchOSError):
    """The user declined a confirmation or interrupted a prompt."""

    exit_code = ExitCode.USER_ABORT


class ToolMissingError(SwitchOSError):
    """An external program is not installed."""


class CommandFailedError(SwitchOSError):
    """An external program exited with a non-zero status."""
