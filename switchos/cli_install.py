"""``switchos install``, ``uninstall``, ``repair`` and ``status``: argument parsing and output."""

from __future__ import annotations

import functools
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from switchos.errors import ExitCode, InvalidInputError, UserAbortError

if TYPE_CHECKING:
    from switchos.installer.model import Target
    from switchos.installer.plan import Plan, Step

# The installer modules import pefile, pyparted, requests and virt-firmware;
# the commands import them when they run, so other commands and --help start
# faster. The spellings match switchos.partition.layout.LayoutKind.
LAYOUT_CHOICES = ("new-table", "free-space", "existing-partition", "whole-disk")


def target_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """Add the flags that choose the target machine: live (default) or offline files."""
    decorators = [
        click.option("--image", type=click.Path(path_type=Path), help="Offline target: disk image holding the ESP."),
        click.option("--vars", "vars_path", type=click.Path(path_type=Path),
                     help="Offline target: OVMF variables file (with --image)."),
        click.option("--snapshot-image", type=click.Path(path_type=Path),
                     help="Offline target: disk image for the snapshot store."),
        click.option("--efivars", type=click.Path(path_type=Path), default=Path("/sys/firmware/efi/efivars"),
                     show_default=True, help="Live target: efivarfs mount point."),
        click.option("--esp-path", type=click.Path(path_type=Path), help="Live target: mount point of the ESP."),
        click.option("--esp-partition", type=click.IntRange(min=1),
                     help="Offline target: partition number of the ESP, when the image has several."),
        click.option("--sys-root", type=click.Path(path_type=Path), default=Path("/sys"), hidden=True),
        click.option("--proc-root", type=click.Path(path_type=Path), default=Path("/proc"), hidden=True),
        click.option("--dev-root", type=click.Path(path_type=Path), default=Path("/dev"), hidden=True),
    ]
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


def discover(arguments: dict[str, Any]) -> Target:
    """Build the target from the flags of ``target_options`` (removing them from ``arguments``)."""
    from switchos.installer.discovery import discover_live, discover_offline
    from switchos.installer.model import SystemRoots

    image = arguments.pop("image")
    vars_path = arguments.pop("vars_path")
    snapshot_image = arguments.pop("snapshot_image")
    efivars = arguments.pop("efivars")
    esp_path = arguments.pop("esp_path")
    esp_partition = arguments.pop("esp_partition")
    roots = SystemRoots(sys=arguments.pop("sys_root"), proc=arguments.pop("proc_root"), dev=arguments.pop("dev_root"))
    if (image is None) != (vars_path is None):
        raise InvalidInputError("--image and --vars go together", hint="pass both for an offline target, or neither")
    if image is not None:
        return discover_offline(image, vars_path, snapshot_image=snapshot_image, esp_partition=esp_partition)
    if snapshot_image is not None or esp_partition is not None:
        raise InvalidInputError(
            "--snapshot-image and --esp-partition need an offline target", hint="pass --image and --vars too"
        )
    return discover_live(efivars=efivars, esp_path=esp_path, roots=roots)


def print_plan(plan: Plan, *, as_json: bool) -> None:
    click.echo(plan.format_json() if as_json else plan.format_text())


def apply_plan(plan: Plan, *, quiet: bool) -> None:
    """Apply ``plan``, printing each step on stderr; exit with NOTHING_TO_DO for an empty plan."""
    from switchos.installer.journal import Journal

    if plan.empty:
        click.echo(f"{plan.command}: nothing to do, the machine is already in the requested state", err=True)
        sys.exit(int(ExitCode.NOTHING_TO_DO))

    def on_step(index: int, step: Step) -> None:
        if not quiet:
            click.echo(f"[{index}/{len(plan.steps)}] {step.description}", err=True)

    Journal(on_step=on_step).apply(plan)
    click.echo(f"{plan.command}: done ({len(plan.steps)} steps)", err=True)


@click.command()
@target_options
@click.option("--payload", type=click.Path(path_type=Path), help="Payload .efi file to install.")
@click.option("--payload-url", help="HTTPS URL of the payload (needs --payload-sha256).")
@click.option("--payload-sha256", help="Expected SHA-256 of the file at --payload-url, in hex.")
@click.option("--channel", help="Release channel index URL, used when neither --payload nor --payload-url is given "
              "[default: $SWITCHOS_CHANNEL_URL].")
@click.option("--snapshot-disk", help="Disk for the snapshot store: /dev/NAME, NAME or the --snapshot-image path.")
@click.option("--no-snapshot-disk", is_flag=True, default=None, help="Install the payload without a snapshot store.")
@click.option("--layout", type=click.Choice(LAYOUT_CHOICES),
              help="How the snapshot disk is laid out (default: new-table, or whole-disk for protocol-0 payloads).")
@click.option("--partition", type=int, help="Partition number for --layout existing-partition.")
@click.option("--slots", type=click.IntRange(min=1), help="Number of snapshot slots, one per saved OS state [default: 2].")
@click.option("--memory", help="RAM size of the target (for example 8G); required offline, read from this machine live.")
@click.option("--wipe", is_flag=True, default=None, help="Confirm that the chosen layout may erase the snapshot disk.")
@click.option("--trial-boot", is_flag=True, default=None,
              help="Register the payload for the next boot only; 'switchos status' promotes it once it ran.")
