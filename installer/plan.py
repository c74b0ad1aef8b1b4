"""Plans: ordered steps, each with a one-line description, an apply and an undo.

A step's ``apply`` returns the function that undoes it, or None when its
change is kept on rollback (a prepared snapshot disk, a repaired superblock).
The undo restores the state that apply found, not the one planning saw. Plans are rendered as text or JSON for ``--dry-run``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Undo = Callable[[], None]


@dataclass(frozen=True)
class Step:
    """One change to the target machine.

    ``action`` is a stable identifier (``place-payload``, ``create-entry``,
    ...), ``description`` one line for people and ``details`` the values a
    script reading ``--json`` needs.
    """

    action: str
    description: str
    apply: Callable[[], Undo | None] = field(compare=False, repr=False)
    details: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Plan:
    """The steps of one command, in the order they are applied.

    ``summary`` lists what discovery found and what was chosen, as lines.
    ``notes`` are facts the user should know that need no step (warnings).
    """

    command: str
    target: str
    steps: tuple[Step, ...]
    summary: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.steps

    def format_text(self) -> str:
        lines = [f"Plan for {self.command} on {self.target}:"]
        lines += [f"  {line}" for line in self.summary]
        if self.steps:
            lines.append("Steps:")
            lines += [f"  {index}. {step.description}" for index, step in enumerate(self.steps, 1)]
        else:
            lines.append("Steps: none, the machine is already in the requested state.")
        lines += [f"Note: {note}" for note in self.notes]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "target": self.target,
            "summary": list(self.summary),
            "steps": [
                {"action": step.action, "description": step.description, **step.details}
                for step in self.steps
            ],
            "notes": list(self.notes),
        }

    def format_json(self) -> str:
        return json.dumps(self.to_json(), indent=2)
