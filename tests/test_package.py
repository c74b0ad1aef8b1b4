"""Checks that the tests import the installed package, not the source tree."""

import sysconfig
from pathlib import Path

from click.testing import CliRunner

import switchos
import switchos.boot_entries
import switchos.efi
import switchos.installer
import switchos.partition
from switchos.cli import main


def test_package_imported_from_site_packages():
    site_packages = Path(sysconfig.get_paths()["purelib"]).resolve()
    for module in (switchos, switchos.boot_entries, switchos.efi, switchos.installer, switchos.partition):
        assert site_packages in Path(module.__file__).resolve().parents, module.__file__


def test_cli_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert switchos.__version__ in result.output
