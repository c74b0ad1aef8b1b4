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


# The parameter names of target_options, which discover() consumes.
TARGET_FLAGS = (
    "image", "vars_path", "snapshot_image", "efivars", "esp_path", "esp_partition", "sys_root", "proc_root", "dev_root",
)


JSON_HELP = "With --dry-run: print the plan as JSON on stdout. Only valid with --dry-run."


def require_dry_run_for_json(*, as_json: bool, dry_run: bool) -> None:
    """Raise InvalidInputError for --json without --dry-run: only the plan has a JSON form."""
    if as_json and not dry_run:
        raise InvalidInputError(
            "--json is only valid with --dry-run", hint="add --dry-run to print the plan as JSON, or drop --json"
        )


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


def check_target_flags(
    *, image: Path | None, vars_path: Path | None, snapshot_image: Path | None, esp_partition: int | None
) -> None:
    """Raise InvalidInputError when the target flags do not fit together."""
    if (image is None) != (vars_path is None):
        raise InvalidInputError("--image and --vars go together", hint="pass both for an offline target, or neither")
    if image is None and (snapshot_image is not None or esp_partition is not None):
        raise InvalidInputError(
            "--snapshot-image and --esp-partition need an offline target", hint="pass --image and --vars too"
        )


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
    check_target_flags(image=image, vars_path=vars_path, snapshot_image=snapshot_image, esp_partition=esp_partition)
    if image is not None:
        return discover_offline(image, vars_path, snapshot_image=snapshot_image, esp_partition=esp_partition)
    return discover_live(efivars=efivars, esp_path=esp_path, roots=roots)


def print_plan(plan: Plan, *, as_json: bool) -> None:
    click.echo(plan.format_json() if as_json else plan.format_text())


def print_dry_run(plan: Plan, *, as_json: bool) -> None:
    """Print the plan; exit with NOTHING_TO_DO when it is empty, as the real run would."""
    print_plan(plan, as_json=as_json)
    if plan.empty:
        sys.exit(int(ExitCode.NOTHING_TO_DO))


def apply_plan(plan: Plan) -> None:
    """Apply ``plan``, printing each step on stderr; exit with NOTHING_TO_DO for an empty plan."""
    from switchos.installer.journal import Journal

    if plan.empty:
        click.echo(f"{plan.command}: nothing to do, the machine is already in the requested state", err=True)
        sys.exit(int(ExitCode.NOTHING_TO_DO))

    def on_step(index: int, step: Step) -> None:
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
@click.option("--memory", help="RAM size of the target with a unit: K, M, G or T (KiB/KB etc. too, all powers of 1024), "
              "at least 64M, for example 8G; required offline, read from this machine live.")
@click.option("--wipe", is_flag=True, default=None, help="Confirm that the chosen layout may erase the snapshot disk.")
@click.option("--trial-boot", is_flag=True, default=None,
              help="Try the payload before making it permanent. An application is set in BootNext, so it runs at "
              "the next boot only, and 'switchos status' after that boot lists it first in BootOrder if it ran. "
              "A driver is listed first in DriverOrder and runs at every boot until 'switchos status' after a "
              "reboot keeps it (it ran) or removes it from DriverOrder (it did not).")
@click.option("--upstream-payload", is_flag=True, default=None,
              help="Accept a payload without .swos metadata as the upstream SwitchOS application: an application "
              "first in BootOrder that does not chain-load, with a whole-disk snapshot store.")
@click.option("--config", "config_path", type=click.Path(path_type=Path),
              help="answers.toml whose keys are flag names without the dashes: image, vars, snapshot-image, "
              "esp-partition, esp-path, payload, payload-url, payload-sha256, channel, snapshot-disk, "
              "no-snapshot-disk, layout, partition, slots, memory, wipe, trial-boot, upstream-payload. "
              "A flag wins over the same key.")
