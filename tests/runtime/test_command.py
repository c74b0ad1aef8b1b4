"""The SET_CORE_ACTION codec: known vectors, round trips and rejected data."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchos.boot_entries.store import SWITCHOS_VENDOR, VariableAttribute
from switchos.efi.command import (
    COMMAND_ATTRIBUTES,
    COMMAND_VARIABLE,
    COMMAND_VENDOR,
    CommandFormatError,
    CoreAction,
    CoreCommand,
)

# Each vector spelled out byte by byte: action, then slot, both little-endian.
KNOWN_VECTORS = [
    (CoreCommand(CoreAction.NO_OP), "00 00 00 00"),
    (CoreCommand(CoreAction.STORE), "01 00 00 00"),
    (CoreCommand(CoreAction.SWITCH), "02 00 00 00"),
    (CoreCommand(CoreAction.NO_OP, 0), "00 00 00 00 00 00 00 00"),
    (CoreCommand(CoreAction.STORE, 1), "01 00 00 00 01 00 00 00"),
    (CoreCommand(CoreAction.SWITCH, 0x0302), "02 00 00 00 02 03 00 00"),
    (CoreCommand(CoreAction.STORE, 0xFFFFFFFF), "01 00 00 00 ff ff ff ff"),
]


@pytest.mark.parametrize(("command", "hex_bytes"), KNOWN_VECTORS)
def test_command_known_vector(command: CoreCommand, hex_bytes: str):
    expected = bytes.fromhex(hex_bytes)
    assert command.to_bytes() == expected
    assert CoreCommand.from_bytes(expected) == command


@pytest.mark.parametrize(("command", "hex_bytes"), KNOWN_VECTORS)
def test_command_decodes_like_int_from_bytes(command: CoreCommand, hex_bytes: str):
    # An independent reading of the same layout, without struct.
    data = bytes.fromhex(hex_bytes)
    assert int.from_bytes(data[:4], "little") == command.action
    slot = int.from_bytes(data[4:8], "little") if len(data) == 8 else None
    assert slot == command.slot


def test_command_protocol_follows_size():
    assert CoreCommand(CoreAction.STORE).protocol == 0
    assert CoreCommand(CoreAction.STORE, 3).protocol == 1


def test_command_variable_names_and_attributes():
    assert COMMAND_VARIABLE == "SET_CORE_ACTION"
    assert COMMAND_VENDOR == SWITCHOS_VENDOR
    assert str(COMMAND_VENDOR) == "e21c66ed-bc2e-4d30-ac5e-1b968002c541"
    assert int(COMMAND_ATTRIBUTES) == 0x6
    assert not COMMAND_ATTRIBUTES & VariableAttribute.NON_VOLATILE


@settings(max_examples=200)
@given(action=st.sampled_from(list(CoreAction)), slot=st.none() | st.integers(0, 0xFFFFFFFF))
def test_command_round_trip(action: CoreAction, slot: int | None):
    command = CoreCommand(action, slot)
    data = command.to_bytes()
    assert len(data) == (4 if slot is None else 8)
    assert CoreCommand.from_bytes(data) == command
    assert CoreCommand.from_bytes(data).to_bytes() == data


@settings(max_examples=200)
@given(data=st.binary(max_size=16))
def test_command_parser_raises_only_its_error(data: bytes):
    try:
        command = CoreCommand.from_bytes(data)
    except CommandFormatError:
        return
    assert command.to_bytes() == data


@pytest.mark.parametrize("size", [0, 1, 3, 5, 7, 9, 12])
def test_command_rejects_size(size: int):
    with pytest.raises(CommandFormatError, match=f"{size} bytes, expected 4 or 8"):
        CoreCommand.from_bytes(bytes(size))


@pytest.mark.parametrize("data", ["03000000", "ffffffff", "0300000001000000"])
def test_command_rejects_unknown_action(data: str):
    with pytest.raises(CommandFormatError, match="is unknown"):
        CoreCommand.from_bytes(bytes.fromhex(data))


def test_command_rejects_slot_beyond_uint32():
    with pytest.raises(CommandFormatError, match="does not fit a UINT32"):
        CoreCommand(CoreAction.STORE, 1 << 32).to_bytes()


def test_for_protocol_0_has_no_slot():
    assert CoreCommand.for_protocol(CoreAction.SWITCH, protocol=0, slot=None).to_bytes() == bytes.fromhex("02000000")
    with pytest.raises(CommandFormatError, match="protocol-0 payload takes no slot") as caught:
        CoreCommand.for_protocol(CoreAction.STORE, protocol=0, slot=1)
    assert caught.value.hint is not None


def test_for_protocol_1_needs_slot_for_store():
    assert CoreCommand.for_protocol(CoreAction.STORE, protocol=1, slot=2) == CoreCommand(CoreAction.STORE, 2)
    assert CoreCommand.for_protocol(CoreAction.NO_OP, protocol=1, slot=None) == CoreCommand(CoreAction.NO_OP, 0)
    with pytest.raises(CommandFormatError, match="needs a slot index"):
        CoreCommand.for_protocol(CoreAction.SWITCH, protocol=1, slot=None)


def test_for_protocol_rejects_newer_protocol():
    with pytest.raises(CommandFormatError, match="protocol 2 is newer") as caught:
        CoreCommand.for_protocol(CoreAction.STORE, protocol=2, slot=0)
    assert "update switchos" in (caught.value.hint or "")
