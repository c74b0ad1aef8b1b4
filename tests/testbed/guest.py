"""A Linux guest for the test machines: a Debian kernel and an initramfs from Debian packages.

The initramfs contains busybox, Debian's Python 3 with pyparted, efibootmgr and a few disk
tools, plus the SwitchOS package as installed in the running virtual environment. Its
/init mounts efivarfs and the ESP, runs the script the test placed on the ESP as root,
prints its output between marker lines and powers the machine off.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement

from testbed.cache import REPOSITORY, cached_folder, input_key
from testbed.disk import run

# Packages whose files make up the guest's root, with their dependencies.
ROOT_PACKAGES = (
    "busybox-static",
    "python3.11-minimal",
    "libpython3.11-stdlib",
    "python3-parted",
    "efibootmgr",
    "gdisk",
    "util-linux",
    "dosfstools",
    "dmsetup",
)

# Dependencies that only matter to a package manager or a full system; the
# guest's busybox replaces the rest.
EXCLUDED_PACKAGES = frozenset(
    {
        "cdebconf",
        "debconf",
        "dpkg",
        "install-info",
        "libdebian-installer4",
        "libnewt0.52",
        "libslang2",
        "libtextwrap1",
        "perl",
        "perl-base",
        "perl-modules-5.36",
        "libperl5.36",
        "libgdbm6",
        "libgdbm-compat4",
        "libdb5.3",
        "tar",
        "mailcap",
        "mime-support",
        "libelogind0",
    }
)

# Kernel modules the guest loads at start, dependencies first. Missing ones are
# skipped: the cloud kernel has no AHCI driver, and NVMe is built in.
GUEST_MODULES = (
    "virtio_pci",
    "virtio_blk",
    "nvme",
    "ahci",
    "sd_mod",
    "efivarfs",
    "vfat",
    "nls_cp437",
    "nls_ascii",
    "nls_utf8",
    "nls_iso8859_1",
    "loop",
    "dm_mod",
)

# The kernel flavour: "cloud" boots fastest but has no AHCI driver; "generic"
# is the full Debian kernel with SATA support.
KERNEL_PACKAGES = {"cloud": "linux-image-cloud-amd64", "generic": "linux-image-amd64"}

BEGIN_MARKER = "switchos-guest: begin"
EXIT_MARKER = re.compile(r"^switchos-guest: exit=(\d+)$")

INIT_SCRIPT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root PYTHONDONTWRITEBYTECODE=1 LANG=C.UTF-8
mkdir -p /proc /sys /dev /run /tmp /root /boot/efi
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
echo 1 > /proc/sys/kernel/printk
while read module; do
    [ -f "/lib/modules/$module" ] && insmod "/lib/modules/$module" 2>/dev/null
done < /etc/guest-modules
if [ -d /sys/firmware/efi ]; then
    mount -t efivarfs efivarfs /sys/firmware/efi/efivars
fi
# Wait for the disks, then mount the partition that contains the test's script.
tries=0
while [ $tries -lt 50 ]; do
    for dev in /sys/class/block/*; do
        name=${dev##*/}
        [ -f "$dev/partition" ] || continue
        if mount -t vfat "/dev/$name" /boot/efi 2>/dev/null; then
            if [ -f /boot/efi/switchos-guest/run.sh ]; then
                break 2
            fi
            umount /boot/efi
        fi
    done
    tries=$((tries + 1))
    sleep 0.2
done
echo "switchos-guest: begin"
if [ -f /boot/efi/switchos-guest/run.sh ]; then
    cp /boot/efi/switchos-guest/run.sh /tmp/run.sh
    sh /tmp/run.sh < /dev/null 2>&1
    status=$?
else
    echo "switchos-guest: no script found on any FAT partition"
    echo "switchos-guest: block devices: $(ls /sys/class/block | tr '\\n' ' ')"
    echo "switchos-guest: file systems: $(grep -v nodev /proc/filesystems | tr -d '\\t' | tr '\\n' ' ')"
    dmesg | tail -20
    status=127
fi
sync
umount /boot/efi 2>/dev/null
echo "switchos-guest: exit=$status"
poweroff -f
"""


@dataclass(frozen=True)
class GuestFiles:
    """The kernel and initramfs parts that the ESP of a guest machine carries."""

    kernel: Path
    initrd_parts: tuple[Path, ...]
    flavour: str


