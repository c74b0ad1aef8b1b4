"""The one wrapper through which SwitchOS runs external programs."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence

from switchos.errors import CommandFailedError, ToolMissingError

# Debian package that provides each program we call, for the "not installed" hint.
DEBIAN_PACKAGES: Mapping[str, str] = {
    "sgdisk": "gdisk",
    "sfdisk": "fdisk",
    "partx": "util-linux",
    "losetup": "util-linux",
    "blockdev": "util-linux",
    "fsck.fat": "dosfstools",
    "mkfs.fat": "dosfstools",
    "mcopy": "mtools",
    "mdir": "mtools",
    "mmd": "mtools",
    "mdel": "mtools",
    "mren": "mtools",
    "minfo": "mtools",
    "mattrib": "mtools",
    "mtype": "mtools",
    "udevadm": "udev",
    "chattr": "e2fsprogs",
    "lsattr": "e2fsprogs",
    "efibootmgr": "efibootmgr",
    "efibootdump": "efibootmgr",
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "x86_64-w64-mingw32-gcc": "gcc-mingw-w64-x86-64",
    "mkswap": "util-linux",
    "dmsetup": "dmsetup",
    "curl": "curl",
    "openssl": "openssl",
}


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    check: bool = True,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` with a C locale and captured output.

    Raises ToolMissingError when the program is not installed and, when
    ``check`` is true, CommandFailedError with its stderr when it exits
    non-zero.
    """
    args = [os.fspath(arg) for arg in argv]
    program = args[0]
    if shutil.which(program) is None:
        package = DEBIAN_PACKAGES.get(os.path.basename(program))
        hint = f"install it with: apt-get install {package}" if package else f"install {program}"
        raise ToolMissingError(f"{program} is not installed", hint=hint)

    child_env = dict(os.environ if env is None else env)
    child_env["LC_ALL"] = "C"
    child_env.pop("LANGUAGE", None)
    result = subprocess.run(
        args,
        input=input,
        capture_output=True,
        env=child_env,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        stderr = result.stderr.decode(errors="replace").strip()
        detail = f": {stderr}" if stderr else ""
        raise CommandFailedError(
            f"{' '.join(args)} failed with exit code {result.returncode}{detail}"
        )
    return result
