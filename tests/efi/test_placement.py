"""Placing the payload and the install record, offline in a disk image and in a folder.

The live case runs on a plain folder, because the test kernel has no vfat
driver to mount an ESP; the calls (write, fsync, rename, fsync of the
folder) are the same ones a mounted ESP gets.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import uuid
from pathlib import Path, PurePosixPath

import pytest

from switchos.efi.esp import find_image_esp
from switchos.efi.fatimage import FatImage, FatImageError
from switchos.efi.payload import VerifiedPayload, verify_local_payload
from switchos.efi.placement import (
    BACKUP_PATH,
    PAYLOAD_PATH,
    EspFiles,
    ImageEsp,
    MountedEsp,
    PlacementAction,
    PlacementError,
    commit_placement,
    discard_placement,
    place_payload,
)
from switchos.efi.record import (
    RECORD_PATH,
    InstallRecord,
    InstallRecordError,
    read_install_record,
    write_install_record,
)

from .conftest import DRIVER_METADATA, PeBuilder

MIB = 1024 * 1024


def make_esp_image(path: Path, *, esp_mib: int = 40, fat_bits: int = 32) -> None:
    """A GPT disk image whose second partition is a FAT ESP made by mkfs.fat."""
    with path.open("wb") as file:
        file.truncate((esp_mib + 20) * MIB)
    subprocess.run(["sgdisk", "--clear", "--new=1:0:+8M", "--typecode=1:8300",
                    f"--new=2:0:+{esp_mib}M", "--typecode=2:ef00", str(path)],
                   check=True, capture_output=True)
    location = find_image_esp(path)
    subprocess.run(["mkfs.fat", "-F", str(fat_bits), "-s", "1", "--offset", str(location.start),
                    str(path), str(location.size_bytes // 1024)], check=True, capture_output=True)


@pytest.fixture
def image_esp(tmp_path: Path) -> ImageEsp:
    image = tmp_path / "disk.img"
    make_esp_image(image)
    return ImageEsp.open(image, find_image_esp(image))


@pytest.fixture
def folder_esp(tmp_path: Path) -> MountedEsp:
    root = tmp_path / "esp"
    root.mkdir()
    return MountedEsp(root)


@pytest.fixture
def payloads(pe_builder: PeBuilder) -> tuple[VerifiedPayload, VerifiedPayload]:
    first = pe_builder.build("payload-1", subsystem=11, metadata=DRIVER_METADATA)
    second = pe_builder.build("payload-2", subsystem=11,
                              metadata=DRIVER_METADATA.replace("2.0.1", "2.0.2"))
    return verify_local_payload(first), verify_local_payload(second)


def fsck_with_loop_device(esp: ImageEsp) -> str:
    """Check the image's FAT with fsck.fat on a loop device over the partition (root only)."""
    fat = esp.fat
    loop = subprocess.run(["losetup", "--find", "--show", "--offset", str(fat.offset),
                           "--sizelimit", str(fat.size), str(fat.image)],
                          check=True, capture_output=True, text=True).stdout.strip()
    try:
        return subprocess.run(["fsck.fat", "-n", loop], check=True, capture_output=True, text=True).stdout
    finally:
        subprocess.run(["losetup", "--detach", loop], check=True)


@pytest.mark.parametrize("esp_fixture", ["image_esp", "folder_esp"])
def test_place_replace_commit(request: pytest.FixtureRequest, esp_fixture: str,
                              payloads: tuple[VerifiedPayload, VerifiedPayload]) -> None:
    esp: EspFiles = request.getfixturevalue(esp_fixture)
    first, second = payloads

    created = place_payload(esp, first)
    assert created.action is PlacementAction.CREATED
    assert created.backup is None
    assert created.firmware_path == "\\EFI\\SwitchOS\\switchos-x64.efi"
    assert esp.read_bytes(PAYLOAD_PATH) == first.path.read_bytes()

    unchanged = place_payload(esp, first)
    assert unchanged.action is PlacementAction.UNCHANGED
    assert esp.read_bytes(BACKUP_PATH) is None

    replaced = place_payload(esp, second)
    assert replaced.action is PlacementAction.REPLACED
    assert replaced.backup == BACKUP_PATH
    assert esp.read_bytes(PAYLOAD_PATH) == second.path.read_bytes()
    assert esp.read_bytes(BACKUP_PATH) == first.path.read_bytes()
    assert esp.read_bytes(PAYLOAD_PATH.with_name("switchos-x64.efi.new")) is None

    commit_placement(esp, replaced)
    assert esp.read_bytes(BACKUP_PATH) is None
    assert esp.read_bytes(PAYLOAD_PATH) == second.path.read_bytes()


