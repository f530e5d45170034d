"""The monthly report's figures, as every renderer (HTML, PDF, CSV, JSON, OSCAL) reads them.

Everything here is computed from evidence records only. A figure that the evidence
cannot support is ``None`` ("no data"), never 100%: a month nobody checked must not
look like a perfect month. Times are aware datetimes in UTC; the period says which
client time zone the month was cut in.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

__all__ = [
    "BackupAsset",
    "BackupSla",
    "Band",
    "BaselineHost",
    "BaselineSla",
    "Breach",
    "ControlFailure",
    "Coverage",
    "CoverageHost",
    "Drift",
    "EvidenceDigest",
    "EvidenceRange",
    "ExceptionItem",
    "Headline",
    "LatencyStats",
    "MonthlyReport",
    "PatchHost",
    "PatchItem",
    "PatchSla",
    "Period",
    "PlatformScore",
    "ScheduledItem",
    "ScheduledRuns",
    "band_of",
    "to_jsonable",
]


class Band(StrEnum):
    """How a score reads at a glance."""

    GOOD = "good"
    """90 or more."""
    FAIR = "fair"
    """75 to under 90."""
    POOR = "poor"
    """Under 75."""
    NO_DATA = "no data"


def band_of(score: float | None) -> Band:
    """The band a 0..100 score falls in (None: no data)."""
    if score is None:
        return Band.NO_DATA
    if score >= 90:
        return Band.GOOD
    if score >= 75:
        return Band.FAIR
    return Band.POOR


@dataclass(frozen=True)
class Period:
    """One calendar month in the client's time zone."""

    month: str
    """``YYYY-MM``."""
    timezone: str
    start: datetime
    """The month's first instant (UTC)."""
    end: datetime
    """The next month's first instant (UTC): the period is ``start <= t < end``."""


@dataclass(frozen=True)
class EvidenceRange:
    """The records of one chain the report counted: every record of one of ``kinds``
    recorded within the period. Anyone with the store selects the same records again and
    recomputes ``count`` and ``sha256``; the signed manifest carries both, so the report
    is bound to exactly these records without listing each one."""

    chain: str
    kinds: tuple[str, ...]
    count: int
    first_seq: int
    first_hash: str
    last_seq: int
    last_hash: str
    sha256: str
    """SHA-256 over ``<seq> <hash>`` and a newline for each counted record, in ``seq``
    order (:class:`EvidenceDigest`)."""


class EvidenceDigest:
    """Builds :class:`EvidenceRange` values from records fed in ``seq`` order, holding
    nothing per record (a month can count hundreds of thousands)."""

    def __init__(self, kinds: tuple[str, ...]) -> None:
        self.kinds = kinds
        self._chains: dict[str, tuple[int, int, str, int, str, Any]] = {}

    def add(self, chain: str, seq: int, digest: str) -> None:
        """Count one record (records of a chain must come in ascending ``seq``)."""
        line = f"{seq} {digest}\n".encode()
        known = self._chains.get(chain)
        if known is None:
            self._chains[chain] = (1, seq, digest, seq, digest, hashlib.sha256(line))
            return
        count, first, first_hash, last, _, running = known
        if seq <= last:
            raise ValueError(f"{chain} record {seq} after {last}: records must come in order")
        running.update(line)
        self._chains[chain] = (count + 1, first, first_hash, seq, digest, running)

    def ranges(self) -> list[EvidenceRange]:
        """One range per chain that had records, by chain name."""
        return [
            EvidenceRange(
                chain, self.kinds, count, first, first_hash, last, last_hash, running.hexdigest()
            )
            for chain, (count, first, first_hash, last, last_hash, running) in sorted(
                self._chains.items()
            )
        ]


@dataclass(frozen=True)
class Headline:
    """One figure of the executive summary, with last month's for the trend."""

    label: str
    value: float | None
    unit: str
    """``%``, ``days``, ``hosts``..."""
    previous: float | None = None
    higher_is_better: bool = True


