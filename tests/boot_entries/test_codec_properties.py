"""Property tests: generated valid data round-trips, and arbitrary bytes raise only CodecError.

One test also renders generated load options with efibootdump (efibootmgr
17, libefivar 37) and compares its text with ours.
"""

import struct
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from switchos.boot_entries.device_path import (
    MINIMUM_DATA_LENGTH,
    END_ENTIRE_NODE,
    END_INSTANCE_NODE,
    CodecError,
    DevicePath,
    DevicePathNode,
    MediaSubtype,
    NodeType,
    parse_device_path_list,
)
from switchos.boot_entries.load_option import LoadOption, LoadOptionAttribute, OptionalDataStyle, parse_lenient
from switchos.boot_entries.order import parse_order
from switchos.process import run

# Moderate counts, because the test machine is shared.
EXAMPLES = settings(max_examples=300, deadline=None)

KNOWN_KINDS = sorted(MINIMUM_DATA_LENGTH) + [
    (NodeType.MEDIA, MediaSubtype.FILE_PATH),
    (NodeType.MESSAGING, 0x18),  # URI, no minimum
    (NodeType.HARDWARE, 0x77),
    (0x42, 0x01),
]


@st.composite
def nodes(draw: st.DrawFn) -> DevicePathNode:
    """A node whose data is long enough for its kind; sometimes an End Instance node."""
    if draw(st.integers(0, 15)) == 0:
        return END_INSTANCE_NODE
    node_type, subtype = draw(st.sampled_from(KNOWN_KINDS))
    minimum = MINIMUM_DATA_LENGTH.get((node_type, subtype), 0)
    data = draw(st.binary(min_size=minimum, max_size=minimum + 48))
    if (node_type, subtype) == (NodeType.MEDIA, MediaSubtype.FILE_PATH) and len(data) % 2:
        data = data[:-1]
    return DevicePathNode(node_type, subtype, data)


device_paths = st.lists(nodes(), max_size=8).map(lambda items: DevicePath((*items, END_ENTIRE_NODE)))

# Descriptions: any UCS-2 code units except NUL, lone surrogates included.
descriptions = st.text(
    st.one_of(
        st.characters(min_codepoint=1, max_codepoint=0xFFFF, blacklist_categories=()),
        st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, blacklist_categories=()),
    ),
    max_size=40,
)

load_options = st.builds(
    LoadOption,
    attributes=st.integers(0, 0xFFFFFFFF).map(LoadOptionAttribute),
    description=descriptions,
    device_path=device_paths,
    optional_data=st.binary(max_size=64),
    extra_paths=st.lists(device_paths, max_size=2).map(tuple),
)


@EXAMPLES
@given(device_paths)
def test_device_path_round_trip(path: DevicePath) -> None:
    data = path.to_bytes()

    decoded = DevicePath.from_bytes(data)

    assert decoded == path
    assert decoded.to_bytes() == data
    assert isinstance(decoded.format(), str)


@EXAMPLES
@given(load_options)
def test_load_option_round_trip(option: LoadOption) -> None:
    data = option.to_bytes()

    decoded = LoadOption.from_bytes(data)

    # Adjacent surrogate code units decode as one character, so compare bytes.
    assert decoded.to_bytes() == data
    assert decoded.device_path == option.device_path
    assert decoded.optional_data == option.optional_data
    # Listings print this text, so it must encode whatever the firmware stored.
    decoded.format().encode("utf-8")


@st.composite
def node_soup(draw: st.DrawFn) -> bytes:
    """Bytes made of node headers with plausible and implausible lengths."""
    chunks = []
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.booleans()):
            chunks.append(draw(nodes()).to_bytes())
            continue
        node_type, subtype = draw(st.sampled_from(KNOWN_KINDS + [(0x7F, 0xFF), (0x7F, 0x01), (0, 0)]))
        data = draw(st.binary(max_size=48))
        length = draw(st.one_of(st.just(4 + len(data)), st.integers(0, 0xFFFF)))
        chunks.append(struct.pack("<BBH", node_type, subtype, length) + data)
    if draw(st.booleans()):
        return b"".join(chunks) + END_ENTIRE_NODE.to_bytes()
    return b"".join(chunks) + draw(st.binary(max_size=6))


@st.composite
def load_option_soup(draw: st.DrawFn) -> bytes:
    """A load option header and description followed by node soup, with a random path length."""
    description = draw(st.text(max_size=8)).replace("\0", "").encode("utf-16-le", "surrogatepass")
    body = draw(node_soup())
    length = draw(st.one_of(st.just(len(body)), st.integers(0, len(body)), st.integers(0, 0xFFFF)))
    attributes = draw(st.integers(0, 0xFFFFFFFF))
    raw = struct.pack("<IH", attributes, length) + description + b"\0\0" + body
    return raw[: draw(st.integers(0, len(raw)))] if draw(st.booleans()) else raw


@EXAMPLES
@given(st.one_of(st.binary(max_size=200), node_soup()))
def test_device_path_random_bytes(data: bytes) -> None:
    try:
        path = DevicePath.from_bytes(data)
    except CodecError:
        pass
    else:
        assert path.to_bytes() == data
        path.format()

    path, error = DevicePath.parse_lenient(data)
    path.format()
    assert error is None or isinstance(error, CodecError)

    try:
        paths = parse_device_path_list(data)
    except CodecError:
        pass
    else:
        assert b"".join(item.to_bytes() for item in paths) == data


