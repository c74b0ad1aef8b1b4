"""The command the OS sends to the payload: the volatile variable SET_CORE_ACTION.

The data is little-endian and comes in two sizes (docs/payload-contract.md):

    protocol 0   offset 0  UINT32 action      4 bytes
    protocol 1   offset 0  UINT32 action      8 bytes
                 offset 4  UINT32 slot index

The variable is written with BS|RT and never NV, because the payload takes
the write in its SetVariable hook and the command must not reach NVRAM.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from switchos.boot_entries.store import SWITCHOS_VENDOR, VariableAttribute
from switchos.errors import InvalidInputError

COMMAND_VARIABLE = "SET_CORE_ACTION"
COMMAND_VENDOR = SWITCHOS_VENDOR
COMMAND_ATTRIBUTES = VariableAttribute.BOOTSERVICE_ACCESS | VariableAttribute.RUNTIME_ACCESS

PROTOCOL_0_FORMAT = "<I"
PROTOCOL_1_FORMAT = "<II"
PROTOCOL_0_SIZE = struct.calcsize(PROTOCOL_0_FORMAT)
PROTOCOL_1_SIZE = struct.calcsize(PROTOCOL_1_FORMAT)

# The newest command layout this program writes.
MAX_PROTOCOL = 1
UINT32_MAX = 0xFFFF_FFFF


class CoreAction(enum.IntEnum):
    """The payload's task at the next S3 suspend."""

    NO_OP = 0
    STORE = 1
    SWITCH = 2

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


class CommandFormatError(InvalidInputError):
    """SET_CORE_ACTION data has the wrong size, an unknown action or a slot out of range."""


@dataclass(frozen=True)
class CoreCommand:
    """One SET_CORE_ACTION value; ``slot`` is None in the 4-byte protocol-0 layout."""

    action: CoreAction
    slot: int | None = None

    @property
    def protocol(self) -> int:
        """The oldest protocol whose layout carries this command."""
        return 0 if self.slot is None else 1

    def to_bytes(self) -> bytes:
        """Return the variable data: 4 bytes without a slot, 8 bytes with one."""
        if self.slot is None:
            return struct.pack(PROTOCOL_0_FORMAT, int(self.action))
        if not 0 <= self.slot <= UINT32_MAX:
            raise CommandFormatError(f"slot index {self.slot} does not fit a UINT32")
        return struct.pack(PROTOCOL_1_FORMAT, int(self.action), self.slot)

    @classmethod
    def from_bytes(cls, data: bytes) -> CoreCommand:
        """Parse variable data; raise CommandFormatError for any size but 4 or 8 or an unknown action."""
        if len(data) == PROTOCOL_0_SIZE:
            (action,) = struct.unpack(PROTOCOL_0_FORMAT, data)
            slot = None
        elif len(data) == PROTOCOL_1_SIZE:
            action, slot = struct.unpack(PROTOCOL_1_FORMAT, data)
        else:
            raise CommandFormatError(
                f"SET_CORE_ACTION data is {len(data)} bytes, expected {PROTOCOL_0_SIZE} or {PROTOCOL_1_SIZE}"
            )
        if action not in CoreAction._value2member_map_:
            known = ", ".join(f"{member.value} ({member.label})" for member in CoreAction)
            raise CommandFormatError(f"SET_CORE_ACTION action {action} is unknown, expected {known}")
        return cls(CoreAction(action), slot)

    @classmethod
    def for_protocol(cls, action: CoreAction, *, protocol: int, slot: int | None) -> CoreCommand:
        """Build the command in the layout of ``protocol``.

        Protocol 0 has no slot field, so a slot there raises
        CommandFormatError; protocol 1 needs one for store and switch.
        """
        if protocol == 0:
            if slot is not None:
                raise CommandFormatError(
                    f"a protocol-0 payload takes no slot index, but slot {slot} was given",
                    hint="leave out --slot: the upstream payload chooses the place itself",
                )
            return cls(action)
        if not 1 <= protocol <= MAX_PROTOCOL:
            raise CommandFormatError(
                f"payload protocol {protocol} is newer than this program, which speaks 0 to {MAX_PROTOCOL}",
                hint="update switchos to the version that came with the payload",
            )
        if slot is None:
            if action is not CoreAction.NO_OP:
                raise CommandFormatError(f"the {action.label} command of protocol {protocol} needs a slot index")
            slot = 0
        return cls(action, slot)
