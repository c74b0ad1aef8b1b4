"""The test bed itself: machines boot as described, and the stand-in runs where it should."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from testbed import standin
from testbed.firmware import find_ovmf, ucs2_options
from testbed.guest import parse_guest_output
from testbed.machine import LINUX_BOOT_MANAGER, SYSTEMD_BOOT_PATH, Bus, Machine
from testbed.qemu import EventKind, classify, clean_console, console_events

STATUS_VARIABLE = "SwitchOSStatus-e21c66ed-bc2e-4d30-ac5e-1b968002c541"
CHAIN_OPTIONS = f"chain={SYSTEMD_BOOT_PATH}"


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    built = Machine(tmp_path / "machine")
    yield built
    built.remove()


@pytest.fixture
def guest_machine(tmp_path: Path) -> Machine:
    built = Machine(tmp_path / "machine", guest="cloud")
    yield built
    built.remove()


def install_standin(machine: Machine, flavour: str) -> str:
    esp_path = f"\\EFI\\SwitchOS\\standin-{flavour}.efi"
    machine.esp_volume.write(esp_path, standin.build(flavour))
    return esp_path


def kinds_in_order(result, *kinds: EventKind) -> list[int]:
    """Return the index of the first event of each kind, failing when one is missing."""
    indexes = []
    for kind in kinds:
        index = result.first_index(kind)
        assert index is not None, f"no {kind.value} event in:\n{result.transcript()}"
        indexes.append(index)
    return indexes


def test_find_ovmf_reads_descriptors():
    ovmf = find_ovmf()
    assert ovmf.code.is_file()
    assert ovmf.vars_template.is_file()
    assert "acpi-s3" in ovmf.features
    assert "secure-boot" not in ovmf.features


def test_clean_console_strips_escapes():
    raw = b"\x1b[2J\x1b[01;01HBdsDxe: starting Boot0001\r\n\x1b[=3h\x1b[0m\x1b[37m\x1b[40mBoot in 1 s.\r\n"
    assert clean_console(raw) == ["BdsDxe: starting Boot0001", "Boot in 1 s."]


def test_console_events_classify_sources():
    lines = [
        "BdsDxe: loading Boot0001 \"Linux Boot Manager\" from HD(1,GPT,...)",
        "switchos-standin: started kind=driver options=\"\"",
        "SwitchOS test bed: Linux guest",
        "SwitchOS test bed: Linux guest",
        "EFI stub: Loaded initrd from LINUX_EFI_INITRD_MEDIA_GUID device path",
        "switchos-guest: begin",
        "noise from a program",
    ]
    kinds = [event.kind for event in console_events(lines)]
    assert kinds == [
        EventKind.FIRMWARE,
        EventKind.STANDIN,
        EventKind.SYSTEMD_BOOT,
        EventKind.KERNEL,
        EventKind.GUEST,
    ]
    assert classify("noise from a program") is None


def test_parse_guest_output_between_markers():
    lines = [
        "switchos-guest: begin",
        "hello",
        "[    3.000001] a kernel message in between",
        "world",
        "switchos-guest: exit=3",
        "[    4.0] reboot: Power down",
    ]
    run = parse_guest_output(lines)
    assert run.output == ["hello", "world"]
    assert run.exit_status == 3


def test_parse_guest_output_without_exit_marker():
    run = parse_guest_output(["switchos-guest: begin", "half"])
    assert run.exit_status is None


def test_machine_installs_systemd_boot_like_a_distribution(machine: Machine):
    variables = machine.vars()
    assert variables.order("BootOrder")[0] == 0x0001
    entry = variables.get("Boot0001")
    assert entry is not None
    assert LINUX_BOOT_MANAGER.encode("utf-16-le") in entry
    assert SYSTEMD_BOOT_PATH.encode("utf-16-le") in entry
    files = machine.esp_volume.listing()
    assert any(path.lower().endswith("/efi/systemd/systemd-bootx64.efi") for path in files), files
    assert any(path.lower().endswith("/loader/entries/guest.conf") for path in files), files


def test_machine_rejects_sata_with_4k_sectors(machine: Machine):
    with pytest.raises(ValueError, match="512-byte"):
        machine.add_disk(1 << 20, bus=Bus.SATA, sector_size=4096)


@pytest.mark.vm
def test_boot_reaches_systemd_boot(machine: Machine):
    result = machine.boot_to_systemd_boot()
    assert not result.timed_out, result.transcript()
    firmware, loader = kinds_in_order(result, EventKind.FIRMWARE, EventKind.SYSTEMD_BOOT)
    assert firmware < loader
    assert "Linux Boot Manager" in result.events[firmware].text
    assert result.first_index(EventKind.STANDIN) is None


@pytest.mark.vm
def test_standin_driver_starts_before_systemd_boot(machine: Machine):
    esp_path = install_standin(machine, "driver")
    machine.add_load_option(
        "Driver", 0x0000, "SwitchOS stand-in", esp_path, optional_data=ucs2_options("store=partition")
    )
    assert machine.vars().order("DriverOrder") == [0x0000]

    result = machine.boot_to_systemd_boot()

    assert not result.timed_out, result.transcript()
    started, loader = kinds_in_order(result, EventKind.STANDIN, EventKind.SYSTEMD_BOOT)
    assert started < loader
    assert 'kind=driver options="store=partition"' in result.events[started].text


@pytest.mark.vm
def test_standin_application_chain_loads_systemd_boot(machine: Machine):
    esp_path = install_standin(machine, "app")
    machine.add_load_option(
        "Boot", 0x0005, "SwitchOS stand-in", esp_path, optional_data=ucs2_options(CHAIN_OPTIONS)
    )
    assert machine.vars().order("BootOrder")[:2] == [0x0005, 0x0001]

    result = machine.boot_to_systemd_boot()

    assert not result.timed_out, result.transcript()
    started, loader = kinds_in_order(result, EventKind.STANDIN, EventKind.SYSTEMD_BOOT)
    assert started < loader
    assert "kind=application" in result.events[started].text
    # systemd-boot was started by the stand-in, not by the firmware's next entry.
    firmware_starts = [e.text for e in result.events[:loader] if e.text.startswith("BdsDxe: starting")]
    assert len(firmware_starts) == 1, firmware_starts
    assert "Boot0005" in firmware_starts[0]


@pytest.mark.vm
def test_standin_application_as_driver_never_starts(machine: Machine):
    esp_path = install_standin(machine, "app")
    machine.add_load_option(
        "Driver", 0x0000, "SwitchOS stand-in", esp_path, optional_data=ucs2_options(CHAIN_OPTIONS)
    )

    result = machine.boot_to_systemd_boot()

    assert not result.timed_out, result.transcript()
    assert result.first_index(EventKind.STANDIN) is None, result.transcript()
    assert result.first_index(EventKind.SYSTEMD_BOOT) is not None


GUEST_STATUS_SCRIPT = f"""
if [ -e /sys/firmware/efi/efivars/{STATUS_VARIABLE} ]; then
    echo status=present
    tail -c +5 /sys/firmware/efi/efivars/{STATUS_VARIABLE}
    echo
    od -An -tu4 -N4 /sys/firmware/efi/efivars/{STATUS_VARIABLE}
