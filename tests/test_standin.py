"""The stand-in payload builds into PE images that firmware can load, checked with pefile."""

from __future__ import annotations

from pathlib import Path

import pefile
import pytest

from testbed import standin

IMAGE_FILE_MACHINE_AMD64 = 0x8664
PE32_PLUS_MAGIC = 0x20B
IMAGE_FILE_RELOCS_STRIPPED = 0x0001
IMAGE_FILE_DLL = 0x2000
IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE = 0x0040
IMAGE_SCN_MEM_EXECUTE = 0x20000000
IMAGE_SCN_MEM_READ = 0x40000000
IMAGE_SCN_MEM_WRITE = 0x80000000

# pefile's statistical hint for small images padded with zeros to FileAlignment.
ZERO_PADDING_WARNING = "Byte 0x00 makes up"

EXPECTED_SUBSYSTEM = {"driver": 11, "runtime": 12, "app": 10}

EXPECTED_METADATA = {
    "driver": (
        b"protocol=1\nname=switchos-standin\nversion=0.1.0\nkind=driver\n"
        b"store=partition\ndisks=virtio-blk,nvme,ahci\n"
    ),
    "runtime": (
        b"protocol=1\nname=switchos-standin\nversion=0.1.0\nkind=runtime-driver\n"
        b"store=partition\ndisks=virtio-blk,nvme,ahci\n"
    ),
    "app": (
        b"protocol=1\nname=switchos-standin\nversion=0.1.0\nkind=application\n"
        b"store=partition\ndisks=virtio-blk,nvme,ahci\nchainload=yes\n"
    ),
}

FLAVOURS = sorted(EXPECTED_SUBSYSTEM)


@pytest.fixture(scope="module")
def images() -> dict[str, Path]:
    return {flavour: standin.build(flavour) for flavour in FLAVOURS}


def open_pe(path: Path) -> pefile.PE:
    return pefile.PE(data=path.read_bytes())


def find_section(pe: pefile.PE, name: str) -> pefile.SectionStructure | None:
    for section in pe.sections:
        if section.Name.rstrip(b"\0") == name.encode():
            return section
    return None


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_image_is_amd64_pe32_plus(images: dict[str, Path], flavour: str) -> None:
    pe = open_pe(images[flavour])
    assert pe.FILE_HEADER.Machine == IMAGE_FILE_MACHINE_AMD64
    assert pe.OPTIONAL_HEADER.Magic == PE32_PLUS_MAGIC
    assert not pe.FILE_HEADER.Characteristics & IMAGE_FILE_DLL


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_image_subsystem(images: dict[str, Path], flavour: str) -> None:
    pe = open_pe(images[flavour])
    assert pe.OPTIONAL_HEADER.Subsystem == EXPECTED_SUBSYSTEM[flavour]
    assert standin.FLAVOURS[flavour].subsystem == EXPECTED_SUBSYSTEM[flavour]


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_image_has_base_relocations(images: dict[str, Path], flavour: str) -> None:
    pe = open_pe(images[flavour])
    assert not pe.FILE_HEADER.Characteristics & IMAGE_FILE_RELOCS_STRIPPED
    assert pe.OPTIONAL_HEADER.DllCharacteristics & IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE
    assert find_section(pe, ".reloc") is not None
    relocations = [entry for block in pe.DIRECTORY_ENTRY_BASERELOC for entry in block.entries]
    # Type 10 is IMAGE_REL_BASED_DIR64, the only fixup a PE32+ image needs;
    # type 0 entries only pad a block to a multiple of four bytes.
    assert {entry.type for entry in relocations} <= {0, 10}
    assert any(entry.type == 10 for entry in relocations)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_image_relocates_only_kind_table(images: dict[str, Path], flavour: str) -> None:
    # The runtime hooks run from a copy of the image, where an absolute address
    # would still point into the original. The only absolute pointers are the
    # three entries of the kind-name table, which only the start code reads,
    # before the copy exists.
    pe = open_pe(images[flavour])
    fixups = [entry for block in pe.DIRECTORY_ENTRY_BASERELOC for entry in block.entries if entry.type == 10]
    rdata = find_section(pe, ".rdata")
    assert rdata is not None
    assert len(fixups) == 3
    for entry in fixups:
        assert rdata.contains_rva(entry.rva)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_image_has_no_imports(images: dict[str, Path], flavour: str) -> None:
    # Firmware resolves no imports, so a UEFI image reaches everything through the system table.
    pe = open_pe(images[flavour])
    assert getattr(pe, "DIRECTORY_ENTRY_IMPORT", []) == []


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_image_sections_page_aligned(images: dict[str, Path], flavour: str) -> None:
    pe = open_pe(images[flavour])
    assert pe.OPTIONAL_HEADER.SectionAlignment == 4096
    for section in pe.sections:
        assert section.VirtualAddress % 4096 == 0, section.Name
        writable = section.Characteristics & IMAGE_SCN_MEM_WRITE
        executable = section.Characteristics & IMAGE_SCN_MEM_EXECUTE
        assert not (writable and executable), section.Name


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_image_entry_point_in_text(images: dict[str, Path], flavour: str) -> None:
    pe = open_pe(images[flavour])
    text = find_section(pe, ".text")
    assert text is not None
    assert text.contains_rva(pe.OPTIONAL_HEADER.AddressOfEntryPoint)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_image_only_zero_padding_warning(images: dict[str, Path], flavour: str) -> None:
    pe = open_pe(images[flavour])
    warnings = [w for w in pe.get_warnings() if not w.startswith(ZERO_PADDING_WARNING)]
    assert warnings == []


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_swos_section_text(images: dict[str, Path], flavour: str) -> None:
    pe = open_pe(images[flavour])
    section = find_section(pe, ".swos")
    assert section is not None
    data = section.get_data()
    assert data.rstrip(b"\0") == EXPECTED_METADATA[flavour]
    assert standin.metadata_text(flavour).encode() == EXPECTED_METADATA[flavour]


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_swos_section_read_only_data(images: dict[str, Path], flavour: str) -> None:
    section = find_section(open_pe(images[flavour]), ".swos")
    assert section is not None
    assert section.Characteristics & IMAGE_SCN_MEM_READ
    assert not section.Characteristics & (IMAGE_SCN_MEM_WRITE | IMAGE_SCN_MEM_EXECUTE)


