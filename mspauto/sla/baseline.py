"""Hardening against the contract's floor: scores, top failing controls, drift.

Each host is judged by its last audit in the period, and compared with its last audit
before the period (drift: rules whose verdict changed). Scores are the baseline
command's own (:mod:`mspauto.baseline.report`): weighted passes over weighted
counted verdicts, an unaudited host counting as failed in the client's score.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime

from mspauto.baseline.report import client_score, counted_weight, host_score
from mspauto.evidence.records import FindingStatus, HostFindings
from mspauto.sla.model import (
    BaselineHost,
    BaselineSla,
    ControlFailure,
    Drift,
    Period,
    PlatformScore,
)

__all__ = ["BaselineMonth"]

_TOP_FAILING = 10
_VERDICTS = (FindingStatus.PASS, FindingStatus.FAIL, FindingStatus.ERROR)


class BaselineMonth:
    """Feed baseline findings in record order; read :meth:`result`."""

    def __init__(self, period: Period, previous_start: datetime) -> None:
        self.period = period
        self.previous_start = previous_start
        """Start of the month before: only its audits are "last month"."""
        self.latest: dict[str, tuple[datetime, Callable[[], HostFindings]]] = {}
        self.before: dict[str, Callable[[], HostFindings]] = {}

    def audit(self, at: datetime, host: str, findings: Callable[[], HostFindings]) -> None:
        """A baseline audit of one host; ``findings`` reads it (only the audits judged,
        each host's last before and in the period, are ever read)."""
        if self.previous_start <= at < self.period.start:
            self.before[host] = findings
        elif self.period.start <= at < self.period.end:
            self.latest[host] = (at, findings)

    def result(self, hosts: Sequence[str], floor: float) -> BaselineSla:
        """The period's figures over ``hosts`` (the hosts baseline policies target)."""
        rows, audited, previous = [], [], []
        failing: Counter[str] = Counter()
        titles: dict[str, tuple[str, str]] = {}
        drift = []
        for name in hosts:
            read_before = self.before.get(name)
            before = read_before() if read_before is not None else None
            if before is not None:
                previous.append(before)
            if name not in self.latest:
                rows.append(
                    BaselineHost(
                        name,
                        "",
                        None,
                        _score(before),
                        0,
                        0,
                        0,
                        0,
                        None,
                        "no baseline audit in the period",
                    )
                )
                continue
            at, read_now = self.latest[name]
            now = read_now()
            audited.append(now)
            for f in now.findings:
                titles[f.subject] = (
                    str(f.detail.get("title", "")),
                    str(f.detail.get("severity", "")),
                )
                if f.status is FindingStatus.FAIL:
                    failing[f.subject] += 1
            if before is not None and not now.unchecked and not before.unchecked:
                drift.extend(_drift(name, before, now))
            rows.append(
                BaselineHost(
                    host=name,
                    platform=_platform(now),
                    score=host_score(now),
                    previous=_score(before),
                    passed=now.count(FindingStatus.PASS),
                    failed=now.count(FindingStatus.FAIL),
                    errors=now.count(FindingStatus.ERROR),
                    waived=now.count(FindingStatus.WAIVED),
                    audited=at,
                    reason=f"not audited: {now.unchecked}" if now.unchecked else "",
                )
            )
        platforms: dict[str, list[HostFindings]] = {}
        for findings in audited:
            platforms.setdefault(_platform(findings), []).append(findings)
        never = sum(1 for row in rows if row.audited is None)
        return BaselineSla(
            score=_score_with_unaudited(audited, never),
            previous=client_score(previous) if previous else None,
            floor=floor,
            hosts=rows,
            platforms=[
                PlatformScore(p or "not audited", len(f), client_score(f))
                for p, f in sorted(platforms.items())
            ],
            top_failing=[
                ControlFailure(rule, titles[rule][0], titles[rule][1], count)
                for rule, count in sorted(failing.items(), key=lambda kv: (-kv[1], kv[0]))[
                    :_TOP_FAILING
                ]
            ],
            drift=drift,
        )


def _score_with_unaudited(audited: list[HostFindings], never: int) -> float | None:
    """The client's score, a host no audit reached in the period counting as an audit
    where nothing passed, weighing what an audited host weighs on average (None when
    no host was audited: no data)."""
    score = client_score(audited) if audited else None
    if score is None or not never:
        return score
    total = sum(counted_weight(f) for f in audited)
    passed = sum(
        f.weight
        for h in audited
        if not h.unchecked
        for f in h.findings
        if f.status is FindingStatus.PASS
    )
    return round(100 * passed / (total + never * total / len(audited)), 1)


def _score(findings: HostFindings | None) -> float | None:
    return None if findings is None else host_score(findings)


def _platform(findings: HostFindings) -> str:
    return ", ".join(sorted({str(f.detail.get("pack", "")) for f in findings.findings} - {""}))


def _drift(host: str, before: HostFindings, now: HostFindings) -> list[Drift]:
    was = {f.subject: f.status for f in before.findings if f.status in _VERDICTS}
    return [
        Drift(host, f.subject, str(f.detail.get("title", "")), str(was[f.subject]), str(f.status))
        for f in now.findings
        if f.status in _VERDICTS and f.subject in was and was[f.subject] != f.status
    ]
