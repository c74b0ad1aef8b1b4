"""Boot order policy over an in-memory variable store."""

import uuid

import pytest

from switchos.boot_entries.device_path import DevicePath, make_file_path
from switchos.boot_entries.load_option import LoadOption, LoadOptionAttribute
from switchos.boot_entries.order import (
    OptionKind,
    OrderError,
    add_entry_first,
    check_consistency,
    clear_boot_next,
    create_entry,
    delete_entry,
    find_entries,
    find_entry,
    find_free_number,
    format_order,
    insert_first,
    list_entries,
    normalize_file_path,
    parse_order,
    read_boot_next,
    read_entry,
    read_order,
    remove_from_order,
    set_boot_next,
)
from switchos.boot_entries.store import (
    BOOT_VARIABLE_ATTRIBUTES,
    EFI_GLOBAL_VARIABLE,
    SWITCHOS_VENDOR,
    MemoryStore,
    Variable,
    VariableAttribute,
    VariableStoreError,
)

ESP = uuid.UUID("0fb9ad40-8d43-46cd-b3c3-9128bbd8a4b2")
OTHER_ESP = uuid.UUID("224f8a1d-57e8-4410-b238-c4b712f217e0")
PAYLOAD = "\\EFI\\switchos\\snapshotter.efi"
BOOT = OptionKind.BOOT
DRIVER = OptionKind.DRIVER


def option(description: str, guid: uuid.UUID = ESP, path: str = PAYLOAD) -> LoadOption:
    return LoadOption(LoadOptionAttribute.ACTIVE, description, make_file_path(1, 2048, 1048576, guid, path))


def firmware_option(description: str) -> LoadOption:
    bbs = DevicePath.from_bytes(bytes.fromhex("050109000200000000" + "7fff0400"))
    return LoadOption(LoadOptionAttribute.ACTIVE, description, bbs, b"RC")


def store_with(entries: dict[int, LoadOption], order: list[int] | None, kind: OptionKind = BOOT) -> MemoryStore:
    store = MemoryStore()
    for number, entry in entries.items():
        store.set(kind.variable_name(number), entry.to_bytes())
    if order is not None:
        store.set(kind.order_variable, format_order(order))
    return store


def test_variable_names_uppercase_hex() -> None:
    assert BOOT.variable_name(0x1A) == "Boot001A"
    assert DRIVER.variable_name(0xBEEF) == "DriverBEEF"
    assert BOOT.order_variable == "BootOrder"
    assert DRIVER.order_variable == "DriverOrder"


@pytest.mark.parametrize(
    ("name", "number"),
    [("Boot001A", 0x1A), ("Boot001a", 0x1A), ("Boot001_BbsIndex", None), ("BootOrder", None), ("Boot01A", None), ("Driver0001", None)],
)
def test_parse_variable_name(name: str, number: int | None) -> None:
    assert BOOT.parse_variable_name(name) == number


def test_parse_and_format_order() -> None:
    data = bytes.fromhex("01000b0005000d00")

    assert parse_order(data) == (1, 0xB, 5, 0xD)
    assert format_order([1, 0xB, 5, 0xD]) == data


def test_odd_order_raises_with_offset() -> None:
    with pytest.raises(OrderError) as caught:
        parse_order(b"\x01\x00\x02", name="DriverOrder")

    assert caught.value.offset == 2
    assert "DriverOrder" in caught.value.message


def test_read_order_absent_is_empty() -> None:
    assert read_order(MemoryStore(), BOOT) == ()


def test_list_entries_ignores_other_names_and_vendors() -> None:
    store = store_with({3: option("a"), 1: option("b")}, [1])
    store.set("Boot001_BbsIndex", b"\0")
    store.set("Boot0009", b"\0", vendor=SWITCHOS_VENDOR)
    store.set("Driver0002", option("driver").to_bytes())

    assert list_entries(store, BOOT) == (1, 3)
    assert list_entries(store, DRIVER) == (2,)


def test_find_free_number_skips_entries_and_dangling_order() -> None:
    store = store_with({0: option("a"), 1: option("b")}, [2, 1, 0])

    assert find_free_number(store, BOOT) == 3


def test_find_free_number_fills_gap() -> None:
    store = store_with({0: option("a"), 2: option("b")}, [2, 0])

    assert find_free_number(store, BOOT) == 1


def test_find_free_number_per_kind() -> None:
    store = store_with({0: option("a")}, [0])

    assert find_free_number(store, DRIVER) == 0


