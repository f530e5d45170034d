"""Fixing failed controls: one Ansible run for a client, then an audit to prove it.

For every failed rule that has a remediation (an Ansible task in its pack), one task
is run on exactly the hosts where that rule failed. ``dry_run`` runs the same play in
Ansible's check mode with diffs: what would change, changing nothing. Afterwards the
hosts are audited again, and the before and after of every rule are recorded as a
``baseline_remediation`` evidence record per host.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from mspauto.baseline.audit import BaselineReport, audit_client, checks_for
from mspauto.baseline.evaluate import CheckedRule
from mspauto.evidence.store import EvidenceStore, NewRecord
from mspauto.inventory.resolve import Host
from mspauto.project import Project
from mspauto.transport.ansible import AnsibleTransport, TaskOutcome
from mspauto.transport.base import Transport

__all__ = ["PlannedFix", "RemediationReport", "plan_fixes", "remediate_client"]


@dataclass(frozen=True)
class PlannedFix:
    """One rule to fix on some hosts, as the Ansible task that fixes it."""

    rule_id: str
    expected: str
    hosts: tuple[str, ...]
    task: dict[str, Any]


@dataclass
class RemediationReport:
    """What was (or would be) changed, and the audits before and after."""

    before: BaselineReport
    after: BaselineReport | None
    dry_run: bool
    fixes: list[PlannedFix] = field(default_factory=list)
    tasks: dict[str, list[TaskOutcome]] = field(default_factory=dict)
    manual: dict[str, list[str]] = field(default_factory=dict)
    """Host -> failed rules that have no automatic remediation (a person must decide)."""


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return str(value[0])
    return str(value)


def plan_fixes(
    report: BaselineReport, checks: dict[str, list[CheckedRule]]
) -> tuple[list[PlannedFix], dict[str, list[str]]]:
    """A fix for every failed rule where it failed, and what needs a person."""
    targets: dict[tuple[str, str], list[str]] = {}
    rules: dict[tuple[str, str], CheckedRule] = {}
    manual: dict[str, list[str]] = {}
    for host in report.hosts:
        by_id = {c.rule.id: c for c in checks.get(host.host, [])}
        for result in host.results:
            if result.status != "fail":
                continue
            check = by_id[result.rule_id]
            if check.rule.remediation is None:
                manual.setdefault(host.host, []).append(result.rule_id)
                continue
            value = _value(getattr(check.expectation, check.expectation.comparator))
            key = (result.rule_id, value)
            targets.setdefault(key, []).append(host.host)
            rules[key] = check
    fixes = []
    for (rule_id, value), hosts in targets.items():
        check = rules[(rule_id, value)]
        assert check.rule.remediation is not None
        expected = check.expectation.describe()
        task = {
            "name": f"{rule_id} ({expected})",
            check.rule.remediation.module: _fill(check.rule.remediation.args, value),
            "when": f"inventory_hostname in {sorted(hosts)!r}",
        }
        fixes.append(PlannedFix(rule_id, expected, tuple(sorted(hosts)), task))
    return fixes, manual


def _fill(value: Any, expected: str) -> Any:
    """The remediation with ``{{ expected }}`` replaced by the value the host must have."""
    if isinstance(value, str):
        return value.replace("{{ expected }}", expected)
    if isinstance(value, dict):
        return {k: _fill(v, expected) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, expected) for v in value]
    return value


def remediate_client(
    project: Project,
    client_name: str,
    hosts: list[Host],
    transport: Transport,
    store: EvidenceStore | None,
    *,
    dry_run: bool,
    today: date | None = None,
) -> RemediationReport:
    """Audit, fix what failed (or show what would change), audit again, record both."""
    today = today or datetime.now(UTC).date()
    client = project.inventory.clients[client_name]
    before = audit_client(project, client_name, hosts, transport, store, today=today)
    checks = {host.name: checks_for(project, host, today) for host in hosts}
    fixes, manual = plan_fixes(before, checks)
    report = RemediationReport(before, None, dry_run, fixes=fixes, manual=manual)
    if not fixes:
        return report
    failing = {name for fix in fixes for name in fix.hosts}
    ansible = AnsibleTransport(client, project.settings.root)
    report.tasks = ansible.run_playbook(
        [h for h in hosts if h.name in failing], [fix.task for fix in fixes], check=dry_run
    )
    if dry_run:
        return report
    report.after = audit_client(project, client_name, hosts, transport, store, today=today)
    if store is not None and report.after.run_id is not None:
        after = {h.host: {r.rule_id: r.status for r in h.results} for h in report.after.hosts}
        store.append(
            [
                NewRecord(
                    chain=client_name,
                    kind="baseline_remediation",
                    run_id=report.after.run_id,
                    host=host.host,
                    recorded_at=datetime.now(UTC),
                    payload={
                        "host": host.host,
                        "before_run": before.run_id,
                        "after_run": report.after.run_id,
                        "tasks": [t.__dict__ for t in report.tasks.get(host.host, [])],
                        "rules": {
                            r.rule_id: {
                                "before": r.status,
                                "after": after.get(host.host, {}).get(r.rule_id),
                            }
                            for r in host.results
                            if r.status == "fail"
                        },
                    },
                )
                for host in before.hosts
                if host.host in failing
            ]
        )
    return report
