"""How fast, and in how much memory, is a 70 MB Debian security tracker JSON loaded?

    .venv/bin/python bench/severity_load.py [--entries 80000] [--runs 3] [--keep FILE]

Writes a synthetic tracker JSON of the real file's size and shape (compact, one line:
source package -> CVE -> {description, scope, releases: codename -> {status,
repositories, fixed_version, urgency}}), with one very large package as the real
"linux" is. Then each variant loads it in a process of its own, several times:

- baseline: ``json.load`` of the whole file (what a naive reader does);
- ``DebianTracker.load``: the streaming reader and its compact index.

It prints the median time and the peak RSS of each, both also against an idle
interpreter that imported the same modules, and the cost of ``rate`` per update.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CODENAMES = ("bullseye", "bookworm", "trixie", "forky", "sid")
SUFFIX = {"bullseye": "+deb11u", "bookworm": "+deb12u", "trixie": "+deb13u"}
URGENCIES = (
    ["not yet assigned"] * 70 + ["unimportant"] * 15 + ["low"] * 10 + ["medium"] * 4 + ["high"]
)
WORDS = (
    "buffer",
    "overflow",
    "in",
    "the",
    "parser",
    "allows",
    "remote",
    "attackers",
    "to",
    "cause",
    "a",
    "denial",
    "of",
    "service",
    "via",
    "crafted",
    "input",
    "use-after-free",
    "heap",
    "out-of-bounds",
    "read",
    "write",
    "integer",
    "NULL",
    "pointer",
    "dereference",
    "in",
    "function",
    "when",
    "processing",
    "certificate",
    "request",
    "header",
    "Ünïcode",
    "café",
)


def package_sizes(entries: int, rng: random.Random) -> list[int]:
    """CVEs per source package: one huge ("linux"), a few large, many small."""
    sizes = [entries * 17 // 100]
    sizes += [entries * rng.randint(5, 30) // 1000 for _ in range(20)]
    while sum(sizes) < entries:
        sizes.append(min(rng.choice((1, 1, 2, 3, 4, 6, 9, 14, 25, 40)), entries - sum(sizes)))
    return sizes


def release(codename: str, rng: random.Random) -> dict[str, object]:
    base = f"{rng.randint(0, 9)}.{rng.randint(0, 40)}.{rng.randint(0, 20)}-{rng.randint(1, 5)}"
    version = base + (f"{SUFFIX[codename]}{rng.randint(1, 9)}" if codename in SUFFIX else "")
    repositories = {codename: version}
    if codename in SUFFIX and rng.random() < 0.3:
        repositories[f"{codename}-security"] = version
    entry: dict[str, object] = {"status": "open", "repositories": repositories}
    roll = rng.random()
    if roll < 0.6:
        entry.update(status="resolved", fixed_version=version)
    elif roll < 0.7:
        entry.update(status="resolved", fixed_version="0")
    elif roll < 0.75:
        entry["status"] = "undetermined"
    entry["urgency"] = rng.choice(URGENCIES)
    if entry["status"] == "open" and rng.random() < 0.3:
        entry.update(nodsa="Minor issue", nodsa_reason="")
    return entry


def write_tracker(path: Path, entries: int, seed: int = 1) -> int:
    """A synthetic tracker JSON at ``path``; returns its size in bytes."""
    rng = random.Random(seed)
    data: dict[str, dict[str, object]] = {}
    number = 0
    for index, size in enumerate(package_sizes(entries, rng)):
        name = "linux" if index == 0 else f"package-{index:05d}"
        cves: dict[str, object] = {}
        for _ in range(size):
            number += 1
            cves[f"CVE-{2000 + number % 26}-{number:06d}"] = {
                "description": " ".join(rng.choices(WORDS, k=rng.randint(25, 70))),
                "scope": rng.choice(("local", "remote")),
                "releases": {c: release(c, rng) for c in CODENAMES if rng.random() < 0.9},
            }
        data[name] = cves
    with path.open("w", encoding="utf-8") as handle:
        json.dump(data, handle, separators=(",", ":"), ensure_ascii=False)
    return path.stat().st_size


def rss_mb(field: str) -> float:
    """This process's resident memory (VmRSS) or its peak since the last reset (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> None:
    """Start VmHWM afresh (Linux >= 4.0), so import-time peaks do not count."""
    Path("/proc/self/clear_refs").write_text("5")


