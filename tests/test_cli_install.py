"""The install, uninstall, repair and status commands: flags, help and exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from switchos.cli import main
from switchos.errors import ExitCode


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_help_lists_exit_codes():
    result = invoke("--help")

    assert result.exit_code == 0
    for code in ExitCode:
        assert f"  {int(code)}  " in result.output, code
    for command in ("install", "uninstall", "repair", "status"):
        assert command in result.output


@pytest.mark.parametrize("command", ["install", "uninstall", "repair", "status"])
def test_image_needs_vars(command: str, tmp_path: Path):
    image = tmp_path / "disk.img"
    image.write_bytes(b"")

    result = invoke(command, "--image", str(image))

    assert result.exit_code == ExitCode.INVALID_INPUT
    assert "error: --image and --vars go together" in result.stderr


def test_missing_image_is_invalid_input(tmp_path: Path):
    result = invoke("status", "--image", str(tmp_path / "none.img"), "--vars", str(tmp_path / "none.fd"))

    assert result.exit_code == ExitCode.INVALID_INPUT
    assert "does not exist" in result.stderr


def test_snapshot_image_needs_offline_target(tmp_path: Path):
    result = invoke("install", "--snapshot-image", str(tmp_path / "s.img"), "--yes")

    assert result.exit_code == ExitCode.INVALID_INPUT
    assert "--snapshot-image and --esp-partition need an offline target" in result.stderr


@pytest.mark.parametrize("command", ["install", "uninstall", "repair", "status"])
def test_machine_without_uefi_is_unsupported(command: str, tmp_path: Path):
    efivars = tmp_path / "efivars"
    efivars.mkdir()

    result = invoke(command, "--efivars", str(efivars), "--yes" if command != "status" else "--json")

    assert result.exit_code == ExitCode.UNSUPPORTED_MACHINE
    assert f"error: no UEFI variables in {efivars}" in result.stderr
    assert "hint: mount it with" in result.stderr


def test_install_rejects_unknown_layout():
    result = invoke("install", "--layout", "raid", "--yes")

    assert result.exit_code == 2
    assert "raid" in result.output

