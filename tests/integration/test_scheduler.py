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
from pathlib import Path

import pytest

from mspauto.lab.fleet import Lab
from mspauto.lab.testing import copy_project, mspauto_cli

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