def _apt_package_closure(packages: tuple[str, ...]) -> list[str]:
    output = run(
        "apt-cache",
        "depends",
        "--recurse",
        "--no-recommends",
        "--no-suggests",
        "--no-conflicts",
        "--no-breaks",
        "--no-replaces",
        "--no-enhances",
        *packages,
    )
    names = {line.strip() for line in output.splitlines() if line and not line.startswith((" ", "<"))}
    return sorted(names - EXCLUDED_PACKAGES)


def _package_versions(names: list[str]) -> list[str]:
    output = run("apt-cache", "policy", *names)
    versions: list[str] = []
    current = ""
    for line in output.splitlines():
        if not line.startswith(" "):
            current = line.rstrip(":")
        elif line.strip().startswith("Candidate:"):
            versions.append(f"{current}={line.split()[-1]}")
    return versions


def _download(names: list[str], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", "-q", *names], cwd=folder, check=True, capture_output=True)
    return sorted(folder.glob("*.deb"))


def _resolve_kernel_package(flavour: str) -> str:
    meta = KERNEL_PACKAGES[flavour]
    output = run("apt-cache", "depends", meta)
    match = re.search(r"Depends: (linux-image-\S+)", output)
    if match is None:
        raise RuntimeError(f"cannot resolve the kernel package behind {meta}")
    return match.group(1)


def _module_order(modules_dir: Path, names: tuple[str, ...]) -> list[str]:
    """Return module paths relative to modules_dir, dependencies before dependants."""
    dependencies: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        module, _, depends = line.partition(":")
        dependencies[module] = depends.split()
        name = Path(module).name.split(".ko")[0].replace("-", "_")
        by_name[name] = module
    ordered: list[str] = []

    def visit(module: str) -> None:
        for dependency in dependencies.get(module, []):
            visit(dependency)
        if module not in ordered:
            ordered.append(module)

    for name in names:
        if name in by_name:
            visit(by_name[name])
    return ordered


def _write_cpio(root: Path, target: Path) -> None:
    """Pack ``root`` into a gzip-compressed newc cpio archive."""
    files = sorted(str(path.relative_to(root)) for path in root.rglob("*"))
    listing = "\n".join(files).encode() + b"\n"
    result = subprocess.run(
        ["cpio", "--quiet", "-o", "-H", "newc", "-R", "0:0"],
        cwd=root,
        input=listing,
        capture_output=True,
        check=True,
    )
    with gzip.open(target, "wb", compresslevel=6) as archive:
        archive.write(result.stdout)


def _build_base(flavour: str, folder: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="guest-base-"))
    try:
        root = work / "root"
        root.mkdir()
        packages = _apt_package_closure(ROOT_PACKAGES)
        for deb in _download(packages, work / "debs"):
            run("dpkg-deb", "-x", deb, root)

        kernel_package = _resolve_kernel_package(flavour)
        kernel_debs = _download([kernel_package], work / "kernel")
        kernel_root = work / "kernel-root"
        run("dpkg-deb", "-x", kernel_debs[0], kernel_root)
        kernel = next((kernel_root / "boot").glob("vmlinuz-*"))
        shutil.copyfile(kernel, folder / "vmlinuz")
        modules_dir = next((kernel_root / "lib" / "modules").iterdir())
        # The package ships no modules.dep; depmod writes it at install time.
        run("depmod", "-b", kernel_root, modules_dir.name)
        (root / "lib" / "modules").mkdir(parents=True, exist_ok=True)
        module_lines = []
        for relative in _module_order(modules_dir, GUEST_MODULES):
            name = Path(relative).name
            shutil.copyfile(modules_dir / relative, root / "lib" / "modules" / name)
            module_lines.append(name)
        (root / "etc").mkdir(exist_ok=True)
        (root / "etc" / "guest-modules").write_text("\n".join(module_lines) + "\n")

        for unused in ("usr/share/doc", "usr/share/man", "usr/share/locale", "usr/share/info"):
            shutil.rmtree(root / unused, ignore_errors=True)
        (root / "bin").mkdir(exist_ok=True)
        (root / "usr" / "bin" / "python3").unlink(missing_ok=True)
        os.symlink("python3.11", root / "usr" / "bin" / "python3")
        (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        (root / "etc" / "group").write_text("root:x:0:\n")
        init = root / "init"
        init.write_text(INIT_SCRIPT)
        init.chmod(0o755)
        run("ldconfig", "-r", root)
        # Debian's packages ship no bytecode; compiling it here saves every guest
        # start from doing so under emulation.
        run(sys.executable, "-m", "compileall", "-q", "-j", "0",
            "-s", str(root), "-p", "/", root / "usr" / "lib" / "python3.11",
            root / "usr" / "lib" / "python3" / "dist-packages")
        _write_cpio(root, folder / "base.cpio.gz")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _distribution_closure(name: str) -> list[importlib.metadata.Distribution]:
    """Return the installed distributions that ``name`` needs, itself included, but pyparted."""
    seen: dict[str, importlib.metadata.Distribution] = {}
    pending = [name]
    while pending:
        current = pending.pop()
        key = current.lower().replace("_", "-")
        if key in seen or key == "pyparted":
            continue
        distribution = importlib.metadata.distribution(current)
        seen[key] = distribution
        for line in distribution.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return list(seen.values())


def _project_key() -> str:
    parts: list[str] = []
    for folder in ("switchos", "installer", "efi", "boot_entries", "partition"):
        for path in sorted((REPOSITORY / folder).rglob("*.py")):
            parts.append(str(path.relative_to(REPOSITORY)))
            parts.append(path.read_bytes())  # type: ignore[arg-type]
    parts.append((REPOSITORY / "pyproject.toml").read_bytes())  # type: ignore[arg-type]
    for distribution in _distribution_closure("switchos"):
        parts.append(f"{distribution.metadata['Name']}=={distribution.version}")
    return input_key(parts)


def _build_project(folder: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="guest-project-"))
    try:
        root = work / "root"
        site = root / "usr" / "local" / "lib" / "python3.11" / "dist-packages"
        site.mkdir(parents=True)
        wheels = work / "wheels"
        run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
            "-w", wheels, REPOSITORY)
        requirements = [
            f"{d.metadata['Name']}=={d.version}"
            for d in _distribution_closure("switchos")
            if d.metadata["Name"].lower() != "switchos"
        ]
        run(sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", site,
            *wheels.glob("*.whl"), *requirements)
        shutil.rmtree(site / "bin", ignore_errors=True)
        scripts = root / "usr" / "local" / "bin"
        scripts.mkdir(parents=True)
        launcher = scripts / "switchos"
        launcher.write_text("#!/usr/bin/python3.11\nfrom switchos.cli import main\nmain()\n")
        launcher.chmod(0o755)
        _write_cpio(root, folder / "project.cpio.gz")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def build_guest(flavour: str = "cloud") -> GuestFiles:
    """Build (or take from the cache) the guest kernel and initramfs parts."""
    if flavour not in KERNEL_PACKAGES:
        raise ValueError(f"unknown kernel flavour {flavour!r}; expected one of {sorted(KERNEL_PACKAGES)}")
    packages = _apt_package_closure(ROOT_PACKAGES)
    kernel_package = _resolve_kernel_package(flavour)
    base_key = input_key(
        [INIT_SCRIPT, *GUEST_MODULES, *_package_versions([*packages, kernel_package]), "base-v1"]
    )
    base = cached_folder(f"guest-base-{flavour}", base_key, lambda folder: _build_base(flavour, folder))
    project = cached_folder("guest-project", _project_key(), _build_project)
    return GuestFiles(
        kernel=base / "vmlinuz",
        initrd_parts=(base / "base.cpio.gz", project / "project.cpio.gz"),
        flavour=flavour,
    )


@dataclass(frozen=True)
class GuestRun:
    """The output of a script run in the guest, and its exit status."""

    output: list[str]
    exit_status: int | None

    @property
    def text(self) -> str:
        return "\n".join(self.output)


def parse_guest_output(lines: list[str]) -> GuestRun:
    """Cut the script's output out of the console, between the begin and exit markers."""
    output: list[str] = []
    inside = False
    for line in lines:
        if line == BEGIN_MARKER:
            inside = True
            output = []
            continue
        match = EXIT_MARKER.match(line)
        if inside and match:
            return GuestRun(output=output, exit_status=int(match.group(1)))
        if inside and not re.match(r"^\[\s*\d+\.\d+\] ", line):
            output.append(line)
    return GuestRun(output=output, exit_status=None)