@click.option("--yes", "-y", is_flag=True, help="Unattended: take every choice from flags and --config, ask nothing.")
@click.option("--dry-run", is_flag=True,
              help="Print the plan and change nothing on the target; exit 2 if the real run would need --wipe, "
              "3 if there is nothing to do. A --payload-url or channel payload is still downloaded to the cache, "
              "because the plan depends on its metadata.")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def install(**arguments: Any) -> None:
    """Install the payload ahead of the boot loader and prepare the snapshot disk.

    Without --yes on a terminal, a wizard asks for each choice and shows the
    plan before anything changes.
    """
    from switchos.installer.config import TARGET_KEYS, merge_options, parse_layout, read_answers
    from switchos.installer.install import build_install_plan, require_wipe_in_plan, resolve_choices
    from switchos.installer.source import acquire_payload, check_payload_source
    from switchos.partition.memory import parse_memory_size

    # Check every input before discovery, so a mistake in the flags or the
    # answers file is reported as such and not as a problem of the target.
    yes, dry_run, as_json = arguments.pop("yes"), arguments.pop("dry_run"), arguments.pop("as_json")
    require_dry_run_for_json(as_json=as_json, dry_run=dry_run)
    config_path = arguments.pop("config_path")
    answers = read_answers(config_path) if config_path else {}
    for key in TARGET_KEYS:
        flag = "vars_path" if key == "vars" else key
        if arguments.get(flag) is None and key in answers:
            value = answers[key]
            arguments[flag] = value if isinstance(value, int) else Path(value)
    if arguments.get("layout") is not None:
        arguments["layout"] = parse_layout(arguments["layout"])
    if arguments.get("memory") is not None:
        arguments["memory"] = parse_memory_size(arguments["memory"])
    target_arguments = {name: arguments.pop(name) for name in TARGET_FLAGS}
    options = merge_options(arguments, answers)
    check_target_flags(
        image=target_arguments["image"], vars_path=target_arguments["vars_path"],
        snapshot_image=target_arguments["snapshot_image"], esp_partition=target_arguments["esp_partition"],
    )
    interactive = not yes and sys.stdin.isatty() and sys.stdout.isatty()
    if not yes and not interactive and not dry_run:
        raise InvalidInputError(
            "install needs a terminal for its questions", hint="pass --yes to install from flags and --config alone"
        )
    if not interactive:
        check_payload_source(options)
    target = discover(target_arguments)
    if interactive:
        from switchos.wizard import run_wizard

        choices = run_wizard(target, options)
    else:
        choices = resolve_choices(target, acquire_payload(options), options)
    plan = build_install_plan(target, choices)
    if dry_run:
        print_plan(plan, as_json=as_json)
        # Exit as the real run would: 2 when --wipe is missing, 3 for nothing to do.
        require_wipe_in_plan(plan)
        if plan.empty:
            sys.exit(int(ExitCode.NOTHING_TO_DO))
        return
    require_wipe_in_plan(plan)
    if interactive:
        from switchos.wizard import confirm_plan

        confirm_plan(plan)
    else:
        print_plan(plan, as_json=False)
    apply_plan(plan)


def _plan_command(
    build: Callable[[Target, dict[str, Any]], Plan]
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Wrap a command that discovers the target, builds a plan, and prints or applies it."""

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapper(**arguments: Any) -> None:
            from switchos.installer.uninstall import NotInstalledError

            yes, dry_run, as_json = arguments.pop("yes"), arguments.pop("dry_run"), arguments.pop("as_json")
            require_dry_run_for_json(as_json=as_json, dry_run=dry_run)
            target = discover(arguments)
            # Repair copies the recorded payload here to check it before placing it again.
            with tempfile.TemporaryDirectory(prefix="switchos-") as work_dir:
                arguments["work_dir"] = Path(work_dir)
                try:
                    plan = build(target, arguments)
                except NotInstalledError as error:
                    # Nothing to remove or repair is a state, not an error.
                    click.echo(error.message, err=True)
                    sys.exit(int(error.exit_code))
                if dry_run:
                    print_dry_run(plan, as_json=as_json)
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
                apply_plan(plan)

        return wrapper

    return decorate


def _common_plan_options(function: Callable[..., Any]) -> Callable[..., Any]:
    function = click.option("--json", "as_json", is_flag=True, help=JSON_HELP)(function)
    function = click.option(
        "--dry-run", is_flag=True, help="Print the plan and change nothing; exit 3 if there is nothing to do."
    )(function)
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
    """Show whether SwitchOS is installed, whether the payload ran in this boot, the store and S3.

    Exits 0 whenever the status could be read, also when it lists problems
    (a missing payload file or entry, a damaged store); scripts find those
    in the "problems" list of --json. Offline, pass --snapshot-image to
    check the snapshot store.
    """
    from switchos.installer.status import read_status

    as_json = arguments.pop("as_json")
    target = discover(arguments)
    result = read_status(target)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        click.echo(result.format_text())

