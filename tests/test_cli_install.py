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

    # Install checks its inputs before the machine, so it gets a payload.
    extra = ["--payload", str(tmp_path / "p.efi")] if command == "install" else []
    result = invoke(command, "--efivars", str(efivars), "--yes" if command != "status" else "--json", *extra)

    assert result.exit_code == ExitCode.UNSUPPORTED_MACHINE
    assert f"error: no UEFI variables in {efivars}" in result.stderr
    assert "hint: mount it with" in result.stderr


def test_install_rejects_unknown_layout():
    result = invoke("install", "--layout", "raid", "--yes")

    assert result.exit_code == 2
    assert "raid" in result.output



def test_memory_without_unit_is_invalid(tmp_path: Path):
    # An empty efivars folder would fail discovery with exit 5, so exit 2
    # shows that the size is checked first.
    efivars = tmp_path / "efivars"
    efivars.mkdir()

    result = invoke("install", "--efivars", str(efivars), "--memory", "256", "--yes")

    assert result.exit_code == ExitCode.INVALID_INPUT, result.output
    assert "error: invalid memory size '256': a whole number with a unit is required" in result.stderr


def test_memory_below_minimum_is_invalid(tmp_path: Path):
    result = invoke("install", "--efivars", str(tmp_path), "--memory", "32M", "--yes")

    assert result.exit_code == ExitCode.INVALID_INPUT, result.output
    assert "error: memory size '32M' is below the minimum of 64M" in result.stderr


def test_help_lists_memory_units_and_answer_keys():
    result = invoke("install", "--help")
    text = " ".join(result.output.split())

    assert "K, M, G or T" in text
    assert "at least 64M" in text
    assert "image, vars, snapshot-image" in text


def test_config_target_keys_are_used(tmp_path: Path):
    config = tmp_path / "answers.toml"
    config.write_text(
        f'image = "{tmp_path / "disk.img"}"\nvars = "{tmp_path / "VARS.fd"}"\n'
        f'snapshot-image = "{tmp_path / "snap.img"}"\n'
    )

    result = invoke(
        "install", "--config", str(config), "--efivars", str(tmp_path), "--yes", "--payload", str(tmp_path / "p.efi")
    )

    assert result.exit_code == ExitCode.INVALID_INPUT, result.output
    assert f"error: --image {tmp_path / 'disk.img'} does not exist" in result.stderr


def test_config_errors_come_before_discovery(tmp_path: Path):
    config = tmp_path / "answers.toml"
    config.write_text('memory = "8G"\nsize = 3\n')

    result = invoke("install", "--config", str(config), "--efivars", str(tmp_path), "--yes")

    assert result.exit_code == ExitCode.INVALID_INPUT, result.output
    assert f"error: answers file {config} is invalid: unknown key 'size'" in result.stderr
    assert "image, layout, memory" in result.stderr


def test_http_payload_url_is_invalid(tmp_path: Path):
    result = invoke(
        "install", "--efivars", str(tmp_path), "--yes", "--payload-url", "http://127.0.0.1:1/p.efi",
        "--payload-sha256", "0" * 64,
    )

    assert result.exit_code == ExitCode.INVALID_INPUT, result.output
    assert "error: invalid --payload-url http://127.0.0.1:1/p.efi: only https URLs are allowed" in result.stderr


def test_no_payload_names_channel_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("SWITCHOS_CHANNEL_URL", raising=False)

    result = invoke("install", "--efivars", str(tmp_path), "--yes", "--memory", "1G")

    assert result.exit_code == ExitCode.INVALID_INPUT, result.output
    assert "--channel-url" not in result.stderr
    assert "(--channel URL or $SWITCHOS_CHANNEL_URL)" in result.stderr


def test_trial_boot_help_per_kind():
    text = " ".join(invoke("install", "--help").output.split())

    assert "An application is set in BootNext, so it runs at the next boot only" in text
    assert "A driver is listed first in DriverOrder and runs at every boot" in text


@pytest.mark.parametrize("command", ["install", "uninstall", "repair"])
def test_json_needs_dry_run(command: str, tmp_path: Path):
    result = invoke(command, "--efivars", str(tmp_path), "--yes", "--json")

    assert result.exit_code == ExitCode.INVALID_INPUT, result.output
    assert "error: --json is only valid with --dry-run" in result.stderr
