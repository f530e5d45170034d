"""Check a client's backups: every job on every host, judged and recorded.

``check_backups`` runs the backup kind on the check pipeline (one probe per host, one
finding per job, recorded as evidence as each host answers) and returns a report whose
rows put breaches first. The last integrity check of each job is carried forward from
the evidence, so a job whose check is not due still shows when its repository was last
proven whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mspauto.backup.check import BackupCheck, BackupPlan, job_key
from mspauto.backup.drill import DrillCheck, DrillPlan
from mspauto.checks.pipeline import CheckRun, RunOptions, run_checks, scope_client
from mspauto.evidence.records import Finding, FindingStatus, RecordKind, read_host_findings
from mspauto.evidence.store import EvidenceStore
from mspauto.inventory.resolve import Host
from mspauto.project import Project
from mspauto.transport.base import Transport

__all__ = [
    "BackupReport",
    "DrillReport",
    "JobRow",
    "check_backups",
    "last_drills",
    "last_integrity_checks",
    "restore_drills",
]

_ORDER = {"failed": 0, "missing": 1, "stale": 2, "unchecked": 3, "ok": 4}


@dataclass(frozen=True)
class JobRow:
    """One job on one host, as the report shows it."""

    host: str
    policy: str
    job: str
    status: FindingStatus
    state: str
    reason: str
    detail: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """Machine-readable form."""
        return {
            "host": self.host,
            "policy": self.policy,
            "job": self.job,
            "status": str(self.status),
            "state": self.state,
            "reason": self.reason,
            **self.detail,
        }


@dataclass
class BackupReport:
    """The result of one backup check of a client."""

    client: str
    now: datetime
    run: CheckRun[BackupPlan]
    drills: dict[str, dict[str, Any]]
    """job_key -> its last recorded restore drill."""

    @property
    def rows(self) -> list[JobRow]:
        """Every job, breaches first (failed, missing, stale, unchecked, then ok)."""
        rows = []
        for host in self.run.hosts:
            if host.unchecked:
                for item in self.run.plans[host.host].jobs:
                    rows.append(
                        JobRow(
                            host.host,
                            item.policy.name,
                            item.job.name,
                            FindingStatus.ERROR,
                            "unchecked",
                            f"could not check: {host.unchecked}",
                            {"provider": item.job.provider},
                        )
                    )
                continue
            for finding in host.findings:
                detail = dict(finding.detail)
                drill = self.drills.get(job_key(host.host, finding.policy, finding.subject))
                detail["restore_drill"] = drill
                policy = next(
                    (
                        j.policy
                        for j in self.run.plans[host.host].jobs
                        if j.policy.name == finding.policy
                    ),
                    None,
                )
                if policy is not None and policy.restore_test is not None:
                    due = drill is None or (
                        self.now - datetime.fromisoformat(drill["at"]) >= policy.restore_test.every
                    )
                    detail["restore_drill_due"] = due
                rows.append(
                    JobRow(
                        host.host,
                        finding.policy,
                        finding.subject,
                        finding.status,
                        str(detail.pop("state", "")),
                        finding.reason,
                        detail,
                    )
                )
        return sorted(rows, key=lambda r: (_ORDER.get(r.state, 9), r.host, r.policy, r.job))

    @property
    def breached(self) -> list[JobRow]:
        """Jobs not proven within their RPO (waived ones excepted)."""
        return [r for r in self.rows if r.status in (FindingStatus.FAIL, FindingStatus.ERROR)]

    def as_dict(self) -> dict[str, Any]:
        """Machine-readable form."""
        return {
            "client": self.client,
            "now": self.now.isoformat(),
            "run_id": self.run.run_id,
            "status": str(self.run.status),
            "jobs": [r.as_dict() for r in self.rows],
        }


def last_integrity_checks(
    store: EvidenceStore | None, client: str, hosts: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """job_key -> the newest integrity check recorded for it (at, ok, message)."""
    found: dict[str, dict[str, Any]] = {}
    for host, finding in _recorded(store, client, hosts, "backup"):
        integrity = finding.detail.get("integrity")
        if isinstance(integrity, dict) and integrity.get("at"):
            key = job_key(host, finding.policy, finding.subject)
            if key not in found or str(integrity["at"]) > str(found[key]["at"]):
                found[key] = dict(integrity)
    return found


def last_drills(
    store: EvidenceStore | None, client: str, hosts: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """job_key -> the newest restore drill recorded for it (at, status, reason)."""
    found: dict[str, dict[str, Any]] = {}
    for host, finding in _recorded(store, client, hosts, "backup-drill"):
        if finding.status not in (FindingStatus.PASS, FindingStatus.FAIL):
            continue  # a drill that could not run proves nothing either way
        at = str(finding.detail.get("at", ""))
        key = job_key(host, finding.policy, finding.subject)
        if at and (key not in found or at > str(found[key]["at"])):
            found[key] = {"at": at, "status": str(finding.status), "reason": finding.reason}
    return found


def _recorded(
    store: EvidenceStore | None, client: str, hosts: Iterable[str], check: str
) -> Iterator[tuple[str, Finding]]:
    """Every recorded finding of ``check`` on ``hosts``."""
    if store is None:
        return
    wanted = set(hosts)
    for record in store.records(chain=client, kind=RecordKind.FINDINGS):
        if record.host in wanted and record.payload.get("check") == check:
            for finding in read_host_findings(record.kind, record.payload).findings:
                yield record.host, finding


@dataclass
class DrillReport:
    """The result of one restore drill run over a client's hosts."""

    client: str
    now: datetime
    run: CheckRun[DrillPlan]

    @property
    def failed(self) -> bool:
        """True when a drill failed or could not run (a waiver excuses a job's backup
        verdict, never a failed restore)."""
        return any(h.unchecked for h in self.run.hosts) or any(
            f.status in (FindingStatus.FAIL, FindingStatus.ERROR)
            for h in self.run.hosts
            for f in h.findings
        )

    def as_dict(self) -> dict[str, Any]:
        """Machine-readable form."""
        return {
            "client": self.client,
            "now": self.now.isoformat(),
            "run_id": self.run.run_id,
            "status": str(self.run.status),
            "hosts": [
                {
                    "host": h.host,
                    "unchecked": h.unchecked,
                    "drills": [f.as_dict() for f in h.findings],
                }
                for h in self.run.hosts
            ],
        }