@EXAMPLES
@given(st.one_of(st.binary(max_size=200), load_option_soup()))
def test_load_option_random_bytes(data: bytes) -> None:
    try:
        option = LoadOption.from_bytes(data)
    except CodecError:
        pass
    else:
        assert option.to_bytes() == data
        option.format()

    listing = parse_lenient(data)
    listing.format().encode("utf-8")
    assert (listing.error is None) == (listing.option is not None)


@EXAMPLES
@given(
    st.one_of(st.sampled_from(KNOWN_KINDS), st.tuples(st.integers(0, 0xFF), st.integers(0, 0xFF))),
    st.binary(max_size=80),
)
def test_any_node_formats(kind: tuple[int, int], data: bytes) -> None:
    # Listing renders nodes that a strict decode would reject, too short ones included.
    node_type, subtype = kind

    DevicePathNode(node_type, subtype, data).format().encode("utf-8")


@EXAMPLES
@given(st.binary(max_size=40))
def test_order_random_bytes(data: bytes) -> None:
    try:
        numbers = parse_order(data)
    except CodecError as error:
        assert error.offset == len(data) - 1
    else:
        assert len(numbers) * 2 == len(data)


# Node kinds whose text libefivar 37 (efibootdump here) prints like SwitchOS for
# any data. Left out, because libefivar 37 differs on purpose or by a bug:
# AcpiEx and BBS strings without NUL (it reads past the node), I2O (printed
# signed), InfiniBand, IPv4 and IPv6 (older text forms), USB WWID and file
# paths without NUL (it drops the last character), iSCSI and URI with
# non-ASCII bytes (printed raw, SwitchOS escapes them), SAS Ex (printed as
# "S"), DNS over IPv6 (16-bit groups read little-endian), unknown node types
# (rejected as invalid).
EFIBOOTDUMP_KINDS = [
    kind
    for kind in KNOWN_KINDS
    if kind[0] in (NodeType.HARDWARE, NodeType.ACPI, NodeType.MESSAGING, NodeType.MEDIA)
    and kind not in {(2, 2), (3, 6), (3, 9), (3, 12), (3, 13), (3, 16), (3, 19), (3, 22), (3, 24), (3, 31)}
    and kind not in {(4, 1), (4, 2), (4, 4)}
]
PRINTABLE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E, blacklist_characters="\\"), max_size=20)


@st.composite
def efibootdump_nodes(draw: st.DrawFn) -> DevicePathNode:
    """A node from the kinds above, or a HD, CDROM, file path or BBS node with fields libefivar 37 prints alike."""
    choice = draw(st.integers(0, 7))
    if choice == 0:
        # libefivar 37 prints the u32 partition number with %d, so keep it below 2**31.
        signature_type = draw(st.sampled_from([1, 2, 0]))
        data = struct.pack(
            "<IQQ16sBB",
            draw(st.integers(0, 2**31 - 1)),
            draw(st.integers(0, 2**64 - 1)),
            draw(st.integers(0, 2**64 - 1)),
            draw(st.binary(min_size=16, max_size=16)),
            draw(st.integers(0, 0xFF)),
            signature_type,
        )
        return DevicePathNode(4, 1, data)
    if choice == 1:
        data = struct.pack("<IQQ", draw(st.integers(0, 2**31 - 1)), draw(st.integers(0, 2**64 - 1)), draw(st.integers(0, 2**64 - 1)))
        return DevicePathNode(4, 2, data)
    if choice == 2:
        path = "\\" + draw(PRINTABLE.filter(lambda text: text != ""))
        return DevicePathNode(4, 4, (path + "\0").encode("utf-16-le"))
    if choice == 3:
        header = struct.pack("<HH", draw(st.integers(0, 0xFFFF)), draw(st.integers(0, 0xFFFF)))
        return DevicePathNode(5, 1, header + draw(PRINTABLE).encode("ascii") + b"\0")
    node_type, subtype = draw(st.sampled_from(EFIBOOTDUMP_KINDS))
    minimum = MINIMUM_DATA_LENGTH.get((node_type, subtype), 0)
    return DevicePathNode(node_type, subtype, draw(st.binary(min_size=minimum, max_size=minimum + 24)))


efibootdump_options = st.builds(
    LoadOption,
    attributes=st.sampled_from([LoadOptionAttribute.ACTIVE, LoadOptionAttribute(0), LoadOptionAttribute(0x109)]),
    description=PRINTABLE,
    device_path=st.lists(efibootdump_nodes(), min_size=1, max_size=5).map(lambda items: DevicePath((*items, END_ENTIRE_NODE))),
    optional_data=st.binary(max_size=40),
)


@settings(max_examples=15, deadline=None)
@given(st.lists(efibootdump_options, min_size=1, max_size=30))
def test_text_matches_efibootdump(tmp_path_factory, options: list[LoadOption]) -> None:  # type: ignore[no-untyped-def]
    folder: Path = tmp_path_factory.mktemp("efibootdump")
    files = []
    for index, option in enumerate(options):
        # efibootdump reads efivarfs files: 4 bytes of variable attributes, then the option.
        file = folder / f"Boot{index:04X}"
        file.write_bytes(struct.pack("<I", 7) + option.to_bytes())
        files.append(file)

    output = run(["efibootdump", *[argument for file in files for argument in ("--file", file)]])

    lines = output.stdout.decode("latin-1").split("\n")
    for file, option, line in zip(files, options, lines, strict=False):
        description = option.description + " " if option.description else ""
        # efibootdump prints byte 0x7F as "." where efibootmgr 17 prints it raw.
        optional = option.format_path(style=OptionalDataStyle.DOTTED).replace("\x7f", ".")
        expected = f"{file}: {'*' if option.active else ' '} {description}{optional}"
        assert line == expected
    assert len(lines) == len(options) + 1
