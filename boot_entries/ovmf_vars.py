"""The offline variable store: an OVMF/edk2 variables file (``OVMF_VARS.fd``).

virt-firmware reads and writes the edk2 "authenticated variables" store inside
the file's firmware volume; this module adds the VariableStore interface, our
errors and atomic writes. Every set() and delete() rewrites the file at once
(write-through), so a crash leaves either the old or the new file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from virt.firmware.efi import ucs16
from virt.firmware.efi.efivar import EfiVar
from virt.firmware.varstore.edk2 import Edk2VarStore, Edk2VarStoreQcow2

from switchos.boot_entries.store import (
    BOOT_VARIABLE_ATTRIBUTES,
    EFI_GLOBAL_VARIABLE,
    Variable,
    VariableAccessDeniedError,
    VariableAttribute,
    VariableRejectedError,
    VariableStoreError,
    VariableStoreFullError,
    VariableStoreReadOnlyError,
)
from switchos.errors import ExitCode

# Attributes that need a signed payload; this store writes plain data only,
# as the firmware would reject an unsigned write to such a variable.
AUTHENTICATED_ATTRIBUTES = (
    VariableAttribute.AUTHENTICATED_WRITE_ACCESS
    | VariableAttribute.TIME_BASED_AUTHENTICATED_WRITE_ACCESS
    | VariableAttribute.ENHANCED_AUTHENTICATED_ACCESS
)

_Key = tuple[str, str]
_Result = TypeVar("_Result")


class InvalidVarsFileError(VariableStoreError):
    """The variables file is missing or contains no edk2 variable store."""

    exit_code = ExitCode.INVALID_INPUT


class OvmfVarsStore:
    """Firmware variables in an OVMF/edk2 variables file, for offline provisioning.

    The whole file is read when the store is created. Each set() and delete()
    writes the file again through a temporary file and a rename.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._varstore = _open_varstore(self.path)
        self._variables: dict[_Key, EfiVar] = {}
        # NOTE: virt-firmware keys the variables it reads by name alone, so of
        # two variables with one name and different vendor GUIDs only the last
        # one survives loading (and the next save). OVMF's own variables do not
        # share names; a file edited by other tools might.
        for variable in _call_virt_firmware(self._varstore.get_varlist, self.path).values():
            self._variables[(str(variable.name), str(variable.guid))] = variable

    def get(self, name: str, vendor: uuid.UUID = EFI_GLOBAL_VARIABLE) -> Variable | None:
        """Return the variable, or None when it does not exist."""
        variable = self._variables.get((name, str(vendor)))
        if variable is None:
            return None
        return Variable(name, vendor, VariableAttribute(variable.attr), bytes(variable.data))

    def set(
        self,
        name: str,
        data: bytes,
        *,
        vendor: uuid.UUID = EFI_GLOBAL_VARIABLE,
        attributes: VariableAttribute = BOOT_VARIABLE_ATTRIBUTES,
    ) -> None:
        """Create or replace the variable and write the file.

        Raises VariableRejectedError for an empty name, empty data or
        authenticated attributes, and VariableStoreFullError when the store
        has no room left.
        """
        if not name or "\0" in name:
            raise VariableRejectedError(f"invalid variable name {name!r} for {self.path}")
        if not data:
            raise VariableRejectedError(
                f"writing {name} to {self.path} failed: the data is empty",
                hint="delete the variable instead of writing it empty",
            )
        if attributes & AUTHENTICATED_ATTRIBUTES:
            raise VariableRejectedError(
                f"writing {name} to {self.path} failed: authenticated variables need a signed "
                "payload, which this store does not create",
                hint="use virt-fw-vars to enroll keys and signed variables",
            )

        key = (name, str(vendor))
        variable = EfiVar(ucs16.from_string(name), guid=vendor, attr=int(attributes), data=bytes(data))
        previous = self._variables.get(key)
        self._variables[key] = variable
        try:
            self.save()
        except VariableStoreError:
            self._restore(key, previous)
            raise

    def delete(self, name: str, vendor: uuid.UUID = EFI_GLOBAL_VARIABLE) -> None:
        """Delete the variable and write the file; deleting a missing variable is not an error."""
        key = (name, str(vendor))
        previous = self._variables.pop(key, None)
        if previous is None:
            return
        try:
            self.save()
        except VariableStoreError:
            self._restore(key, previous)
            raise

    def list(self) -> list[tuple[str, uuid.UUID]]:
        """Return the name and vendor GUID of every variable, sorted."""
        keys = sorted(self._variables)
        return [(name, uuid.UUID(vendor)) for name, vendor in keys]

    def save(self, target: Path | None = None) -> None:
        """Write all variables to ``target`` (default: the store's own file) atomically.

        The rest of the file (the firmware volume header and the fault tolerant
        write area after the store) is copied unchanged.
        """
        target = self.path if target is None else Path(target)
        capacity = self._varstore.end - self._varstore.start
        used = sum(len(Edk2VarStore.bytes_var(variable)) for variable in self._variables.values())
        if used > capacity:
            raise VariableStoreFullError(
                f"writing {target} failed: the variables need {used} bytes, "
                f"but its variable store has room for {capacity}",
                hint="delete unused variables, or start from a larger variables "
                "template (OVMF_VARS_4M.fd)",
            )

        records = _call_virt_firmware(lambda: self._varstore.bytes_varlist(self._variables), target)
        # Same layout as virt-firmware's bytes_varstore(), whose byte-by-byte
        # padding loop takes 0.7 s per write: the store's free space is 0xFF.
        original = self._varstore.filedata
        content = (
            original[: self._varstore.start]
            + records
            + b"\xff" * (capacity - len(records))
            + original[self._varstore.end :]
        )
        _write_atomically(target, content)

    def _restore(self, key: _Key, previous: EfiVar | None) -> None:
        if previous is None:
            self._variables.pop(key, None)
        else:
            self._variables[key] = previous