def restore_drills(
    project: Project,
    client_name: str,
    hosts: Sequence[Host],
    transport: Transport,
    store: EvidenceStore | None,
    *,
    options: RunOptions | None = None,
    now: datetime | None = None,
    due_only: bool = False,
) -> DrillReport:
    """Restore each drilled job's sample paths on ``hosts`` (one client) into a scratch
    folder, compare, clean up; every drill recorded as evidence. ``due_only``: only
    jobs with no passing drill within their policy's ``restore_test.every``."""
    now = now or datetime.now(UTC)
    client = project.inventory.clients[client_name]
    scope = scope_client(project, client, hosts, "backup", now.date())
    last = last_drills(store, client_name, [h.name for h in hosts]) if due_only else None
    check = DrillCheck(project.settings.root, now=now, last_drills=last)
    run = run_checks(check, scope, transport, store, options or RunOptions())
    return DrillReport(client_name, now, run)


def check_backups(
    project: Project,
    client_name: str,
    hosts: Sequence[Host],
    transport: Transport,
    store: EvidenceStore | None,
    *,
    options: RunOptions | None = None,
    now: datetime | None = None,
    check_integrity: bool = False,
) -> BackupReport:
    """Check every backup job of ``hosts`` (one client), recorded as evidence."""
    now = now or datetime.now(UTC)
    client = project.inventory.clients[client_name]
    scope = scope_client(project, client, hosts, "backup", now.date())
    names = [h.name for h in hosts]
    check = BackupCheck(
        project.settings.root,
        now=now,
        last_integrity=last_integrity_checks(store, client_name, names),
        check_integrity=check_integrity,
    )
    run = run_checks(check, scope, transport, store, options or RunOptions())
    return BackupReport(client_name, now, run, last_drills(store, client_name, names))
