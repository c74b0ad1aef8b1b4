"""Applying a plan: record each finished step, and undo them all when one fails."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from switchos.errors import ExitCode, SwitchOSError
from switchos.installer.plan import Plan, Step, Undo

log = logging.getLogger(__name__)


class RolledBackError(SwitchOSError):
    """A step failed and every finished step was undone; the machine is as it was."""

    exit_code = ExitCode.ROLLED_BACK


class RollbackFailedError(SwitchOSError):
    """A step failed and undoing the finished steps failed too."""


class PartlyRolledBackError(SwitchOSError):
    """A step failed; the undoable steps were undone, but a finished step cannot be undone.

    Such a step (erasing a disk to prepare the snapshot store) leaves the boot
    path alone, but the machine is not as it was, so the exit code is FAILURE.
    """


@dataclass(frozen=True)
class FinishedStep:
    """A step that applied, with its undo and how long it took in seconds.

    ``undo`` is None for a step whose change is kept on rollback, because it
    cannot be reverted and does not affect booting (a prepared snapshot disk).
    """

    step: Step
    undo: Undo | None
    seconds: float


@dataclass
class Journal:
    """The finished steps of one run, in order.

    ``on_step`` is called with each step before it starts, for progress output.
    """

    finished: list[FinishedStep] = field(default_factory=list)
    on_step: Callable[[int, Step], None] | None = None

    def apply(self, plan: Plan) -> None:
        """Apply every step of ``plan`` in order.

        When a step raises, the finished steps are undone in reverse order and
        RolledBackError names the failed step and the restored ones; when an
        undo raises as well, RollbackFailedError lists what is left changed.
        """
        for index, step in enumerate(plan.steps, 1):
            if self.on_step is not None:
                self.on_step(index, step)
            started = time.monotonic()
            try:
                undo = step.apply()
            except (SwitchOSError, OSError) as error:
                log.debug("step %r failed: %s", step.action, error)
                self._roll_back(step, error)
            self.finished.append(FinishedStep(step, undo, time.monotonic() - started))
            log.debug("step %r finished", step.action)

    def _roll_back(self, failed: Step, error: Exception) -> None:
        restored: list[str] = []
        kept: list[str] = []
        left: list[str] = []
        for finished in reversed(self.finished):
            if finished.undo is None:
                kept.append(finished.step.description)
                continue
            try:
                finished.undo()
            except (SwitchOSError, OSError) as undo_error:
                left.append(f"{finished.step.description} (undo failed: {undo_error})")
            else:
                restored.append(finished.step.description)
        reason = error.message if isinstance(error, SwitchOSError) else str(error)
        hint = error.hint if isinstance(error, SwitchOSError) else None
        message = f"step failed: {failed.description}: {reason}"
        if restored:
            message += "\nRestored:\n" + "\n".join(f"  - {line}" for line in restored)
        if kept:
            message += (
                "\nNot undone (the previous contents cannot be restored; the boot does not depend on them):\n"
                + "\n".join(f"  - {line}" for line in kept)
            )
        if left:
            message += "\nStill changed:\n" + "\n".join(f"  - {line}" for line in left)
            raise RollbackFailedError(
                message, hint=hint or "run 'switchos repair' or 'switchos uninstall' to finish"
            ) from error
        if kept:
            raise PartlyRolledBackError(message, hint=hint) from error
        raise RolledBackError(message, hint=hint) from error