@pytest.mark.parametrize("esp_fixture", ["image_esp", "folder_esp"])
def test_discard_restores_previous(request: pytest.FixtureRequest, esp_fixture: str,
                                   payloads: tuple[VerifiedPayload, VerifiedPayload]) -> None:
    esp: EspFiles = request.getfixturevalue(esp_fixture)
    first, second = payloads
    place_payload(esp, first)
    replaced = place_payload(esp, second)
    discard_placement(esp, replaced)
    assert esp.read_bytes(PAYLOAD_PATH) == first.path.read_bytes()
    assert esp.read_bytes(BACKUP_PATH) is None


def test_discard_created_deletes(folder_esp: MountedEsp, payloads: tuple[VerifiedPayload, VerifiedPayload]) -> None:
    created = place_payload(folder_esp, payloads[0])
    discard_placement(folder_esp, created)
    assert folder_esp.read_bytes(PAYLOAD_PATH) is None


def test_image_placement_passes_fsck(image_esp: ImageEsp, payloads: tuple[VerifiedPayload, VerifiedPayload]) -> None:
    first, second = payloads
    place_payload(image_esp, first)
    commit_placement(image_esp, place_payload(image_esp, second))
    # mtools, not our code, lists what is in the folder.
    assert sorted(image_esp.fat.list_names(PurePosixPath("EFI/SwitchOS"))) == ["switchos-x64.efi"]
    image_esp.check()
    if os.geteuid() == 0:
        output = fsck_with_loop_device(image_esp)
        assert "files" in output


def test_image_fat16_esp(tmp_path: Path, payloads: tuple[VerifiedPayload, VerifiedPayload]) -> None:
    image = tmp_path / "fat16.img"
    make_esp_image(image, esp_mib=32, fat_bits=16)
    esp = ImageEsp.open(image, find_image_esp(image))
    place_payload(esp, payloads[0])
    assert esp.read_bytes(PurePosixPath("efi/switchos/SWITCHOS-X64.EFI")) == payloads[0].path.read_bytes()


def test_image_existing_lowercase_folder_reused(image_esp: ImageEsp, payloads: tuple[VerifiedPayload, VerifiedPayload]) -> None:
    # FAT names are case-insensitive: an existing \efi folder is the same as \EFI.
    image_esp.fat.make_dirs(PurePosixPath("efi"))
    place_payload(image_esp, payloads[0])
    assert image_esp.fat.list_names(PurePosixPath("/")) == ["efi"]


def test_no_room_rejected(tmp_path: Path, payloads: tuple[VerifiedPayload, VerifiedPayload]) -> None:
    image = tmp_path / "full.img"
    make_esp_image(image, esp_mib=34)
    esp = ImageEsp.open(image, find_image_esp(image))
    filler = esp.free_bytes() - 100 * 1024
    esp.write_bytes(PurePosixPath("filler.bin"), bytes(filler))
    with pytest.raises(PlacementError, match="bytes free"):
        place_payload(esp, payloads[0])
    assert esp.read_bytes(PAYLOAD_PATH) is None
    esp.check()


