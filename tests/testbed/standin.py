"""Build the stand-in payload, a small UEFI image in C, with mingw-w64.

The same sources under ``standin/`` build three flavours, which differ in their
PE subsystem and in what they do after printing their start line:

- ``driver``: boot-service driver (subsystem 11), stays resident;
- ``runtime``: runtime driver (subsystem 12), also hooks GetVariable and
  SetVariable to take ``SET_CORE_ACTION`` commands;
- ``app``: application (subsystem 10), chain-loads ``chain=<path>`` from its
  load options and returns the loader's status.

Built images are cached under ``testbed.cache.cache_root()``, keyed by the
sources, the compiler version, the flags and the version string, so only the
first build after a change runs the compiler.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pefile

from switchos.process import run
from testbed.cache import cached_folder, input_key

COMPILER = "x86_64-w64-mingw32-gcc"
SOURCE_FOLDER = Path(__file__).resolve().parent / "standin"
VERSION = "0.1.0"
NAME = "switchos-standin"

# The vendor GUID of SwitchOS variables and the variables the stand-in uses.
VENDOR_GUID = "e21c66ed-bc2e-4d30-ac5e-1b968002c541"
STATUS_VARIABLE = "SwitchOSStatus"
COMMAND_VARIABLE = "SET_CORE_ACTION"

# Every line the stand-in prints starts with this prefix.
CONSOLE_PREFIX = f"{NAME}: "

METADATA_SECTION = ".swos"

# Versions go into a C string literal and the metadata, so they stay plain.
VERSION_PATTERN = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+~-]{0,31}")

COMMON_SOURCES = ("standin.c", "text.c")

# The image is freestanding UEFI code, so it links no C library and uses no
# stack protector or stack probes, whose helpers nothing provides. It has no
# red zone because firmware interrupt handlers run on the same stack, and no
# SSE registers because the runtime hooks run inside OS calls. The runtime
# hooks run from a copy of the image and cannot use absolute addresses (see
# hooks.c): -fno-jump-tables keeps them out of switch statements, and
# -mcmodel=small makes mingw-w64 reach globals of other source files
# RIP-relative instead of through .refptr pointers. Wide strings are UCS-2,
# and -fno-ident keeps the compiler version string out.
COMPILE_FLAGS = (
    "-std=c11",
    "-O2",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-ffreestanding",
    "-fno-stack-protector",
    "-fno-stack-check",
    "-mno-stack-arg-probe",
    "-mno-red-zone",
    "-mgeneral-regs-only",
    "-fshort-wchar",
    "-fno-ident",
    "-fno-jump-tables",
    "-mcmodel=small",
    "-nostdlib",
)

# --dynamicbase keeps the base relocations that firmware needs to load the
# image at any address. 4 KiB section alignment lets the firmware protect a
# runtime driver's code and data pages separately. Without a timestamp,
# builds are byte-for-byte reproducible.
LINK_FLAGS = (
    "-e",
    "efi_main",
    "-Wl,--dynamicbase",
    "-Wl,--section-alignment,4096",
    "-Wl,--no-insert-timestamp",
)


@dataclass(frozen=True)
class Flavour:
    """One build of the stand-in: its PE subsystem, kind name and extra sources."""

    name: str
    kind: str
    subsystem: int
    define: str
    sources: tuple[str, ...]

    @property
    def file_name(self) -> str:
        return f"{NAME}-{self.name}.efi"


FLAVOURS: Mapping[str, Flavour] = {
    "driver": Flavour("driver", "driver", 11, "STANDIN_FLAVOUR_DRIVER", COMMON_SOURCES),
    "runtime": Flavour(
        "runtime", "runtime-driver", 12, "STANDIN_FLAVOUR_RUNTIME_DRIVER", (*COMMON_SOURCES, "hooks.c")
    ),
    "app": Flavour(
        "app", "application", 10, "STANDIN_FLAVOUR_APPLICATION", (*COMMON_SOURCES, "chain.c")
    ),
}


def require_flavour(flavour: str) -> Flavour:
    """Return the flavour named ``flavour``; raise ValueError for an unknown name."""
    try:
        return FLAVOURS[flavour]
    except KeyError:
        raise ValueError(
            f"unknown stand-in flavour {flavour!r}; expected one of {', '.join(FLAVOURS)}"
        ) from None


def require_version(version: str) -> str:
    if not VERSION_PATTERN.fullmatch(version):
        raise ValueError(
            f"invalid stand-in version {version!r}; use up to 32 letters, digits and . + ~ -"
        )
    return version


def compiler_version() -> str:
    return run([COMPILER, "--version"]).stdout.decode(errors="replace")


def compiler_argv(flavour: Flavour, version: str, output: Path) -> list[str]:
    return [
        COMPILER,
        *COMPILE_FLAGS,
        f"-D{flavour.define}",
        f'-DSTANDIN_VERSION="{version}"',
        *(str(SOURCE_FOLDER / source) for source in flavour.sources),
        "-o",
        str(output),
        f"-Wl,--subsystem,{flavour.subsystem}",
        *LINK_FLAGS,
    ]


def source_key_parts() -> list[bytes]:
    """Return every source file's name and contents, in a stable order."""
    parts: list[bytes] = []
    for path in sorted(SOURCE_FOLDER.iterdir()):
        if path.suffix in (".c", ".h"):
            parts += [path.name.encode(), path.read_bytes()]
    return parts