@click.option("--upstream-payload", is_flag=True, default=None,
              help="Accept a payload without .swos metadata as the upstream SwitchOS application: an application "
              "first in BootOrder that does not chain-load, with a whole-disk snapshot store.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="answers.toml with the same keys as the flags.")
@click.option("--yes", "-y", is_flag=True, help="Unattended: take every choice from flags and --config, ask nothing.")
@click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan (with --dry-run) as JSON.")
def install(**arguments: Any) -> None:
    """Install the payload ahead of the boot loader and prepare the snapshot disk.

    Without --yes on a terminal, a wizard asks for each choice and shows the
    plan before anything changes.
    """
    from switchos.installer.config import merge_options, parse_layout, read_answers
    from switchos.installer.install import build_install_plan, resolve_choices
    from switchos.installer.source import acquire_payload
    from switchos.partition.memory import parse_size

    target = discover(arguments)
    yes, dry_run, as_json = arguments.pop("yes"), arguments.pop("dry_run"), arguments.pop("as_json")
    config_path = arguments.pop("config_path")
    answers = read_answers(config_path) if config_path else {}
    if arguments.get("layout") is not None:
        arguments["layout"] = parse_layout(arguments["layout"])
    if arguments.get("memory") is not None:
        arguments["memory"] = parse_size(arguments["memory"])
    options = merge_options(arguments, answers)

    interactive = not yes and sys.stdin.isatty() and sys.stdout.isatty()
    if not yes and not interactive and not dry_run:
        raise InvalidInputError(
            "install needs a terminal for its questions", hint="pass --yes to install from flags and --config alone"
        )
    if interactive:
        from switchos.wizard import run_wizard

        choices = run_wizard(target, options)
    else:
        choices = resolve_choices(target, acquire_payload(options), options)
    plan = build_install_plan(target, choices)
    if dry_run:
        print_plan(plan, as_json=as_json)
        return
    if interactive:
        from switchos.wizard import confirm_plan

        confirm_plan(plan)
    elif not as_json:
        print_plan(plan, as_json=False)
    apply_plan(plan, quiet=as_json)


def _plan_command(
    build: Callable[[Target, dict[str, Any]], Plan]
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Wrap a command that discovers the target, builds a plan, and prints or applies it."""

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapper(**arguments: Any) -> None:
            target = discover(arguments)
            yes, dry_run, as_json = arguments.pop("yes"), arguments.pop("dry_run"), arguments.pop("as_json")
            # Repair copies the recorded payload here to check it before placing it again.
            with tempfile.TemporaryDirectory(prefix="switchos-") as work_dir:
                arguments["work_dir"] = Path(work_dir)
                plan = build(target, arguments)
                if dry_run:
                    print_plan(plan, as_json=as_json)
                    return
                print_plan(plan, as_json=False)
                if not yes and not plan.empty:
                    if not sys.stdin.isatty():
                        raise InvalidInputError(
                            f"{plan.command} needs a terminal to confirm the plan",
                            hint="pass --yes to apply it without asking",
                        )
                    if not click.confirm("Apply this plan?", default=False):
                        raise UserAbortError(f"{plan.command} cancelled; nothing was changed")
                apply_plan(plan, quiet=False)

        return wrapper

    return decorate


def _common_plan_options(function: Callable[..., Any]) -> Callable[..., Any]:
    function = click.option("--json", "as_json", is_flag=True, help="Print the plan (with --dry-run) as JSON.")(function)
    function = click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")(function)
    function = click.option("--yes", "-y", is_flag=True, help="Apply the plan without asking.")(function)
    return target_options(function)


def _build_uninstall(target: Target, arguments: dict[str, Any]) -> Plan:
    from switchos.installer.uninstall import build_uninstall_plan

    return build_uninstall_plan(target, wipe_snapshots=arguments["wipe_snapshots"])


@click.command()
@_common_plan_options
@click.option("--wipe-snapshots", is_flag=True, help="Also erase the snapshot store headers (its snapshots are lost).")
@_plan_command(_build_uninstall)
def uninstall(**arguments: Any) -> None:
    """Remove only the entries, files and record that SwitchOS added."""


def _build_repair(target: Target, arguments: dict[str, Any]) -> Plan:
    from switchos.installer.config import InstallOptions
    from switchos.installer.repair import build_repair_plan
    from switchos.installer.source import acquire_payload

    payload = None
    if arguments.get("payload") is not None:
        payload = acquire_payload(InstallOptions(payload=arguments["payload"]))
    return build_repair_plan(target, payload=payload, work_dir=arguments["work_dir"])


@click.command()
@_common_plan_options
@click.option("--payload", type=click.Path(path_type=Path), help="Payload file to place when the ESP copy is missing or changed.")
@_plan_command(_build_repair)
def repair(**arguments: Any) -> None:
    """Compare the install record with the machine and fix what differs."""


@click.command()
@target_options
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(**arguments: Any) -> None:
    """Show whether SwitchOS is installed, whether the payload ran in this boot, the store and S3."""
    from switchos.installer.status import read_status

    as_json = arguments.pop("as_json")
    target = discover(arguments)
    result = read_status(target)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        click.echo(result.format_text())

