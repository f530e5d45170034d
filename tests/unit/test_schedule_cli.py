"""`mspauto scheduler status` and `install-systemd` on the example project, and the jobs
the example policies give (issue 13)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mspauto.cli import cli
from mspauto.config import Settings
from mspauto.project import load_project
from mspauto.schedule.jobs import jobs_of


def run(project: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--project", str(project), *args])


@pytest.fixture
def project(example_project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("MSPAUTO_EVIDENCE_URL", "MSPAUTO_SIGNING_KEY", "MSPAUTO_WITNESS_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MSPAUTO_STATE_DIR", str(tmp_path / "state"))
    return example_project


def test_each_policy_gives_a_job_per_client_in_the_clients_zone(project: Path) -> None:
    jobs = {j.name: j for j in jobs_of(load_project(Settings.load(project)))}
    scan = jobs["acme/linux-monthly/patch-scan"]
    assert (scan.cron, scan.zone) == ("0 6 * * *", "America/New_York")
    assert jobs["globex/linux-monthly/patch"].zone == "Europe/Berlin"
    # The report of the month just ended, on the contract's schedule (default: the 1st).
    report = jobs["acme/standard/report"]
    due = datetime(2026, 12, 1, 11, tzinfo=UTC)  # 06:00 in New York
    assert report.command(due) == [
        "report",
        "--client",
        "acme",
        "--month",
        "2026-11",
        "--format",
        "json",
    ]
    # A policy that selects some of a client's hosts runs on exactly those.
    dc = jobs["acme/domain-controllers/patch"]
    assert dc.command(due) == [
        "patch",
        "--client",
        "acme",
        "--hosts",
        "acme-dc01",
        "--format",
        "json",
    ]
    assert scan.command(due)[:4] == ["patch", "--client", "acme", "--dry-run"]


def test_status_before_any_run_says_never_and_when_next(project: Path) -> None:
    result = run(project, "scheduler", "status", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert {r["last"] is None for r in rows} == {True}
    now = datetime.now(UTC)
    assert all(datetime.fromisoformat(r["next"]) > now for r in rows)
    assert {(r["client"], r["action"]) for r in rows} >= {("acme", "report"), ("globex", "backup")}
    table = run(project, "scheduler", "status")
    assert table.exit_code == 0 and "never run" in table.output


def test_the_systemd_unit_runs_this_project_and_hands_sigterm_to_the_runs(
    tmp_path: Path, project: Path
) -> None:
    odd = tmp_path / "MSP 100% clients"
    project.rename(odd)
    unit = tmp_path / "mspauto-scheduler.service"
    result = run(odd, "scheduler", "install-systemd", "--output", str(unit), "--user", "mspauto")
    assert result.exit_code == 0, result.output
    text = unit.read_text()
    quoted = f"--project '{odd}' scheduler run".replace("%", "%%")  # one argument; % for systemd
    assert quoted in text
    for line in ("KillMode=mixed", "User=mspauto", "Restart=on-failure", "TimeoutStopSec=15min"):
        assert line in text.splitlines()


def test_run_refuses_a_broken_project_in_one_line(project: Path) -> None:
    (project / "policies" / "broken.yaml").write_text("kind: backup\nname: [\n")
    result = run(project, "scheduler", "run")
    assert result.exit_code != 0
    assert "Traceback" not in result.output


def test_a_waiver_about_to_expire_is_said_once_per_client_and_expiry(project: Path) -> None:
    from mspauto.schedule.notify import waiver_events

    (project / "policies" / "notify.yaml").write_text(
        "kind: notification\nname: ops\nclients: ['*']\nevents: [waiver-expiring]\n"
        "waiver_warning: 30d\nwebhook: {url: 'http://127.0.0.1:9/hook'}\n"
    )
    loaded = load_project(Settings.load(project))
    assert not loaded.errors, loaded.errors
    assert waiver_events(loaded, date(2027, 2, 1)) == []  # 58 days before: too early
    [event] = waiver_events(loaded, date(2027, 3, 10))
    assert event.key == "waiver-expiring:acme:acme-legacy-ftp-root:2027-03-31"
    assert event.client == "acme" and "expires in 21 days" in event.subject
    assert waiver_events(loaded, date(2027, 4, 1)) == []  # expired: validate says so