def check_relocations(image: Path) -> None:
    """Raise RuntimeError when ``image`` has no base relocations."""
    pe = pefile.PE(str(image), fast_load=True)
    try:
        directory = pe.OPTIONAL_HEADER.DATA_DIRECTORY[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_BASERELOC"]]
        if directory.Size == 0:
            raise RuntimeError(
                f"{image} has no base relocations, so firmware could not load it at another "
                "address; the stand-in sources must keep at least one absolute pointer"
            )
    finally:
        pe.close()


def build(flavour: str, out_dir: Path | None = None, *, version: str = VERSION) -> Path:
    """Build one flavour of the stand-in and return the path of the PE image.

    ``flavour`` is "driver", "runtime" or "app". The image is built once per
    input and kept in the cache. With ``out_dir``, it is also copied there as
    ``switchos-standin-<flavour>.efi``, and the copy is returned. ``version``
    goes into the .swos metadata and SwitchOSStatus. Raises ValueError for an
    unknown flavour or a version with other characters than letters, digits
    and ``.+~-``, and switchos.errors.CommandFailedError when the build fails.
    """
    spec = require_flavour(flavour)
    require_version(version)
    key = input_key(
        [
            *source_key_parts(),
            compiler_version(),
            *compiler_argv(spec, version, Path("out.efi")),
        ]
    )

    def compile_into(folder: Path) -> None:
        output = folder / spec.file_name
        run(compiler_argv(spec, version, output))
        check_relocations(output)

    image = cached_folder(f"standin-{spec.name}", key, compile_into) / spec.file_name
    if out_dir is None:
        return image
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / spec.file_name
    shutil.copyfile(image, target)
    return target


def metadata_text(flavour: str, *, version: str = VERSION) -> str:
    """Return the exact text of the .swos section that ``build`` embeds, without NUL padding."""
    spec = require_flavour(flavour)
    lines = [
        "protocol=1",
        f"name={NAME}",
        f"version={require_version(version)}",
        f"kind={spec.kind}",
        "store=partition",
        "disks=virtio-blk,nvme,ahci",
    ]
    if spec.name == "app":
        lines.append("chainload=yes")
    return "".join(f"{line}\n" for line in lines)


def started_line(flavour: str, options: str = "") -> str:
    """Return the console line a flavour prints when started with printable ASCII ``options``."""
    return f'{CONSOLE_PREFIX}started kind={require_flavour(flavour).kind} options="{options}"'


def status_text(flavour: str, options: str = "", *, version: str = VERSION) -> str:
    """Return the SwitchOSStatus data the firmware stores for a flavour started with ``options``.

    The runtime flavour's GetVariable hook returns this text followed by the
    pending-action, pending-slot and pending-data lines.
    """
    spec = require_flavour(flavour)
    return (
        f"protocol=1\nversion={require_version(version)}\nloaded-as={spec.kind}\n"
        f"options={options}\n"
    )
