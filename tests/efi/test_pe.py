"""PE checks on real images: mingw builds, systemd-boot, patched, truncated and random files.

mingw cannot build IA32 or ARM64 images here (no i686 or ARM toolchain), so
those cases patch the Machine field (and for IA32 the optional header magic)
of a built AMD64 image with struct, and a comment marks each such test.
"""

from __future__ import annotations

import importlib
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pefile
import pytest

from switchos.efi.pe import (
    IMAGE_FILE_MACHINE_ARM64,
    IMAGE_FILE_MACHINE_I386,
    PE32_MAGIC,
    UPSTREAM_METADATA,
    DiskKind,
    PayloadCheckError,
    PayloadKind,
    StoreLayout,
    Subsystem,
    check_payload_image,
    parse_metadata,
)

from .conftest import DRIVER_METADATA, SYSTEMD_BOOT, PeBuilder


def problems_of(path: Path) -> list[str]:
    with pytest.raises(PayloadCheckError) as error:
        check_payload_image(path)
    return error.value.problems


def pe_header_offset(data: bytes) -> int:
    # e_lfanew, the file offset of the PE signature, sits at byte 0x3c of the DOS header.
    return struct.unpack_from("<I", data, 0x3C)[0]


def patch_machine(source: Path, target: Path, machine: int, *, magic: int | None = None) -> Path:
    """Copy an image with another FILE_HEADER.Machine (and optional header magic)."""
    data = bytearray(source.read_bytes())
    offset = pe_header_offset(data)
    # IMAGE_FILE_HEADER follows the 4-byte "PE\0\0" signature; Machine is its first field,
    # and the optional header (Magic first) follows the 20-byte file header.
    struct.pack_into("<H", data, offset + 4, machine)
    if magic is not None:
        struct.pack_into("<H", data, offset + 24, magic)
    target.write_bytes(bytes(data))
    return target


@pytest.mark.parametrize(
    ("subsystem", "kind", "metadata_kind"),
    [
        (10, PayloadKind.APPLICATION, "application"),
        (11, PayloadKind.DRIVER, "driver"),
        (12, PayloadKind.RUNTIME_DRIVER, "runtime-driver"),
    ],
)
def test_subsystem_decides_kind(pe_builder: PeBuilder, subsystem: int, kind: PayloadKind, metadata_kind: str) -> None:
    metadata = DRIVER_METADATA.replace("kind=driver", f"kind={metadata_kind}")
    path = pe_builder.build(f"kind{subsystem}", subsystem=subsystem, metadata=metadata)
    info = check_payload_image(path)
    assert info.kind is kind
    assert info.subsystem == subsystem
    assert info.kind.is_driver == (subsystem != 10)
    assert info.metadata.from_section
    assert info.metadata.version == "2.0.1"
    assert info.metadata.store is StoreLayout.PARTITION
    assert info.metadata.disks == (DiskKind.VIRTIO_BLK, DiskKind.NVME)
    assert info.has_signature is False
    # pefile, not our parser, confirms the subsystem we read.
    assert pefile.PE(str(path)).OPTIONAL_HEADER.Subsystem == subsystem


def test_application_metadata_as_driver_rejected(pe_builder: PeBuilder) -> None:
    metadata = DRIVER_METADATA.replace("kind=driver", "kind=application")
    path = pe_builder.build("app-as-driver", subsystem=11, metadata=metadata)
    (problem,) = problems_of(path)
    assert "kind=application" in problem
    assert "subsystem is 11" in problem


def test_driver_metadata_on_application_rejected(pe_builder: PeBuilder) -> None:
    path = pe_builder.build("driver-as-app", subsystem=10, metadata=DRIVER_METADATA)
    (problem,) = problems_of(path)
    assert "kind=driver" in problem
    assert "firmware skips an application listed as a driver" in problem


def test_systemd_boot_is_upstream_application() -> None:
    if not SYSTEMD_BOOT.exists():
        pytest.fail(f"{SYSTEMD_BOOT} is missing: apt-get install systemd-boot-efi")
    info = check_payload_image(SYSTEMD_BOOT)
    assert info.kind is PayloadKind.APPLICATION
    assert info.metadata == UPSTREAM_METADATA
    explanation = " ".join(info.metadata.describe_consequences())
    assert "upstream SwitchOS application (protocol 0)" in explanation
    assert "whole snapshot disk" in explanation
    assert "virtio-blk" in explanation
    assert "boot menu" in explanation


def test_stand_in_flavours_pass() -> None:
    try:
        standin = importlib.import_module("testbed.standin")
    except ModuleNotFoundError:
        pytest.skip("testbed.standin is not there yet")
    expected = {"driver": PayloadKind.DRIVER, "runtime": PayloadKind.RUNTIME_DRIVER,
                "app": PayloadKind.APPLICATION}
    for flavour, kind in expected.items():
        info = check_payload_image(standin.build(flavour))
        assert info.kind is kind, flavour
        assert info.metadata.from_section, flavour
        assert info.metadata.protocol == 1, flavour
        assert info.metadata.chainload == (kind is PayloadKind.APPLICATION), flavour