@dataclass(frozen=True)
class LatencyStats:
    """Days to patch for one severity, over the updates installed in the month."""

    severity: str
    count: int
    median_days: float | None
    p90_days: float | None
    """Nearest-rank 90th percentile: the smallest value at least 90% of the others do
    not exceed."""
    late: int
    """Installed after the contract's deadline."""


@dataclass(frozen=True)
class PatchItem:
    """One update on one host, as the month saw it."""

    host: str
    name: str
    version: str
    severity: str
    classification: str
    state: str
    """``installed``, ``installed late``, ``pending``, ``overdue``, ``exempted``
    (a waiver covers it) or ``excepted`` (held, rejected or deferred: listed, and
    still counted when overdue)."""
    action: str
    """The policy's decision at the last scan (``install``, ``manual``, ``hold``...)."""
    clock: str
    """What the deadline counts from: ``release`` or ``detection``."""
    clock_start: datetime | None
    deadline: datetime | None
    first_detected: datetime | None
    installed_at: datetime | None
    days: float | None
    """Installed items: days from the clock's start to the install. Open items: days
    open at the end of the period."""
    known_exploited: bool = False
    exploited_due: datetime | None = None
    cves: tuple[str, ...] = ()
    reason: str = ""


@dataclass(frozen=True)
class PatchHost:
    """One host's patch state at its last scan of the month."""

    host: str
    state: str
    """``compliant``, ``pending`` (something past its deadline), ``failed`` (the last
    scan or install failed), ``exempted`` (only waived items late) or ``not checked``."""
    last_scan: datetime | None
    pending: int
    overdue: int
    installed: int
    reason: str = ""


@dataclass(frozen=True)
class PatchSla:
    """Patching against the contract's deadlines."""

    devices: int
    compliant: int
    pending: int
    failed: int
    exempted: int
    not_checked: int
    compliance_percent: float | None
    """(devices - pending - failed - exempted - not checked) / devices."""
    missing_critical: int
    """Devices still missing a critical or high update at their last scan."""
    updates_installed: int
    past_deadline: dict[str, int]
    """Per severity: items installed late in the month plus items open past deadline."""
    latency: list[LatencyStats]
    kev: list[PatchItem]
    hosts: list[PatchHost]
    items: list[PatchItem]


@dataclass(frozen=True)
class Breach:
    """A time a backup job had no backup younger than the RPO."""

    host: str
    job: str
    start: datetime
    end: datetime | None
    """None: still in breach at the end of the period."""
    hours: float
    """Within the period."""


@dataclass(frozen=True)
class BackupAsset:
    """One backup job on one host: its latest state in the month."""

    host: str
    job: str
    provider: str
    state: str
    """``ok``, ``stale``, ``failed``, ``missing``, ``unchecked``, ``waived`` or
    ``not checked``."""
    last_good: datetime | None
    checks: int
    checks_ok: int
    last_integrity: datetime | None
    integrity_ok: bool | None
    last_drill: datetime | None
    drill_ok: bool | None
    drill_due: datetime | None
    reason: str = ""


@dataclass(frozen=True)
class BackupSla:
    """Backups against the contract's RPO and restore-test cadence."""

    checks: int
    checks_ok: int
    success_percent: float | None
    target_percent: float
    rpo_hours: float
    breaches: list[Breach]
    assets: list[BackupAsset]
    integrity_checks: int
    integrity_failed: int
    drills: int
    drills_failed: int
    drills_due: int
    """Jobs whose last restore drill is older than the contract allows (or never ran)."""


@dataclass(frozen=True)
class BaselineHost:
    """One host's hardening score at its last audit of the month."""

    host: str
    platform: str
    """The rule packs audited (e.g. ``debian-cis``)."""
    score: float | None
    previous: float | None
    passed: int
    failed: int
    errors: int
    waived: int
    audited: datetime | None
    reason: str = ""


