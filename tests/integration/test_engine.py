"""The run engine on the lab: every failure classified, nothing lost, nothing leaked.

Runs go through the real CLI (``python -m mspauto``) against the lab's written project,
with the evidence store in a scratch state folder per test.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mspauto.evidence.runs import list_runs
from mspauto.evidence.store import EvidenceError, EvidenceStore
from mspauto.lab.fleet import Lab
from mspauto.lab.plan import HostPlan
from mspauto.lab.testing import copy_project

pytestmark = pytest.mark.integration


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """A fresh state folder (and so a fresh evidence store) for one test, with the
    MSP's signing key made in it (``mspauto keys init``), so runs sign their evidence."""
    state = tmp_path / "state"
    made = subprocess.run(
        [sys.executable, "-m", "mspauto", "keys", "init"],
        env=_env(state),
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    return state


def _command(lab: Lab, *args: str) -> list[str]:
    return [sys.executable, "-m", "mspauto", "--project", str(lab.directory), *args]


def _env(state: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "MSPAUTO_STATE_DIR": str(state), **extra}


def mspauto(lab: Lab, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _command(lab, *args),
        capture_output=True,
        text=True,
        env=_env(state),
        check=False,
        timeout=300,
    )


def exec_json(lab: Lab, state: Path, *args: str) -> dict[str, dict[str, Any]]:
    """``mspauto exec --format json``; results by host."""
    result = mspauto(lab, state, "exec", "--format", "json", *args)
    assert result.returncode in (0, 2) and result.stdout, (result.returncode, result.stderr)
    return {r["host"]: r for r in json.loads(result.stdout)["results"]}


def store_of(state: Path) -> EvidenceStore:
    """The test's evidence store, opened for reading (as `runs list` does)."""
    return EvidenceStore(f"sqlite:///{state / 'evidence.db'}", writable=False)


def healthy(lab: Lab, client: str) -> list[HostPlan]:
    return [p for p in lab.plans() if p.client == client and p.fault is None]


def test_mixed_fleet_is_classified_and_fully_recorded(lab: Lab, state: Path) -> None:
    expected = {
        None: None,
        "sshd-down": "unreachable",
        "changed-key": "host_key_mismatch",
        "rejects-key": "auth_failed",
    }
    for client in ("acme", "globex"):
        results = exec_json(lab, state, "--client", client, "--retries", "1", "--", "hostname")
        plans = [p for p in lab.plans() if p.client == client]
        assert set(results) == {p.name for p in plans}
        for plan in plans:
            result = results[plan.name]
            assert result["error"] == expected[plan.fault], (plan.name, result)
            if plan.fault is None:
                assert result["stdout"] == plan.name + "\n"
            if plan.fault == "sshd-down":
                assert result["attempts"] == 2  # unreachable hosts, and only they, are retried
            else:
                assert result["attempts"] == 1
    store = store_of(state)
    assert [run.status for run in list_runs(store)] == ["completed", "completed"]
    assert {r.host for r in store.records(kind="host_result")} == {p.name for p in lab.plans()}
    assert store.verify().problems == []
    store.close()


def test_a_hung_host_times_out_and_the_others_finish(lab: Lab, state: Path) -> None:
    frozen, *others = healthy(lab, "acme")
    lab.freeze_host(frozen.name)
    try:
        results = exec_json(
            lab, state, "--client", "acme", "--connect-timeout", "2", "--tags", "lab", "--", "true"
        )
    finally:
        lab.thaw_host(frozen.name)
    assert results[frozen.name]["error"] == "timeout"
    assert all(results[p.name]["ok"] for p in others)


def test_command_timeout_fires(lab: Lab, state: Path) -> None:
    host = healthy(lab, "globex")[0]
    started = time.monotonic()
    results = exec_json(
        lab,
        state,
        "--client",
        "globex",
        "--hosts",
        host.name,
        "--timeout",
        "1",
        "--",
        "sleep",
        "20",
    )
    assert results[host.name]["error"] == "timeout"
    assert time.monotonic() - started < 15


def test_large_output_is_drained_and_capped(lab: Lab, state: Path) -> None:
    host = healthy(lab, "acme")[0]
    # 30 MB on stdout and 1 MB on stderr at once: a reader of one stream only deadlocks.
    results = exec_json(
        lab,
        state,
        "--client",
        "acme",
        "--hosts",
        host.name,
        "--timeout",
        "120",
        "--shell",
        "head -c 1000000 /dev/zero | tr '\\0' e >&2 & "
        "head -c 30000000 /dev/zero | tr '\\0' o; wait",
    )
    result = results[host.name]
    assert result["ok"], result
    assert len(result["stdout"]) == 4 * 1024 * 1024  # the transport's cap
    record = next(store_of(state).records(kind="host_result"))
    assert record.payload["stdout"]["bytes"] == 30_000_000
    assert record.payload["stdout"]["stored"] == 256 * 1024
    assert record.payload["stderr"]["bytes"] == 1_000_000


def test_verify_names_an_edited_and_a_deleted_record(lab: Lab, state: Path) -> None:
    exec_json(lab, state, "--client", "globex", "--", "hostname")
    assert mspauto(lab, state, "evidence", "verify").returncode == 0
    database = sqlite3.connect(state / "evidence.db")
    with database:  # an attacker with write access first removes the guards
        database.execute("DROP TRIGGER evidence_records_no_update")
        database.execute("DROP TRIGGER evidence_records_no_delete")
        database.execute("UPDATE evidence_records SET host = 'elsewhere' WHERE seq = 2")
        database.execute("DELETE FROM evidence_records WHERE seq = 4")
    database.close()
    result = mspauto(lab, state, "evidence", "verify")
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert any(line.startswith("the guards evidence_records_no_update, ") for line in lines)
    assert any(line.startswith("globex #2: content does not match its hash") for line in lines)
    assert any(line.startswith("globex #4: record missing (deleted?)") for line in lines)
    assert lines[-1].startswith("error: evidence is NOT proven intact")


def test_the_database_refuses_to_change_evidence(lab: Lab, state: Path) -> None:
    exec_json(lab, state, "--client", "acme", "--hosts", healthy(lab, "acme")[0].name, "--", "true")
    database = sqlite3.connect(state / "evidence.db")
    for statement in (
        "UPDATE evidence_records SET payload = '{}'",
        "DELETE FROM evidence_records",
        "DELETE FROM evidence_outputs",
    ):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            database.execute(statement)
    database.close()


def _wait_for(condition: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)


def _recorded_hosts(state: Path) -> set[str]:
    try:
        store = store_of(state)
    except EvidenceError:  # not created yet
        return set()
    try:
        return {r.host for r in store.records(kind="host_result")}
    finally:
        store.close()


def test_sigkill_mid_run_keeps_finished_hosts(lab: Lab, state: Path) -> None:
    fast, *slow = healthy(lab, "acme")
    command = f'[ "$(hostname)" = {fast.name} ] || sleep 60'
    selection = [arg for plan in (fast, *slow) for arg in ("--hosts", plan.name)]
    process = subprocess.Popen(
        _command(
            lab, "exec", "--client", "acme", *selection, "--timeout", "120", "--shell", command
        ),
        env=_env(state),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(lambda: fast.name in _recorded_hosts(state))
    finally:
        process.kill()
        process.wait()
    store = store_of(state)
    (run,) = list_runs(store)
    assert run.status == "interrupted"
    recorded = {r.host: r.payload for r in store.records(kind="host_result")}
    assert set(recorded) == {fast.name}, recorded
    assert store.verify().problems == []
    store.close()
    # The killed run never signed a checkpoint, but signed each append: verify proves
    # its records and says no checkpoint covers them yet; the next run signs one.
    verified = mspauto(lab, state, "evidence", "verify")
    assert verified.returncode == 0, verified.stderr
    assert "are signed by their writer but no checkpoint covers them yet" in verified.stderr
    exec_json(lab, state, "--client", "acme", "--hosts", fast.name, "--", "true")
    verified = mspauto(lab, state, "evidence", "verify")
    assert verified.returncode == 0 and "warning" not in verified.stderr, verified.stderr


@pytest.mark.parametrize("one_at_a_time", ["--forks 1", "the client's max_parallel: 1"])
def test_ctrl_c_finishes_running_hosts_and_records_the_rest(
    lab: Lab, state: Path, tmp_path: Path, one_at_a_time: str
) -> None:
    hosts = healthy(lab, "globex")
    command = ["exec", "--client", "globex", "--tags", "lab", "--", "sleep", "2"]
    if one_at_a_time == "--forks 1":
        args = _command(lab, *command[:-3], "--forks", "1", *command[-3:])
    else:  # hosts waiting for one of their client's slots must not start after the stop
        project = copy_project(lab, tmp_path / "project")
        inventory = project / "inventory" / "globex.yaml"
        text = inventory.read_text()
        assert text.count("client:\n") == 1
        inventory.write_text(text.replace("client:\n", "client:\n  max_parallel: 1\n"))
        args = [sys.executable, "-m", "mspauto", "--project", str(project), *command]
    process = subprocess.Popen(
        args,
        env=_env(state),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for((state / "evidence.db").exists)
    time.sleep(1)  # the first host is running
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "stopping: no new hosts" in stderr
    store = store_of(state)
    (run,) = list_runs(store)
    assert run.status == "interrupted"
    results = {r.host: r.payload for r in store.records(kind="host_result")}
    assert set(results) == {p.name for p in lab.plans() if p.client == "globex"}
    assert sum(1 for r in results.values() if r["rc"] == 0) == 1  # the one running at Ctrl-C
    assert sum(1 for r in results.values() if r["error"] == "not_started") == len(results) - 1
    assert len(hosts) >= 2
    store.close()


def test_no_secret_in_process_arguments_evidence_or_output(
    lab: Lab, state: Path, tmp_path: Path
) -> None:
    secret = "s3cret-become-pw-7f1d"
    project = copy_project(lab, tmp_path / "project")
    (project / "inventory" / "globex.yaml").unlink()
    acme = project / "inventory" / "acme.yaml"
    acme.write_text(
        acme.read_text().replace(
            "      private_key:",
            "      become_password:\n        env: LAB_BECOME\n      private_key:",
        )
    )
    hosts = healthy(lab, "acme")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mspauto",
            "--project",
            str(project),
            "exec",
            "--client",
            "acme",
            "--tags",
            "lab",
            "--sudo",
            "--format",
            "json",
            "--shell",
            "sleep 2; cat; id -un",
        ],
        env=_env(state, LAB_BECOME=secret),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen_args = []
    while process.poll() is None:
        seen_args.append(
            subprocess.run(
                ["ps", "-eww", "-o", "args"], capture_output=True, text=True, check=True
            ).stdout
        )
        time.sleep(0.2)
    stdout, stderr = process.communicate()
    assert stdout, stderr
    results = {r["host"]: r for r in json.loads(stdout)["results"]}
    assert all(results[h.name]["stdout"] == "root\n" for h in hosts)
    assert seen_args and not any(secret in args for args in seen_args)
    assert secret not in stdout + stderr
    for path in state.rglob("*"):  # the database, its WAL and anything else written
        assert not path.is_file() or secret.encode() not in path.read_bytes(), path


def test_a_second_ctrl_c_stops_at_once_and_says_what_is_unknown(lab: Lab, state: Path) -> None:
    hosts = healthy(lab, "globex")
    process = subprocess.Popen(
        _command(
            lab, "exec", "--client", "globex", "--tags", "lab", "--forks", "2", "--", "sleep", "30"
        ),
        env=_env(state),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_for((state / "evidence.db").exists)
    time.sleep(1.5)  # two hosts are running
    process.send_signal(signal.SIGINT)
    time.sleep(0.5)
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=20) == 130
    assert time.monotonic() - started < 10  # not the 30 s the commands would take
    store = store_of(state)
    (run,) = list_runs(store)
    assert run.status == "aborted"
    results = {r.host: r.payload["error"] for r in store.records(kind="host_result")}
    assert set(results) == {p.name for p in lab.plans() if p.client == "globex"}
    assert list(results.values()).count("interrupted") == 2
    assert "ok" not in results.values() and len(hosts) > 2
    store.close()
