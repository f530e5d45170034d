"""The check pipeline and the engine's evidence, against an in-process transport."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import pytest
import yaml

import mspauto.engine.run as engine_run
from mspauto.baseline.check import BaselineCheck, PlannedRule
from mspauto.checks import Change, HostScope, RunOptions, run_checks, scope_client
from mspauto.checks.pipeline import CheckRun, plan_changes
from mspauto.config import Settings
from mspauto.engine import RunSpec, run_command
from mspauto.evidence.records import (
    Finding,
    FindingStatus,
    HostFindings,
    HostResult,
    RecordKind,
    RunStarted,
    RunStatus,
    read_change_result,
    read_host_findings,
)
from mspauto.evidence.store import EvidenceError, EvidenceStore, NewRecord
from mspauto.inventory.resolve import Host
from mspauto.project import Project, load_project
from mspauto.transport.base import CommandResult, ErrorKind, utcnow
from mspauto.transport.fake import FakeTransport

TODAY = date(2026, 12, 3)


def _project_hosts() -> list[Host]:
    import tempfile

    with tempfile.TemporaryDirectory() as root:
        return list(_project(Path(root), hosts=1).inventory.clients["acme"].hosts.values())


def _project(
    root: Path, hosts: int = 3, extra_policies: str = "", connection: str = "local"
) -> Project:
    (root / "inventory").mkdir(parents=True)
    (root / "policies").mkdir()
    (root / "policies" / "c.yaml").write_text("kind: contract\nname: std\n" + extra_policies)
    document = {
        "client": {
            "name": "acme",
            "display_name": "ACME",
            "timezone": "UTC",
            "contract": "std",
            "platform": "debian",
            "connection": connection,
        },
        "hosts": {f"acme-{i:02d}": {} for i in range(hosts)},
    }
    (root / "inventory" / "acme.yaml").write_text(yaml.safe_dump(document))
    project = load_project(Settings.load(root), today=TODAY)
    assert not project.errors, project.errors
    return project


class Echo:
    """A check kind of its own: each host echoes its name; it passes if it answers."""

    kind = "echo"

    def plan(self, scope: HostScope) -> str | None:
        return scope.host.name

    def probe(self, host: Host, plan: str) -> str | None:
        return f"echo {plan}"

    def judge(self, host: Host, plan: str, result: CommandResult | None) -> HostFindings:
        ok = result is not None and result.ok
        finding = Finding("answers", "echo", FindingStatus.PASS if ok else FindingStatus.FAIL)
        return HostFindings(self.kind, host.name, (finding,))

    def changes(self, host: Host, plan: str, findings: HostFindings) -> Sequence[Change]:
        return []


def test_findings_are_written_with_each_host_before_the_run_ends(tmp_path: Path) -> None:
    project = _project(tmp_path)
    client = project.inventory.clients["acme"]
    hosts = list(client.hosts.values())
    store = EvidenceStore(f"sqlite:///{tmp_path / 'e.db'}")
    scope = scope_client(project, client, hosts, "echo", TODAY)
    run: CheckRun[str] = run_checks(Echo(), scope, FakeTransport(), store, RunOptions(forks=2))
    assert [h.host for h in run.hosts] == [h.name for h in hosts]
    kinds = [r.kind for r in store.records(run_id=run.run_id)]
    assert kinds[0] == RecordKind.RUN_STARTED and kinds[-1] == RecordKind.RUN_FINISHED
    assert Counter(kinds)[RecordKind.FINDINGS] == 3
    for record in store.records(kind=RecordKind.FINDINGS):
        findings = read_host_findings(record.kind, record.payload)
        assert findings.findings[0].status is FindingStatus.PASS
        assert record.payload["schema"] == 1
    assert store.verify().problems == []


def test_a_failing_store_loses_no_finding(tmp_path: Path) -> None:
    project = _project(tmp_path)
    client = project.inventory.clients["acme"]

    class Broken(EvidenceStore):
        def append(self, new: Sequence[NewRecord]) -> list[object]:  # type: ignore[override]
            raise EvidenceError("disk full")

    scope = scope_client(project, client, list(client.hosts.values()), "echo", TODAY)
    run = run_checks(Echo(), scope, FakeTransport(), Broken("sqlite://"), RunOptions())
    assert run.evidence_error is not None and "disk full" in run.evidence_error
    assert len(run.hosts) == 3 and all(h.count("pass") == 1 for h in run.hosts)


def test_every_attempt_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_run, "RETRY_BACKOFF", 0.01)
    client = _project(tmp_path, hosts=1).inventory.clients["acme"]
    tries: Counter[str] = Counter()

    def flaky(host: Host, command: str) -> tuple[int, str, ErrorKind | None]:
        tries[host.name] += 1
        return (0, "up\n", None) if tries[host.name] == 3 else (1, "", ErrorKind.UNREACHABLE)

    store = EvidenceStore(f"sqlite:///{tmp_path / 'e.db'}")
    spec = RunSpec(client=client, hosts=list(client.hosts.values()), command="true", retries=2)
    outcome = run_command(spec, FakeTransport(flaky), store)
    assert outcome.ok
    (record,) = store.records(kind=RecordKind.HOST_RESULT)
    result = HostResult.read(record.payload)
    assert [t.error for t in result.tries] == ["unreachable", "unreachable", None]
    assert result.attempts == 3
    assert result.tries[0].started < result.tries[2].started


def test_each_host_s_own_script_is_recorded_not_a_placeholder(tmp_path: Path) -> None:
    client = _project(tmp_path, hosts=2).inventory.clients["acme"]
    hosts = list(client.hosts.values())
    scripts = {hosts[0].name: "echo one\n", hosts[1].name: "echo two\n"}
    store = EvidenceStore(f"sqlite:///{tmp_path / 'e.db'}")
    spec = RunSpec(client=client, hosts=hosts, command="audit", commands=scripts)
    outcome = run_command(spec, FakeTransport(), store)
    (started,) = store.records(kind=RecordKind.RUN_STARTED)
    assert len(RunStarted.read(started.payload).scripts) == 2
    for record in store.records(run_id=outcome.run_id, kind=RecordKind.HOST_RESULT):
        result = HostResult.read(record.payload)
        assert result.script is not None
        assert store.output(result.script.sha256) == scripts[record.host].encode()
    assert store.verify().problems == []


def test_old_baseline_records_read_as_findings_and_changes() -> None:
    legacy = {
        "host": "web01",
        "score": 50.0,
        "unaudited": None,
        "results": [
            {
                "rule_id": "ssh-root-login-disabled",
                "title": "t",
                "pack": "debian-cis",
                "severity": "high",
                "weight": 5,
                "status": "fail",
                "observed": "yes",
                "expected": "= no",
                "reason": "",
                "cis": ["x"],
                "waiver": None,
            }
        ],
    }
    findings = read_host_findings("baseline_result", legacy)
    assert findings.findings[0].status is FindingStatus.FAIL
    assert findings.findings[0].detail["pack"] == "debian-cis"
    change = read_change_result(
        "baseline_remediation",
        {
            "host": "web01",
            "before_run": "r1",
            "after_run": "r2",
            "tasks": [{"task": "ssh-root-login-disabled (= no)", "status": "changed"}],
            "rules": {"ssh-root-login-disabled": {"before": "fail", "after": "pass"}},
        },
    )
    (outcome,) = change.changes
    assert (outcome.before, outcome.after, outcome.status) == (
        FindingStatus.FAIL,
        FindingStatus.PASS,
        "changed",
    )


NEVER_REMEDIATE = """---
kind: baseline
name: hands-off
targets: {clients: [acme]}
schedule: {cron: '0 5 * * *', timezone: client}
packs: [debian-cis]
remediate: never
"""


def test_a_policy_that_says_never_gets_no_change(tmp_path: Path) -> None:
    project = _project(tmp_path, hosts=1, extra_policies=NEVER_REMEDIATE)
    client = project.inventory.clients["acme"]
    scope = scope_client(project, client, list(client.hosts.values()), "baseline", TODAY)
    check = BaselineCheck.for_project(project)
    plan = check.plan(scope.hosts[0])
    assert plan is not None
    failed = HostFindings(
        "baseline",
        "acme-00",
        tuple(
            Finding(p.rule.id, "hands-off", FindingStatus.FAIL)
            for p in plan
            if p.rule.remediation is not None
        ),
    )
    before = CheckRun[list[PlannedRule]]("baseline", "acme", "r1", RunStatus.COMPLETED)
    before.hosts.append(failed)
    before.plans["acme-00"] = plan
    tasks, manual = plan_changes(check, scope, before)
    assert tasks == []
    assert {why for _, why in manual["acme-00"]} == {"policy 'hands-off' says remediate: never"}


BASELINE = """---
kind: baseline
name: cis
targets: {clients: [acme]}
schedule: {cron: '0 5 * * *', timezone: client}
packs: [debian-cis]
"""


def test_a_refused_sudo_makes_the_host_not_audited_with_sudo_s_words(tmp_path: Path) -> None:
    project = _project(tmp_path, hosts=1, extra_policies=BASELINE)
    client = project.inventory.clients["acme"]
    (host,) = client.hosts.values()
    check = BaselineCheck.for_project(project)
    plan = check.plan(scope_client(project, client, [host], "baseline", TODAY).hosts[0])
    assert plan is not None
    refused = CommandResult(
        host.name,
        "audit",
        1,
        "",
        "sudo: a password is required\n",
        utcnow(),
        utcnow(),
        ErrorKind.COMMAND_FAILED,
        "sudo: a password is required",
    )
    findings = check.judge(host, plan, refused)
    assert findings.unchecked == "the audit did not start: sudo: a password is required"
    assert {f.status for f in findings.findings} == {FindingStatus.ERROR}
    assert {f.reason for f in findings.findings} == {findings.unchecked}


class BrokenJudge(Echo):
    """A judge with a bug: it raises on every answer that came back."""

    def judge(self, host: Host, plan: str, result: CommandResult | None) -> HostFindings:
        if result is not None and result.ok:
            raise KeyError("a bug")
        return super().judge(host, plan, result)


def test_a_judge_that_raises_leaves_the_host_failed_not_lost(tmp_path: Path) -> None:
    project = _project(tmp_path, hosts=1)
    client = project.inventory.clients["acme"]
    scope = scope_client(project, client, list(client.hosts.values()), "echo", TODAY)
    run = run_checks(BrokenJudge(), scope, FakeTransport(), None, RunOptions())
    (host,) = run.hosts
    assert host.unchecked is not None and "KeyError" in host.unchecked
    assert [f.status for f in host.findings] == [FindingStatus.FAIL]  # counted, not dropped


def _findings(host: str, status: FindingStatus) -> HostFindings:
    return HostFindings("baseline", host, (Finding("rule", "cis", status, weight=5),))


def test_the_score_after_changes_covers_every_host_not_just_the_changed_ones() -> None:
    from mspauto.baseline.report import RemediationReport
    from mspauto.checks import ChangeRun

    before = CheckRun[list[PlannedRule]]("baseline", "acme", "r1", RunStatus.COMPLETED)
    before.hosts += [_findings(f"acme-{i}", FindingStatus.FAIL) for i in range(3)]
    after = CheckRun[list[PlannedRule]]("baseline", "acme", "r3", RunStatus.COMPLETED)
    after.hosts.append(_findings("acme-0", FindingStatus.PASS))  # only one could be fixed
    report = RemediationReport(ChangeRun(before, False, after=after), floor=80.0)
    assert report.after is not None
    assert [h.host for h in report.after.hosts] == ["acme-0", "acme-1", "acme-2"]
    assert report.final.score == pytest.approx(33.3) and report.final.below_floor


def test_a_stopped_check_changes_nothing(tmp_path: Path) -> None:
    from mspauto.checks import apply_changes

    project = _project(tmp_path, hosts=1, extra_policies=BASELINE, connection="ssh")
    client = project.inventory.clients["acme"]
    scope = scope_client(project, client, list(client.hosts.values()), "baseline", TODAY)
    check = BaselineCheck.for_project(project)
    plan = check.plan(scope.hosts[0])
    assert plan is not None
    before = CheckRun[list[PlannedRule]]("baseline", "acme", "r1", RunStatus.INTERRUPTED)
    before.hosts.append(
        HostFindings(
            "baseline",
            "acme-00",
            tuple(
                Finding(p.rule.id, "cis", FindingStatus.FAIL)
                for p in plan
                if p.rule.remediation is not None
            ),
        )
    )
    before.plans["acme-00"] = plan
    never = FakeTransport()
    change = apply_changes(check, scope, before, never, never, None, RunOptions(), dry_run=False)
    assert change.tasks  # there was something to fix...
    assert change.change is None and change.after is None  # ...but a stop means stop
    assert never.calls == []


def test_a_play_cut_short_is_an_unknown_outcome_not_a_success() -> None:
    from mspauto.transport.ansible import _play_results

    (host,) = _project_hosts()
    events = [
        {
            "event": "runner_on_ok",
            "created": "2026-12-03T07:00:00",
            "event_data": {"host": host.name, "task": "first", "res": {"changed": True}},
        }
    ]
    result = _play_results([host], events, "timeout", tasks=2)[host.name]
    assert result.error is ErrorKind.TIMEOUT and not result.ok
    assert "after 1 of 2 tasks" in result.message
    done = _play_results([host], events, "successful", tasks=1)[host.name]
    assert done.ok


def test_a_play_results_outcomes_survive_the_stores_output_cap() -> None:
    """Every task's line of a play result is whole within what the store keeps of an
    output, however large the diffs (a worker's result is read back from the store);
    a line cut short ends the outcomes instead of failing the run."""
    from mspauto.evidence.store import OUTPUT_CAP, store_output
    from mspauto.transport.ansible import TaskOutcome, _outcome_lines, task_outcomes

    done = [TaskOutcome(f"rule-{n}", "changed", "", "é" * 200_000) for n in range(44)]
    kept, _ = store_output(_outcome_lines(done).encode())
    assert len(kept) < OUTPUT_CAP
    outcomes = task_outcomes(kept.decode())
    assert [o.task for o in outcomes] == [o.task for o in done]
    assert outcomes[0].diff.endswith("more characters]")
    assert task_outcomes(_outcome_lines(done)[:-500]) == outcomes[:-1]
