"""The control node for real (issue 13): `mspauto scheduler run` as systemd would start
it, against the lab, with an every-minute audit of one host; the run it starts leaves
its evidence, `scheduler status` shows it, SIGTERM stops the daemon cleanly, and its
JSON-lines log holds no secret."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pytest

from mspauto.lab.fleet import Lab
from mspauto.lab.testing import copy_project, mspauto_cli, ssh

pytestmark = pytest.mark.integration


def test_the_daemon_runs_a_policy_on_its_minute_and_stops_on_sigterm(
    lab: Lab, tmp_path: Path
) -> None:
    project = copy_project(lab, tmp_path / "project")
    host = next(p for p in lab.plans() if p.client == "acme" and p.fault is None)
    (project / "policies" / "baseline.yaml").write_text(
        "kind: baseline\nname: lab-cis\n"
        f"targets: {{hosts: [{host.name}]}}\n"
        "schedule: {cron: '* * * * *', timezone: client}\npacks: [debian-cis]\n"
    )
    shutil.copytree(lab.directory / "secrets", project / "secrets")  # backup passwords
    secrets = [p.read_text().strip() for p in (project / "secrets").iterdir()]
    assert secrets
    state = tmp_path / "state"
    assert mspauto_cli(project, state, "keys", "init").returncode == 0
    log = (tmp_path / "scheduler.log").open("w+")
    command = ["scheduler", "run", "--every", "2"]
    daemon = subprocess.Popen(
        [sys.executable, "-m", "mspauto", "--project", str(project), *command],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log,
        env={**os.environ, "MSPAUTO_STATE_DIR": str(state)},
    )
    try:
        finished = None
        deadline = time.monotonic() + 240
        while finished is None and time.monotonic() < deadline:
            time.sleep(3)
            status = mspauto_cli(project, state, "scheduler", "status", "--format", "json")
            assert status.returncode == 0, status.stderr
            audit = next(
                j
                for j in json.loads(status.stdout)
                if j["client"] == "acme" and j["action"] == "baseline"
            )
            if audit["last"] and audit["last"]["state"] != "running":
                finished = audit["last"]
        assert finished is not None, "no scheduled audit finished in four minutes"
        # the lab's acme hosts include drifted ones, but this one's audit is what it is:
        assert finished["state"] in ("ok", "failed"), finished
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=120)
    assert code == 0
    runs = mspauto_cli(project, state, "runs", "list", "--client", "acme", "--format", "json")
    kinds = [r["kind"] for r in json.loads(runs.stdout)]
    assert "baseline" in kinds, kinds
    log.seek(0)
    lines = [json.loads(line) for line in log.read().splitlines() if line.strip()]
    events = [line["event"] for line in lines]
    assert events[0] == "scheduler.started" and events[-1] == "scheduler.stopped"
    assert "tick.started" in events and "tick.finished" in events
    assert all({"timestamp", "level"} <= set(line) for line in lines)
    text = json.dumps(lines)
    for secret in secrets:
        assert secret not in text


def test_sigterm_mid_run_interrupts_the_run_and_records_it(lab: Lab, tmp_path: Path) -> None:
    """SIGTERM while a scheduled run is half done: the host the run is on finishes, and
    the run (in the evidence) and its tick (in the schedule) are recorded as
    interrupted; started again, the scheduler does not run that tick a second time.

    A frozen host cannot hold a run open (its SSH banner times out after 10 s), so one
    host's audit holds itself instead: a rule of the project's own pack waits on that
    host until the test lets it go, while the other host's audit ends at once."""
    held, other = [p for p in lab.plans() if p.client == "acme" and p.fault is None][:2]
    token = f"/tmp/mspauto-hold-{os.getpid()}-{time.monotonic_ns()}"
    project = _holding_project(lab, tmp_path / "project", held.name, other.name, token)
    state = tmp_path / "state"
    assert mspauto_cli(project, state, "keys", "init").returncode == 0

    def cli_json(*args: str) -> Any:
        result = mspauto_cli(project, state, *args, "--format", "json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def last_tick() -> dict[str, Any] | None:
        (job,) = [j for j in cli_json("scheduler", "status") if j["action"] == "baseline"]
        return job["last"]  # type: ignore[no-any-return]

    def baseline_runs() -> list[dict[str, Any]]:
        return [r for r in cli_json("runs", "list", "--client", "acme") if r["kind"] == "baseline"]

    def release() -> None:
        ssh(lab, held, f"touch {token}.release")

    log_path = tmp_path / "scheduler.log"
    daemon, log = _start_daemon(project, state, log_path)
    try:
        # The job is first seen at start; its run starts at the next minute.
        _wait_until(lambda: (last_tick() or {}).get("state") == "running", 150, daemon)
        _wait_until(lambda: ssh(lab, held, f"test -e {token}.started").returncode == 0, 90, daemon)
        # Half done: one host audited and recorded, the other's audit under way.
        _wait_until(
            lambda: (
                [(r["status"], r["counts"]) for r in baseline_runs()] == [("running", {"ok": 1})]
            ),
            60,
            daemon,
        )
        daemon.send_signal(signal.SIGTERM)
        _wait_until(lambda: "scheduler.stopping" in _events(log_path), 60, daemon)
        # The daemon hands SIGTERM to the run right after it logs that it is stopping;
        # nothing the run does then shows outside (a JSON run prints no progress), so
        # it is given a moment before the held host may finish.
        time.sleep(2)
        release()
        code = daemon.wait(timeout=180)
    finally:
        release()
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=180)
        log.close()
        ssh(lab, held, f"rm -f {token}.started {token}.release", user="root")
    assert code == 0

    tick = last_tick()
    assert tick is not None and tick["state"] == "interrupted", tick
    assert "SIGTERM" in tick["reason"] and tick["exit_code"] == 130, tick
    (run,) = baseline_runs()
    assert run["status"] == "interrupted" and run["counts"] == {"ok": 2}, run
    detail = cli_json("runs", "show", run["run_id"])
    assert detail["status"] == "interrupted"
    results = {r["host"]: r for r in detail["results"]}
    assert set(results) == {held.name, other.name}
    assert all(r["rc"] == 0 and r["error"] is None for r in results.values()), results
    verified = mspauto_cli(project, state, "evidence", "verify")
    assert verified.returncode == 0, verified.stderr

    key = _interrupted_tick(log_path)
    again = _one_more_pass(project, state, tmp_path / "scheduler-again.log")
    assert key not in json.dumps(again), again


