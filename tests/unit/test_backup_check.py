"""Judging a backup job from its facts: each state is told apart, never confused (a
job that could not be checked is neither a pass nor a backup failure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mspauto.backup.check import JobPlan, judge_job
from mspauto.backup.facts import Integrity, JobFacts, LastBackup, Problem
from mspauto.policy.models import BackupPolicy

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
POLICY = BackupPolicy.model_validate(
    {
        "kind": "backup",
        "name": "b",
        "targets": {"clients": ["*"]},
        "schedule": {"cron": "0 7 * * *", "timezone": "client"},
        "jobs": [
            {
                "name": "etc",
                "provider": "restic",
                "repository": "/r",
                "password": {"env": "RESTIC_PASSWORD"},
                "min_files": 10,
            },
        ],
    }
)
ITEM = JobPlan(POLICY, POLICY.jobs[0], timedelta(hours=24), False, None, None)


def _facts(age: timedelta | None, **kwargs: object) -> JobFacts:
    latest = LastBackup(NOW - age, "abc123", files=100) if age is not None else None
    return JobFacts(
        "restic",
        latest=latest,
        last_success=latest.time if latest else None,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("facts", "state", "words"),
    [
        (_facts(timedelta(hours=2)), "ok", "the last good backup is 2h 0m old"),
        (_facts(timedelta(days=3)), "stale", "3d 0h old, past the RPO of 1d"),
        (_facts(None), "missing", "the repository holds no backup"),
        (
            _facts(None, problem=Problem("no-repository", "no config at /r")),
            "missing",
            "no repository: no config at /r",
        ),
        (
            _facts(None, problem=Problem("wrong-password", "wrong password or no key found")),
            "unchecked",
            "could not check (wrong-password)",
        ),
        (
            _facts(None, problem=Problem("locked", "repository is already locked")),
            "unchecked",
            "could not check (locked)",
        ),
        (
            _facts(None, problem=Problem("unreadable", "config damaged")),
            "failed",
            "the repository cannot be read: config damaged",
        ),
        (
            _facts(timedelta(hours=1), integrity=Integrity(False, "repository contains errors")),
            "failed",
            "failed its integrity check: repository contains errors",
        ),
    ],
)
def test_each_state_is_told_apart(facts: JobFacts, state: str, words: str) -> None:
    got, why = judge_job(ITEM, facts, NOW)
    assert got == state and words in why, why


def test_a_lock_that_stopped_the_integrity_check_does_not_hide_a_stale_backup() -> None:
    facts = _facts(timedelta(days=3), problem=Problem("locked", "repository is already locked"))
    state, why = judge_job(ITEM, facts, NOW)
    assert state == "stale" and "past the RPO" in why
    assert why.endswith("(integrity check skipped: repository is already locked)")


def test_a_backup_smaller_than_expected_fails() -> None:
    latest = LastBackup(NOW - timedelta(hours=1), "abc", files=3)
    facts = JobFacts("restic", latest=latest, last_success=latest.time)
    assert judge_job(ITEM, facts, NOW) == (
        "failed",
        "the last backup holds 3 files, fewer than 10",
    )


def test_a_failed_last_job_fails_even_with_an_older_success() -> None:
    latest = LastBackup(NOW - timedelta(hours=1), "nightly", result="failed", message="0x807800C5")
    facts = JobFacts("windows-server-backup", latest=latest, last_success=NOW - timedelta(hours=25))
    assert judge_job(ITEM, facts, NOW) == ("failed", "the last backup failed: 0x807800C5")


def test_a_failed_integrity_check_keeps_failing_until_one_passes() -> None:
    """A failed check recorded earlier fails today's verdict too, when today's probe ran
    no check of its own; and a failed check is due again at once."""
    last = {"at": "2026-12-01T07:00:00+00:00", "ok": False, "message": "pack 1f2e damaged"}
    item = JobPlan(POLICY, POLICY.jobs[0], timedelta(hours=24), False, last, None)
    assert judge_job(item, _facts(timedelta(hours=1)), NOW) == (
        "failed",
        "the repository failed its last integrity check (2026-12-01): pack 1f2e damaged",
    )
    fixed = Integrity(True, "no errors were found")
    assert judge_job(item, _facts(timedelta(hours=1), integrity=fixed), NOW)[0] == "ok"


def test_a_lock_on_the_check_does_not_hide_that_there_is_no_backup() -> None:
    facts = JobFacts("restic", count=0, problem=Problem("locked", "already locked"))
    assert judge_job(ITEM, facts, NOW)[0] == "missing"


def test_a_backup_dated_in_the_future_is_not_trusted() -> None:
    state, why = judge_job(ITEM, _facts(-timedelta(days=300)), NOW)
    assert state == "unchecked" and "in the future" in why


@pytest.mark.parametrize(
    "repository", ["-oProxyCommand=id:repo", "ssh://-oProxyCommand=id/./repo", "host:-x"]
)
def test_a_repository_that_ssh_would_read_as_an_option_is_refused(repository: str) -> None:
    job = {"name": "j", "provider": "borg", "repository": repository}
    document = {**POLICY.model_dump(mode="json", exclude_none=True), "jobs": [job]}
    with pytest.raises(ValueError, match="may start with '-'"):
        BackupPolicy.model_validate(document)


def test_own_backups_only_asks_for_this_hosts_snapshots_and_archives(tmp_path: Path) -> None:
    """The host's own name is read on the host (``hostname``), never written into the
    script; the repository stays one word."""
    import socket
    import subprocess

    from mspauto.backup import borg, restic
    from mspauto.backup.probe import CAPTURE_FUNCTION, read_captures

    stubs = tmp_path / "bin"
    stubs.mkdir()
    for tool in ("restic", "borg"):
        (stubs / tool).write_text('#!/bin/sh\nfor a; do printf "%s\\n" "$a"; done\n')
        (stubs / tool).chmod(0o755)
    repository = "/srv/it's $(id) here"
    script = (
        CAPTURE_FUNCTION
        + restic.commands(0, repository, secret="", check=False, own_only=True)
        + borg.commands(1, repository, secret="", check=False, own_only=True)
    )
    done = subprocess.run(
        ["sh", "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": f"{stubs}:/usr/bin:/bin"},
    )
    captured = read_captures(done.stdout)
    restic_argv = captured[(0, "snapshots")].stdout.splitlines()
    borg_argv = captured[(1, "list")].stdout.splitlines()
    host = socket.gethostname()
    assert restic_argv[0] == f"--repo={repository}" and restic_argv[-1] == f"--host={host}"
    assert borg_argv[-3:] == [f"--glob-archives={host}-*", "--", repository]


def test_with_the_drill_history_only_due_drills_are_planned(example_project: Path) -> None:
    """`restore-test --due` (the control node's daily look): a job is drilled when it
    never was, when its last drill failed, or when its last passing drill is older than
    the policy's restore_test.every (90 days here)."""
    from mspauto.backup.drill import DrillCheck
    from mspauto.checks.pipeline import scope_client
    from mspauto.config import Settings
    from mspauto.project import load_project

    project = load_project(Settings.load(example_project))
    client = project.inventory.clients["acme"]
    now = datetime(2026, 12, 3, 12, tzinfo=UTC)
    [scope] = scope_client(project, client, [client.hosts["acme-db01"]], "backup", now.date()).hosts
    key = "acme-db01/acme-backups/nightly"

    def planned(history: dict[str, dict[str, str]] | None) -> list[str]:
        plan = DrillCheck(example_project, now=now, last_drills=history).plan(scope)
        return [] if plan is None else [item.job.name for item in plan.jobs]

    def drilled(days_ago: int, status: str) -> dict[str, dict[str, str]]:
        return {key: {"at": (now - timedelta(days=days_ago)).isoformat(), "status": status}}

    assert planned(None) == ["nightly"]  # a drill by hand: every job
    assert planned({}) == ["nightly"]  # never drilled
    assert planned(drilled(30, "pass")) == []  # drilled a month ago: not due
    assert planned(drilled(30, "fail")) == ["nightly"]  # failed: due again
    assert planned(drilled(91, "pass")) == ["nightly"]  # older than 90 days