def test_changed_payload_rejected(folder_esp: MountedEsp, tmp_path: Path,
                                  payloads: tuple[VerifiedPayload, VerifiedPayload]) -> None:
    copy = tmp_path / "copy.efi"
    copy.write_bytes(payloads[0].path.read_bytes())
    verified = verify_local_payload(copy)
    copy.write_bytes(payloads[1].path.read_bytes())
    with pytest.raises(PlacementError, match="changed after it was verified"):
        place_payload(folder_esp, verified)
    assert folder_esp.read_bytes(PAYLOAD_PATH) is None


def test_fsck_failure_reported(tmp_path: Path) -> None:
    image = tmp_path / "broken.img"
    make_esp_image(image)
    location = find_image_esp(image)
    fat = FatImage(image, location.offset_bytes, location.size_bytes)
    fat.write_bytes(PurePosixPath("a.txt"), b"hello")
    # Make the second FAT differ from the first in cluster 3's entry; fsck.fat
    # reports the two copies as different. The offsets are FAT32 boot sector
    # fields: reserved sectors at byte 14, sectors per FAT at byte 36.
    with image.open("r+b") as file:
        file.seek(location.offset_bytes + 14)
        reserved = int.from_bytes(file.read(2), "little")
        file.seek(location.offset_bytes + 36)
        fat_sectors = int.from_bytes(file.read(4), "little")
        file.seek(location.offset_bytes + (reserved + fat_sectors) * 512 + 12)
        file.write(b"\x77\x77\x77\x07")
    with pytest.raises(FatImageError, match="has errors"):
        fat.check()


# --- The install record ------------------------------------------------------------

RECORD = InstallRecord(
    installer_version="0.1.0",
    payload_sha256=hashlib.sha256(b"payload").hexdigest(),
    payload_version="2.0.1",
    entries=("Driver0003", "Boot000A"),
    original_boot_order=(1, 0, 0xFFFF),
    original_driver_order=None,
    snapshot_store_partuuid=uuid.UUID("3f1b2a9c-5d4e-4f60-8a7b-9c0d1e2f3a4b"),
)


def test_record_round_trip() -> None:
    text = RECORD.to_json()
    assert InstallRecord.from_json(text) == RECORD
    assert InstallRecord.from_json(text).to_json() == text


def test_record_known_document() -> None:
    document = (
        '{"format": 1, "installer_version": "0.2.0",'
        ' "payload": {"sha256": "' + "ab" * 32 + '", "version": null},'
        ' "entries": [{"variable": "Boot0007"}],'
        ' "original_boot_order": [], "original_driver_order": [2],'
        ' "snapshot_store": null}'
    )
    record = InstallRecord.from_json(document)
    assert record.entries == ("Boot0007",)
    assert record.original_boot_order == ()
    assert record.original_driver_order == (2,)
    assert record.payload_version is None
    assert record.snapshot_store_partuuid is None


def test_record_lists_every_problem() -> None:
    document = (
        '{"format": 2, "payload": {"sha256": "xyz"}, "entries": [{"variable": "boot0001"}],'
        ' "original_boot_order": [70000], "snapshot_store": {"partuuid": "nope"}}'
    )
    with pytest.raises(InstallRecordError) as error:
        InstallRecord.from_json(document)
    message = error.value.message
    for fragment in ("format is 2", "installer_version is missing", "payload.sha256",
                     "entries[0]", "original_boot_order is not a list",
                     "original_driver_order is missing", "snapshot_store.partuuid"):
        assert fragment in message


@pytest.mark.parametrize("text", ["", "[]", "{", b"\xff\xfe"])
def test_record_not_json_object(text: str | bytes) -> None:
    with pytest.raises(InstallRecordError):
        InstallRecord.from_json(text)


@pytest.mark.parametrize("esp_fixture", ["image_esp", "folder_esp"])
def test_record_written_and_read(request: pytest.FixtureRequest, esp_fixture: str) -> None:
    esp: EspFiles = request.getfixturevalue(esp_fixture)
    assert read_install_record(esp) is None
    assert write_install_record(esp, RECORD) is True
    assert write_install_record(esp, RECORD) is False
    assert read_install_record(esp) == RECORD
    assert esp.read_bytes(RECORD_PATH) == RECORD.to_json().encode()
