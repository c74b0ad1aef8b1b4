"""``switchos boot``: show the firmware boot entries and their order."""

from __future__ import annotations

import json
from pathlib import Path

import click

from switchos.boot_entries.efivarfs import EFIVARFS_ROOT, EfivarfsStore
from switchos.boot_entries.listing import BootListing, Entry, Problem, ProblemKind, read_listing
from switchos.boot_entries.order import OptionKind
from switchos.boot_entries.store import VariableStore, VariableStoreUnavailableError
from switchos.errors import InvalidInputError

OURS_MARK = "[SwitchOS]"


@click.group("boot")
def boot() -> None:
    """Show firmware boot entries (Boot####, Driver####) and their order."""


@boot.command("list")
@click.option(
    "--verbose",
    "-v",
    is_flag=True,
    help="Show each entry's device path and optional data, as efibootmgr -v does, "
    "and optional data that is UCS-2 text decoded on a line of its own.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with fixed keys instead of text.")
@click.option(
    "--efivars",
    type=click.Path(path_type=Path),
    help=f"Read the variables of the running system from this efivarfs mount [default: {EFIVARFS_ROOT}].",
)
@click.option(
    "--vars-file",
    "--vars",
    "vars_file",
    type=click.Path(path_type=Path),
    help="Read the variables from this OVMF/edk2 variables file (OVMF_VARS.fd) instead; "
    "--vars is the same option, spelled as install and status spell it.",
)
def list_command(verbose: bool, as_json: bool, efivars: Path | None, vars_file: Path | None) -> None:
    """List BootCurrent, BootNext, Timeout, the order variables and every entry.

    Entries whose file lies under \\EFI\\SwitchOS\\ are marked [SwitchOS].
    Order variables that name missing entries, entries no order lists and
    malformed variables are listed at the end.
    """
    store = open_store(efivars=efivars, vars_file=vars_file)
    listing = read_listing(store)
    if as_json:
        click.echo(json.dumps(listing.to_dict(), indent=2))
        return
    for line in format_listing(listing, verbose=verbose):
        click.echo(line)


def open_store(
    *, efivars: Path | None, vars_file: Path | None, default_efivars: Path = EFIVARFS_ROOT
) -> VariableStore:
    """Open the store that the options name, or efivarfs at ``default_efivars`` without options."""
    if efivars is not None and vars_file is not None:
        raise InvalidInputError(
            "--efivars and --vars-file cannot be used together", hint="pass only one of them"
        )
    if vars_file is not None:
        # Imported here because virt-firmware loads the cryptography package,
        # which costs start-up time that listing efivarfs does not need.
        from switchos.boot_entries.ovmf_vars import OvmfVarsStore

        return OvmfVarsStore(vars_file)
    if efivars is not None:
        if not efivars.is_dir():
            raise InvalidInputError(
                f"efivarfs directory {efivars} does not exist",
                hint="pass the folder where efivarfs is mounted",
            )
        return EfivarfsStore(efivars)
    if default_efivars.is_dir():
        return EfivarfsStore(default_efivars)
    raise VariableStoreUnavailableError(
        f"{default_efivars} does not exist: this system did not boot in UEFI mode, "
        "or efivarfs is not mounted",
        hint="pass --efivars PATH for an efivarfs mount, or --vars-file FILE for an OVMF variables file",
    )


def format_listing(listing: BootListing, *, verbose: bool) -> list[str]:
    """Return the text of ``boot list``: efibootmgr's lines, then the problems."""
    lines: list[str] = []
    if listing.boot_next is not None:
        lines.append(f"BootNext: {listing.boot_next:04X}")
    if listing.boot_current is not None:
        lines.append(f"BootCurrent: {listing.boot_current:04X}")
    if listing.timeout is not None:
        lines.append(f"Timeout: {listing.timeout} seconds")

    for kind in OptionKind:
        order = listing.boot_order if kind is OptionKind.BOOT else listing.driver_order
        if order is not None:
            lines.append(f"{kind.order_variable}: {','.join(f'{number:04X}' for number in order)}")
        for entry in listing.entries:
            if entry.kind is kind:
                lines.append(format_entry(entry, verbose=verbose))
                text = entry.optional_data_ucs2
                if verbose and text is not None:
                    # The line above keeps efibootmgr's rendering for comparison.
                    lines.append(f'    options: "{text}"')

    if listing.problems:
        lines.append("Inconsistencies:")
        lines.extend(f"  {format_problem(problem)}" for problem in listing.problems)
    else:
        lines.append("Inconsistencies: none")
    return lines


def format_entry(entry: Entry, *, verbose: bool) -> str:
    """Return one entry as efibootmgr prints it (``Boot0001* Description``), plus our marks."""
    text = f"{entry.variable_name}{'*' if entry.active else ' '} {_printable(entry.description or '')}"
    if verbose:
        text += "\t" + _printable(entry.device_path or "")
        if entry.optional_data is not None:
            text += entry.optional_data_text
    if entry.error is not None:
        text += f" [invalid: {entry.error}]"
    if entry.ours:
        text += f"  {OURS_MARK}"
    return text


def format_problem(problem: Problem) -> str:
    """Return one inconsistency as a sentence."""
    if problem.kind is ProblemKind.LISTED_MISSING:
        return f"{problem.variable} lists {problem.entry}, which does not exist"
    if problem.kind is ProblemKind.UNLISTED:
        return f"{problem.entry} exists, but {problem.variable} does not list it"
    if problem.kind is ProblemKind.DUPLICATE:
        return f"{problem.variable} lists {problem.entry} more than once"
    return f"{problem.variable} is malformed: {problem.message}"


def _printable(text: str) -> str:
    # Descriptions keep lone surrogates of invalid UTF-16 so they round-trip;
    # they cannot be written to a UTF-8 terminal, so show them escaped.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