@dataclass(frozen=True)
class PlatformScore:
    """The score of every host audited against one platform's packs."""

    platform: str
    hosts: int
    score: float | None


@dataclass(frozen=True)
class ControlFailure:
    """A rule failing on some hosts at their last audit."""

    rule: str
    title: str
    severity: str
    hosts: int


@dataclass(frozen=True)
class Drift:
    """A rule whose verdict on a host changed since the previous month's last audit."""

    host: str
    rule: str
    title: str
    before: str
    after: str


@dataclass(frozen=True)
class BaselineSla:
    """Hardening against the contract's score floor."""

    score: float | None
    previous: float | None
    floor: float
    hosts: list[BaselineHost]
    platforms: list[PlatformScore]
    top_failing: list[ControlFailure]
    drift: list[Drift]


@dataclass(frozen=True)
class CoverageHost:
    """One inventory host: which checks reached it in the month."""

    host: str
    checked: dict[str, bool]
    """Per check kind that targets the host (``patch``, ``backup``, ``baseline``)."""


@dataclass(frozen=True)
class Coverage:
    """Hosts in inventory against hosts actually checked in the month."""

    hosts: int
    checked: int
    """Hosts every targeting check reached at least once."""
    percent: float | None
    floor: float
    unchecked: list[CoverageHost]
    """Hosts some targeting check never reached (they count against compliance)."""
    extra: list[str]
    """Hosts in the evidence but no longer in the inventory."""


@dataclass(frozen=True)
class ExceptionItem:
    """A waiver, hold or deferral in force during the month."""

    kind: str
    """``waiver``, ``hold`` or ``deferral``."""
    subject: str
    hosts: tuple[str, ...]
    reason: str
    approved_by: str | None = None
    approved_on: str | None = None
    expires: str | None = None


@dataclass(frozen=True)
class ScheduledItem:
    """A scheduled run of the month that did not end well: skipped (never run),
    interrupted or failed."""

    due: datetime
    policy: str
    action: str
    state: str
    reason: str
    exit_code: int | None = None


@dataclass(frozen=True)
class ScheduledRuns:
    """What the control node's schedule did in the month: each tick recorded as run
    (ok, failed, interrupted) or skipped, from its ``scheduled_run`` records."""

    total: int = 0
    ok: int = 0
    failed: int = 0
    """Runs that ended with an error or found problems (the areas above say which)."""
    interrupted: int = 0
    skipped: int = 0
    """Ticks never run: missed while the control node was down, or their job's previous
    run was still going."""
    problems: list[ScheduledItem] = field(default_factory=list)
    """The skipped, interrupted and failed ones, oldest first."""
    earlier: list[ScheduledItem] = field(default_factory=list)
    """Ticks due in an earlier month but recorded in this one (the control node was
    down across the month's end, and recorded them when it came back): listed, not
    counted above."""


@dataclass(frozen=True)
class MonthlyReport:
    """Everything one client's monthly report shows, and the evidence it rests on."""

    client: str
    client_name: str
    period: Period
    generated_at: datetime
    mspauto_version: str
    contract: dict[str, Any]
    """The contract's terms as judged (deadlines in days, RPO in hours...)."""
    score: float | None
    band: Band
    headlines: list[Headline]
    patching: PatchSla
    backups: BackupSla
    baseline: BaselineSla
    coverage: Coverage
    exceptions: list[ExceptionItem]
    missing_data: list[str]
    """What the month lacks, in words (``no patch scan in the month``...)."""
    evidence: list[EvidenceRange] = field(default_factory=list)
    """Per chain, the records counted (normally just the client's own chain)."""
    schedule: ScheduledRuns = field(default_factory=ScheduledRuns)
    """The control node's scheduled runs of the month (none when nothing is scheduled)."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (datetimes ISO 8601, enums as their values)."""
        out = to_jsonable(self)
        assert isinstance(out, dict)
        return out


def to_jsonable(value: Any) -> Any:
    """A dataclass tree as plain JSON values."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, StrEnum):
        return str(value)
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value
