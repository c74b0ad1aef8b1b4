"""Yes/no confirmations of the commands that change a disk or a slot, with --yes for scripts."""

from __future__ import annotations

import sys

import click

from switchos.errors import InvalidInputError, UserAbortError


def stdin_is_terminal() -> bool:
    """Return whether standard input is a terminal that can answer a question."""
    return sys.stdin.isatty()


def confirm_change(question: str, *, yes: bool, action: str) -> None:
    """Ask ``question`` unless ``yes``; raise when it cannot be asked or the user declines.

    ``action`` names the change in the messages ("delete the snapshot").
    Raises InvalidInputError without a terminal on standard input, so that a
    script learns to pass --yes, and UserAbortError on no, end of input or Ctrl-C.
    """
    if yes:
        return
    if not stdin_is_terminal():
        raise InvalidInputError(
            f"cannot ask whether to {action}: standard input is not a terminal",
            hint=f"pass --yes to {action} without the question",
        )
    try:
        accepted = click.confirm(question, default=False, err=True)
    except click.Abort:
        accepted = False
    if not accepted:
        raise UserAbortError(f"did not {action}; nothing was changed")
