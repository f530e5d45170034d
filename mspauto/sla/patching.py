"""Patching against the contract: compliance, installs, latency, KEV, from patch scans.

Scans are read in the order they were recorded. An update counts as installed when a
patch run recorded it installed, or when a later scan of the host no longer lists it
(someone or something else installed it: the scan is the proof, and its time the install
time). Days to patch run from the clock the decision named (release where known, else
first detection). Open items are judged at the end of the period (or now, for a month
still running).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from math import ceil
from typing import Any

from mspauto.evidence.records import ChangeResult, HostFindings
from mspauto.sla.model import LatencyStats, PatchHost, PatchItem, PatchSla, Period
from mspauto.sla.period import when

__all__ = ["SEVERITIES", "PatchMonth", "nearest_rank"]

SEVERITIES = ("critical", "high", "medium", "low", "unrated")
_EXCEPTED = {"hold": "held", "reject": "rejected", "defer": "deferred"}
"""Decisions that keep an update out on purpose; listed as exceptions, still late
when past the deadline (only a client-approved waiver exempts)."""


def nearest_rank(values: Sequence[float], percent: float) -> float | None:
    """The smallest value that at least ``percent`` of the values do not exceed."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, ceil(percent / 100 * len(ordered)) - 1)]


@dataclass
class _Open:
    """An update pending on a host, as its latest scan described it."""

    update: Mapping[str, Any]
    decision: Mapping[str, Any]
    seen: datetime


@dataclass
class _Host:
    pending: dict[str, _Open] = field(default_factory=dict)
    last_scan: datetime | None = None
    """The last successful scan in the period."""
    last_failure: tuple[datetime, str] | None = None
    """The last scan in the period that could not run, and why."""
    failed_installs: dict[str, str] = field(default_factory=dict)
    installed: dict[tuple[str, str], PatchItem] = field(default_factory=dict)


class PatchMonth:
    """Feed patch findings and change results in record order; read :meth:`result`."""

    def __init__(self, period: Period, as_of: datetime) -> None:
        self.period = period
        self.as_of = as_of
        self.hosts: dict[str, _Host] = {}

    def _in_period(self, at: datetime) -> bool:
        return self.period.start <= at < self.period.end

    def scan(self, at: datetime, findings: HostFindings) -> None:
        """A patch scan of one host."""
        host = self.hosts.setdefault(findings.host, _Host())
        if findings.unchecked:
            if self._in_period(at):
                host.last_failure = (at, findings.unchecked)
            return
        if not any("manager" in f.detail for f in findings.findings):
            return  # no probe ran (a platform mspauto does not patch): not a scan
        now_pending: dict[str, _Open] = {}
        for finding in findings.findings:
            update = finding.detail.get("update")
            decision = finding.detail.get("decision")
            if not isinstance(update, Mapping) or not isinstance(decision, Mapping):
                continue  # the reboot and check findings
            if decision.get("action") == "dependency":
                continue  # a package the upgrade would add: not an update of anything
            now_pending[str(update["name"])] = _Open(update, decision, at)
        for name, was in host.pending.items():
            still = now_pending.get(name)
            if still is None or still.update.get("installed") == was.update.get("candidate"):
                self._installed(findings.host, host, was, at)
        host.pending = now_pending
        if self._in_period(at):
            host.last_scan = at
            if host.last_failure and host.last_failure[0] < at:
                host.last_failure = None
            host.failed_installs = {
                n: why for n, why in host.failed_installs.items() if n in now_pending
            }

    def change(self, at: datetime, result: ChangeResult) -> None:
        """What a patch run installed on one host."""
        host = self.hosts.setdefault(result.host, _Host())
        for change in result.changes:
            was = host.pending.get(change.subject)
            if change.status == "installed":
                host.failed_installs.pop(change.subject, None)
                if was is not None:
                    self._installed(result.host, host, was, at)
                    del host.pending[change.subject]
            elif change.status == "failed" and self._in_period(at):
                host.failed_installs[change.subject] = change.message

    def _installed(self, name: str, host: _Host, was: _Open, at: datetime) -> None:
        if not self._in_period(at):
            return
        key = (str(was.update["name"]), str(was.update.get("candidate", "")))
        if key in host.installed:
            return
        item = _item(name, was, at, self.as_of)
        late = item.deadline is not None and at > item.deadline
        host.installed[key] = replace(item, state="installed late" if late else "installed")

    def result(self, devices: Sequence[str]) -> PatchSla:
        """The month's figures over ``devices`` (the hosts patch policies target)."""
        hosts: list[PatchHost] = []
        items: list[PatchItem] = []
        for name in devices:
            state = self.hosts.get(name, _Host())
            open_items = (
                []
                if state.last_scan is None
                else [_item(name, o, None, self.as_of) for o in state.pending.values()]
            )
            installed = list(state.installed.values())
            items.extend(installed + open_items)
            hosts.append(_host_row(name, state, open_items, len(installed), self.as_of))
        counts = {
            s: sum(1 for h in hosts if h.state == s)
            for s in ("compliant", "pending", "failed", "exempted", "not checked")
        }
        done = [i for i in items if i.installed_at is not None]
        latency = []
        for severity in SEVERITIES:
            days = [i.days for i in done if i.severity == severity and i.days is not None]
            latency.append(
                LatencyStats(
                    severity,
                    len(days),
                    round(statistics.median(days), 1) if days else None,
                    nearest_rank(days, 90),
                    sum(1 for i in done if i.severity == severity and i.state == "installed late"),
                )
            )
        late_states = ("installed late", "overdue")
        return PatchSla(
            devices=len(devices),
            compliant=counts["compliant"],
            pending=counts["pending"],
            failed=counts["failed"],
            exempted=counts["exempted"],
            not_checked=counts["not checked"],
            compliance_percent=(
                round(100 * counts["compliant"] / len(devices), 1)
                if devices and counts["not checked"] < len(devices)
                else None
            ),
            missing_critical=len(
                {
                    i.host
                    for i in items
                    if i.installed_at is None
                    and i.severity in ("critical", "high")
                    and i.state != "exempted"
                }
            ),
            updates_installed=len(done),
            past_deadline={
                s: sum(1 for i in items if i.severity == s and i.state in late_states)
                for s in SEVERITIES
            },
            latency=latency,
            kev=[i for i in items if i.known_exploited],
            hosts=hosts,
            items=sorted(items, key=lambda i: (i.host, i.name)),
        )