def test_swos_section_carries_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHOS_TEST_CACHE", str(tmp_path / "cache"))
    image = standin.build("driver", version="2.5.0-rc1")
    section = find_section(open_pe(image), ".swos")
    assert section is not None
    assert b"\nversion=2.5.0-rc1\n" in section.get_data()
    assert section.get_data().rstrip(b"\0") == standin.metadata_text("driver", version="2.5.0-rc1").encode()


def test_build_reuses_cached_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHOS_TEST_CACHE", str(tmp_path / "cache"))
    first = standin.build("app")
    modified = first.stat().st_mtime_ns
    second = standin.build("app")
    assert second == first
    assert second.stat().st_mtime_ns == modified
    assert first.is_relative_to(tmp_path / "cache")


def test_build_is_reproducible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHOS_TEST_CACHE", str(tmp_path / "one"))
    first = standin.build("runtime").read_bytes()
    monkeypatch.setenv("SWITCHOS_TEST_CACHE", str(tmp_path / "two"))
    second = standin.build("runtime").read_bytes()
    assert first == second


def test_build_copies_to_out_dir(images: dict[str, Path], tmp_path: Path) -> None:
    copy = standin.build("driver", tmp_path / "out")
    assert copy == tmp_path / "out" / "switchos-standin-driver.efi"
    assert copy.read_bytes() == images["driver"].read_bytes()


def test_flavours_differ(images: dict[str, Path]) -> None:
    contents = {images[flavour].read_bytes() for flavour in FLAVOURS}
    assert len(contents) == len(FLAVOURS)


def test_build_rejects_unknown_flavour() -> None:
    with pytest.raises(ValueError, match="unknown stand-in flavour 'bootloader'"):
        standin.build("bootloader")


@pytest.mark.parametrize("version", ["", "1.0 beta", '1"', "1\n", "x" * 33])
def test_build_rejects_invalid_version(version: str) -> None:
    with pytest.raises(ValueError, match="invalid stand-in version"):
        standin.build("driver", version=version)


def test_started_line_format() -> None:
    assert standin.started_line("app", "chain=\\EFI\\x.efi") == (
        'switchos-standin: started kind=application options="chain=\\EFI\\x.efi"'
    )


def test_status_text_format() -> None:
    assert standin.status_text("runtime", "a=b") == (
        "protocol=1\nversion=0.1.0\nloaded-as=runtime-driver\noptions=a=b\n"
    )
