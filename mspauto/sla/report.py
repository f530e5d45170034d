"""One client's month, computed from its evidence chain: :func:`compute_report`.

The inputs are the records of the client's chain up to the end of the month and a
:class:`ReportScope` (which hosts each check kind targets, the contract, the waivers),
taken from the project as it is now: a host added or removed later changes coverage,
never the evidence. Nothing here writes or contacts anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from zoneinfo import ZoneInfo

from mspauto.evidence.records import (
    ChangeResult,
    HostFindings,
    RecordKind,
    ScheduledRun,
    read_change_result,
    read_host_findings,
)
from mspauto.evidence.store import StoredRecord
from mspauto.patching.facts import parse_time
from mspauto.policy.models import Contract, Waiver
from mspauto.sla.backups import BackupMonth
from mspauto.sla.baseline import BaselineMonth
from mspauto.sla.model import (
    BackupSla,
    BaselineSla,
    Coverage,
    CoverageHost,
    EvidenceDigest,
    ExceptionItem,
    Headline,
    MonthlyReport,
    PatchSla,
    Period,
    band_of,
)
from mspauto.sla.patching import PatchMonth
from mspauto.sla.period import month_period, previous_month
from mspauto.sla.schedule import ScheduleMonth

__all__ = ["CHECK_KINDS", "READ_KINDS", "ReportScope", "compute_report", "contract_terms"]

CHECK_KINDS = ("patch", "backup", "baseline")
"""The check kinds a report covers (restore drills count with backups)."""
READ_KINDS = (
    RecordKind.FINDINGS.value,
    RecordKind.CHANGE_RESULT.value,
    RecordKind.LEGACY_BASELINE_RESULT.value,
    RecordKind.SCHEDULED_RUN.value,
)
"""The record kinds a report reads; every one of them recorded in the month is counted
(a record of another check kind too: the month's evidence is bound whole)."""


@dataclass(frozen=True)
class ReportScope:
    """What the report is judged against, from the project."""

    client: str
    client_name: str
    timezone: str
    contract: Contract
    targets: Mapping[str, frozenset[str]]
    """Every inventory host of the client -> the check kinds whose policies select it."""
    waivers: Sequence[tuple[Waiver, tuple[str, ...]]]
    """Each waiver that covers some of the client's hosts, with those hosts."""


@dataclass(frozen=True)
class _Areas:
    patch: PatchMonth
    backup: BackupMonth
    baseline: BaselineMonth
    schedule: ScheduleMonth
    checked: dict[str, set[str]]
    """Per check kind, the hosts it reached in the period."""
    seen: set[str]
    counted: EvidenceDigest
    unreadable: list[int]
    """Records of the period that are not in the form mspauto writes (by seq)."""


def compute_report(
    records: Iterable[StoredRecord],
    scope: ReportScope,
    period: Period,
    previous: Period,
    *,
    now: datetime | None = None,
    version: str = "",
) -> MonthlyReport:
    """The month's report from ``records`` (the client's findings and change results, in
    record order, at least up to the end of ``period``; later ones are ignored).
    ``previous`` is the month before, for trends and drift."""
    now = now or datetime.now(UTC)
    as_of = min(now, period.end)
    month, last = _feed_all(records, scope, period, previous, as_of)
    patching, backups, baseline, coverage = _figures(month, scope)
    before = _figures(last, scope)
    # Last month's baseline score by the same maths (never-audited hosts count).
    baseline = replace(baseline, previous=before[2].score)
    areas = [patching.compliance_percent, backups.success_percent, baseline.score, coverage.percent]
    previous_areas = [
        before[0].compliance_percent,
        before[1].success_percent,
        before[2].score,
        before[3].percent,
    ]
    score = _mean(areas)
    headlines = [
        Headline("Overall score", score, "%", _mean(previous_areas)),
        Headline("Patch compliance", areas[0], "%", previous_areas[0]),
        Headline("Backup success", areas[1], "%", previous_areas[1]),
        Headline("Baseline score", areas[2], "%", previous_areas[2]),
        Headline("Coverage", areas[3], "%", previous_areas[3]),
    ]
    return MonthlyReport(
        client=scope.client,
        client_name=scope.client_name,
        period=period,
        generated_at=now,
        mspauto_version=version,
        contract=contract_terms(scope.contract),
        score=score,
        band=band_of(score),
        headlines=headlines,
        patching=patching,
        backups=backups,
        baseline=baseline,
        coverage=coverage,
        exceptions=_exceptions(scope, period, patching),
        missing_data=_unfinished(period, now) + _missing(_targeted(scope), month),
        evidence=month.counted.ranges(),
        schedule=month.schedule.result(),
    )


def _targeted(scope: ReportScope) -> dict[str, list[str]]:
    """Per check kind, the hosts its policies target."""
    return {k: [h for h, kinds in scope.targets.items() if k in kinds] for k in CHECK_KINDS}


def _figures(
    areas: _Areas, scope: ReportScope
) -> tuple[PatchSla, BackupSla, BaselineSla, Coverage]:
    """One month's figures per area, from what was fed to ``areas``."""
    of, contract = _targeted(scope), scope.contract
    return (
        areas.patch.result(of["patch"]),
        areas.backup.result(
            of["backup"],
            target=contract.backup_success_percent,
            rpo=contract.rpo,
            drill_every=contract.restore_test_every,
        ),
        areas.baseline.result(of["baseline"], contract.baseline_score_floor),
        _coverage(scope, areas),
    )


def contract_terms(contract: Contract) -> dict[str, object]:
    """The contract's terms as the report states them."""
    return {
        "name": contract.name,
        "patch_deadlines_days": {
            s: round(d.total_seconds() / 86400, 2) for s, d in contract.patch_deadlines.items()
        },
        "patch_clock_starts": contract.patch_clock_starts,
        "rpo_hours": round(contract.rpo.total_seconds() / 3600, 2),
        "backup_success_percent": contract.backup_success_percent,
        "restore_test_every_days": round(contract.restore_test_every.total_seconds() / 86400, 2),
        "baseline_score_floor": contract.baseline_score_floor,
        "coverage_floor_percent": contract.coverage_floor_percent,
    }


def _feed_all(
    records: Iterable[StoredRecord],
    scope: ReportScope,
    period: Period,
    previous: Period,
    as_of: datetime,
) -> tuple[_Areas, _Areas]:
    """Both months in one pass over the records (the previous month's figures for the
    trend; the previous month ends where this one starts)."""
    months = [_areas(period, as_of), _areas(previous, previous.end)]
    for record in records:
        at = parse_time(record.recorded_at)
        if at is None or at >= period.end or record.kind not in READ_KINDS:
            continue
        try:
            read = _read(record)
        except _NOT_MSPAUTOS:
            read = None  # not in the form mspauto writes: counted, and said, never used
        for areas in months:
            if at >= areas.patch.period.end:
                continue
            if read is None:
                _count(areas, record, at, None)
                if at >= areas.patch.period.start:
                    areas.unreadable.append(record.seq)
            elif isinstance(read, ChangeResult):
                _count(areas, record, at, None)
                if read.check == "patch":
                    areas.patch.change(at, read)
            elif isinstance(read, ScheduledRun):
                _count(areas, record, at, None)
                if at < areas.patch.period.start:
                    continue
                try:
                    areas.schedule.tick(read)
                except _NOT_MSPAUTOS:
                    areas.unreadable.append(record.seq)
            else:
                header, findings = read
                _count(areas, record, at, header)
                try:
                    _route(areas, at, header[0], header[1], findings)
                except _NOT_MSPAUTOS:  # a field of the wrong type deep in a finding
                    if at >= areas.patch.period.start:
                        areas.unreadable.append(record.seq)
    return months[0], months[1]


_NOT_MSPAUTOS = (KeyError, TypeError, ValueError, AttributeError)
"""What reading a record raises when mspauto did not write it in this form (anyone who
can write the database can add records; ``mspauto evidence verify`` names them)."""

_UNREADABLE_AUDIT = "its evidence record could not be read"


def _read(
    record: StoredRecord,
) -> (
    ChangeResult
    | ScheduledRun
    | tuple[tuple[str, str, bool], HostFindings | Callable[[], HostFindings]]
):
    """A change result, a scheduled run, or a findings record's header and findings."""
    if record.kind == RecordKind.CHANGE_RESULT:
        return read_change_result(record.kind, record.payload)
    if record.kind == RecordKind.SCHEDULED_RUN:
        return ScheduledRun.read(record.payload)
    check, host, unchecked = _header(record)
    # Baseline audits are parsed only for the audits judged (each host's last):
    # 44 findings each, for every host and day, are most of a month's evidence.
    if check == "baseline":
        return (check, host, unchecked), partial(_read_audit, record, host)
    return (check, host, unchecked), read_host_findings(record.kind, record.payload)


def _read_audit(record: StoredRecord, host: str) -> HostFindings:
    """A baseline audit's findings; one that cannot be read leaves its host unaudited."""
    try:
        return read_host_findings(record.kind, record.payload)
    except _NOT_MSPAUTOS:
        return HostFindings("baseline", host, (), _UNREADABLE_AUDIT)


def _areas(period: Period, as_of: datetime) -> _Areas:
    before = month_period(previous_month(period.month), period.timezone)
    return _Areas(
        PatchMonth(period, as_of),
        BackupMonth(period, as_of),
        BaselineMonth(period, before.start),
        ScheduleMonth(period.start),
        {k: set() for k in CHECK_KINDS},
        set(),
        EvidenceDigest(READ_KINDS),
        [],
    )


def _header(record: StoredRecord) -> tuple[str, str, bool]:
    """A findings record's check kind, host and whether the host went unchecked."""
    payload = record.payload
    if record.kind == RecordKind.LEGACY_BASELINE_RESULT:
        check, host, unchecked = "baseline", payload["host"], payload.get("unaudited")
    else:
        check, host, unchecked = payload["check"], payload["host"], payload.get("unchecked")
    if not isinstance(check, str) or not isinstance(host, str):
        raise TypeError("check and host are not text")
    return check, host, bool(unchecked)


def _route(
    areas: _Areas,
    at: datetime,
    check: str,
    host: str,
    found: HostFindings | Callable[[], HostFindings],
) -> None:
    if callable(found):  # a baseline audit, read only if it is one the month judges
        areas.baseline.audit(at, host, found)
        return
    if check == "patch":
        areas.patch.scan(at, found)
    elif check == "backup":
        areas.backup.check(at, found)
    elif check == "backup-drill":
        areas.backup.drill(at, found)


def _count(
    areas: _Areas, record: StoredRecord, at: datetime, header: tuple[str, str, bool] | None
) -> None:
    period = areas.patch.period
    if not period.start <= at < period.end:
        return
    areas.counted.add(record.chain, record.seq, record.hash)
    if header is None:
        return
    check, host, unchecked = header
    areas.seen.add(host)
    if check in CHECK_KINDS and not unchecked:
        areas.checked[check].add(host)


def _coverage(scope: ReportScope, areas: _Areas) -> Coverage:
    unchecked = []
    for host, kinds in scope.targets.items():
        reached = {k: host in areas.checked[k] for k in CHECK_KINDS if k in kinds}
        if not reached or not all(reached.values()):
            unchecked.append(CoverageHost(host, reached))
    total = len(scope.targets)
    checked = total - len(unchecked)
    return Coverage(
        hosts=total,
        checked=checked,
        percent=round(100 * checked / total, 1) if total and areas.seen else None,
        floor=scope.contract.coverage_floor_percent,
        unchecked=unchecked,
        extra=sorted(areas.seen - set(scope.targets)),
    )


def _exceptions(scope: ReportScope, period: Period, patching: PatchSla) -> list[ExceptionItem]:
    # The month's first and last day where the client is (waivers are dated there).
    zone = ZoneInfo(period.timezone)
    zone_day = (
        period.start.astimezone(zone).date(),
        (period.end - timedelta(microseconds=1)).astimezone(zone).date(),
    )
    items = [
        ExceptionItem(
            "waiver",
            waiver.subject,
            hosts,
            waiver.justification,
            waiver.approved_by,
            waiver.approved_on.isoformat(),
            waiver.expires.isoformat(),
        )
        for waiver, hosts in scope.waivers
        if waiver.approved_on <= zone_day[1] and waiver.expires >= zone_day[0]
    ]
    grouped: dict[tuple[str, str, str], list[str]] = {}
    for item in patching.items:
        kind = {"hold": "hold", "defer": "deferral", "reject": "rejection"}.get(item.action)
        if kind and item.installed_at is None:
            grouped.setdefault((kind, f"package:{item.name}", item.reason), []).append(item.host)
    items.extend(
        ExceptionItem(kind, subject, tuple(sorted(set(hosts))), reason)
        for (kind, subject, reason), hosts in sorted(grouped.items())
    )
    return items


def _unfinished(period: Period, now: datetime) -> list[str]:
    if now >= period.end:
        return []
    local = now.astimezone(ZoneInfo(period.timezone))
    return [
        f"the month is not over: figures are as of {local:%Y-%m-%d %H:%M %Z}, deadlines judged then"
    ]


def _missing(of: Mapping[str, list[str]], areas: _Areas) -> list[str]:
    words = {"patch": "patch scan", "backup": "backup check", "baseline": "baseline audit"}
    missing = []
    if not areas.counted.ranges():
        missing.append("no evidence at all was recorded for this client in the month")
    if areas.unreadable:
        missing.append(
            f"{len(areas.unreadable)} evidence records of the month could not be read (not "
            "in the form mspauto writes; first: record "
            f"{areas.unreadable[0]}): run 'mspauto evidence verify'"
        )
    for kind in CHECK_KINDS:
        if of[kind] and not areas.checked[kind]:
            missing.append(f"no {words[kind]} reached any host in the month")
        elif of[kind]:
            never = len(of[kind]) - len(areas.checked[kind] & set(of[kind]))
            if never:
                missing.append(
                    f"{never} of {len(of[kind])} hosts had no {words[kind]} in the month"
                )
    return missing


def _mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(sum(known) / len(known), 1) if known else None