else
    echo status=absent
fi
"""


@pytest.mark.vm
def test_guest_sees_status_variable_of_standin_driver(guest_machine: Machine):
    esp_path = install_standin(guest_machine, "driver")
    guest_machine.add_load_option(
        "Driver", 0x0000, "SwitchOS stand-in", esp_path, optional_data=ucs2_options("store=partition")
    )

    run, result = guest_machine.run_guest(GUEST_STATUS_SCRIPT)

    assert run.exit_status == 0, result.transcript()
    assert "status=present" in run.output, run.text
    assert "loaded-as=driver" in run.text
    assert "protocol=1" in run.text
    # BS|RT and not NV: the payload's status must not survive a reboot.
    assert run.output[-1].split() == ["6"], run.text


@pytest.mark.vm
def test_guest_without_standin_has_no_status_variable(guest_machine: Machine):
    run, result = guest_machine.run_guest(GUEST_STATUS_SCRIPT)

    assert run.exit_status == 0, result.transcript()
    assert run.output == ["status=absent"], run.text


@pytest.mark.vm
def test_guest_suspends_to_s3_and_resumes(guest_machine: Machine):
    script = """
cat /sys/power/mem_sleep
echo deep > /sys/power/mem_sleep
echo mem > /sys/power/state && echo resumed
"""
    run, result = guest_machine.run_guest(script)

    assert run.exit_status == 0, result.transcript()
    assert "deep" in run.output[0]
    assert run.output[-1] == "resumed"
    assert result.qmp_events.index("SUSPEND") < result.qmp_events.index("WAKEUP")


@pytest.mark.vm
@pytest.mark.parametrize(
    ("bus", "sector_size", "flavour"),
    [
        (Bus.VIRTIO_BLK, 512, "cloud"),
        (Bus.VIRTIO_BLK, 4096, "cloud"),
        (Bus.NVME, 4096, "cloud"),
        (Bus.SATA, 512, "generic"),
    ],
)
def test_guest_sees_extra_disk(tmp_path: Path, bus: Bus, sector_size: int, flavour: str):
    machine = Machine(tmp_path / "machine", guest=flavour)
    try:
        disk = machine.add_disk(64 << 20, bus=bus, sector_size=sector_size)
        script = """
for block in /sys/block/*; do
    [ -e "$block/device" ] || continue
    echo "$(cat $block/device/serial 2>/dev/null || cat $block/serial 2>/dev/null) $(cat $block/queue/logical_block_size) $(cat $block/size) $(readlink -f $block)"
done
"""
        run, result = machine.run_guest(script)
    finally:
        machine.remove()

    assert run.exit_status == 0, result.transcript()
    expected_sectors = str(disk.size // 512)
    rows = [line.split() for line in run.output]
    # Match the disk by sector size and size, because SATA disks have no serial file in sysfs.
    matching = [row for row in rows if row[-3:-1] == [str(sector_size), expected_sectors]]
    assert matching, run.text
    path = matching[0][-1]
    bus_markers = {Bus.VIRTIO_BLK: "/virtio", Bus.NVME: "/nvme/", Bus.SATA: "/ata"}
    assert bus_markers[bus] in path, path
