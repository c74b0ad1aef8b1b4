"""The Linux variable store: efivarfs, one file per firmware variable.

Each file is named ``<Name>-<vendor guid>`` and contains the variable's
attributes as a little-endian UINT32 followed by its data. Writing a file sets
the variable; the kernel passes each write() call to the firmware's
SetVariable() as a whole. Attributes and data must therefore go in one call.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct
import uuid
from pathlib import Path

from switchos.boot_entries.store import (
    BOOT_VARIABLE_ATTRIBUTES,
    EFI_GLOBAL_VARIABLE,
    FirmwareVariableError,
    Variable,
    VariableAccessDeniedError,
    VariableAttribute,
    VariableRejectedError,
    VariableStoreError,
    VariableStoreFullError,
    VariableStoreReadOnlyError,
    VariableStoreUnavailableError,
)

EFIVARFS_ROOT = Path("/sys/firmware/efi/efivars")

# The attributes word at the start of every efivarfs file.
ATTRIBUTES_FORMAT = "<I"
ATTRIBUTES_SIZE = struct.calcsize(ATTRIBUTES_FORMAT)

# "-" plus the 36 characters of a GUID in its text form.
GUID_SUFFIX_LENGTH = 37

# Inode flags ioctls from <linux/fs.h>. Their numbers encode sizeof(long),
# although the kernel reads and writes a plain int; both are native-endian.
_IOC_READ = 2
_IOC_WRITE = 1
_LONG_SIZE = ctypes.sizeof(ctypes.c_long)
FS_IOC_GETFLAGS = (_IOC_READ << 30) | (_LONG_SIZE << 16) | (ord("f") << 8) | 1
FS_IOC_SETFLAGS = (_IOC_WRITE << 30) | (_LONG_SIZE << 16) | (ord("f") << 8) | 2
FS_IMMUTABLE_FL = 0x00000010
INODE_FLAGS_FORMAT = "=i"

READ_CHUNK_SIZE = 64 * 1024

# The error class, cause and hint for each errno that efivarfs returns.
_ERRNO_ERRORS: dict[int, tuple[type[VariableStoreError], str, str]] = {
    errno.ENOSPC: (
        VariableStoreFullError,
        "the firmware variable storage (NVRAM) is full",
        "delete unused boot entries (efibootmgr -b XXXX -B); some firmware frees "
        "the space of deleted variables only after a reboot",
    ),
    errno.EINVAL: (
        VariableRejectedError,
        "the firmware rejected the variable's name, attributes or data",
        "check the attributes; firmware with a locked or authenticated variable "
        "rejects plain writes",
    ),
    errno.EROFS: (
        VariableStoreReadOnlyError,
        "efivarfs is mounted read-only",
        "remount it read-write: mount -o remount,rw {root}",
    ),
    errno.EPERM: (
        VariableAccessDeniedError,
        "permission denied (not root, or the file is immutable)",
        "run as root; an immutable file is cleared with chattr -i",
    ),
    errno.EACCES: (
        VariableAccessDeniedError,
        "permission denied (not root)",
        "run as root",
    ),
    errno.EIO: (
        FirmwareVariableError,
        "the firmware reported an error",
        "retry once; if it fails again, reboot and check for a firmware update",
    ),
}


class EfivarfsStore:
    """Firmware variables of the running Linux system, through an efivarfs mount.

    ``root`` is the efivarfs mount point; tests pass a directory of their own.
    """

    def __init__(self, root: Path = EFIVARFS_ROOT) -> None:
        self.root = Path(root)

    def get(self, name: str, vendor: uuid.UUID = EFI_GLOBAL_VARIABLE) -> Variable | None:
        """Return the variable, or None when its file is missing or empty.

        An empty file is not a variable: efivarfs leaves one behind when the
        first write of a new variable fails, until the next mount.
        """
        path = self._path(name, vendor)
        try:
            content = _read_file(path)
        except FileNotFoundError:
            return None
        except OSError as error:
            raise self._error(error, "reading", path) from error

        if len(content) < ATTRIBUTES_SIZE:
            return None
        (attributes,) = struct.unpack_from(ATTRIBUTES_FORMAT, content)
        return Variable(name, vendor, VariableAttribute(attributes), content[ATTRIBUTES_SIZE:])

    def set(
        self,
        name: str,
        data: bytes,
        *,
        vendor: uuid.UUID = EFI_GLOBAL_VARIABLE,
        attributes: VariableAttribute = BOOT_VARIABLE_ATTRIBUTES,
    ) -> None:
        """Create or replace the variable with one write() of attributes and data.

        Raises a VariableStoreError subclass that names the cause (NVRAM full,
        rejected, read-only, permission denied, firmware error).
        """
        path = self._path(name, vendor)
        buffer = struct.pack(ATTRIBUTES_FORMAT, int(attributes)) + bytes(data)
        existed = os.path.lexists(path)
        was_immutable = False
        try:
            if existed:
                was_immutable = _clear_immutable(path)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                # efivarfs marks a new variable of a vendor it does not know as
                # immutable at creation; the open fd may still write it.
                was_immutable = _clear_immutable_fd(fd) or was_immutable
                written = os.write(fd, buffer)
            finally:
                os.close(fd)
        except OSError as error:
            if not existed:
                _remove_empty_file(path)
            raise self._error(error, "writing", path) from error
        finally:
            if was_immutable:
                _restore_immutable(path)

        if written != len(buffer):
            raise FirmwareVariableError(
                f"writing {path.name} failed: only {written} of {len(buffer)} bytes were written",
                hint="retry once; if it fails again, reboot and check for a firmware update",
            )

    def delete(self, name: str, vendor: uuid.UUID = EFI_GLOBAL_VARIABLE) -> None:
        """Delete the variable; deleting a missing variable is not an error."""
        path = self._path(name, vendor)
        if not os.path.lexists(path):
            return

        was_immutable = False
        try:
            was_immutable = _clear_immutable(path)
            os.unlink(path)
        except FileNotFoundError:
            return
        except OSError as error:
            raise self._error(error, "deleting", path) from error
        finally:
            if was_immutable:
                _restore_immutable(path)

    def list(self) -> list[tuple[str, uuid.UUID]]:
        """Return the name and vendor GUID of every variable, sorted.

        Files whose name is not ``<Name>-<guid>`` and empty files are skipped.
        """
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError as error:
            raise VariableStoreUnavailableError(
                f"efivarfs directory {self.root} does not exist",
                hint="boot the machine in UEFI mode, or mount efivarfs: "
                f"mount -t efivarfs efivarfs {self.root}",
            ) from error
        except OSError as error:
            raise self._error(error, "listing", self.root) from error

        variables: list[tuple[str, uuid.UUID]] = []
        for entry in entries:
            key = parse_file_name(entry.name)
            if key is None:
                continue
            try:
                if entry.stat().st_size < ATTRIBUTES_SIZE:
                    continue
            except FileNotFoundError:
                continue
            variables.append(key)
        return sorted(variables, key=lambda key: (key[0], str(key[1])))

    def _path(self, name: str, vendor: uuid.UUID) -> Path:
        if not name or "/" in name or "\0" in name:
            raise VariableRejectedError(
                f"invalid variable name {name!r}",
                hint="a variable name is non-empty and contains no '/' or NUL",
            )
        return self.root / format_file_name(name, vendor)

    def _error(self, error: OSError, action: str, path: Path) -> VariableStoreError:
        return map_os_error(error, action=action, variable=path.name, root=self.root)


def format_file_name(name: str, vendor: uuid.UUID) -> str:
    """Return the efivarfs file name of a variable: ``<Name>-<guid>``, GUID in lower case."""
    return f"{name}-{vendor}"


def parse_file_name(file_name: str) -> tuple[str, uuid.UUID] | None:
    """Split an efivarfs file name into variable name and vendor GUID, or return None."""
    if len(file_name) <= GUID_SUFFIX_LENGTH or file_name[-GUID_SUFFIX_LENGTH] != "-":
        return None
    try:
        vendor = uuid.UUID(file_name[-GUID_SUFFIX_LENGTH + 1 :])
    except ValueError:
        return None
    return file_name[:-GUID_SUFFIX_LENGTH], vendor


def map_os_error(
    error: OSError, *, action: str, variable: str, root: Path = EFIVARFS_ROOT
) -> VariableStoreError:
    """Return the VariableStoreError subclass for an errno from efivarfs."""
    known = _ERRNO_ERRORS.get(error.errno or 0)
    if known is None:
        return VariableStoreError(
            f"{action} {variable} failed: {error.strerror or error}",
            hint="check the kernel log (dmesg) for efivarfs messages",
        )
    error_class, cause, hint = known
    return error_class(f"{action} {variable} failed: {cause}", hint=hint.format(root=root))


def _read_file(path: Path) -> bytes:
    # os.read retries by itself when a signal interrupts it with EINTR
    # (PEP 475); efivarfs returns EINTR when a rate-limited non-root read is
    # interrupted, so no loop for it is needed here.
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, READ_CHUNK_SIZE):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _get_flags(fd: int) -> int:
    buffer = bytearray(struct.calcsize(INODE_FLAGS_FORMAT))
    fcntl.ioctl(fd, FS_IOC_GETFLAGS, buffer)
    (flags,) = struct.unpack(INODE_FLAGS_FORMAT, buffer)
    return int(flags)


def _set_flags(fd: int, flags: int) -> None:
    fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack(INODE_FLAGS_FORMAT, flags))


def _clear_immutable_fd(fd: int) -> bool:
    """Clear FS_IMMUTABLE_FL on an open file; return whether it was set."""
    try:
        flags = _get_flags(fd)
    except OSError as error:
        # A file system without inode flags has no immutable flag to clear.
        if error.errno in (errno.ENOTTY, errno.EOPNOTSUPP, errno.ENOSYS):
            return False
        raise
    if not flags & FS_IMMUTABLE_FL:
        return False
    _set_flags(fd, flags & ~FS_IMMUTABLE_FL)
    return True


def _clear_immutable(path: Path) -> bool:
    # The flags ioctls work on a read-only descriptor, which an immutable file allows.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        return _clear_immutable_fd(fd)
    finally:
        os.close(fd)


def _restore_immutable(path: Path) -> None:
    """Set FS_IMMUTABLE_FL again if the file still exists.

    Best effort: the variable itself was written or deleted already, and a
    missing flag only removes the kernel's guard against accidental deletion.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return
    try:
        _set_flags(fd, _get_flags(fd) | FS_IMMUTABLE_FL)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_empty_file(path: Path) -> None:
    # NOTE: depending on the kernel version, efivarfs keeps the empty file of
    # a failed first write until the next mount, and unlinking it can fail
    # because no variable exists behind it. get() and list() therefore skip
    # empty files instead of relying on this cleanup.
    try:
        if os.stat(path).st_size == 0:
            os.unlink(path)
    except OSError:
        pass