def _open_varstore(path: Path) -> Edk2VarStore:
    try:
        if Edk2VarStoreQcow2.probe(str(path)):
            raise InvalidVarsFileError(
                f"{path} is a qcow2 image; this store reads raw variables files only",
                hint=f"convert it: qemu-img convert -f qcow2 -O raw {path} OVMF_VARS.fd",
            )
        if not Edk2VarStore.probe(str(path)):
            raise InvalidVarsFileError(
                f"{path} contains no edk2 variable store",
                hint="pass an OVMF_VARS.fd file, as named by the nvram-template of a "
                "firmware descriptor in /usr/share/qemu/firmware",
            )
    except FileNotFoundError as error:
        raise InvalidVarsFileError(f"variables file {path} does not exist") from error
    except IsADirectoryError as error:
        raise InvalidVarsFileError(f"variables file {path} is a directory") from error
    except PermissionError as error:
        raise VariableAccessDeniedError(
            f"reading {path} failed: permission denied", hint="run as the file's owner or as root"
        ) from error
    return _call_virt_firmware(lambda: Edk2VarStore(str(path)), path)


def _call_virt_firmware(call: Callable[[], _Result], path: Path) -> _Result:
    # virt-firmware reports a malformed store by logging it and calling
    # sys.exit(1); turn that into our error.
    try:
        return call()
    except SystemExit as error:
        raise InvalidVarsFileError(
            f"virt-firmware rejected the variable store in {path}",
            hint="check the file with: virt-fw-vars --input FILE --print",
        ) from error


def _write_atomically(target: Path, content: bytes) -> None:
    """Replace ``target`` with ``content`` through a temporary file in the same folder."""
    folder = target.parent
    try:
        mode = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644
    except OSError as error:
        raise _write_error(error, target) from error

    try:
        descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=folder)
    except OSError as error:
        raise _write_error(error, target) from error
    with _removed_on_error(Path(temporary)):
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(content)
                file.flush()
                os.fsync(file.fileno())
            os.chmod(temporary, mode)
            os.replace(temporary, target)
            _sync_folder(folder)
        except OSError as error:
            raise _write_error(error, target) from error


@contextlib.contextmanager
def _removed_on_error(path: Path) -> Iterator[None]:
    try:
        yield
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _sync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _write_error(error: OSError, target: Path) -> VariableStoreError:
    if isinstance(error, PermissionError):
        return VariableAccessDeniedError(
            f"writing {target} failed: permission denied",
            hint="run as the owner of the file and its folder, or as root",
        )
    if error.errno == errno.EROFS:
        return VariableStoreReadOnlyError(
            f"writing {target} failed: the file system is read-only",
            hint="copy the file to a writable folder and pass that copy",
        )
    return VariableStoreError(f"writing {target} failed: {error.strerror or error}")