def _interrupted_tick(log_path: Path) -> str:
    """The key of the one tick the daemon's log shows started, then interrupted by the
    stop; the log ends with the scheduler stopped."""
    lines = _log_lines(log_path)
    events = [line["event"] for line in lines]
    assert events[0] == "scheduler.started" and events[-1] == "scheduler.stopped", events
    (started,) = [line for line in lines if line["event"] == "tick.started"]
    (finished,) = [line for line in lines if line["event"] == "tick.finished"]
    assert finished["key"] == started["key"], (started, finished)
    assert finished["state"] == "interrupted" and finished["exit_code"] == 130, finished
    assert events.index("scheduler.stopping") < events.index("tick.finished"), events
    return str(started["key"])


def _holding_project(lab: Lab, root: Path, held: str, other: str, token: str) -> Path:
    """The lab's project with one policy: a baseline of ``held`` and ``other`` every
    minute, whose one rule waits on ``held`` until ``{token}.release`` exists there
    (after writing ``{token}.started``), and ends at once on ``other``."""
    project = copy_project(lab, root)
    for name in ("backup.yaml", "patch.yaml"):  # their schedules are not this test's
        (project / "policies" / name).unlink()
    (project / "policies" / "hold.yaml").write_text(
        "kind: rulepack\nname: hold\ntitle: Holds one host's audit until the test says\n"
        "platforms: [debian]\nrules:\n- id: hold\n  title: Wait for the test\n"
        "  severity: low\n  expect: {equals: held}\n  audit:\n    linux: |\n"
        f'      if [ "$(uname -n)" = {held} ]; then\n'
        f"        touch {token}.started; i=0\n"
        f"        while [ ! -e {token}.release ] && [ $i -lt 1100 ]; do\n"
        "          sleep 0.1; i=$((i + 1))\n        done\n      fi\n      echo held\n"
    )
    (project / "policies" / "baseline.yaml").write_text(
        f"kind: baseline\nname: lab-hold\ntargets: {{hosts: [{held}, {other}]}}\n"
        "schedule: {cron: '* * * * *', timezone: client}\npacks: [hold]\n"
    )
    return project


def _one_more_pass(project: Path, state: Path, log_path: Path) -> list[dict[str, Any]]:
    """The daemon's log of one pass: started, stopped with SIGTERM once it has loaded
    its jobs (the pass then ends before it stops)."""
    daemon, log = _start_daemon(project, state, log_path)
    try:
        _wait_until(lambda: "jobs.loaded" in _events(log_path), 60, daemon)
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=180)
        log.close()
    assert code == 0
    lines = _log_lines(log_path)
    assert lines[-1]["event"] == "scheduler.stopped", lines
    return lines


def _start_daemon(
    project: Path, state: Path, log_path: Path
) -> tuple[subprocess.Popen[bytes], IO[str]]:
    log = log_path.open("w")
    command = ["scheduler", "run", "--every", "2"]
    daemon = subprocess.Popen(
        [sys.executable, "-m", "mspauto", "--project", str(project), *command],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log,
        env={**os.environ, "MSPAUTO_STATE_DIR": str(state)},
    )
    return daemon, log


def _wait_until(
    condition: Callable[[], bool], timeout: float, daemon: subprocess.Popen[bytes]
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert daemon.poll() is None, f"the scheduler exited ({daemon.returncode})"
        assert time.monotonic() < deadline, f"not reached in {timeout:g}s"
        time.sleep(1)


def _log_lines(path: Path) -> list[dict[str, Any]]:
    """The daemon's JSON-lines log so far (a line still being written is left out)."""
    text = path.read_text()
    complete = text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line.strip()]


def _events(path: Path) -> list[str]:
    return [line["event"] for line in _log_lines(path)]
