"""A baseline audit of N lab hosts by one worker, then by two (issue 14).

    sudo .venv/bin/python bench/distributed.py [--hosts 200] [--rounds 2]

Brings up a lab of N acme hosts (no faults), a PostgreSQL database and a RabbitMQ
virtual host of its own, then times ``mspauto baseline --client acme --distributed``
(the control node's whole command, as a user runs it) with one worker pinned to core 0
(``taskset``), and with two workers pinned to cores 0 and 1; each round runs both, in
turn, so both see the same machine. Also times the same audit in-process, for
reference. Prints each time and the ratio one worker / two workers (target >= 1.7).

The lab's hosts run on the same two cores as the workers (their sshd and the audit
script itself are not pinned), so the ratio measures the whole machine: what two
workers can add depends on how much of a host's audit is the workers' own work.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

from mspauto.lab.fleet import Lab

SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
MSPAUTO = (sys.executable, "-m", "mspauto")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    rabbitmqctl = shutil.which("rabbitmqctl")
    assert rabbitmqctl and shutil.which("taskset"), "needs rabbitmqctl and taskset"
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
        with tempfile.TemporaryDirectory(prefix="bench-distributed-") as work_dir:
            work = Path(work_dir)
            lab = Lab(work / "lab")
            lab.up(
                args.hosts, ["acme"], faults=False, first_address="127.0.171.10", say=lambda _: None
            )
            try:
                env = {
                    **os.environ,
                    "MSPAUTO_STATE_DIR": str(work / "state"),
                    "MSPAUTO_EVIDENCE_URL": f"{SERVER}/{database}",
                    "MSPAUTO_BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
                }
                run(lab, env, "keys", "init")
                times: dict[str, list[float]] = {"here": [], "one": [], "two": []}
                cpu: dict[str, list[tuple[float, float]]] = {"one": [], "two": []}
                for _ in range(args.rounds):
                    times["here"].append(audit(lab, env, distributed=False))
                    for label, cores in (("one", ["0"]), ("two", ["0", "1"])):
                        workers = [worker(lab, env, core, work) for core in cores]
                        try:
                            busy, own = machine_busy(), [cpu_of(w.pid) for w in workers]
                            times[label].append(audit(lab, env, distributed=True))
                            used = [cpu_of(w.pid) - o for w, o in zip(workers, own, strict=True)]
                            cpu[label].append((sum(used), machine_busy() - busy))
                        finally:
                            for process in workers:
                                process.send_signal(signal.SIGTERM)
                            for process in workers:
                                process.wait(timeout=120)
            finally:
                lab.down(say=lambda _: None)
    finally:
        subprocess.run([rabbitmqctl, "delete_vhost", vhost], capture_output=True, check=False)
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        admin.dispose()
    here, one, two = (statistics.median(times[k]) for k in ("here", "one", "two"))
    print(f"{args.hosts} hosts, baseline audit (debian-cis), median of {args.rounds} rounds")
    for label, seconds in (
        ("in-process (no workers):", here),
        ("one worker (taskset -c 0):", one),
        ("two workers (cores 0 and 1):", two),
    ):
        print(f"{label:<34}{seconds:7.2f} s  ({args.hosts / seconds * 60:6.0f} hosts/min)")
    print(f"two workers / one worker:         {one / two:7.2f}x throughput (target >= 1.7x)")
    for label in ("one", "two"):
        workers_cpu = statistics.median(c[0] for c in cpu[label])
        machine_cpu = statistics.median(c[1] for c in cpu[label])
        print(
            f"{label} worker(s): workers used {workers_cpu:5.1f} CPU s, the whole machine "
            f"{machine_cpu:5.1f} CPU s (lab hosts, PostgreSQL, RabbitMQ, control node)"
        )
    print(f"rounds: {times}")


def cpu_of(pid: int) -> float:
    """User + system seconds process ``pid`` (and its threads) used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """CPU seconds every core spent busy since boot (all but idle and iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / os.sysconf("SC_CLK_TCK")


def run(lab: Lab, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*MSPAUTO, "--project", str(lab.directory), *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode in (0, 3), done.stderr[-2000:]  # 3: under the floor (planted)
    return done


def audit(lab: Lab, env: dict[str, str], *, distributed: bool) -> float:
    extra = ["--distributed"] if distributed else []
    start = time.perf_counter()
    run(lab, env, "baseline", "--client", "acme", "--format", "json", *extra)
    return time.perf_counter() - start


def worker(lab: Lab, env: dict[str, str], core: str, work: Path) -> subprocess.Popen[bytes]:
    log = work / f"worker-{core}-{time.monotonic_ns()}.log"
    process = subprocess.Popen(
        ["taskset", "-c", core, *MSPAUTO, "--project", str(lab.directory), "worker"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while " ready." not in log.read_text(errors="replace"):
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.2)
    return process


if __name__ == "__main__":
    main()
