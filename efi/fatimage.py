"""Reading and writing a FAT file system inside a disk image, without mounting it.

mtools addresses a file system at a byte offset of an image with the
``-i IMAGE@@OFFSET`` syntax, so no loop device and no root are needed.
``fsck.fat`` has no offset option, so the check copies the partition into a
sparse temporary file and runs ``fsck.fat -n`` on the copy: that costs disk
space (only for the blocks in use) but never root.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path, PurePosixPath

from switchos.errors import CommandFailedError, SwitchOSError
from switchos.process import run

COPY_BLOCK = 1024 * 1024
_FREE_PATTERN = re.compile(r"^\s*([\d ]+) bytes free", re.MULTILINE)


class FatImageError(SwitchOSError):
    """An mtools or fsck.fat operation on a disk image failed."""


def _mtools_environment() -> dict[str, str]:
    environment = dict(os.environ)
    # MTOOLS_SKIP_CHECK accepts file systems whose geometry fields do not match
    # the image size, because the FAT fills one partition and not the whole
    # image. MTOOLSRC=/dev/null keeps a user's ~/.mtoolsrc from changing behaviour.
    environment["MTOOLS_SKIP_CHECK"] = "1"
    environment["MTOOLSRC"] = "/dev/null"
    return environment


class FatImage:
    """The FAT file system of one partition of a disk image.

    ``offset`` and ``size`` are the partition's position in bytes. Paths are
    relative to the file system root, with ``/`` as separator.
    """

    def __init__(self, image: Path, offset: int, size: int) -> None:
        self.image = image
        self.offset = offset
        self.size = size

    @property
    def _drive(self) -> str:
        return f"{self.image}@@{self.offset}"

    def _run(self, tool: str, *arguments: str, check: bool = True) -> tuple[int, str, str]:
        result = run(
            [tool, "-i", self._drive, *arguments], check=False, env=_mtools_environment()
        )
        stdout = result.stdout.decode(errors="replace")
        stderr = result.stderr.decode(errors="replace").strip()
        if check and result.returncode != 0:
            raise FatImageError(
                f"{tool} {' '.join(arguments)} on {self._drive} failed: {stderr}",
                hint="check that the partition holds a FAT file system (fsck.fat -n)",
            )
        return result.returncode, stdout, stderr

    @staticmethod
    def _target(path: PurePosixPath | str) -> str:
        return "::/" + str(path).lstrip("/")

    def exists(self, path: PurePosixPath | str) -> bool:
        returncode, _stdout, _stderr = self._run("mdir", "-b", self._target(path), check=False)
        return returncode == 0

    def read_bytes(self, path: PurePosixPath | str) -> bytes | None:
        """Return the file's contents, or None when it does not exist."""
        if not self.exists(path):
            return None
        result = run(
            ["mcopy", "-n", "-i", self._drive, self._target(path), "-"],
            env=_mtools_environment(),
        )
        return result.stdout

    def make_dirs(self, path: PurePosixPath | str) -> None:
        """Create the folder and its parents; existing folders are kept."""
        current = PurePosixPath()
        for part in PurePosixPath(path).parts:
            current = current / part
            if not self.exists(current):
                self._run("mmd", self._target(current))

    def write_bytes(self, path: PurePosixPath | str, data: bytes) -> None:
        """Create or overwrite a file."""
        with tempfile.NamedTemporaryFile(prefix="switchos-fat-") as source:
            source.write(data)
            source.flush()
            # -D o overwrites an existing file instead of asking.
            self._run("mcopy", "-D", "o", source.name, self._target(path))

    def replace(self, source: PurePosixPath | str, target: PurePosixPath | str) -> None:
        """Rename ``source`` to ``target``, overwriting it.

        mren rewrites the directory entry in place. Unlike rename(2) on a
        mounted file system this is not atomic, which is acceptable for an
        image that no running system uses.
        """
        self._run("mren", "-D", "o", self._target(source), self._target(target))

    def delete(self, path: PurePosixPath | str) -> None:
        """Delete a file; a missing file is not an error."""
        if self.exists(path):
            self._run("mdel", self._target(path))

    def remove_dir(self, path: PurePosixPath | str) -> None:
        """Remove an empty folder; mtools' mrd fails on a folder that still has entries."""
        self._run("mrd", self._target(path))

    def free_bytes(self) -> int:
        _code, stdout, _stderr = self._run("mdir", "-a", "::/")
        match = _FREE_PATTERN.search(stdout)
        if not match:
            raise FatImageError(f"cannot read the free space of {self._drive} from mdir")
        return int(match.group(1).replace(" ", ""))

    def list_names(self, path: PurePosixPath | str) -> list[str]:
        """Return the names of the entries of a folder, without . and .."""
        _code, stdout, _stderr = self._run("mdir", "-b", self._target(path) + "/")
        names = []
        for line in stdout.splitlines():
            name = PurePosixPath(line.strip().removeprefix("::")).name
            if line.strip() and name not in (".", ".."):
                names.append(name)
        return names

    def check(self) -> None:
        """Run ``fsck.fat -n`` on a copy of the partition; raise FatImageError when it fails."""
        with tempfile.TemporaryDirectory(prefix="switchos-fsck-") as folder:
            copy = Path(folder) / "partition.img"
            self._copy_partition(copy)
            try:
                run(["fsck.fat", "-n", copy])
            except CommandFailedError as error:
                raise FatImageError(
                    f"the FAT file system at byte {self.offset} of {self.image} has errors: "
                    f"{error.message}",
                    hint="repair it with fsck.fat on the partition before installing",
                ) from None

    def _copy_partition(self, copy: Path) -> None:
        # All-zero blocks are skipped with seek, so the copy is sparse.
        with self.image.open("rb") as source, copy.open("wb") as target:
            source.seek(self.offset)
            remaining = self.size
            zero = bytes(COPY_BLOCK)
            while remaining > 0:
                block = source.read(min(COPY_BLOCK, remaining))
                if not block:
                    break
                if block == zero[: len(block)]:
                    target.seek(len(block), os.SEEK_CUR)
                else:
                    target.write(block)
                remaining -= len(block)
            target.truncate(self.size)