def test_find_entry_case_insensitive_path() -> None:
    store = store_with({4: firmware_option("Hard Drive"), 7: option("SwitchOS", path="\\EFI\\SWITCHOS\\SNAPSHOTTER.EFI")}, [4, 7])

    assert find_entry(store, BOOT, ESP, "/EFI/switchos/snapshotter.efi") == 7
    assert find_entry(store, BOOT, ESP, PAYLOAD) == 7


def test_find_entry_needs_same_partition() -> None:
    store = store_with({7: option("SwitchOS", guid=OTHER_ESP)}, [7])

    assert find_entry(store, BOOT, ESP, PAYLOAD) is None


def test_find_entry_ignores_description_and_other_files() -> None:
    store = store_with({2: option("renamed by firmware"), 3: option("grub", path="\\EFI\\debian\\grubx64.efi")}, [3, 2])

    assert find_entry(store, BOOT, ESP, PAYLOAD) == 2


def test_find_entries_returns_all_duplicates() -> None:
    store = store_with({2: option("a"), 9: option("b"), 5: option("c", guid=OTHER_ESP)}, [9, 2, 5])

    assert find_entries(store, BOOT, ESP, PAYLOAD) == (2, 9)


def test_find_entry_skips_unreadable_entries() -> None:
    store = store_with({5: option("ours")}, [1, 5])
    store.set("Boot0001", b"\x01\x00\x00\x00\xff\xff")

    assert find_entry(store, BOOT, ESP, PAYLOAD) == 5


def test_normalize_file_path() -> None:
    assert normalize_file_path("EFI/Boot//BOOTX64.efi") == normalize_file_path("\\efi\\boot\\bootx64.EFI")


def test_create_entry_writes_but_does_not_list() -> None:
    store = store_with({0: firmware_option("fw")}, [0])

    number = create_entry(store, BOOT, option("SwitchOS"))

    assert number == 1
    assert read_entry(store, BOOT, 1) == option("SwitchOS")
    assert read_order(store, BOOT) == (0,)
    variable = store.get("Boot0001")
    assert variable is not None
    assert variable.attributes == BOOT_VARIABLE_ATTRIBUTES


def test_insert_first_keeps_others_in_place() -> None:
    entries = {number: firmware_option(f"fw{number}") for number in (1, 3, 5)}
    entries[9] = option("SwitchOS")
    store = store_with(entries, [3, 1, 0x2004, 3, 5])

    insert_first(store, BOOT, 9)

    assert read_order(store, BOOT) == (9, 3, 1, 0x2004, 3, 5)


def test_insert_first_moves_our_entry_only() -> None:
    entries = {number: firmware_option(f"fw{number}") for number in (1, 3)}
    entries[9] = option("SwitchOS")
    store = store_with(entries, [3, 9, 1, 9])

    insert_first(store, BOOT, 9)

    assert read_order(store, BOOT) == (9, 3, 1)


def test_insert_first_without_order_creates_it() -> None:
    store = store_with({2: option("SwitchOS")}, None, DRIVER)

    insert_first(store, DRIVER, 2)

    assert read_order(store, DRIVER) == (2,)
    assert read_order(store, BOOT) == ()


def test_insert_first_missing_entry_raises() -> None:
    store = store_with({}, [1])

    with pytest.raises(VariableStoreError):
        insert_first(store, BOOT, 4)

    assert read_order(store, BOOT) == (1,)


def test_insert_first_preserves_order_attributes() -> None:
    store = store_with({2: option("SwitchOS")}, None)
    attributes = BOOT_VARIABLE_ATTRIBUTES | VariableAttribute.AUTHENTICATED_WRITE_ACCESS
    store.set("BootOrder", format_order([7]), attributes=attributes)

    insert_first(store, BOOT, 2)

    variable = store.get("BootOrder")
    assert variable is not None
    assert variable.attributes == attributes


def test_remove_from_order_keeps_others() -> None:
    entries = {number: firmware_option(f"fw{number}") for number in (1, 3)}
    entries[9] = option("SwitchOS")
    store = store_with(entries, [3, 9, 0x2004, 1, 3, 9])

    assert remove_from_order(store, BOOT, 9)

    assert read_order(store, BOOT) == (3, 0x2004, 1, 3)


def test_remove_from_order_unlisted_writes_nothing() -> None:
    store = store_with({1: firmware_option("fw")}, None)

    assert not remove_from_order(store, BOOT, 1)

    assert store.get("BootOrder") is None


