"""Baseline audits and remediation as a client sees them: findings, scores, the floor.

Score = weight of passed rules / weight of rules that count, where waived and
not-applicable rules do not count and errors count as not passed. A host that could not
be audited has every applicable rule in error, so it scores 0 in its client's score: an
unchecked host is not compliant.

:func:`audit_client` and :func:`remediate_client` are the Python API the CLI (and the
scheduler) call; they run :class:`~mspauto.baseline.check.BaselineCheck` on the check
pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from mspauto.baseline.check import BaselineCheck, PlannedRule
from mspauto.checks.pipeline import (
    ChangeRun,
    CheckRun,
    Dispatch,
    RunOptions,
    apply_changes,
    run_checks,
    scope_client,
)
from mspauto.evidence.records import FindingStatus, HostFindings
from mspauto.evidence.store import EvidenceStore
from mspauto.inventory.resolve import Host
from mspauto.project import Project
from mspauto.transport.base import Transport

__all__ = [
    "BaselineReport",
    "RemediationReport",
    "audit_client",
    "client_score",
    "counted_weight",
    "has_baseline",
    "host_score",
    "remediate_client",
]

_COUNTED = (FindingStatus.PASS, FindingStatus.FAIL, FindingStatus.ERROR)


def counted_weight(host: HostFindings) -> int:
    """The weight of a host's verdicts that count in a score (pass, fail, error)."""
    return sum(f.weight for f in host.findings if f.status in _COUNTED)


def _passed_weight(host: HostFindings) -> int:
    if host.unchecked:
        return 0
    return sum(f.weight for f in host.findings if f.status is FindingStatus.PASS)


def host_score(host: HostFindings) -> float | None:
    """0..100, or None when nothing counts or the host was not audited."""
    if host.unchecked or not counted_weight(host):
        return None
    return round(100 * _passed_weight(host) / counted_weight(host), 1)


def client_score(hosts: Sequence[HostFindings]) -> float | None:
    """The client's score: every host's counted weight, unaudited hosts as failed."""
    counted = sum(counted_weight(h) for h in hosts)
    if not counted:
        return None
    return round(100 * sum(_passed_weight(h) for h in hosts) / counted, 1)


@dataclass
class BaselineReport:
    """A client's baseline audit: per-host findings, the client score, the floor."""

    run: CheckRun[list[PlannedRule]]
    floor: float | None

    @property
    def client(self) -> str:
        """The client audited."""
        return self.run.client

    @property
    def run_id(self) -> str | None:
        """The audit run's id (None when no host had anything to audit)."""
        return self.run.run_id

    @property
    def hosts(self) -> list[HostFindings]:
        """Each audited host's findings."""
        return self.run.hosts

    @property
    def score(self) -> float | None:
        """The client's score (unaudited hosts count as failed)."""
        return client_score(self.hosts)

    @property
    def below_floor(self) -> bool:
        """True when the score is under the contract's baseline floor."""
        return self.floor is not None and (self.score or 0.0) < self.floor

    def as_dict(self) -> dict[str, Any]:
        """Machine-readable form (``--format json``)."""
        return {
            "client": self.client,
            "run_id": self.run_id,
            "score": self.score,
            "floor": self.floor,
            "below_floor": self.below_floor,
            "evidence_error": self.run.evidence_error,
            "hosts": [
                {
                    "host": h.host,
                    "score": host_score(h),
                    "unaudited": h.unchecked,
                    "counts": {str(s): h.count(s) for s in FindingStatus},
                    "results": [_result(f) for f in h.findings],
                }
                for h in self.hosts
            ],
        }


def _result(finding: Any) -> dict[str, Any]:
    detail = finding.detail
    return {
        "rule_id": finding.subject,
        "title": detail.get("title", ""),
        "pack": detail.get("pack", ""),
        "policy": finding.policy,
        "severity": detail.get("severity", ""),
        "weight": finding.weight,
        "status": str(finding.status),
        "observed": finding.observed,
        "expected": finding.expected,
        "reason": finding.reason,
        "cis": list(detail.get("cis", [])),
        "waiver": finding.waiver,
    }


