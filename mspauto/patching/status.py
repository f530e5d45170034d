"""``patch status``: what each host still lacks, from the evidence alone (no host is
contacted), measured against the contract's deadline for each update's severity."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mspauto.evidence.records import HostFindings, RecordKind, read_host_findings
from mspauto.evidence.store import EvidenceStore
from mspauto.patching.check import REBOOT_SUBJECT, decisions_of
from mspauto.patching.facts import PendingUpdate, parse_time

__all__ = ["HostStatus", "PendingItem", "patch_status"]


@dataclass(frozen=True)
class PendingItem:
    """One update a host still lacks at its latest scan."""

    update: PendingUpdate
    action: str
    reason: str
    first_detected: datetime | None
    clock: str
    deadline: datetime | None

    def pending_days(self, now: datetime) -> float | None:
        """Days since the clock started (release where known, else first detection)."""
        start = self.update.released if self.clock == "release" else self.first_detected
        return None if start is None else round((now - start).total_seconds() / 86400, 1)

    def overdue(self, now: datetime) -> bool:
        """Past the contract's deadline (a waived update is excepted, never overdue)."""
        return self.action != "waived" and self.deadline is not None and now > self.deadline

    def as_dict(self, now: datetime) -> dict[str, Any]:
        """Machine-readable form."""
        return {
            **self.update.as_dict(),
            "action": self.action,
            "reason": self.reason,
            "first_detected": self.first_detected.isoformat() if self.first_detected else None,
            "clock": self.clock,
            "deadline": self.deadline.isoformat() if self.deadline else None,
            "pending_days": self.pending_days(now),
            "overdue": self.overdue(now),
        }


@dataclass
class HostStatus:
    """A host's latest patch scan, or that it was never scanned."""

    host: str
    scanned_at: datetime | None = None
    run_id: str | None = None
    unchecked: str | None = None
    reboot: str | None = None
    pending: list[PendingItem] = field(default_factory=list)

    def as_dict(self, now: datetime) -> dict[str, Any]:
        """Machine-readable form."""
        return {
            "host": self.host,
            "scanned_at": self.scanned_at.isoformat() if self.scanned_at else None,
            "run_id": self.run_id,
            "unchecked": self.unchecked,
            "reboot": self.reboot,
            "pending": [p.as_dict(now) for p in self.pending],
        }


def patch_status(store: EvidenceStore, client: str, hosts: Iterable[str]) -> list[HostStatus]:
    """Each host's latest recorded patch scan (hosts never scanned say so)."""
    wanted = list(hosts)
    latest: dict[str, tuple[str, str, HostFindings]] = {}
    for record in store.records(chain=client, kind=RecordKind.FINDINGS):
        if record.host in wanted and record.payload.get("check") == "patch":
            findings = read_host_findings(record.kind, record.payload)
            latest[record.host] = (record.recorded_at, record.run_id, findings)
    statuses = []
    for host in wanted:
        if host not in latest:
            statuses.append(HostStatus(host))
            continue
        recorded_at, run_id, findings = latest[host]
        reboot = next((f for f in findings.findings if f.subject == REBOOT_SUBJECT), None)
        statuses.append(
            HostStatus(
                host,
                parse_time(recorded_at),
                run_id,
                findings.unchecked,
                reboot.observed if reboot else None,
                [
                    PendingItem(
                        update,
                        str(decision.get("action", "")),
                        str(decision.get("reason", "")),
                        parse_time(str(decision.get("first_detected") or "")),
                        str(decision.get("clock", "detection")),
                        parse_time(str(decision.get("deadline") or "")),
                    )
                    for update, decision in decisions_of(findings)
                ],
            )
        )
    return statuses
