#!/usr/bin/env python3
"""Time ``switchos snapshot list`` on a store of 64 slots against ``python3 -c pass``.

The store is a sparse image file with 64 slots of 8 GiB + 1 MiB (the size
for a machine with 8 GiB of RAM); every other slot contains a valid entry.
Every command runs as a fresh process, interleaved with the others in the
same run, so the numbers share the machine's load. The variable store is an
empty folder, so the host's firmware variables are never read. Run it as
root (the command requires it) with the project's virtual environment:

    .venv/bin/python scripts/bench_snapshot.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from switchos.partition.memory import compute_slot_size
from switchos.partition.store import SlotEntry, SlotState, initialize_store, required_store_size

SLOT_COUNT = 64
RAM_SIZE = 8 << 30


def make_store(image: Path) -> None:
    slot_size = compute_slot_size(RAM_SIZE)
    with open(image, "wb") as file:
        file.truncate(required_store_size(slot_size, SLOT_COUNT))
    superblock = initialize_store(image, slot_size=slot_size, slot_count=SLOT_COUNT)
    fd = os.open(image, os.O_WRONLY)
    try:
        for index in range(0, SLOT_COUNT, 2):
            entry = SlotEntry(
                index=index, state=SlotState.VALID, created_at=1_700_000_000 + index, ram_size=RAM_SIZE,
                image_size=RAM_SIZE, label=f"snapshot-{index}", os_name="Debian GNU/Linux",
                os_version="12", host_name="bench",
            )
            os.pwrite(fd, entry.to_bytes(), superblock.slot_entry_offset(index))
    finally:
        os.close(fd)


def time_command(argv: list[str], folder: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run(argv, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {result.stderr.decode(errors='replace')}")
    return elapsed


def time_list_in_process(image: Path, efivars: Path, rounds: int) -> list[float]:
    """Time the listing alone, without interpreter start-up and imports."""
    from switchos.boot_entries.efivarfs import EfivarfsStore
    from switchos.installer.power import LinuxPower
    from switchos.installer.snapshot import SnapshotSystem, list_snapshots

    system = SnapshotSystem(
        variables=EfivarfsStore(efivars), power=LinuxPower(sys_root=efivars), store_path=image
    )
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        list_snapshots(system)
        samples.append(time.perf_counter() - start)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="Runs of each command (default 15).")
    arguments = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_snapshot: run as root, because switchos snapshot requires it", file=sys.stderr)
        return 1

    switchos = shutil.which("switchos", path=str(Path(sys.executable).parent))
    if switchos is None:
        print("bench_snapshot: switchos is not installed in this environment", file=sys.stderr)
        return 1
    folder = Path(tempfile.mkdtemp(prefix="bench-snapshot-"))
    try:
        image = folder / "snapshots.img"
        make_store(image)
        efivars = folder / "efivars"
        efivars.mkdir()
        base = [switchos, "snapshot", "--efivars", str(efivars), "--store", str(image), "list"]
        commands = {
            "python3 -c pass": [sys.executable, "-c", "pass"],
            "switchos snapshot list": base,
            "switchos snapshot list --json": [*base, "--json"],
        }

        listing = json.loads(subprocess.run([*base, "--json"], capture_output=True, check=True, cwd=folder).stdout)
        valid = sum(1 for slot in listing["slots"] if slot["state"] == "valid")
        if len(listing["slots"]) != SLOT_COUNT or valid != SLOT_COUNT // 2:
            print(f"bench_snapshot: the listing shows {len(listing['slots'])} slots, {valid} valid", file=sys.stderr)
            return 1

        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(arguments.rounds):
            for name, argv in commands.items():
                times[name].append(time_command(argv, folder))
        in_process = time_list_in_process(image, efivars, arguments.rounds)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    baseline = statistics.median(times["python3 -c pass"])
    print(f"store: {SLOT_COUNT} slots of {compute_slot_size(RAM_SIZE) >> 20} MiB in a sparse image; "
          f"{arguments.rounds} rounds, median and minimum wall time")
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"  {name:32s} median {median * 1000:7.1f} ms  min {min(samples) * 1000:7.1f} ms  "
              f"({median / baseline:.1f}x python3 -c pass)")
    print(f"  {'list_snapshots() in one process':32s} median {statistics.median(in_process) * 1000:7.1f} ms  "
          f"min {min(in_process) * 1000:7.1f} ms  (the rest of a command's time is start-up and imports)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
