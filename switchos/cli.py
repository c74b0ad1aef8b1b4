"""The ``switchos`` command: argument parsing and output only."""

from __future__ import annotations

import click

from switchos import __version__
from switchos.cli_disk import disk


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="switchos")
def main() -> None:
    """Install, repair and use the SwitchOS snapshotter."""


main.add_command(disk)