def test_remove_last_entry_deletes_order() -> None:
    store = store_with({9: option("SwitchOS")}, [9, 9], DRIVER)

    assert remove_from_order(store, DRIVER, 9)

    assert store.get("DriverOrder") is None


def test_add_entry_first_creates_then_lists() -> None:
    store = store_with({0: firmware_option("fw"), 1: firmware_option("fw")}, [1, 0])

    number = add_entry_first(store, BOOT, option("SwitchOS"))

    assert number == 2
    assert read_order(store, BOOT) == (2, 1, 0)


class RecordingStore(MemoryStore):
    """A memory store that records the order of writes and deletes."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, str]] = []

    def set(self, name, data, *, vendor=EFI_GLOBAL_VARIABLE, attributes=BOOT_VARIABLE_ATTRIBUTES):  # type: ignore[no-untyped-def]
        self.log.append(("set", name))
        super().set(name, data, vendor=vendor, attributes=attributes)

    def delete(self, name, vendor=EFI_GLOBAL_VARIABLE):  # type: ignore[no-untyped-def]
        self.log.append(("delete", name))
        super().delete(name, vendor)


def test_add_writes_entry_before_order() -> None:
    store = RecordingStore()

    add_entry_first(store, DRIVER, option("SwitchOS"))

    assert store.log == [("set", "Driver0000"), ("set", "DriverOrder")]


def test_delete_unlists_before_deleting() -> None:
    store = RecordingStore()
    number = add_entry_first(store, BOOT, option("SwitchOS"))
    set_boot_next(store, number)
    store.log.clear()

    delete_entry(store, BOOT, number)

    # Unlisting the only entry deletes the emptied BootOrder.
    assert store.log == [("delete", "BootOrder"), ("delete", "BootNext"), ("delete", "Boot0000")]
    assert read_order(store, BOOT) == ()
    assert store.get("Boot0000") is None


def test_delete_entry_keeps_other_boot_next() -> None:
    store = store_with({1: firmware_option("fw"), 2: option("SwitchOS")}, [2, 1])
    set_boot_next(store, 1)

    delete_entry(store, BOOT, 2)

    assert read_boot_next(store) == 1
    assert read_order(store, BOOT) == (1,)


def test_check_consistency_reports_missing_and_unlisted() -> None:
    # Shaped like a laptop whose BootOrder lists a missing 2004 and whose
    # firmware entries 0005, 0007 and 3001 are not listed.
    present = [0x0000, 0x0001, 0x0005, 0x0007, 0x0008, 0x2001, 0x2002, 0x3001]
    store = store_with({number: firmware_option("x") for number in present}, [0x2002, 0x2001, 1, 0, 8, 0x2004])

    report = check_consistency(store, BOOT)

    assert report.listed_missing == (0x2004,)
    assert report.unlisted == (0x0005, 0x0007, 0x3001)
    assert report.duplicates == ()
    assert not report.consistent


def test_check_consistency_reports_duplicates() -> None:
    store = store_with({1: firmware_option("a"), 2: firmware_option("b")}, [1, 2, 1, 1])

    report = check_consistency(store, BOOT)

    assert report.duplicates == (1,)
    assert report.listed_missing == ()
    assert report.unlisted == ()


def test_check_consistency_changes_nothing() -> None:
    store = store_with({1: firmware_option("a"), 3: firmware_option("c")}, [2, 1, 2])
    before = {key: store.get(*key) for key in store.list()}

    check_consistency(store, BOOT)

    assert {key: store.get(*key) for key in store.list()} == before


def test_check_consistency_consistent() -> None:
    store = store_with({1: firmware_option("a")}, [1])

    assert check_consistency(store, BOOT).consistent


def test_boot_next_set_read_clear() -> None:
    store = store_with({0x1A: option("SwitchOS")}, [0x1A])

    set_boot_next(store, 0x1A)

    variable = store.get("BootNext")
    assert variable is not None
    assert variable.data == b"\x1a\x00"
    assert read_boot_next(store) == 0x1A

    clear_boot_next(store)

    assert read_boot_next(store) is None
    clear_boot_next(store)


def test_boot_next_missing_entry_raises() -> None:
    with pytest.raises(VariableStoreError):
        set_boot_next(MemoryStore(), 3)


def test_boot_next_bad_length_raises() -> None:
    store = MemoryStore([Variable("BootNext", EFI_GLOBAL_VARIABLE, BOOT_VARIABLE_ATTRIBUTES, b"\x01")])

    with pytest.raises(OrderError):
        read_boot_next(store)
