"""The engine's own cost per host, evidence writes included, at 10,000 hosts.

    .venv/bin/python bench/engine_overhead.py [--hosts 10000] [--forks 50]

Runs, in one process: (1) nornir's bare threaded runner with a no-op task over the
same hosts (the baseline: what fan-out alone costs), then (2) mspauto's run_command
with an in-process transport that answers instantly, writing every result to a SQLite
evidence store. Prints per-host overhead of each, their ratio, and peak memory.
Targets (issue 4): under 1 ms per host, under 300 MB.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import yaml

from mspauto.config import Settings
from mspauto.engine import RunSpec, run_command
from mspauto.evidence.store import EvidenceStore
from mspauto.project import load_project
from mspauto.transport.fake import FakeTransport


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_project(root: Path, hosts: int) -> None:
    (root / "inventory").mkdir(parents=True)
    (root / "policies").mkdir()
    (root / "policies" / "c.yaml").write_text("kind: contract\nname: std\n")
    document = {
        "client": {
            "name": "big",
            "display_name": "Big Client",
            "timezone": "UTC",
            "contract": "std",
            "platform": "debian",
            "connection": "local",
        },
        "hosts": {
            f"host{i:05d}": {"address": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"}
            for i in range(hosts)
        },
    }
    (root / "inventory" / "big.yaml").write_text(yaml.safe_dump(document))


def nornir_baseline(names: list[str], forks: int) -> float:
    from nornir.core import Nornir
    from nornir.core.inventory import Defaults, Groups, Hosts, Inventory
    from nornir.core.inventory import Host as NornirHost
    from nornir.core.task import Result, Task
    from nornir.plugins.runners import ThreadedRunner

    def noop(task: Task) -> Result:
        return Result(host=task.host, result=None)

    defaults = Defaults()
    inventory = Inventory(
        hosts=Hosts({n: NornirHost(name=n, defaults=defaults) for n in names}),
        groups=Groups(),
        defaults=defaults,
    )
    start = time.perf_counter()
    Nornir(inventory=inventory, runner=ThreadedRunner(num_workers=forks)).run(task=noop)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--forks", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as work:
        root = Path(work)
        make_project(root, args.hosts)
        start = time.perf_counter()
        project = load_project(Settings.load(root))
        client = project.inventory.clients["big"]
        load_seconds = time.perf_counter() - start
        hosts = list(client.hosts.values())

        baseline = nornir_baseline([h.name for h in hosts], args.forks)
        store = EvidenceStore(f"sqlite:///{root / 'evidence.db'}")
        spec = RunSpec(client=client, hosts=hosts, command="true", forks=args.forks)
        start = time.perf_counter()
        outcome = run_command(spec, FakeTransport(), store)
        seconds = time.perf_counter() - start
        recorded = sum(1 for _ in store.records(kind="host_result"))
        store.close()
    n = args.hosts
    print(f"inventory load+validate, {n} hosts:    {load_seconds:6.2f} s")
    print(f"nornir bare threaded runner, no-op:     {baseline / n * 1000:6.3f} ms/host (baseline)")
    print(
        f"mspauto run_command + evidence (SQLite): {seconds / n * 1000:6.3f} ms/host  "
        f"{seconds / baseline:4.1f}x baseline; target < 1 ms/host  "
        f"({recorded} results recorded, {sum(r.ok for r in outcome.results)} ok)"
    )
    print(f"peak memory (RSS) of this process:      {peak_mb():6.0f} MB  target < 300 MB")


if __name__ == "__main__":
    main()
