"""The SwitchOSStatus codec, against the text the stand-in payload publishes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchos.efi.status import (
    PayloadStatus,
    PendingCommand,
    StatusFormatError,
    format_load_options,
    parse_load_options,
)
from testbed import standin

# What the runtime-driver stand-in's GetVariable hook returns after a store
# command for slot 2 (see tests/testbed/standin/hooks.c).
RUNTIME_STATUS = (
    b"protocol=1\n"
    b"version=0.1.0\n"
    b"loaded-as=runtime-driver\n"
    b"options=store=partition:0f5e6a1c-1111-4222-8333-944455556666 chain=\\EFI\\systemd\\systemd-bootx64.efi\n"
    b"pending-action=1\n"
    b"pending-slot=2\n"
    b"pending-data=0100000002000000\n"
)


def test_status_known_vector():
    status = PayloadStatus.from_bytes(RUNTIME_STATUS)
    assert status == PayloadStatus(
        protocol=1,
        version="0.1.0",
        loaded_as="runtime-driver",
        options="store=partition:0f5e6a1c-1111-4222-8333-944455556666 chain=\\EFI\\systemd\\systemd-bootx64.efi",
        pending=PendingCommand(action=1, slot=2, data=bytes.fromhex("0100000002000000")),
    )
    assert status.to_bytes() == RUNTIME_STATUS


def test_status_of_driver_standin_has_no_pending_command():
    # The boot-service driver publishes only the base text; the builder's
    # status_text() is the stand-in's own description of that text.
    text = standin.status_text("driver", "store=partition").encode("ascii")
    status = PayloadStatus.from_bytes(text)
    assert status.protocol == 1
    assert status.loaded_as == "driver"
    assert status.pending is None
    assert status.load_options == {"store": "partition"}
    assert status.to_bytes() == text


def test_status_without_pending_command_reads_zero():
    status = PayloadStatus.from_bytes(b"protocol=1\npending-action=0\npending-slot=0\npending-data=\n")
    assert status.pending == PendingCommand(0, 0, b"")


def test_status_keeps_unknown_keys_in_order():
    data = b"protocol=1\nresumed-slot=1\nzeta=1\nalpha=two words\n"
    status = PayloadStatus.from_bytes(data)
    assert status.resumed_slot == 1
    assert status.extra == (("zeta", "1"), ("alpha", "two words"))
    assert status.to_bytes() == data


def test_status_reports_every_problem():
    data = b"version=1\nno equals sign\nprotocol=one\nversion=2\npending-slot=1\n"
    with pytest.raises(StatusFormatError) as caught:
        PayloadStatus.from_bytes(data)
    problems = caught.value.problems
    assert "line 2 'no equals sign' is not key=value" in problems
    assert "line 4: version appears a second time" in problems
    assert "protocol 'one' is not a decimal UINT32" in problems
    assert "pending-slot given without pending-action, pending-data" in problems
    assert caught.value.hint is not None


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "the protocol key is missing"),
        (b"protocol=1", "the last line does not end with a newline"),
        (b"protocol=1\n\xff\n", "byte 11 is not ASCII"),
        (b"protocol=4294967296\n", "protocol '4294967296' is not a decimal UINT32"),
        (b"protocol=1\npending-action=1\npending-slot=0\npending-data=0G\n", "pending-data '0G' is not hexadecimal"),
        (b"protocol=1\nOptions=x\n", "line 2 'Options=x' is not key=value"),
        (b"protocol=1\noptions=a\tb\n", "contains control characters"),
    ],
)
def test_status_rejects(data: bytes, problem: str):
    with pytest.raises(StatusFormatError, match=problem):
        PayloadStatus.from_bytes(data)


printable_value = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)


@settings(max_examples=150)
@given(
    protocol=st.integers(0, 0xFFFFFFFF),
    version=st.none() | printable_value,
    options=st.none() | printable_value,
    resumed=st.none() | st.integers(0, 2039),
    pending=st.none() | st.builds(PendingCommand, st.integers(0, 2), st.integers(0, 2039), st.binary(max_size=8)),
)
def test_status_round_trip(protocol, version, options, resumed, pending):
    status = PayloadStatus(protocol=protocol, version=version, options=options, resumed_slot=resumed, pending=pending)
    data = status.to_bytes()
    assert PayloadStatus.from_bytes(data) == status
    assert PayloadStatus.from_bytes(data).to_bytes() == data


@settings(max_examples=150)
@given(data=st.binary(max_size=64))
def test_status_parser_raises_only_its_error(data: bytes):
    try:
        PayloadStatus.from_bytes(data)
    except StatusFormatError:
        pass


def test_load_options_parse_and_format():
    text = "store=partition:0f5e6a1c-1111-4222-8333-944455556666 chain=\\EFI\\systemd\\systemd-bootx64.efi"
    options = parse_load_options(text)
    assert options == {
        "store": "partition:0f5e6a1c-1111-4222-8333-944455556666",
        "chain": "\\EFI\\systemd\\systemd-bootx64.efi",
    }
    assert format_load_options(options) == text
    assert parse_load_options("  a=1   a=2 flag ") == {"a": "2", "flag": ""}
    with pytest.raises(ValueError, match="contains a space"):
        format_load_options({"chain": "\\EFI\\my loader.efi"})