def _item(host: str, was: _Open, installed_at: datetime | None, as_of: datetime) -> PatchItem:
    update, decision = was.update, was.decision
    clock = str(decision.get("clock", "detection"))
    first = when(decision.get("first_detected"))
    start = when(update.get("released")) if clock == "release" else first
    deadline = when(decision.get("deadline"))
    action = str(decision.get("action", ""))
    end = installed_at or as_of
    days = None if start is None else round(max(0.0, (end - start).total_seconds()) / 86400, 1)
    if installed_at is not None:
        state = "installed"
    elif action == "waived":
        state = "exempted"
    elif deadline is not None and as_of > deadline:
        state = "overdue"
    elif action in _EXCEPTED:
        state = "excepted"
    else:
        state = "pending"
    return PatchItem(
        host=host,
        name=str(update["name"]),
        version=str(update.get("candidate", "")),
        severity=str(update.get("severity") or "unrated"),
        classification=str(update.get("classification") or ""),
        state=state,
        action=action,
        clock=clock,
        clock_start=start,
        deadline=deadline,
        first_detected=first,
        installed_at=installed_at,
        days=days,
        known_exploited=bool(update.get("known_exploited")),
        exploited_due=when(update.get("exploited_due")),
        cves=tuple(str(c) for c in update.get("cves") or ()),
        reason=str(decision.get("reason", "")),
    )


def _host_row(
    name: str, state: _Host, open_items: list[PatchItem], installed: int, as_of: datetime
) -> PatchHost:
    overdue = [i for i in open_items if i.state == "overdue"]
    exempted_late = [
        i for i in open_items if i.state == "exempted" and i.deadline and i.deadline < as_of
    ]
    if state.last_scan is None:
        row_state, reason = (
            "not checked",
            (
                f"every patch scan failed: {state.last_failure[1]}"
                if state.last_failure
                else "no patch scan in the period"
            ),
        )
        if state.last_failure:
            row_state = "failed"
    elif state.last_failure is not None:
        row_state, reason = "failed", f"the last patch scan failed: {state.last_failure[1]}"
    elif state.failed_installs:
        subject, why = next(iter(sorted(state.failed_installs.items())))
        row_state, reason = "failed", f"install of {subject} failed: {why}"
    elif overdue:
        row_state = "pending"
        reason = f"{len(overdue)} update(s) past the deadline, e.g. {overdue[0].name}"
    elif exempted_late:
        row_state, reason = "exempted", "only waived updates are past their deadline"
    else:
        row_state, reason = "compliant", ""
    return PatchHost(
        host=name,
        state=row_state,
        last_scan=state.last_scan,
        pending=len(open_items),
        overdue=len(overdue),
        installed=installed,
        reason=reason,
    )