def test_pe32_ia32_rejected(pe_builder: PeBuilder, tmp_path: Path) -> None:
    # Patched: no i686 toolchain here, so an AMD64 build gets the IA32 Machine and PE32 magic.
    path = patch_machine(pe_builder.build("ia32-base"), tmp_path / "ia32.efi",
                         IMAGE_FILE_MACHINE_I386, magic=PE32_MAGIC)
    problems = problems_of(path)
    assert any("PE32 (32-bit)" in problem for problem in problems)
    assert any("IA32 (x86, 32-bit)" in problem for problem in problems)


def test_arm64_rejected(pe_builder: PeBuilder, tmp_path: Path) -> None:
    # Patched: no ARM64 toolchain here, so an AMD64 build gets the ARM64 Machine value.
    path = patch_machine(pe_builder.build("arm-base"), tmp_path / "arm64.efi", IMAGE_FILE_MACHINE_ARM64)
    assert pefile.PE(str(path)).FILE_HEADER.Machine == IMAGE_FILE_MACHINE_ARM64
    assert problems_of(path) == [
        "the image is built for ARM64 (AArch64); this installer needs an AMD64 (x86-64) image"
    ]


def test_dll_rejected(pe_builder: PeBuilder) -> None:
    path = pe_builder.build("library", extra=("-shared",))
    assert "the image is a DLL, not an EFI application or driver" in problems_of(path)


def test_console_program_rejected(pe_builder: PeBuilder) -> None:
    path = pe_builder.build("console", subsystem=3)
    assert problems_of(path) == [
        "the image is a Windows console program (subsystem 3), not an EFI image"
    ]


def test_no_relocations_rejected(pe_builder: PeBuilder) -> None:
    path = pe_builder.build("fixed", extra=("-Wl,--disable-reloc-section",))
    (problem,) = problems_of(path)
    assert "no base relocations" in problem
    assert "0x140000000" in problem


def test_section_below_file_alignment_rejected(pe_builder: PeBuilder) -> None:
    path = pe_builder.build("misaligned", extra=("-Wl,--section-alignment,512", "-Wl,--file-alignment,4096"))
    assert "section alignment 0x200 is smaller than file alignment 0x1000" in problems_of(path)


def test_runtime_driver_small_alignment_rejected(pe_builder: PeBuilder) -> None:
    metadata = DRIVER_METADATA.replace("kind=driver", "kind=runtime-driver")
    path = pe_builder.build("runtime512", subsystem=12, metadata=metadata,
                            extra=("-Wl,--section-alignment,512", "-Wl,--file-alignment,512"))
    (problem,) = problems_of(path)
    assert "runtime driver with section alignment 0x200" in problem


def test_small_equal_alignment_accepted_for_application(pe_builder: PeBuilder) -> None:
    path = pe_builder.build("app512", extra=("-Wl,--section-alignment,512", "-Wl,--file-alignment,512"))
    assert check_payload_image(path).section_alignment == 512


def test_all_problems_reported_at_once(pe_builder: PeBuilder, tmp_path: Path) -> None:
    built = pe_builder.build("many", subsystem=3, extra=("-shared",))
    path = patch_machine(built, tmp_path / "many.efi", IMAGE_FILE_MACHINE_ARM64)
    # The linker keeps relocations in a DLL, so empty the directory entry with pefile.
    image = pefile.PE(str(path))
    image.OPTIONAL_HEADER.DATA_DIRECTORY[5].Size = 0
    data = image.write()
    image.close()
    path.write_bytes(data)
    problems = problems_of(path)
    assert len(problems) >= 4
    joined = "\n".join(problems)
    for fragment in ("ARM64", "DLL", "console program", "no base relocations"):
        assert fragment in joined


def test_pefile_warning_counts(pe_builder: PeBuilder, tmp_path: Path) -> None:
    # Point the import directory at the relocation data, which pefile cannot parse as imports.
    image = pefile.PE(str(pe_builder.build("warned")))
    relocations = image.OPTIONAL_HEADER.DATA_DIRECTORY[5]
    image.OPTIONAL_HEADER.DATA_DIRECTORY[1].VirtualAddress = relocations.VirtualAddress
    image.OPTIONAL_HEADER.DATA_DIRECTORY[1].Size = 0x4000
    path = tmp_path / "warned.efi"
    path.write_bytes(image.write())
    image.close()
    problems = problems_of(path)
    assert any(problem.startswith("pefile warning: Error parsing the import directory") for problem in problems)
    # The zero-padding heuristic is ignored, although pefile emits it for this image too.
    assert any("Byte 0x00 makes up" in warning for warning in pefile.PE(str(path)).get_warnings())
    assert not any("Byte 0x00 makes up" in problem for problem in problems)


