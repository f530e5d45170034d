"""How instant is the command line? Compares against a bare Python start in the same run.

    .venv/bin/python bench/cli_startup.py [--runs 20]

Prints the median wall time of each command and its ratio to ``python -c pass``
(the floor any Python CLI pays), so the figure means the same on a noisy machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def median_seconds(command: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, cwd=REPO, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    runs = parser.parse_args().runs
    python = sys.executable
    baseline = median_seconds([python, "-c", "pass"], runs)
    print(f"{'python -c pass (baseline)':<40} {baseline * 1000:7.1f} ms")
    for label, args in [
        ("mspauto --help", ["-m", "mspauto", "--help"]),
        ("mspauto inventory list --help", ["-m", "mspauto", "inventory", "list", "--help"]),
        ("mspauto validate (examples)", ["-m", "mspauto", "validate"]),
    ]:
        seconds = median_seconds([python, *args], runs)
        print(f"{label:<40} {seconds * 1000:7.1f} ms  {seconds / baseline:5.1f}x baseline")


if __name__ == "__main__":
    main()
