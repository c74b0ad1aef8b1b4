"""The ``switchos`` command: argument parsing and output only."""

from __future__ import annotations

from typing import Any

import click

from switchos import __version__
from switchos.cli_boot import boot
from switchos.cli_disk import disk
from switchos.cli_snapshot import snapshot
from switchos.cli_install import install, repair, status, uninstall
from switchos.errors import SwitchOSError


class _ReportingGroup(click.Group):
    """A click group that prints a SwitchOSError as error and hint lines and exits with its code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SwitchOSError as error:
            report_error(error)
            ctx.exit(int(error.exit_code))


def report_error(error: SwitchOSError) -> None:
    """Print ``error: <message>`` and, if there is one, ``hint: <hint>`` on stderr."""
    click.echo(f"error: {error.message}", err=True)
    if error.hint:
        click.echo(f"hint: {error.hint}", err=True)


EXIT_CODES_EPILOG = """\b
Exit codes:
  0  success
  1  failure (any other error, including a rollback that did not finish)
  2  invalid input (a flag, file or answer)
  3  nothing to do (already in the requested state, or not installed)
  4  aborted by the user (declined or Ctrl-C); nothing was changed
  5  unsupported machine (no UEFI, no usable disk or boot loader)
  6  a step failed and every finished step was rolled back
"""


@click.group(
    cls=_ReportingGroup, epilog=EXIT_CODES_EPILOG, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.version_option(__version__, prog_name="switchos")
def main() -> None:
    """Install, repair and use the SwitchOS snapshotter."""


main.add_command(disk)
main.add_command(boot)
main.add_command(snapshot)
main.add_command(install)
main.add_command(uninstall)
main.add_command(repair)
main.add_command(status)
