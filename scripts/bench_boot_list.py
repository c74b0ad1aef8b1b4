#!/usr/bin/env python3
"""Time ``switchos boot list --json`` on a store of 40 entries against ``python3 -c pass``.

Every command runs as a fresh process, interleaved with the others in the
same run, so the numbers share the machine's load. The store is an
efivarfs-layout folder (the live-system path) and, separately, an OVMF
variables file; both contain 40 Boot#### entries listed in BootOrder. The
"boot group alone" line runs the same listing without the other command
groups that switchos.cli imports. Run it with the project's virtual
environment:

    .venv/bin/python scripts/bench_boot_list.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from switchos.boot_entries.device_path import make_file_path
from switchos.boot_entries.efivarfs import EfivarfsStore
from switchos.boot_entries.load_option import LoadOption, LoadOptionAttribute
from switchos.boot_entries.order import format_order
from switchos.boot_entries.ovmf_vars import OvmfVarsStore
from switchos.boot_entries.store import VariableStore

ENTRY_COUNT = 40
ESP_GUID = uuid.UUID("c5ab5e46-7c97-4d3a-846b-1e32682ef154")

# The test bed finds the OVMF variables template through QEMU's firmware descriptors.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from testbed.firmware import find_ovmf  # noqa: E402


def fill_store(store: VariableStore) -> None:
    for number in range(ENTRY_COUNT):
        path = make_file_path(1, 0x800, 0x82000, ESP_GUID, f"\\EFI\\vendor{number}\\loader.efi")
        option = LoadOption(LoadOptionAttribute.ACTIVE, f"Entry {number}", path, b"quiet splash")
        store.set(f"Boot{number:04X}", option.to_bytes())
    store.set("BootOrder", format_order(range(ENTRY_COUNT)))


def time_command(argv: list[str], folder: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run(argv, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {result.stderr.decode(errors='replace')}")
    return elapsed


def check_listing(argv: list[str], folder: Path) -> None:
    output = subprocess.run(argv, cwd=folder, capture_output=True, check=True).stdout
    entries = json.loads(output)["entries"]
    if len(entries) != ENTRY_COUNT:
        raise SystemExit(f"{' '.join(argv)} listed {len(entries)} entries instead of {ENTRY_COUNT}")


def summary(times: list[float]) -> str:
    return f"median {statistics.median(times) * 1000:7.1f} ms, min {min(times) * 1000:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="runs of each command (default: 15)")
    arguments = parser.parse_args()

    switchos = str(Path(sys.executable).with_name("switchos"))
    folder = Path(tempfile.mkdtemp(prefix="bench-boot-list-"))
    try:
        efivars = folder / "efivars"
        efivars.mkdir()
        fill_store(EfivarfsStore(efivars))
        commands = {"python3 -c pass": [sys.executable, "-c", "pass"]}
        commands["boot list --json --efivars (40 entries)"] = [
            switchos, "boot", "list", "--json", "--efivars", str(efivars)
        ]
        # The boot group alone, without the other command groups that
        # switchos.cli imports, shows what lazy loading of groups would save.
        commands["boot group alone, --efivars (40 entries)"] = [
            sys.executable,
            "-c",
            "import sys; from switchos.cli_boot import boot; boot(sys.argv[1:])",
            "list", "--json", "--efivars", str(efivars),
        ]
        vars_file = folder / "OVMF_VARS.fd"
        shutil.copyfile(find_ovmf().vars_template, vars_file)
        fill_store(OvmfVarsStore(vars_file))
        commands["boot list --json --vars-file (40 entries)"] = [
            switchos, "boot", "list", "--json", "--vars-file", str(vars_file)
        ]

        for argv in list(commands.values())[1:]:
            check_listing(argv, folder)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(arguments.rounds):
            for name, argv in commands.items():
                # The working folder is not the repository, whose source
                # folders would shadow the installed package for "-c".
                times[name].append(time_command(argv, folder))
    finally:
        shutil.rmtree(folder)

    print(f"{arguments.rounds} rounds, {sys.executable}")
    for name, measured in times.items():
        print(f"  {name:46s} {summary(measured)}")


if __name__ == "__main__":
    main()
