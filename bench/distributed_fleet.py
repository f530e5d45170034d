"""A simulated fleet of 10,000 hosts through the broker and the database (issue 14).

    .venv/bin/python bench/distributed_fleet.py [--hosts 10000] [--workers 2] [--delay 0.05]

Hosts answer through mspauto's in-process fake transport after ``--delay`` seconds (a
host's round trip), so what is measured is mspauto's own path, not SSH. In one script:

1. **in-process**: ``run_command`` over every host, recording into PostgreSQL (the
   baseline: the same engine, transport and store, no broker);
2. **distributed**: the control node's ``DistributedExecutor`` sends the hosts in batches
   through RabbitMQ to ``--workers`` worker processes (each ``mspauto worker``'s code,
   with the fake transport swapped in), which take each host in the database and record
   it; the control node follows the run through the store.

Prints hosts per minute dispatched and recorded for each, and what the broker and
database path adds per host: (distributed - in-process / workers) x workers / hosts,
i.e. per host on each worker, against workers that did their share of the in-process
work in parallel (target under 2 ms).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import create_engine, text

SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"


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
        "hosts": {f"h{i:05d}": {} for i in range(hosts)},
    }
    (root / "inventory" / "big.yaml").write_text(yaml.safe_dump(document))


def worker(root: str, env: dict[str, str], delay: float) -> None:
    """One worker process: 'mspauto worker' with the fake transport swapped in."""
    os.environ.update(env)
    from mspauto.config import Settings
    from mspauto.distributed import jobs
    from mspauto.distributed.app import WorkerScope, start_worker
    from mspauto.evidence.store import EvidenceStore
    from mspauto.project import load_project
    from mspauto.transport.fake import FakeTransport

    def fake(*_args: Any, **_kwargs: Any) -> FakeTransport:
        return FakeTransport(delay=delay)

    jobs.transport_for = fake  # type: ignore[assignment]
    settings = Settings.load(Path(root))
    project = load_project(settings)
    scope = WorkerScope()
    start_worker(settings, EvidenceStore(settings.evidence_url), scope, scope.queues(project), None)


@contextmanager
def services() -> Iterator[tuple[str, str]]:
    """A PostgreSQL database and a RabbitMQ virtual host of this run's own: their URLs."""
    rabbitmqctl = shutil.which("rabbitmqctl")
    assert rabbitmqctl, "needs rabbitmqctl"
    admin = create_engine(f"{SERVER}/postgres", isolation_level="AUTOCOMMIT")
    database, vhost = f"mspauto_bench_{uuid.uuid4().hex[:8]}", f"mspauto-bench-{os.getpid()}"
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {database}"))
    subprocess.run([rabbitmqctl, "add_vhost", vhost], check=True, capture_output=True)
    subprocess.run(
        [rabbitmqctl, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"{SERVER}/{database}", f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    finally:
        subprocess.run([rabbitmqctl, "delete_vhost", vhost], capture_output=True, check=False)
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        admin.dispose()


def measure(root: Path, env: dict[str, str], args: argparse.Namespace) -> Measured:
    """Seconds in-process, then through the broker to ``args.workers`` workers."""
    os.environ.update(env)
    from mspauto.config import Settings
    from mspauto.distributed.dispatch import DistributedExecutor
    from mspauto.engine import RunSpec, run_command
    from mspauto.evidence.store import EvidenceStore
    from mspauto.project import load_project
    from mspauto.transport.fake import FakeTransport

    settings = Settings.load(root)
    project = load_project(settings)
    client = project.inventory.clients["big"]
    spec = RunSpec(
        client=client,
        hosts=sorted(client.hosts.values(), key=lambda h: h.name),
        command="true",
        timeout=30,
        forks=args.forks,
    )
    store = EvidenceStore(settings.evidence_url)
    start, cpu = time.perf_counter(), time.process_time()
    here = run_command(spec, FakeTransport(delay=args.delay), store)
    here_s = time.perf_counter() - start
    cpu_here = time.process_time() - cpu
    assert here.ok, here.counts()
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=worker, args=(str(root), env, args.delay))
        for _ in range(args.workers)
    ]
    for process in processes:
        process.start()
    try:
        time.sleep(8)  # the workers connect and declare their queues
        job = {
            "kind": "exec",
            "command": "true",
            "sudo": False,
            "timeout": 30,
            "retries": 2,
            "forks": args.forks,
            "via": "direct",
        }
        executor = DistributedExecutor(settings, project, job)
        idle = _children_cpu(processes)  # starting up, before the run
        start, cpu = time.perf_counter(), time.process_time()
        there = executor(spec, FakeTransport(), store, None, None)
        there_s = time.perf_counter() - start
        cpu_control = time.process_time() - cpu
        cpu_workers = _children_cpu(processes) - idle
        assert there.ok, there.counts()
    finally:
        for process in processes:
            if process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        for process in processes:
            process.join(60)
        store.close()
    return Measured(here_s, there_s, cpu_here, cpu_control, cpu_workers)


@dataclass(frozen=True)
class Measured:
    here: float
    there: float
    cpu_here: float
    cpu_control: float
    cpu_workers: float


def _children_cpu(processes: list[multiprocessing.process.BaseProcess]) -> float:
    """User + system seconds the worker processes (and their threads) have used."""
    total = 0.0
    for process in processes:
        fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--delay", type=float, default=0.05)
    parser.add_argument("--forks", type=int, default=50)
    args = parser.parse_args()
    with services() as (database, broker), tempfile.TemporaryDirectory() as work_dir:
        root = Path(work_dir) / "project"
        make_project(root, args.hosts)
        env = {
            "MSPAUTO_STATE_DIR": str(Path(work_dir) / "state"),
            "MSPAUTO_EVIDENCE_URL": database,
            "MSPAUTO_BROKER_URL": broker,
        }
        m = measure(root, env, args)
    n = args.hosts
    print(f"{n} simulated hosts, {args.delay * 1000:.0f} ms each, forks {args.forks}")
    print(f"in-process (one node, PostgreSQL):  {m.here:7.2f} s  {n / m.here * 60:8.0f} hosts/min")
    print(
        f"distributed ({args.workers} workers):         {m.there:7.2f} s  "
        f"{n / m.there * 60:8.0f} hosts/min"
    )
    added = (m.there - m.here / args.workers) * args.workers / n * 1000
    print(f"wall time the path adds per host per worker: {added:6.2f} ms")
    print(
        f"CPU per host: in-process {m.cpu_here / n * 1000:.2f} ms; distributed "
        f"{(m.cpu_control + m.cpu_workers) / n * 1000:.2f} ms (control "
        f"{m.cpu_control / n * 1000:.2f}, workers {m.cpu_workers / n * 1000:.2f}); "
        f"the broker and database path adds "
        f"{(m.cpu_control + m.cpu_workers - m.cpu_here) / n * 1000:.2f} ms (target < 2 ms)"
    )


if __name__ == "__main__":
    main()
