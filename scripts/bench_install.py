"""Benchmark: ``switchos status --json`` start-up against ``python3 -c pass``, and a whole offline install.

Both run in the same invocation on the same machine, so the ratio is
comparable across machines while the absolute numbers are not. The target is
a throw-away test-bed machine (disk image, OVMF variables file, 1 GiB
snapshot disk image) in a temporary folder.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from testbed import standin  # noqa: E402
from testbed.machine import Machine  # noqa: E402

PYTHON = str(REPO / ".venv" / "bin" / "python")
SWITCHOS = str(REPO / ".venv" / "bin" / "switchos")
STARTUP_RUNS = 15
INSTALL_RUNS = 3


def time_command(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def median_time(argv: list[str], runs: int) -> float:
    time_command(argv)  # warm the page cache
    return statistics.median(time_command(argv) for _ in range(runs))


def main() -> None:
    payload = standin.build("driver")
    with tempfile.TemporaryDirectory(prefix="switchos-bench-") as folder:
        install_times = []
        target: list[str] = []
        for run in range(INSTALL_RUNS):
            machine = Machine(Path(folder) / f"machine{run}")
            disk = machine.add_disk(1 << 30, name="snapshots")
            target = [
                "--image", str(machine.system_image), "--vars", str(machine.vars_path),
                "--snapshot-image", str(disk.path),
            ]
            install_times.append(
                time_command(
                    [SWITCHOS, "install", *target, "--payload", str(payload), "--memory", "256M", "--wipe", "--yes"]
                )
            )

        bare = median_time([PYTHON, "-c", "pass"], STARTUP_RUNS)
        status_offline = median_time([SWITCHOS, "status", "--json", *target], STARTUP_RUNS)
        help_only = median_time([SWITCHOS, "--help"], STARTUP_RUNS)

    print(f"python3 -c pass:                      {bare * 1000:8.1f} ms (median of {STARTUP_RUNS})")
    print(f"switchos --help:                      {help_only * 1000:8.1f} ms ({help_only / bare:.1f}x python)")
    print(f"switchos status --json (offline):     {status_offline * 1000:8.1f} ms ({status_offline / bare:.1f}x python)")
    print(
        f"switchos install --yes (offline):     {statistics.median(install_times) * 1000:8.1f} ms "
        f"(median of {INSTALL_RUNS}; min {min(install_times) * 1000:.1f}, max {max(install_times) * 1000:.1f})"
    )


if __name__ == "__main__":
    main()