@dataclass
class RemediationReport:
    """What was (or would be) changed, and the audits before and after."""

    change: ChangeRun[list[PlannedRule]]
    floor: float | None

    @property
    def before(self) -> BaselineReport:
        """The audit that found what to fix."""
        return BaselineReport(self.change.before, self.floor)

    @property
    def after(self) -> BaselineReport | None:
        """The client after the changes: every audited host, the changed ones as
        re-audited (None for a dry run, or when nothing was changed)."""
        after = self.change.after
        if after is None:
            return None
        rechecked = {h.host: h for h in after.hosts}
        merged = CheckRun(
            after.check,
            after.client,
            after.run_id,
            after.status,
            [rechecked.get(h.host, h) for h in self.change.before.hosts],
            {**self.change.before.plans, **after.plans},
            after.evidence_error,
        )
        return BaselineReport(merged, self.floor)

    @property
    def final(self) -> BaselineReport:
        """The latest state of the client: after the changes if any ran, else before."""
        return self.after or self.before

    def as_dict(self) -> dict[str, Any]:
        """Machine-readable form (``--format json``)."""
        change = self.change
        return {
            "client": change.before.client,
            "dry_run": change.dry_run,
            "change_run_id": change.change.run_id if change.change else None,
            "tasks": [
                {"rule_id": t.subject, "expected": t.description, "hosts": list(t.hosts)}
                for t in change.tasks
            ],
            "outcomes": {
                host: [o.as_dict() for o in outcomes]
                for host, outcomes in sorted(change.outcomes.items())
            },
            "failed_hosts": change.failed_hosts,
            "manual": {
                host: [{"rule_id": s, "why": why} for s, why in items]
                for host, items in sorted(change.manual.items())
            },
            "before": self.before.as_dict(),
            "after": None if self.after is None else self.after.as_dict(),
        }


def has_baseline(project: Project, hosts: Sequence[Host], today: date) -> bool:
    """True when some baseline policy selects one of ``hosts``."""
    return any(
        p.policy.kind == "baseline"
        and getattr(p.policy, "enabled", True)
        and p.policy.targets.matches(h)  # type: ignore[attr-defined]
        for p in project.policies
        for h in hosts
    )


def audit_client(
    project: Project,
    client_name: str,
    hosts: Sequence[Host],
    transport: Transport,
    store: EvidenceStore | None,
    *,
    options: RunOptions | None = None,
    today: date | None = None,
) -> BaselineReport:
    """Audit ``hosts`` (of one client); every host's findings are recorded as evidence."""
    today = today or datetime.now(UTC).date()
    client = project.inventory.clients[client_name]
    scope = scope_client(project, client, hosts, "baseline", today)
    run = run_checks(
        BaselineCheck.for_project(project), scope, transport, store, options or RunOptions()
    )
    return BaselineReport(run, scope.contract.baseline_score_floor if scope.contract else None)


def remediate_client(
    project: Project,
    client_name: str,
    hosts: Sequence[Host],
    transport: Transport,
    change_transport: Transport,
    store: EvidenceStore | None,
    *,
    dry_run: bool,
    options: RunOptions | None = None,
    today: date | None = None,
    dispatch: Dispatch | None = None,
) -> RemediationReport:
    """Audit, fix what failed and may be fixed (or show what would change), audit again;
    each step is a recorded run, and each changed host's before and after is evidence.
    With ``dispatch`` workers make the change (``options.executor`` says who audits)."""
    today = today or datetime.now(UTC).date()
    options = options or RunOptions()
    client = project.inventory.clients[client_name]
    scope = scope_client(project, client, hosts, "baseline", today)
    check = BaselineCheck.for_project(project)
    before = run_checks(check, scope, transport, store, options)
    change = apply_changes(
        check,
        scope,
        before,
        transport,
        change_transport,
        store,
        options,
        dry_run=dry_run,
        dispatch=dispatch,
    )
    return RemediationReport(
        change, scope.contract.baseline_score_floor if scope.contract else None
    )
