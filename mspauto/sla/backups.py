"""Backups against the contract: success rate, RPO breaches, integrity checks, drills.

Every backup check records, per job, the newest good backup the provider knew of.
That is what the figures rest on:

- **Success rate**: the share of the period's checks that found the job within its RPO
  (a check that could not read the job counts as not successful; waived checks are
  left out and shown apart).
- **RPO breaches**: a check at time *t* that saw the newest good backup at *s* with
  ``t - s`` over the RPO proves there was no good backup between *s* and *t*, so the
  job was in breach from ``s + RPO`` at least until *t*. The breach ends at the next
  good backup a later check saw (a backup taken and replaced between two checks cannot
  be seen; checking more often than the RPO narrows that). A job with no backup at all
  is in breach from the first check that said so.
- **Restore drills** are due when the last passing one is older than the contract's
  ``restore_test_every`` (or there never was one).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from mspauto.backup.check import FUTURE_TOLERANCE
from mspauto.evidence.records import FindingStatus, HostFindings
from mspauto.sla.model import BackupAsset, BackupSla, Breach, Period
from mspauto.sla.period import when

__all__ = ["BackupMonth"]


@dataclass
class _Job:
    provider: str = ""
    rpo: timedelta | None = None
    checks: int = 0
    ok: int = 0
    waived: int = 0
    state: str = "not checked"
    reason: str = ""
    last_good: datetime | None = None
    successes: set[datetime] = field(default_factory=set)
    breach_starts: list[datetime] = field(default_factory=list)
    """Start of each proven breach (``s + RPO``, or the check that found no backup)."""
    integrity: dict[datetime, bool] = field(default_factory=dict)
    drills: list[tuple[datetime, bool]] = field(default_factory=list)


class BackupMonth:
    """Feed backup and drill findings in record order; read :meth:`result`."""

    def __init__(self, period: Period, as_of: datetime) -> None:
        self.period = period
        self.as_of = as_of
        self.jobs: dict[tuple[str, str], _Job] = {}

    def _in_period(self, at: datetime) -> bool:
        return self.period.start <= at < self.period.end

    def check(self, at: datetime, findings: HostFindings) -> None:
        """A backup check of one host (one finding per job)."""
        if findings.unchecked:
            # The host could not be reached: no job of it was proven that time.
            if self._in_period(at):
                for (host, _), job in self.jobs.items():
                    if host == findings.host:
                        job.checks += 1
                        job.state, job.reason = "unchecked", findings.unchecked
            return
        for finding in findings.findings:
            job = self.jobs.setdefault((findings.host, finding.subject), _Job())
            detail = finding.detail
            job.provider = str(detail.get("provider", job.provider))
            if detail.get("rpo_seconds"):
                job.rpo = timedelta(seconds=int(detail["rpo_seconds"]))
            last = when(detail.get("last_success"))
            if last is not None and last > at + FUTURE_TOLERANCE:
                last = None  # a clock is wrong: the check itself said so (unchecked)
            if last is not None:
                job.successes.add(last)
                job.last_good = max(job.last_good or last, last)
            state = str(detail.get("state", ""))
            waived = finding.status is FindingStatus.WAIVED
            if job.rpo is not None and state != "unchecked" and not waived:
                if last is None:
                    job.breach_starts.append(at)
                elif at - last > job.rpo:
                    job.breach_starts.append(last + job.rpo)
            integrity = detail.get("integrity")
            if isinstance(integrity, dict) and integrity.get("at"):
                checked = when(str(integrity["at"]))
                if checked is not None and "ok" in integrity:
                    job.integrity[checked] = bool(integrity["ok"])
            if not self._in_period(at):
                continue
            job.checks += 1
            if finding.status is FindingStatus.WAIVED:
                job.waived += 1
                job.state = "waived"
            else:
                job.ok += finding.status is FindingStatus.PASS
                job.state = state or str(finding.status)
            job.reason = finding.reason

    def drill(self, at: datetime, findings: HostFindings) -> None:
        """A restore drill of one host's jobs."""
        for finding in findings.findings:
            if finding.status in (FindingStatus.PASS, FindingStatus.FAIL):
                job = self.jobs.setdefault((findings.host, finding.subject), _Job())
                job.drills.append((at, finding.status is FindingStatus.PASS))

    def result(
        self, hosts: Sequence[str], *, target: float, rpo: timedelta, drill_every: timedelta
    ) -> BackupSla:
        """The period's figures over the jobs of ``hosts``."""
        wanted = set(hosts)
        assets, breaches = [], []
        checks = ok = waived = integrity_checks = integrity_failed = 0
        drills = drills_failed = drills_due = 0
        for (host, name), job in sorted(self.jobs.items()):
            if host not in wanted:
                continue
            checks += job.checks
            ok += job.ok
            waived += job.waived
            period_integrity = {t: v for t, v in job.integrity.items() if self._in_period(t)}
            integrity_checks += len(period_integrity)
            integrity_failed += sum(1 for v in period_integrity.values() if not v)
            in_period = [(t, v) for t, v in job.drills if self._in_period(t)]
            drills += len(in_period)
            drills_failed += sum(1 for _, v in in_period if not v)
            passed = [t for t, v in job.drills if v and t < self.period.end]
            last_drill = max((t for t, _ in job.drills if t < self.period.end), default=None)
            due = (max(passed) + drill_every) if passed else None
            if due is None or due <= self.as_of:
                drills_due += 1
            breaches.extend(self._breaches(host, name, job))
            last_integrity = max((t for t in job.integrity if t < self.period.end), default=None)
            assets.append(
                BackupAsset(
                    host=host,
                    job=name,
                    provider=job.provider,
                    state=job.state,
                    last_good=job.last_good,
                    checks=job.checks,
                    checks_ok=job.ok,
                    last_integrity=last_integrity,
                    integrity_ok=job.integrity[last_integrity] if last_integrity else None,
                    last_drill=last_drill,
                    drill_ok=dict(job.drills)[last_drill] if last_drill else None,
                    drill_due=due,
                    reason=job.reason if job.checks else "no backup check in the period",
                )
            )
        missed = self._never_checked(hosts, assets)
        if not checks:
            missed = 0  # nothing checked at all: "no data", not 0%
        counted = checks - waived + missed
        return BackupSla(
            checks=checks + missed,
            checks_ok=ok,
            success_percent=round(100 * ok / counted, 1) if counted else None,
            target_percent=target,
            rpo_hours=round(rpo.total_seconds() / 3600, 1),
            breaches=breaches,
            assets=assets,
            integrity_checks=integrity_checks,
            integrity_failed=integrity_failed,
            drills=drills,
            drills_failed=drills_failed,
            drills_due=drills_due,
        )

    def _never_checked(self, hosts: Sequence[str], assets: list[BackupAsset]) -> int:
        """Add a "not checked" row for each job of a targeted host no check reached in
        the period (its known jobs, else one placeholder), and return the checks they
        count as failed: as many as an asset that was checked had on average, so a host
        never checked weighs like a month of failed checks, never like nothing."""
        reached = {a.host for a in assets if a.checks}
        checked = [a.checks for a in assets if a.checks]
        expected = max(1, round(sum(checked) / len(checked))) if checked else 1
        missed = 0
        for host in hosts:
            if host in reached:
                continue
            known = {a.job for a in assets if a.host == host}
            if not known:
                assets.append(
                    BackupAsset(
                        host,
                        "(no job seen)",
                        "",
                        "not checked",
                        None,
                        0,
                        0,
                        None,
                        None,
                        None,
                        None,
                        None,
                        "no backup check in the period",
                    )
                )
            missed += expected * max(1, len(known))
        return missed

    def _breaches(self, host: str, name: str, job: _Job) -> list[Breach]:
        """The job's proven breaches that overlap the period, merged, clipped to it."""
        successes = sorted(job.successes)
        spans: list[tuple[datetime, datetime | None]] = []
        for start in sorted(set(job.breach_starts)):
            if start >= self.period.end:
                break
            if spans and (spans[-1][1] is None or start <= spans[-1][1]):
                continue  # inside the breach already found
            after = bisect_right(successes, start)
            spans.append((start, successes[after] if after < len(successes) else None))
        out = []
        limit = min(self.period.end, self.as_of)
        for start, end in spans:
            if end is not None and end <= self.period.start:
                continue
            clipped_end = min(end, limit) if end is not None else limit
            hours = (clipped_end - max(start, self.period.start)).total_seconds() / 3600
            ongoing = end is None or end >= self.period.end
            out.append(
                Breach(host, name, start, None if ongoing else end, round(max(hours, 0.0), 1))
            )
        return out