def test_truncated_file_rejected(pe_builder: PeBuilder, tmp_path: Path) -> None:
    data = pe_builder.build("whole", metadata=DRIVER_METADATA.replace("kind=driver", "kind=application")).read_bytes()
    path = tmp_path / "truncated.efi"
    path.write_bytes(data[: len(data) * 2 // 3])
    problems = problems_of(path)
    assert any(problem.startswith("truncated file: section") for problem in problems)


def test_truncated_inside_headers_rejected(pe_builder: PeBuilder, tmp_path: Path) -> None:
    data = pe_builder.build("head").read_bytes()
    path = tmp_path / "head.efi"
    path.write_bytes(data[: pe_header_offset(data) + 10])
    (problem,) = problems_of(path)
    assert "not a PE image" in problem or "not a valid PE image" in problem


def test_random_file_rejected(tmp_path: Path) -> None:
    path = tmp_path / "random.efi"
    path.write_bytes(os.urandom(8192))
    assert problems_of(path) == ["not a PE image: the file does not start with an MZ (DOS) header"]


def test_empty_file_rejected(tmp_path: Path) -> None:
    path = tmp_path / "empty.efi"
    path.write_bytes(b"")
    assert len(problems_of(path)) == 1


def test_mz_without_pe_rejected(tmp_path: Path) -> None:
    path = tmp_path / "dos.exe"
    path.write_bytes(b"MZ" + bytes(62) + os.urandom(512))
    (problem,) = problems_of(path)
    assert "PE" in problem


def test_signed_image_detected(pe_builder: PeBuilder, tmp_path: Path) -> None:
    for tool in ("sbsign", "sbverify", "openssl"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: apt-get install sbsigntool openssl")
    unsigned = pe_builder.build("to-sign", metadata=DRIVER_METADATA.replace("kind=driver", "kind=application"))
    key, certificate = tmp_path / "db.key", tmp_path / "db.crt"
    subprocess.run(["openssl", "req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=SwitchOS test db/", "-keyout", key, "-out", certificate],
                   check=True, capture_output=True)
    signed = tmp_path / "signed.efi"
    subprocess.run(["sbsign", "--key", key, "--cert", certificate, "--output", signed, unsigned],
                   check=True, capture_output=True)
    # sbverify, a tool we did not write, confirms the image carries a signature.
    listing = subprocess.run(["sbverify", "--list", signed], check=True, capture_output=True, text=True)
    assert "signature 1" in listing.stdout

    assert check_payload_image(signed).has_signature is True
    assert check_payload_image(unsigned).has_signature is False


class TestMetadataParser:
    def test_full_metadata(self) -> None:
        metadata, problems = parse_metadata(
            b"# comment\nprotocol=1\nname=SwitchOS\nversion=1.4.0\nkind=application\n"
            b"store=whole-disk\ndisks=virtio-blk,nvme,ahci\nchainload=yes\n\0\0"
            .rstrip(b"\0")
        )
        assert problems == []
        assert metadata.kind is PayloadKind.APPLICATION
        assert metadata.chainload is True
        assert metadata.disks == (DiskKind.VIRTIO_BLK, DiskKind.NVME, DiskKind.AHCI)
        assert metadata.describe_consequences()[0].startswith("The whole snapshot disk")

    def test_chainload_defaults_to_no(self) -> None:
        metadata, problems = parse_metadata(DRIVER_METADATA.encode())
        assert problems == []
        assert metadata.chainload is False

    def test_every_problem_listed(self) -> None:
        metadata, problems = parse_metadata(
            b"protocol=1\nprotocol=2\nnonsense\ncolour=blue\nname=x\n"
        )
        assert metadata == UPSTREAM_METADATA
        assert "duplicate key 'protocol'" in problems[0]
        assert "expected key=value" in problems[1]
        assert "unknown key 'colour'" in problems[2]
        missing = [p for p in problems if "missing key" in p]
        assert len(missing) == 4  # version, kind, store, disks

    def test_invalid_values(self) -> None:
        _metadata, problems = parse_metadata(
            b"protocol=99\nname=x\nversion=1\nkind=service\nstore=cloud\ndisks=virtio-blk,floppy\n"
            b"chainload=maybe\n"
        )
        joined = "\n".join(problems)
        assert "protocol 99 is newer" in joined
        assert "invalid kind 'service'" in joined
        assert "invalid store 'cloud'" in joined
        assert "invalid disks 'floppy'" in joined
        assert "chainload must be yes or no" in joined

    def test_not_utf8(self) -> None:
        _metadata, problems = parse_metadata(b"name=\xff\xfe\n")
        assert "not UTF-8" in problems[0]

    def test_subsystem_enum_values(self) -> None:
        assert [kind.subsystem for kind in PayloadKind] == [
            Subsystem.EFI_APPLICATION, Subsystem.EFI_BOOT_SERVICE_DRIVER, Subsystem.EFI_RUNTIME_DRIVER
        ]
