"""The engine's own cost per host, evidence writes included, at 10,000 hosts.

    .venv/bin/python bench/engine_overhead.py [--hosts 10000] [--forks 50]

Runs, in one process: (1) nornir's bare threaded runner with a no-op task over the
same hosts (the baseline: what fan-out alone costs), then (2) mspauto's run_command
with an in-process transport that answers instantly, writing every result to a SQLite
evidence store, unsigned, and (3) the same, signed: the run ends with a checkpoint of
its chain (links re-checked, Merkle tree extended, Ed25519 signature, witness append).
Prints per-host overhead of each, their ratios, and peak memory.
Targets: under 1 ms per host and 300 MB (issue 4); under 0.5 ms per host with
checkpoints and Merkle hashing (issue 9).
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
from mspauto.evidence.checkpoints import Notary, Witness
from mspauto.evidence.store import EvidenceStore
from mspauto.project import load_project
from mspauto.signing import SigningKey, generate_key
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
        spec = RunSpec(client=client, hosts=hosts, command="true", forks=args.forks)
        generate_key(root / "key", root / "key.pub", comment="bench")
        notary = Notary(SigningKey.load(root / "key"), Witness(root / "witness"))
        timings = {}
        for name, signer in (("unsigned", None), ("signed", notary)):
            store = EvidenceStore(f"sqlite:///{root / f'{name}.db'}", notary=signer)
            start = time.perf_counter()
            outcome = run_command(spec, FakeTransport(), store)
            timings[name] = time.perf_counter() - start
            assert outcome.evidence_error is None, outcome.evidence_error
            recorded = sum(1 for _ in store.records(kind="host_result"))
            assert recorded == args.hosts
            signed = [o for o in store.checkpoint_outcomes if o.checkpoint is not None]
            assert len(signed) == (name == "signed"), store.checkpoint_outcomes
            store.close()
    n = args.hosts
    per_host = {name: seconds / n * 1000 for name, seconds in timings.items()}
    print(f"inventory load+validate, {n} hosts:     {load_seconds:6.2f} s")
    print(f"nornir bare threaded runner, no-op:      {baseline / n * 1000:6.3f} ms/host (baseline)")
    print(
        f"run_command + evidence, unsigned:        {per_host['unsigned']:6.3f} ms/host  "
        f"{timings['unsigned'] / baseline:4.1f}x baseline"
    )
    print(
        f"run_command + evidence + checkpoint:     {per_host['signed']:6.3f} ms/host  "
        f"{timings['signed'] / baseline:4.1f}x baseline, "
        f"{timings['signed'] / timings['unsigned']:4.2f}x unsigned; target < 0.5 ms/host"
    )
    print(f"peak memory (RSS) of this process:       {peak_mb():6.0f} MB  target < 300 MB")


if __name__ == "__main__":
    main()
