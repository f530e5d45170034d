"""Distributed runs (issue 14) against the machine's real RabbitMQ (127.0.0.1:5672) and
PostgreSQL (127.0.0.1:5432): workers are real ``mspauto worker`` processes, each test
on a RabbitMQ virtual host and a database of its own. Hosts are ``connection: local``
(the commands run here), which is all these tests need: what is under test is who runs
which host, how often, and what is recorded."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError, ProgrammingError

from mspauto.evidence.records import HostResult, RecordKind, read_change_result
from mspauto.evidence.store import EvidenceStore
from mspauto.lab.fleet import Lab
from mspauto.lab.packages import LAB_PACKAGES
from mspauto.lab.plan import HostPlan
from mspauto.lab.testing import copy_project, lab_unavailable, running_lab, ssh

pytestmark = pytest.mark.integration

SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
MSPAUTO = (sys.executable, "-m", "mspauto")
ONE_AT_A_TIME = ("--client", "acme", "--forks", "1", "--distributed", "--format", "json")
CLIENT = (
    "client:\n  name: {name}\n  display_name: {name}\n  timezone: UTC\n  contract: std\n"
    "  platform: debian\n  connection: local\nhosts:\n{hosts}"
)


@pytest.fixture
def database() -> Iterator[str]:
    admin = create_engine(f"{SERVER}/postgres", isolation_level="AUTOCOMMIT")
    name = f"mspauto_dist_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
    except OperationalError as exc:
        pytest.skip(f"PostgreSQL on 127.0.0.1:5432 unavailable: {str(exc).splitlines()[0]}")
    try:
        yield f"{SERVER}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@pytest.fixture
def broker() -> Iterator[str]:
    """A RabbitMQ virtual host of this test's own: queues named by client never meet
    another test run's."""
    rabbitmqctl = shutil.which("rabbitmqctl")
    if rabbitmqctl is None:
        pytest.skip("RabbitMQ unavailable: rabbitmqctl is not installed")
    vhost = f"mspauto-test-{uuid.uuid4().hex[:10]}"
    made = subprocess.run(
        [rabbitmqctl, "add_vhost", vhost], capture_output=True, text=True, check=False
    )
    if made.returncode != 0:
        pytest.skip(f"RabbitMQ unavailable: {made.stderr.strip()[-200:]}")
    subprocess.run(
        [rabbitmqctl, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
        capture_output=True,
        check=True,
    )
    try:
        yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    finally:
        subprocess.run([rabbitmqctl, "delete_vhost", vhost], capture_output=True, check=False)


class Node:
    """One project and its environment: the control node's commands and its workers."""

    def __init__(self, root: Path, database: str, broker: str, state: Path | None = None) -> None:
        self.root = root
        self.env = {
            **os.environ,
            "MSPAUTO_STATE_DIR": str(state or root.parent / "state"),
            "MSPAUTO_EVIDENCE_URL": database,
            "MSPAUTO_BROKER_URL": broker,
        }
        self.workers: list[tuple[subprocess.Popen[bytes], Path]] = []

    def mspauto(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mspauto", "--project", str(self.root), *args],
            env={**self.env, **env},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )

    def worker(
        self, *args: str, project: Path | None = None, **env: str
    ) -> subprocess.Popen[bytes]:
        log = self.root.parent / f"worker-{len(self.workers)}.log"
        process = subprocess.Popen(
            [*MSPAUTO, "--project", str(project or self.root), "worker", *args],
            env={**self.env, **env},
            stdin=subprocess.DEVNULL,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        self.workers.append((process, log))
        _wait(lambda: " ready." in log.read_text(errors="replace"), 60, f"worker {args} ready")
        return process

    def log_of(self, process: subprocess.Popen[bytes]) -> str:
        return next(log for p, log in self.workers if p is process).read_text(errors="replace")

    def stop(self) -> None:
        for process, _ in self.workers:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process, _ in self.workers:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def store(self) -> EvidenceStore:
        return EvidenceStore(self.env["MSPAUTO_EVIDENCE_URL"], writable=False)


@pytest.fixture
def node(tmp_path: Path, database: str, broker: str) -> Iterator[Node]:
    """Clients acme (three hosts) and globex (one host), all local; the MSP's key."""
    root = tmp_path / "project"
    write_project(root)
    made = Node(root, database, broker)
    assert made.mspauto("keys", "init").returncode == 0
    try:
        yield made
    finally:
        made.stop()


def write_project(root: Path) -> None:
    (root / "inventory").mkdir(parents=True)
    (root / "policies").mkdir()
    (root / "policies" / "contract.yaml").write_text("kind: contract\nname: std\n")
    for name, hosts in (("acme", ["a1", "a2", "a3"]), ("globex", ["g1"])):
        listed = "".join(f"  {host}: {{}}\n" for host in hosts)
        (root / "inventory" / f"{name}.yaml").write_text(CLIENT.format(name=name, hosts=listed))


def worker_pids(node: Node, run_id: str) -> dict[str, int]:
    """Which worker process took each host of ``run_id`` (its claim's owner)."""
    with create_engine(node.env["MSPAUTO_EVIDENCE_URL"]).connect() as conn:
        rows = conn.execute(
            text("SELECT host, owner FROM run_host_claims WHERE run_id = :run"), {"run": run_id}
        )
        return {host: int(owner.split(":")[1]) for host, owner in rows}


def host_results(node: Node, run_id: str) -> dict[str, list[HostResult]]:
    store = node.store()
    try:
        found: dict[str, list[HostResult]] = {}
        for record in store.records(run_id=run_id, kind=RecordKind.HOST_RESULT):
            found.setdefault(record.host, []).append(HostResult.read(record.payload))
        return found
    finally:
        store.close()


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not reached in {timeout:g}s: {what}"
        time.sleep(0.2)


def _json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.stdout, done.stderr
    return json.loads(done.stdout)


def test_two_workers_give_the_same_results_as_a_run_in_this_process(node: Node) -> None:
    node.worker("--client", "acme")
    node.worker("--client", "acme")
    command = ["exec", "--client", "acme", "--format", "json"]
    here = _json(node.mspauto(*command, "--", "echo", "hello"))
    there = _json(node.mspauto(*command, "--distributed", "--", "echo", "hello"))
    assert there["status"] == here["status"] == "completed"
    key = ("host", "rc", "stdout", "error")
    assert [{k: r[k] for k in key} for r in there["results"]] == [
        {k: r[k] for k in key} for r in here["results"]
    ]
    recorded = host_results(node, there["run_id"])
    assert sorted(recorded) == ["a1", "a2", "a3"]
    assert all(len(results) == 1 for results in recorded.values())
    verified = node.mspauto("evidence", "verify")
    assert verified.returncode == 0, verified.stderr
    assert "warning" not in verified.stderr, verified.stderr


def test_a_worker_killed_mid_batch_loses_no_host_and_runs_none_twice(
    node: Node, tmp_path: Path
) -> None:
    """Hosts run one at a time, each appending a line before it sleeps. The first
    worker is killed (SIGKILL) while the second host runs; the broker gives the batch to
    the second worker. The first host is recorded once, the second is interrupted (it
    may have run: it is never run again), the third runs: three lines, not four."""
    ran = tmp_path / "ran"
    node.env["MSPAUTO_CLAIM_LEASE"] = "3"  # the lost worker's claim runs out soon
    first = node.worker("--client", "acme")
    command = f"echo x >> {ran}; sleep 3"
    run = subprocess.Popen(
        [*MSPAUTO, "--project", str(node.root), "exec", *ONE_AT_A_TIME, "--shell", command],
        env=node.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait(lambda: ran.exists() and len(ran.read_text().splitlines()) == 2, 60, "host 2")
        first.kill()
        first.wait()
        node.worker("--client", "acme")
        stdout, stderr = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    outcome = json.loads(stdout)
    results = {r["host"]: r for r in outcome["results"]}
    assert len(ran.read_text().splitlines()) == 3, "a host ran twice"
    lost = [h for h, r in results.items() if r["error"] == "interrupted"]
    assert len(lost) == 1, results
    assert "not run again" in results[lost[0]]["message"]
    assert sorted(h for h, r in results.items() if r["rc"] == 0) == sorted(set(results) - set(lost))
    recorded = host_results(node, outcome["run_id"])
    assert sorted(recorded) == ["a1", "a2", "a3"] and all(len(r) == 1 for r in recorded.values())
    assert node.mspauto("evidence", "verify").returncode == 0, stderr


def test_a_worker_for_one_client_never_receives_another_clients_work(node: Node) -> None:
    acme = node.worker("--client", "acme")
    listed = _json(node.mspauto("workers", "--format", "json"))
    assert [(w["queues"], w["running"]) for w in listed] == [(["mspauto:acme"], [])]
    done = node.mspauto(
        "exec",
        "--client",
        "globex",
        "--distributed",
        "--format",
        "json",
        "--",
        "true",
        MSPAUTO_QUEUE_WAIT="3",
    )
    outcome = _json(done)
    (result,) = outcome["results"]
    assert result["error"] == "not_started"
    assert result["message"] == (
        "no worker serves this host's queue: none consumed it, and no host was taken from "
        "it for 3 s"
    )
    assert "Task mspauto.run_batch" not in node.log_of(acme)
    # A globex worker started later finds the batch, but runs nothing: its host was
    # taken back and recorded by the control node.
    globex = node.worker("--client", "globex")
    _wait(lambda: "Task mspauto.run_batch" in node.log_of(globex), 60, "late batch taken")
    _wait(lambda: "succeeded" in node.log_of(globex), 60, "late batch done")
    assert len(host_results(node, outcome["run_id"])["g1"]) == 1


def test_a_worker_with_a_key_of_its_own_signs_for_its_client_without_the_msps_key(
    node: Node, tmp_path: Path
) -> None:
    """A worker holding only a worker key for acme (no MSP key): the control node's
    checkpoint takes in what it recorded, and verify finds every chain signed."""
    issued = node.mspauto("keys", "worker", "acme-1", "--client", "acme", "--out", str(tmp_path))
    assert issued.returncode == 0, issued.stderr
    worker = node.worker(
        MSPAUTO_SIGNING_KEY=str(tmp_path / "no-msp.key"),
        MSPAUTO_WORKER_KEY=str(tmp_path / "acme-1.key"),
    )
    assert "acme" in node.log_of(worker) and "globex" not in node.log_of(worker)
    done = node.mspauto("exec", "--client", "acme", "--distributed", "--", "true")
    assert done.returncode == 0, done.stderr
    assert "unsigned" not in done.stderr, done.stderr
    verified = node.mspauto("evidence", "verify")
    assert verified.returncode == 0, verified.stderr
    assert "warning" not in verified.stderr, verified.stderr
    # Work the MSP's key did not sign (a control node without it, or anyone else who
    # can publish to the broker) is refused.
    unsigned = node.mspauto(
        *("exec", "--client", "acme", "--distributed", "--format", "json", "--", "true"),
        MSPAUTO_SIGNING_KEY=str(tmp_path / "no-msp.key"),
    )
    assert all("not signed by the MSP's key" in r["message"] for r in _json(unsigned)["results"]), (
        unsigned.stdout
    )


def test_batches_the_broker_drops_are_reported_at_once(node: Node) -> None:
    """No worker, but a consumer that fails every delivery (as workers killed by each
    batch would): RabbitMQ drops the batches at their delivery limit, and the control
    node reports their hosts at once, not at the run's deadline. One host had been taken
    by a worker that was lost: it is recorded interrupted, never run."""
    from kombu.connection import Connection

    from mspauto.distributed.app import queue_named

    run = subprocess.Popen(
        [*MSPAUTO, "--project", str(node.root), "exec", *ONE_AT_A_TIME, "--", "true"],
        env={**node.env, "MSPAUTO_QUEUE_WAIT": "600"},  # no unserved-queue rule here
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    database = create_engine(node.env["MSPAUTO_EVIDENCE_URL"])

    def started() -> str | None:
        query = text("SELECT run_id FROM evidence_records WHERE kind = 'run_started'")
        try:
            with database.connect() as conn:
                return conn.execute(query).scalar()
        except ProgrammingError:  # the control node has not made the store yet
            return None

    try:
        _wait(lambda: started() is not None, 60, "the run's start")
        run_id = str(started())
        with database.begin() as conn:  # a worker took a1, then was lost an hour ago
            conn.execute(
                text("INSERT INTO run_host_claims VALUES (:run, 'a1', 'ghost:1:x', :at, :at)"),
                {"run": run_id, "at": "2026-01-01T00:00:00.000000Z"},
            )
        with Connection(node.env["MSPAUTO_BROKER_URL"]) as broker:
            queue = queue_named("mspauto:acme")(broker.default_channel)
            deadline = time.monotonic() + 180
            while run.poll() is None and time.monotonic() < deadline:
                message = queue.get(no_ack=False)
                if message is None:  # nothing queued now: wait for the run to end a moment
                    with suppress(subprocess.TimeoutExpired):
                        run.wait(timeout=0.1)
                else:
                    message.reject(requeue=True)
        if run.poll() is None:
            run.kill()
        stdout, stderr = run.communicate(timeout=60)
        assert run.returncode != -signal.SIGKILL, f"the drops were not reported: {stderr}"
    finally:
        if run.poll() is None:
            run.kill()
        database.dispose()
    results = {r["host"]: r for r in _json(subprocess.CompletedProcess([], 0, stdout))["results"]}
    assert results["a1"]["error"] == "interrupted", stderr
    assert results["a1"]["message"].startswith("the worker running this host was lost")
    for host in ("a2", "a3"):
        assert results[host]["error"] == "not_started"
        assert results[host]["message"].startswith("the broker dropped this host's batch after")
    assert all(len(r) == 1 for r in host_results(node, run_id).values())


def test_a_queue_an_earlier_release_declared_is_one_line_with_what_to_do(node: Node) -> None:
    from kombu.connection import Connection
    from kombu.entity import Exchange, Queue

    earlier = Queue(  # as releases before the dead-letter exchange declared it
        "mspauto:acme",
        Exchange("mspauto", type="direct", durable=True),
        routing_key="mspauto:acme",
        durable=True,
        queue_arguments={"x-queue-type": "quorum", "x-delivery-limit": 10},
    )
    with Connection(node.env["MSPAUTO_BROKER_URL"]) as broker:
        earlier(broker.default_channel).declare()
    line = (
        "error: the broker holds queue mspauto:acme declared by an earlier mspauto (other "
        "arguments): delete it once ('rabbitmqctl delete_queue mspauto:acme') and start again\n"
    )
    run = node.mspauto("exec", "--client", "acme", "--distributed", "--", "true")
    assert (run.returncode, run.stderr) == (1, line)
    worker = subprocess.run(
        [*MSPAUTO, "--project", str(node.root), "worker", "--client", "acme"],
        env=node.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (worker.returncode, worker.stderr) == (1, line)


def test_a_worker_refuses_a_batch_planned_on_another_project(node: Node, tmp_path: Path) -> None:
    other = tmp_path / "worker-project"
    write_project(other)
    (other / "inventory" / "acme.yaml").write_text(
        (other / "inventory" / "acme.yaml").read_text().replace("a3: {}", "a3: {port: 2222}")
    )
    node.worker("--client", "acme", project=other)
    outcome = _json(
        node.mspauto("exec", "--client", "acme", "--distributed", "--format", "json", "--", "true")
    )
    assert {r["error"] for r in outcome["results"]} == {"config"}
    assert all(
        "project differs from the control node's for client 'acme'" in r["message"]
        for r in outcome["results"]
    )


def test_without_a_broker_or_a_shared_store_distributed_runs_say_so(node: Node) -> None:
    no_broker = node.mspauto(
        "exec", "--client", "acme", "--distributed", "--", "true", MSPAUTO_BROKER_URL=""
    )
    assert no_broker.returncode == 1
    assert no_broker.stderr.startswith("error: a distributed run needs the broker")
    sqlite = node.mspauto(
        "exec",
        "--client",
        "acme",
        "--distributed",
        "--",
        "true",
        MSPAUTO_EVIDENCE_URL=f"sqlite:///{node.root.parent / 'local.db'}",
    )
    assert sqlite.returncode == 1
    assert "needs an evidence store the workers share" in sqlite.stderr


def test_a_baseline_audit_across_two_workers_finds_what_one_process_finds(
    lab: Lab, tmp_path: Path, database: str, broker: str
) -> None:
    """The lab's acme hosts (planted compliant, drifted and faulty ones) audited here and
    by two workers: the same verdict for every rule of every host, each host recorded
    once."""
    project = copy_project(lab, tmp_path / "project")
    node = Node(project, database, broker)
    assert node.mspauto("keys", "init").returncode == 0
    try:
        workers = [node.worker("--client", "acme"), node.worker("--client", "acme")]
        audit = ["baseline", "--client", "acme", "--timeout", "60", "--format", "json"]
        here, there = node.mspauto(*audit), node.mspauto(*audit, "--distributed")
        assert any("Task mspauto.run_batch" in node.log_of(w) for w in workers)
    finally:
        node.stop()
    assert there.returncode == here.returncode, (here.stderr, there.stderr)

    def verdicts(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
        report = _json(done)
        return {
            host["host"]: (
                host["unaudited"],
                sorted((r["rule_id"], r["status"]) for r in host["results"]),
            )
            for host in report["hosts"]
        }

    expected = verdicts(here)
    assert {status for _, rules in expected.values() for _, status in rules} >= {"pass", "fail"}
    assert verdicts(there) == expected
    run_id = _json(there)["run_id"]
    recorded = host_results(node, run_id)
    assert all(len(results) == 1 for results in recorded.values())
    assert node.mspauto("evidence", "verify").returncode == 0


def test_workers_says_in_one_line_that_the_broker_cannot_be_reached(node: Node) -> None:
    down = node.mspauto("workers", MSPAUTO_BROKER_URL="amqp://guest:guest@127.0.0.1:1//")
    assert down.returncode == 1
    assert down.stderr.startswith("error: cannot reach the broker: ")


def test_backup_checks_and_drills_by_a_worker_judge_every_job_as_this_process_does(
    lab: Lab, tmp_path: Path, database: str, broker: str
) -> None:
    """The lab's planted repositories (fresh, stale, failing, missing, wrong password):
    the same state and reason for every job, the repository passwords resolved on the
    worker from the project's secrets folder."""
    project = copy_project(lab, tmp_path / "project")
    shutil.copytree(lab.directory / "secrets", project / "secrets")
    node = Node(project, database, broker)
    assert node.mspauto("keys", "init").returncode == 0
    try:
        node.worker("--client", "acme")
        check = ["backups", "--client", "acme", "--format", "json"]
        here, there = node.mspauto(*check), node.mspauto(*check, "--distributed")
        drill = ["backups", "restore-test", "--client", "acme", "--format", "json"]
        drilled_here, drilled_there = node.mspauto(*drill), node.mspauto(*drill, "--distributed")
    finally:
        node.stop()
    assert there.returncode == here.returncode, (here.stderr, there.stderr)
    assert drilled_there.returncode == drilled_here.returncode, drilled_there.stderr

    def drills(done: subprocess.CompletedProcess[str]) -> list[tuple[str, str, str]]:
        hosts = _json(done)["hosts"]
        return sorted((h["host"], d["subject"], d["status"]) for h in hosts for d in h["drills"])

    assert drills(drilled_here), "the lab has restore drills"
    assert drills(drilled_there) == drills(drilled_here)

    def states(done: subprocess.CompletedProcess[str]) -> list[tuple[str, str, str, str]]:
        # Reasons hold ages ("4 h old"), which the two runs see seconds apart.
        return sorted((j["host"], j["job"], j["state"], j["status"]) for j in _json(done)["jobs"])

    expected = states(here)
    assert {state for _, _, state, _ in expected} >= {"ok", "stale", "missing"}
    assert states(there) == expected
    assert node.mspauto("evidence", "verify").returncode == 0


def test_concurrent_runs_keep_every_chain_whole_and_signed(node: Node) -> None:
    """Two distributed runs of acme, one of globex and one in-process run of acme, all at
    once: workers and control nodes append to the same chains concurrently; every run's
    hosts are recorded once and 'evidence verify' finds every chain intact and signed."""
    node.worker()
    node.worker()
    commands = [
        ["exec", "--client", "acme", "--distributed", "--format", "json", "--", "echo", "1"],
        ["exec", "--client", "acme", "--distributed", "--format", "json", "--", "echo", "2"],
        ["exec", "--client", "globex", "--distributed", "--format", "json", "--", "echo", "3"],
        ["exec", "--client", "acme", "--format", "json", "--", "echo", "4"],
    ]
    runs = [
        subprocess.Popen(
            [*MSPAUTO, "--project", str(node.root), *command],
            env=node.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for command in commands
    ]
    outcomes = []
    for run in runs:
        stdout, stderr = run.communicate(timeout=180)
        assert run.returncode == 0, stderr
        outcomes.append(json.loads(stdout))
    for outcome in outcomes:
        recorded = host_results(node, outcome["run_id"])
        assert sorted(recorded) == sorted(r["host"] for r in outcome["results"])
        assert all(len(results) == 1 for results in recorded.values())
    verified = node.mspauto("evidence", "verify")
    assert verified.returncode == 0, verified.stderr
    assert "warning" not in verified.stderr, verified.stderr


def test_a_busy_worker_is_not_taken_for_a_missing_one(node: Node) -> None:
    """One worker, hosts one at a time, each slower than the queue wait: the queue makes
    no progress for longer than MSPAUTO_QUEUE_WAIT, but a worker consumes it, so no
    host is taken back."""
    node.worker("--client", "acme")
    done = node.mspauto("exec", *ONE_AT_A_TIME, "--shell", "sleep 2", MSPAUTO_QUEUE_WAIT="1")
    outcome = _json(done)
    assert [r["error"] for r in outcome["results"]] == [None, None, None], outcome


PATCH_CLIENT = "umbrella"
PATCH_POLICY = """\
kind: patch
name: umbrella-patch
targets: {{clients: [umbrella]}}
schedule: {{cron: '0 1 * * *', timezone: client}}
window: {{days: [{day}], start: '03:00', duration: 1h}}
approvals:
  - match: {{classifications: [security]}}
    action: auto
  - match: {{names: ['^lab-editor$']}}
    action: defer
    defer: 14d
  - action: manual
holds: [lab-tools]
reboot: {{policy: if-required}}
"""


@pytest.fixture(scope="module")
def small_lab(
    tmp_path_factory: pytest.TempPathFactory, address_block: Callable[[int], str]
) -> Iterator[Lab]:
    """Two lab hosts of client umbrella (the second drifted from the baseline), for the
    changes workers make: patches and remediation."""
    if reason := lab_unavailable():
        pytest.skip(f"lab unavailable: {reason}")
    directory = tmp_path_factory.mktemp("distributed-lab") / "fleet"
    with running_lab(
        directory, 2, [PATCH_CLIENT], faults=False, first_address=address_block(9)
    ) as lab:
        yield lab


def _run_once_by(
    node: Node, run_id: str, workers: list[subprocess.Popen[bytes]], hosts: list[str]
) -> None:
    """Each of ``hosts`` was taken by one of ``workers`` and recorded once in the run."""
    taken = worker_pids(node, run_id)
    assert sorted(taken) == hosts and set(taken.values()) <= {w.pid for w in workers}
    recorded = host_results(node, run_id)
    assert sorted(recorded) == hosts and all(len(r) == 1 for r in recorded.values())


def _decisions(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    return {
        host["host"]: sorted((u["name"], u["decision"]["action"]) for u in host["updates"])
        for host in _json(done)["hosts"]
    }


def _lab_packages(lab: Lab, host: HostPlan) -> dict[str, str]:
    listed = ssh(lab, host, "dpkg-query -W 'lab-*'").stdout
    return dict(line.split("\t") for line in listed.splitlines())


def test_a_patch_run_by_workers_decides_as_this_process_and_installs_once(
    small_lab: Lab, database: str, broker: str, tmp_path: Path
) -> None:
    """Two lab hosts, patched by two workers (forced outside the window): the scan's
    decisions are this process's, each host installs exactly the approved updates in
    one recorded attempt, the scan after it is recorded with what changed, and the
    hosts the new kernel asks a reboot of are rebooted by a worker, once."""
    day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[(time.gmtime().tm_wday + 3) % 7]
    lab = small_lab
    policy = lab.directory / "policies" / "patch.yaml"
    policy.write_text(PATCH_POLICY.format(day=day))
    try:
        node = Node(lab.directory, database, broker, tmp_path / "state")
        assert node.mspauto("keys", "init").returncode == 0
        try:
            workers = [node.worker("--client", PATCH_CLIENT) for _ in range(2)]
            scan = ["patch", "--client", PATCH_CLIENT, "--dry-run", "--format", "json"]
            here, there = node.mspauto(*scan), node.mspauto(*scan, "--distributed")
            patched = node.mspauto(
                "patch",
                "--client",
                PATCH_CLIENT,
                "--force-window",
                "--reason",
                "emergency fix",
                "--distributed",
                "--format",
                "json",
            )
            assert any("Task mspauto.run_batch" in node.log_of(w) for w in workers)
        finally:
            node.stop()
        verified = node.mspauto("evidence", "verify")
        hosts = sorted(lab.plans(), key=lambda p: p.name)
        versions = {h.name: _lab_packages(lab, h) for h in hosts}
    finally:
        policy.unlink()  # the lab's other tests run no patch policy

    assert there.returncode == here.returncode == 0, (here.stderr, there.stderr)
    expected = _decisions(here)
    assert {a for updates in expected.values() for _, a in updates} >= {"install", "defer"}
    assert _decisions(there) == expected
    assert patched.returncode == 0, patched.stderr
    report = _json(patched)
    updated = {p.name: p.update for p in LAB_PACKAGES}
    installed = {p.name: p.installed for p in LAB_PACKAGES}
    for entry in report["hosts"]:
        approved = sorted(n for n, action in expected[entry["host"]] if action == "install")
        assert sorted(o["subject"] for o in entry["installed"]) == approved
        assert {o["status"] for o in entry["installed"]} == {"installed"}
        for name in approved:
            assert versions[entry["host"]][name] == updated[name]
        assert versions[entry["host"]]["lab-tools"] == installed["lab-tools"]  # held
    assert {entry["reboot_done"] for entry in report["hosts"]} == {"rebooted"}
    [install_run], [reboot_run] = report["install_run_ids"], report["reboot_run_ids"]
    for run_id in (install_run, reboot_run):
        _run_once_by(node, run_id, workers, [h.name for h in hosts])
    store = node.store()
    try:
        changes = list(store.records(chain=PATCH_CLIENT, kind=RecordKind.CHANGE_RESULT))
    finally:
        store.close()
    assert sorted(c.host for c in changes) == [h.name for h in hosts]
    assert verified.returncode == 0, verified.stderr


def test_remediation_by_workers_fixes_what_it_fixes_in_this_process(
    small_lab: Lab, database: str, broker: str, tmp_path: Path
) -> None:
    """The drifted lab host remediated by two workers: each fix is planned by the worker
    from the audit the workers recorded, the host is changed once, and an audit in this
    process afterwards finds only what needs a person."""
    node = Node(small_lab.directory, database, broker, tmp_path / "state")
    assert node.mspauto("keys", "init").returncode == 0
    audit = ["baseline", "--client", PATCH_CLIENT, "--format", "json"]

    def failed(done: subprocess.CompletedProcess[str]) -> dict[str, set[str]]:
        return {
            host["host"]: {r["rule_id"] for r in host["results"] if r["status"] == "fail"}
            for host in _json(done)["hosts"]
        }

    before = failed(node.mspauto(*audit))
    drifted = next(name for name, rules in before.items() if len(rules) > 1)
    try:
        workers = [node.worker("--client", PATCH_CLIENT) for _ in range(2)]
        fixed = node.mspauto(*audit, "--remediate", "--distributed")
        assert any("Task mspauto.run_batch" in node.log_of(w) for w in workers)
    finally:
        node.stop()
    assert fixed.returncode == 0, fixed.stderr
    report = _json(fixed)
    after = failed(node.mspauto(*audit))
    assert after == {name: set() for name in before} | {drifted: {"only-root-has-uid-0"}}
    change_run = report["change_run_id"]
    _run_once_by(node, change_run, workers, [drifted])
    store = node.store()
    try:
        (change,) = store.records(chain=PATCH_CLIENT, kind=RecordKind.CHANGE_RESULT)
    finally:
        store.close()
    result = read_change_result(change.kind, change.payload)
    assert result.host == drifted and result.change_run == change_run
    assert {c.status for c in result.changes} == {"changed"}
    assert node.mspauto("evidence", "verify").returncode == 0
