#!/usr/bin/env python3
"""Time preparing a new-table snapshot store on a 1 GiB and on a 1 TiB sparse image.

Writing a store touches only its headers, so both sizes should take about the
same time: the ratio of the medians (1 TiB over 1 GiB) should stay near 1. The
two sizes alternate in one run, so they share the machine's load; each round
uses a fresh sparse image. Prints the medians of the whole layout (GPT,
partition type, store headers) and of the store headers alone. Run it with the
project's virtual environment:

    .venv/bin/python scripts/bench_partition.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from switchos.partition.layout import StoreGeometry, prepare_new_table
from switchos.partition.memory import compute_slot_size
from switchos.partition.store import initialize_store, read_store

GIB = 1 << 30
SIZES = {"1 GiB": GIB, "1 TiB": 1 << 40}
# Two slots for 256 MiB of RAM fit both images.
GEOMETRY = StoreGeometry(slot_size=compute_slot_size(256 << 20), slot_count=2)


def make_sparse(path: Path, size: int) -> Path:
    path.unlink(missing_ok=True)
    with open(path, "wb") as image:
        image.truncate(size)
    return path


def time_layout(image: Path) -> float:
    start = time.perf_counter()
    result = prepare_new_table(image, GEOMETRY, wipe=True)
    elapsed = time.perf_counter() - start
    if not result.changed or not read_store(image, offset=result.offset, size=result.size).healthy:
        raise SystemExit(f"the store on {image} is not healthy after preparing it")
    return elapsed


def time_headers(image: Path) -> float:
    start = time.perf_counter()
    initialize_store(image, slot_size=GEOMETRY.slot_size, slot_count=GEOMETRY.slot_count)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per size (default 5)")
    args = parser.parse_args()

    layout: dict[str, list[float]] = {name: [] for name in SIZES}
    headers: dict[str, list[float]] = {name: [] for name in SIZES}
    allocated: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="switchos-bench-") as folder:
        for _ in range(args.rounds):
            for name, size in SIZES.items():
                image = make_sparse(Path(folder) / "disk.img", size)
                layout[name].append(time_layout(image))
                allocated[name] = os.stat(image).st_blocks * 512
                image = make_sparse(Path(folder) / "disk.img", size)
                headers[name].append(time_headers(image))

    print(f"new-table store, 2 slots of {GEOMETRY.slot_size >> 20} MiB, {args.rounds} rounds, median seconds:")
    for name in SIZES:
        print(
            f"  {name}: layout {statistics.median(layout[name]):.3f} s, "
            f"headers only {statistics.median(headers[name]) * 1000:.2f} ms, "
            f"{allocated[name] >> 10} KiB allocated in the image"
        )
    layout_ratio = statistics.median(layout["1 TiB"]) / statistics.median(layout["1 GiB"])
    header_ratio = statistics.median(headers["1 TiB"]) / statistics.median(headers["1 GiB"])
    print(f"  ratio 1 TiB / 1 GiB: layout {layout_ratio:.2f}, headers only {header_ratio:.2f}")


if __name__ == "__main__":
    main()