def child(variant: str, path: Path) -> None:
    """Run one variant in this process and print its figures as JSON."""
    from mspauto.patching.facts import PendingUpdate
    from mspauto.patching.severity import DebianTracker

    result: dict[str, float] = {"before_mb": rss_mb("VmRSS")}
    reset_peak()
    start = time.perf_counter()
    if variant == "json.load":
        with path.open("rb") as handle:
            loaded = json.load(handle)
        assert loaded
    elif variant == "DebianTracker.load":
        tracker = DebianTracker.load(path)
        result["seconds"] = time.perf_counter() - start

        def update(name: str, installed: str, candidate: str) -> PendingUpdate:
            return PendingUpdate(
                name=name, installed=installed, candidate=candidate, source_package=name
            )

        mixes = {
            # a point release: the window holds a few fixes even of the kernel
            "rate_typical_us": [
                update("linux-signed-amd64", "5.10.0-1", "5.10.3-1"),
                update("package-00005", "5.10.0-1", "5.10.3-1"),
                update("not-tracked", "1.0-1", "1.0-2"),
            ],
            # every fix the package ever had lies in the window (thousands for linux)
            "rate_worst_us": [
                update("linux-signed-amd64", "0.0-1", "9.9.9-9"),
                update("package-00005", "0.0-1", "9.9.9-9"),
                update("not-tracked", "1.0-1", "1.0-2"),
            ],
        }
        for figure, mix in mixes.items():
            for item in mix:
                tracker.rate(item, "bookworm")  # sort each package's fixes once, as a run does
            rate_start = time.perf_counter()
            for item in mix * 300:
                tracker.rate(item, "bookworm")
            result[figure] = (time.perf_counter() - rate_start) / (len(mix) * 300) * 1e6
    result.setdefault("seconds", time.perf_counter() - start)
    result["after_mb"] = rss_mb("VmRSS")
    result["peak_rss_mb"] = rss_mb("VmHWM")
    print(json.dumps(result))


def measure(variant: str, path: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", variant, str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    figures: dict[str, float] = json.loads(out)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=80000, help="(package, CVE) entries")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="write the synthetic file here and keep it")
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return
    with tempfile.TemporaryDirectory() as scratch:
        path = args.keep or Path(scratch) / "tracker.json"
        start = time.perf_counter()
        size = write_tracker(path, args.entries)
        print(
            f"synthetic tracker JSON: {size / 1e6:.1f} MB, {args.entries:,} (package, CVE) "
            f"entries, written in {time.perf_counter() - start:.1f} s"
        )
        idle = measure("idle", path)
        runs: dict[str, list[dict[str, float]]] = {"json.load": [], "DebianTracker.load": []}
        for _ in range(args.runs):
            for variant, results in runs.items():
                results.append(measure(variant, path))
    print(
        f"{'python with the modules imported':<26} {'':>9}  "
        f"{idle['before_mb']:5.0f} MB resident before loading"
    )
    base_time = statistics.median(r["seconds"] for r in runs["json.load"])
    base_peak = max(r["peak_rss_mb"] - r["before_mb"] for r in runs["json.load"])
    for variant, results in runs.items():
        seconds = statistics.median(r["seconds"] for r in results)
        peak = max(r["peak_rss_mb"] - r["before_mb"] for r in results)
        kept = max(r["after_mb"] - r["before_mb"] for r in results)
        print(
            f"{variant:<26} {seconds:7.2f} s  peak +{peak:4.0f} MB, kept +{kept:4.0f} MB   "
            f"time {seconds / base_time:.2f}x, peak memory {peak / base_peak:.2f}x json.load"
        )
    typical = statistics.median(r["rate_typical_us"] for r in runs["DebianTracker.load"])
    worst = statistics.median(r["rate_worst_us"] for r in runs["DebianTracker.load"])
    print(
        f"rate() per update (linux, a mid-size package, an untracked one): {typical:.0f} µs "
        f"for a point release, {worst:.0f} µs when every fix is in the window"
    )


if __name__ == "__main__":
    main()
