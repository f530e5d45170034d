"""The monthly client report as files: HTML and PDF from one Jinja2 template family,
CSV for spreadsheets, JSON for other tools.

Every figure comes from the :class:`~mspauto.sla.model.MonthlyReport`; nothing here
computes an SLA. What this module adds is presentation: times in the client's time
zone, one decimal, ``—`` for a missing value, "no data" for a missing figure (never
100%), trend arrows, and the sentence per area saying whether the contract was met.

Report values are data, never code: templates are files shipped with the package,
autoescaping is on, and a client, host or package name is only ever a value passed to
them. CSV cells that a spreadsheet would run as a formula are neutralised.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import multiprocessing
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Generic, TypeVar
from zoneinfo import ZoneInfo

import jinja2
from markupsafe import Markup

from mspauto.report import charts
from mspauto.report.oscal import write_oscal
from mspauto.sla.model import (
    BackupAsset,
    Band,
    BaselineHost,
    Breach,
    CoverageHost,
    Drift,
    ExceptionItem,
    Headline,
    MonthlyReport,
    PatchHost,
    PatchItem,
    ScheduledItem,
    band_of,
)

__all__ = [
    "FINDINGS_COLUMNS",
    "HOSTS_COLUMNS",
    "PdfRenderer",
    "RenderError",
    "render_html",
    "write_all",
    "write_csv",
    "write_html",
    "write_json",
    "write_pdf",
]

HOSTS_COLUMNS = (
    "host",
    "patch_state",
    "patch_pending",
    "patch_overdue",
    "patch_installed",
    "last_patch_scan",
    "backup_jobs_ok",
    "backup_jobs_total",
    "oldest_last_good_backup",
    "baseline_platform",
    "baseline_score",
    "baseline_previous",
    "baseline_audited",
    "checked_by_every_check",
    "missed_by",
)
"""``hosts.csv``: one row per inventory host."""

FINDINGS_COLUMNS = (
    "area",
    "host",
    "subject",
    "version",
    "state",
    "previous_state",
    "severity",
    "title",
    "cves",
    "clock",
    "clock_start",
    "first_detected",
    "deadline",
    "installed_at",
    "days",
    "known_exploited",
    "exploited_due",
    "provider",
    "last_good",
    "last_integrity",
    "integrity_ok",
    "last_drill",
    "drill_ok",
    "drill_due",
    "breach_start",
    "breach_end",
    "hours",
    "hosts_affected",
    "approved_by",
    "approved_on",
    "expires",
    "due",
    "reason",
)
"""``findings.csv``: one row per patch item, backup asset, RPO breach, failing baseline
control, baseline drift, exception and scheduled run that did not end well; ``area``
says which (``patch``, ``backup``, ``backup breach``, ``baseline failure``, ``baseline
drift``, ``exception``, ``scheduled run``). Times are ISO 8601 in UTC."""

_BAND_THRESHOLDS = (
    (Band.GOOD, "90 or more"),
    (Band.FAIR, "75 to under 90"),
    (Band.POOR, "under 75"),
)
"""What :func:`~mspauto.sla.model.band_of` means, in words for the reader."""

_OPEN_ITEMS_SHOWN = 50
"""Open patch items listed in the PDF, most urgent first (``findings.csv`` has all)."""
_ALL_ASSETS_UP_TO = 25
"""Up to this many backup assets are all listed; beyond, only those needing attention
(the appendix and ``findings.csv`` cover the rest)."""
_LIST_SHOWN = 40
"""Rows of other lists (assets needing attention, drift, unchecked hosts, KEV items,
exceptions) shown before "and N more": the worst first, the CSV has every row, and
WeasyPrint lays out a table row in about 20 ms."""
_EXCEPTION_HOSTS_SHOWN = 6

_INSTALLED = ("installed", "installed late")
_SEVERITY_ORDER = ("critical", "high", "medium", "low", "unrated")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_MINUS = "\u2212"
_MEASURES = ("%", "pts", "days", "h")
"""Units shown with one decimal even when whole (counts of things are not)."""

_Row = TypeVar("_Row")


def write_html(report: MonthlyReport, path: Path) -> None:
    """The report as one self-contained HTML file (styles and charts inline)."""
    path.write_text(render_html(report), encoding="utf-8")


def write_pdf(report: MonthlyReport, path: Path) -> None:
    """The report as an A4 PDF, from the same HTML (print styles: page header with the
    client and month, "Page X of Y" in the footer)."""
    _write_pdf(render_html(report), path)


def write_csv(report: MonthlyReport, folder: Path) -> list[Path]:
    """``hosts.csv`` and ``findings.csv`` in ``folder`` (UTF-8, RFC 4180 line ends)."""
    hosts, findings = folder / "hosts.csv", folder / "findings.csv"
    _write_rows(hosts, HOSTS_COLUMNS, (_host_csv_row(row) for row in _host_rows(report)))
    _write_rows(findings, FINDINGS_COLUMNS, _finding_rows(report))
    return [hosts, findings]


def write_json(report: MonthlyReport, path: Path) -> None:
    """:meth:`MonthlyReport.as_dict` as JSON: sorted keys, indent 2, UTF-8, a final
    newline; the same report always gives the same bytes."""
    text = json.dumps(
        report.as_dict(), sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False
    )
    path.write_bytes(text.encode("utf-8") + b"\n")


def write_all(
    report: MonthlyReport, folder: Path, renderer: PdfRenderer | None = None
) -> list[Path]:
    """Every report file in ``folder`` (created if need be): ``report.html``,
    ``report.pdf``, ``hosts.csv``, ``findings.csv``, ``report.json`` and
    ``assessment-results.json``, in that order. The PDF is laid out by ``renderer``
    (one started for this call if None) while this process writes the rest."""
    if renderer is None:
        with PdfRenderer() as own:
            return write_all(report, folder, own)
    folder.mkdir(parents=True, exist_ok=True)
    html = render_html(report)
    page, pdf, data = folder / "report.html", folder / "report.pdf", folder / "report.json"
    oscal = folder / "assessment-results.json"
    with renderer.writing(html, pdf):
        page.write_text(html, encoding="utf-8")
        tables = write_csv(report, folder)
        write_json(report, data)
        write_oscal(report, oscal)
    return [page, pdf, *tables, data, oscal]


class RenderError(Exception):
    """The PDF renderer's process stopped before the PDF was written."""


class PdfRenderer:
    """A second process that lays out PDFs: WeasyPrint's layout is the longest step of
    a report, and it holds the interpreter it runs in. Its start and imports take a
    second or two, so start it before the report's figures are computed; one serves
    every report made while it is open. A process that may not have children (a
    daemonic worker's) lays the PDFs out itself."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> PdfRenderer:
        if not multiprocessing.current_process().daemon:
            self._start()
        return self

    def _start(self) -> None:
        # spawn, not fork: a forked child would inherit this process's locks.
        self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        self._pool.submit(_import_weasyprint)  # start it now, not at the first PDF

    def __exit__(self, *_: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)

    def _check(self) -> None:
        """A new process if this one died while idle (killed while the figures were
        computed): a round trip that waits for the start-up imports anyway."""
        assert self._pool is not None
        try:
            self._pool.submit(_nothing).result()
        except BrokenProcessPool:
            self._pool.shutdown()
            self._start()

    @contextmanager
    def writing(self, html: str, path: Path) -> Iterator[None]:
        """Lay out ``html`` into ``path`` while the block runs; leaving the block waits
        for the PDF (and raises the renderer's error)."""
        if self._pool is None:
            yield
            _write_pdf(html, path)
            return
        self._check()
        done = self._pool.submit(_write_pdf, html, path)
        try:
            yield
        except BaseException:
            done.cancel()
            raise
        try:
            done.result()
        except BrokenProcessPool as exc:
            self._pool.shutdown()
            self._start()  # for the next report
            raise RenderError(
                f"the PDF renderer stopped before writing {path.name} (out of memory?): {exc}"
            ) from None


def _nothing() -> None:
    """A task that only proves the renderer's process is alive."""


def _import_weasyprint() -> None:
    import weasyprint  # noqa: F401  (slow: imported while the report is computed)


def render_html(report: MonthlyReport) -> str:
    """The report page as HTML text (what :func:`write_html` writes)."""
    template = _environment().get_template("report.html")
    return template.render(r=report, v=_view(report), tz=ZoneInfo(report.period.timezone))


def _write_pdf(html: str, path: Path) -> None:
    import weasyprint  # slow to import; only PDF output needs it

    # The page's only resources are its own charts, as data: URIs. Refusing every other
    # scheme means nothing in the page can make the renderer read a file or call a URL.
    inline_only = weasyprint.urls.URLFetcher(allowed_protocols=frozenset({"data"}))
    weasyprint.HTML(string=html, url_fetcher=inline_only).write_pdf(path)


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("mspauto.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_clipped,
    )
    env.filters.update(
        pct=_pct, one=_one, count=_count, when=_when_in_context, svg_data_uri=_svg_data_uri
    )
    return env


_CLIP = 200
"""Longest text printed as it is in HTML and PDF. Longer (a hostile package name, a
provider's whole log as a reason) is cut: WeasyPrint's line breaking of one long
unbroken word takes time that grows with its square. The CSV and JSON keep it whole."""


def _clipped(value: object) -> object:
    """Every ``{{ value }}`` of the templates, before escaping: long text cut short."""
    if isinstance(value, str) and not isinstance(value, Markup) and len(value) > _CLIP:
        return f"{value[:_CLIP]}… ({len(value):,} characters; the CSV has it whole)"
    return value


# Formatting: what the reader sees for a value.


def _pct(value: float | None) -> str:
    """``84.2%``; ``—`` for None."""
    return "—" if value is None else f"{value:.1f}%"


def _one(value: float | None) -> str:
    """One decimal (days, scores, hours); ``—`` for None."""
    return "—" if value is None else f"{value:.1f}"


def _count(value: int | None) -> str:
    """A whole number; ``—`` for None."""
    return "—" if value is None else str(value)


def _when(value: datetime | None, tz: ZoneInfo) -> str:
    """``2026-11-03 14:05 EST``: the instant in the client's time zone; ``—`` for None.

    A no-break space keeps the time with its zone, so a narrow column breaks the line
    after the date, never before the zone."""
    if value is None:
        return "—"
    return value.astimezone(tz).strftime("%Y-%m-%d %H:%M\u00a0%Z")


def _svg_data_uri(svg: str) -> Markup:
    # Base64 only: nothing to escape, and never clipped like text.
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return Markup("data:image/svg+xml;base64," + data)


@jinja2.pass_context
def _when_in_context(context: jinja2.runtime.Context, value: datetime | None) -> str:
    tz = context["tz"]
    assert isinstance(tz, ZoneInfo)
    return _when(value, tz)


def _figure(value: float | None, unit: str) -> str:
    """A headline figure with its unit; "no data" for None."""
    if value is None:
        return "no data"
    if unit == "%":
        return f"{value:.1f}%"
    return f"{_amount(value, unit)} {unit}"


def _amount(value: float, unit: str) -> str:
    """One decimal, but a whole count of things (hosts, updates) as a whole number."""
    if unit not in _MEASURES and float(value).is_integer():
        return str(int(value))
    return f"{value:.1f}"


def _n(number: int, singular: str, plural: str) -> str:
    return f"{number} {singular if number == 1 else plural}"


def _signed(delta: float, unit: str) -> str:
    return ("+" if delta > 0 else _MINUS) + _amount(abs(delta), unit)


# The view: what the templates show, derived from the report once, in Python.


@dataclass(frozen=True)
class _Trend:
    """How a figure moved since last month, and whether that is good news."""

    arrow: str
    """``▲``, ``▼``, ``→``, or empty when there is nothing to compare."""
    text: str
    tone: str
    """``better``, ``worse``, ``same`` or ``none`` (the stylesheet colours them)."""


def _trend(
    value: float | None, previous: float | None, unit: str, higher_is_better: bool
) -> _Trend:
    """The change from ``previous`` to ``value`` (percentage points for a ``%`` figure)."""
    if value is None or previous is None:
        return _Trend("", "no comparison", "none")
    delta = round(value - previous, 1)
    if delta == 0:
        return _Trend("→", "unchanged", "same")
    better = (delta > 0) == higher_is_better
    change = _signed(delta, unit) + (" pts" if unit == "%" else f" {unit}")
    return _Trend("▲" if delta > 0 else "▼", change, "better" if better else "worse")


@dataclass(frozen=True)
class _HeadlineView:
    """One executive-summary figure, formatted."""

    label: str
    value: str
    previous: str
    trend: _Trend
    band: str
    """The band of a ``%`` figure (its colour); ``none`` for other units."""


@dataclass(frozen=True)
class _Verdict:
    """One area's contract verdict in a sentence."""

    area: str
    status: str
    """``met``, ``not met`` or ``no data``."""
    text: str


@dataclass(frozen=True)
class _KevRow:
    """A known-exploited update against its due date."""

    item: PatchItem
    status: str
    late: bool


@dataclass(frozen=True)
class _AssetRow:
    """A backup asset and what needs attention about it."""

    asset: BackupAsset
    attention: bool
    drill_overdue: bool


@dataclass(frozen=True)
class _HostRow:
    """One inventory host across every area (the appendix and ``hosts.csv``)."""

    host: str
    patch: PatchHost | None
    backup_ok: int
    backup_total: int
    oldest_last_good: datetime | None
    baseline: BaselineHost | None
    every_check: bool
    missed_by: tuple[str, ...]


@dataclass(frozen=True)
class _UncheckedRow:
    """A host some check never reached."""

    host: str
    missed_by: tuple[str, ...]
    reached_by: tuple[str, ...]


@dataclass(frozen=True)
class _ExceptionRow:
    """An exception with its host list shortened for the page."""

    item: ExceptionItem
    hosts: str


@dataclass(frozen=True)
class _Shown(Generic[_Row]):
    """The first rows of a list, and how many more the page leaves out."""

    rows: list[_Row]
    more: int


def _shown(rows: Sequence[_Row], limit: int) -> _Shown[_Row]:
    """``rows`` cut to ``limit``."""
    return _Shown(list(rows[:limit]), max(0, len(rows) - limit))


@dataclass(frozen=True)
class _ReportView:
    """Everything the templates show beyond the report's own fields."""

    month: str
    zone_names: str
    band_thresholds: tuple[tuple[Band, str], ...]
    headlines: list[_HeadlineView]
    verdicts: list[_Verdict]
    headline_chart: str
    latency_chart: str
    baseline_chart: str
    deadlines: dict[str, float]
    past_deadline_total: int
    open_items: _Shown[PatchItem]
    open_total: int
    kev: _Shown[_KevRow]
    breaches: _Shown[Breach]
    assets: list[_AssetRow]
    assets_hidden: int
    assets_more: int
    """Assets needing attention beyond those listed (findings.csv has them)."""
    baseline_trend: _Trend
    drift: _Shown[Drift]
    unchecked: _Shown[_UncheckedRow]
    exceptions: _Shown[_ExceptionRow]
    scheduled: _Shown[ScheduledItem]
    """Scheduled runs skipped, interrupted or failed, the newest first."""
    scheduled_earlier: _Shown[ScheduledItem]
    """Scheduled runs due in an earlier month, recorded in this one."""
    listing: _Listing
    evidence_chains: tuple[str, ...]
    evidence_count: int


def _view(report: MonthlyReport) -> _ReportView:
    tz = ZoneInfo(report.period.timezone)
    patching = report.patching
    open_items = sorted(
        (i for i in patching.items if i.state not in _INSTALLED), key=_urgency(report)
    )
    assets = [_asset_row(a, report) for a in report.backups.assets]
    if len(assets) > _ALL_ASSETS_UP_TO:
        attention = [a for a in assets if a.attention]
        assets_hidden = len(assets) - len(attention)
        # The worst first: not ok, then a failed check or drill, then a drill due.
        attention.sort(
            key=lambda a: (
                a.asset.state == "ok",
                a.asset.integrity_ok is not False and a.asset.drill_ok is not False,
            )
        )
        assets, assets_more = attention[:_LIST_SHOWN], max(0, len(attention) - _LIST_SHOWN)
    else:
        assets_hidden = assets_more = 0
    return _ReportView(
        month=_month_name(report.period.month),
        zone_names=_zone_names(report, tz),
        band_thresholds=_BAND_THRESHOLDS,
        headlines=[_headline(h) for h in report.headlines],
        verdicts=_verdicts(report),
        headline_chart=charts.headline_chart(report),
        latency_chart=charts.latency_chart(report),
        baseline_chart=charts.baseline_chart(report),
        deadlines=_deadlines(report),
        past_deadline_total=sum(patching.past_deadline.values()),
        open_items=_shown(open_items, _OPEN_ITEMS_SHOWN),
        open_total=len(open_items),
        kev=_shown([_kev_row(i, report) for i in patching.kev], _LIST_SHOWN),
        # Ongoing first, then the longest: hourly checks of a big fleet find thousands.
        breaches=_shown(
            sorted(report.backups.breaches, key=lambda b: (b.end is not None, -b.hours)),
            _LIST_SHOWN,
        ),
        assets=assets,
        assets_hidden=assets_hidden,
        assets_more=assets_more,
        baseline_trend=_trend(report.baseline.score, report.baseline.previous, "pts", True),
        drift=_shown(report.baseline.drift, _LIST_SHOWN),
        unchecked=_shown(
            [_unchecked_row(h) for h in sorted(report.coverage.unchecked, key=_by_host)],
            _LIST_SHOWN,
        ),
        exceptions=_shown([_exception_row(e) for e in report.exceptions], _LIST_SHOWN),
        scheduled=_shown(report.schedule.problems[::-1], _LIST_SHOWN),
        scheduled_earlier=_shown(report.schedule.earlier[::-1], _LIST_SHOWN),
        listing=_listing(_host_rows(report), report.baseline.floor),
        evidence_chains=tuple(sorted({e.chain for e in report.evidence})),
        evidence_count=sum(e.count for e in report.evidence),
    )


def _month_name(month: str) -> str:
    return datetime.strptime(month, "%Y-%m").strftime("%B %Y")


def _zone_names(report: MonthlyReport, tz: ZoneInfo) -> str:
    """``EDT/EST``: the zone's abbreviations in force during the month."""
    names: list[str] = []
    for instant in (report.period.start, report.period.end):
        name = instant.astimezone(tz).tzname() or ""
        if name and name not in names:
            names.append(name)
    return "/".join(names)


def _headline(headline: Headline) -> _HeadlineView:
    return _HeadlineView(
        label=headline.label,
        value=_figure(headline.value, headline.unit),
        previous=_figure(headline.previous, headline.unit),
        trend=_trend(headline.value, headline.previous, headline.unit, headline.higher_is_better),
        band=_band_of_figure(headline),
    )


def _band_of_figure(headline: Headline) -> str:
    if headline.value is None:
        return str(Band.NO_DATA)
    if headline.unit != "%" or not headline.higher_is_better:
        return "none"
    return str(band_of(headline.value))


def _verdicts(report: MonthlyReport) -> list[_Verdict]:
    """One sentence per area: was the contract met this month?"""
    return [
        _patching_verdict(report),
        _backup_verdict(report),
        _baseline_verdict(report),
        _coverage_verdict(report),
    ]


def _patching_verdict(report: MonthlyReport) -> _Verdict:
    patching = report.patching
    if patching.compliance_percent is None:
        return _Verdict("Patching", "no data", "No patch scan this month: nothing can be judged.")
    late = {s: n for s, n in patching.past_deadline.items() if n}
    problems: list[str] = []
    if late:
        per = ", ".join(f"{n} {s}" for s, n in sorted(late.items(), key=_severity_first))
        total = sum(late.values())
        past = "update past its deadline" if total == 1 else "updates past their deadline"
        problems.append(f"{total} {past} ({per})")
    if patching.failed:
        problems.append(_n(patching.failed, "device", "devices") + " failed a scan or install")
    if patching.not_checked:
        problems.append(_n(patching.not_checked, "device", "devices") + " not checked")
    if problems:
        return _Verdict("Patching", "not met", "Contract not met: " + "; ".join(problems) + ".")
    return _Verdict(
        "Patching", "met", "Contract met: every update was installed within its deadline."
    )


def _backup_verdict(report: MonthlyReport) -> _Verdict:
    backups = report.backups
    if backups.success_percent is None:
        return _Verdict("Backups", "no data", "No backup check this month: nothing can be judged.")
    problems: list[str] = []
    if backups.success_percent < backups.target_percent:
        problems.append(
            f"{_pct(backups.success_percent)} of checks succeeded, "
            f"under the {_pct(backups.target_percent)} target"
        )
    if backups.breaches:
        breaches = _n(len(backups.breaches), "RPO breach", "RPO breaches")
        problems.append(f"{breaches} (no good backup for over {_one(backups.rpo_hours)} h)")
    if backups.drills_due:
        problems.append(_n(backups.drills_due, "restore drill", "restore drills") + " overdue")
    if problems:
        return _Verdict("Backups", "not met", "Contract not met: " + "; ".join(problems) + ".")
    return _Verdict(
        "Backups",
        "met",
        f"Contract met: {_pct(backups.success_percent)} of checks succeeded "
        f"(target {_pct(backups.target_percent)}), no RPO breach.",
    )


def _baseline_verdict(report: MonthlyReport) -> _Verdict:
    baseline = report.baseline
    if baseline.score is None:
        return _Verdict(
            "Security baseline", "no data", "No baseline audit this month: nothing can be judged."
        )
    if baseline.score < baseline.floor:
        return _Verdict(
            "Security baseline",
            "not met",
            f"Contract not met: score {_one(baseline.score)} is under the floor "
            f"{_one(baseline.floor)}.",
        )
    return _Verdict(
        "Security baseline",
        "met",
        f"Contract met: score {_one(baseline.score)}, floor {_one(baseline.floor)}.",
    )


def _coverage_verdict(report: MonthlyReport) -> _Verdict:
    coverage = report.coverage
    if coverage.percent is None:
        return _Verdict("Coverage", "no data", "No host in the inventory: nothing can be judged.")
    checked = f"{coverage.checked} of {coverage.hosts} hosts checked ({_pct(coverage.percent)})"
    if coverage.percent < coverage.floor:
        return _Verdict(
            "Coverage",
            "not met",
            f"Contract not met: {checked}, under the {_pct(coverage.floor)} floor."
            + _schedule_note(report),
        )
    return _Verdict(
        "Coverage",
        "met",
        f"Contract met: {checked}, floor {_pct(coverage.floor)}." + _schedule_note(report),
    )


def _schedule_note(report: MonthlyReport) -> str:
    """Scheduled runs that did not run fully, in a sentence ('' when none)."""
    schedule = report.schedule
    missed = schedule.skipped + schedule.interrupted
    if not missed:
        return ""
    return (
        f" {missed} of {_n(schedule.total, 'scheduled run', 'scheduled runs')} did not run "
        f"fully ({schedule.skipped} skipped, {schedule.interrupted} interrupted)."
    )


def _deadlines(report: MonthlyReport) -> dict[str, float]:
    raw = report.contract.get("patch_deadlines_days", {})
    return {str(k): float(v) for k, v in raw.items()} if isinstance(raw, dict) else {}


def _severity_rank(severity: str) -> int:
    return _SEVERITY_ORDER.index(severity) if severity in _SEVERITY_ORDER else len(_SEVERITY_ORDER)


def _severity_first(pair: tuple[str, int]) -> int:
    return _severity_rank(pair[0])


def _urgency(report: MonthlyReport) -> Callable[[PatchItem], tuple[Any, ...]]:
    end = report.period.end

    def key(item: PatchItem) -> tuple[Any, ...]:
        return (
            item.state != "overdue",
            _severity_rank(item.severity),
            item.deadline or end,
            _natural(item.host),
            item.name,
        )

    return key


def _kev_row(item: PatchItem, report: MonthlyReport) -> _KevRow:
    due = item.exploited_due
    if item.installed_at is not None:
        late = due is not None and item.installed_at > due
        return _KevRow(item, "installed late" if late else "installed in time", late)
    if due is not None and due < report.period.end:
        return _KevRow(item, "open, past due", True)
    return _KevRow(item, "open", False)


def _asset_row(asset: BackupAsset, report: MonthlyReport) -> _AssetRow:
    drill_overdue = asset.drill_due is None or asset.drill_due <= report.period.end
    attention = (
        asset.state != "ok"
        or asset.integrity_ok is False
        or asset.drill_ok is False
        or drill_overdue
    )
    return _AssetRow(asset, attention, drill_overdue)


def _unchecked_row(host: CoverageHost) -> _UncheckedRow:
    return _UncheckedRow(
        host.host,
        tuple(k for k, ok in sorted(host.checked.items()) if not ok),
        tuple(k for k, ok in sorted(host.checked.items()) if ok),
    )


def _exception_row(item: ExceptionItem) -> _ExceptionRow:
    hosts = ", ".join(item.hosts[:_EXCEPTION_HOSTS_SHOWN])
    if len(item.hosts) > _EXCEPTION_HOSTS_SHOWN:
        hosts += f" and {len(item.hosts) - _EXCEPTION_HOSTS_SHOWN} more"
    return _ExceptionRow(item, hosts or "—")


def _natural(name: str) -> tuple[tuple[int, int, str], ...]:
    """Sort key putting ``web2`` before ``web10``."""
    parts = re.split(r"([0-9]+)", name)
    return tuple(
        (1, int(part), "") if i % 2 else (0, 0, part.casefold()) for i, part in enumerate(parts)
    )


def _by_host(host: CoverageHost) -> tuple[tuple[int, int, str], ...]:
    return _natural(host.host)


def _host_rows(report: MonthlyReport) -> list[_HostRow]:
    """One row per inventory host, in natural name order.

    The inventory is every host a check targets (patching, backups, baseline, coverage)
    less the hosts the evidence names but the inventory no longer holds.
    """
    patch = {h.host: h for h in report.patching.hosts}
    baseline = {h.host: h for h in report.baseline.hosts}
    assets: dict[str, list[BackupAsset]] = {}
    for asset in report.backups.assets:
        assets.setdefault(asset.host, []).append(asset)
    unchecked = {h.host: h for h in report.coverage.unchecked}
    names = (set(patch) | set(baseline) | set(assets) | set(unchecked)) - set(report.coverage.extra)
    rows: list[_HostRow] = []
    for name in sorted(names, key=_natural):
        jobs = assets.get(name, [])
        last_goods = [a.last_good for a in jobs]
        missed = unchecked.get(name)
        rows.append(
            _HostRow(
                host=name,
                patch=patch.get(name),
                backup_ok=sum(a.state == "ok" for a in jobs),
                backup_total=len(jobs),
                # A job that never had a good backup makes the host's oldest unknown.
                oldest_last_good=None
                if not last_goods or None in last_goods
                else min(g for g in last_goods if g is not None),
                baseline=baseline.get(name),
                every_check=missed is None,
                missed_by=()
                if missed is None
                else tuple(k for k, ok in sorted(missed.checked.items()) if not ok),
            )
        )
    return rows


# The appendix: one line of fixed-width text per host. A table cell costs WeasyPrint
# about a millisecond; a 500-host appendix as a ten-column table took seconds, a line of
# text per host takes a fraction of one.


@dataclass(frozen=True)
class _Line:
    """One host's line (more than one when its name is longer than the column)."""

    text: str
    flagged: bool
    """Needs attention: a check missed the host, its patch state is not compliant, a
    backup job is not ok, or its baseline score is under the floor (or unknown)."""


@dataclass(frozen=True)
class _Listing:
    """The appendix: a header line and a line per host, in columns of fixed width."""

    header: str
    lines: list[_Line]


_HOST_WIDTH = 32
_GAP = "  "
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _listing(rows: Sequence[_HostRow], floor: float) -> _Listing:
    width = min(_HOST_WIDTH, max([len("Host"), *(len(r.host) for r in rows)]))
    columns = (
        ("Patch state", 11),
        ("Pending", 7),
        ("Overdue", 7),
        ("Installed", 9),
        ("Backups ok", 10),
        ("Baseline", 8),
        ("Checked", 7),
    )
    header = _GAP.join(
        [
            "Host".ljust(width),
            *(t.ljust(w) if i == 0 else t.rjust(w) for i, (t, w) in enumerate(columns)),
        ]
    )
    lines: list[_Line] = []
    for row in rows:
        patch, baseline = row.patch, row.baseline
        cells = (
            patch.state if patch else "—",
            _count(patch.pending if patch else None),
            _count(patch.overdue if patch else None),
            _count(patch.installed if patch else None),
            f"{row.backup_ok} of {row.backup_total}" if row.backup_total else "—",
            _one(baseline.score) if baseline else "—",
            "yes" if row.every_check else "no",
        )
        # A control character (a newline in a hostile name) would break the columns.
        host = _CONTROL.sub("\ufffd", row.host)
        name = [host[i : i + width] for i in range(0, len(host), width)] or [""]
        first = _GAP.join(
            [name[0].ljust(width)]
            + [
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, (_, w)) in enumerate(zip(cells, columns, strict=True))
            ]
        )
        text = "\n".join([first.rstrip(), *name[1:]])
        flagged = (
            not row.every_check
            or (patch is not None and patch.state != "compliant")
            or row.backup_ok < row.backup_total
            or (baseline is not None and (baseline.score is None or baseline.score < floor))
        )
        lines.append(_Line(text, flagged))
    return _Listing(header.rstrip(), lines)


# CSV


def _cell(value: object) -> str:
    """A value as a CSV cell: text that a spreadsheet would evaluate (``=``, ``+``,
    ``-``, ``@``, tab, carriage return first) gets a leading ``'`` (OWASP's advice)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, tuple | list):
        value = " ".join(str(v) for v in value)
    text = str(value)
    # Leading spaces or line breaks do not stop every spreadsheet from reading a formula.
    return "'" + text if text.lstrip().startswith(_FORMULA_START) else text


def _write_rows(path: Path, columns: Sequence[str], rows: Iterable[dict[str, object]]) -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        unknown = set(row) - set(columns)
        assert not unknown, f"not a column of {path.name}: {sorted(unknown)}"
        writer.writerow([_cell(row.get(column)) for column in columns])
    path.write_bytes(out.getvalue().encode("utf-8"))


def _host_csv_row(row: _HostRow) -> dict[str, object]:
    patch, baseline = row.patch, row.baseline
    return {
        "host": row.host,
        "patch_state": patch.state if patch else None,
        "patch_pending": patch.pending if patch else None,
        "patch_overdue": patch.overdue if patch else None,
        "patch_installed": patch.installed if patch else None,
        "last_patch_scan": patch.last_scan if patch else None,
        "backup_jobs_ok": row.backup_ok,
        "backup_jobs_total": row.backup_total,
        "oldest_last_good_backup": row.oldest_last_good,
        "baseline_platform": baseline.platform if baseline else None,
        "baseline_score": baseline.score if baseline else None,
        "baseline_previous": baseline.previous if baseline else None,
        "baseline_audited": baseline.audited if baseline else None,
        "checked_by_every_check": row.every_check,
        "missed_by": row.missed_by,
    }


def _finding_rows(report: MonthlyReport) -> Iterable[dict[str, object]]:
    for item in report.patching.items:
        yield {
            "area": "patch",
            "host": item.host,
            "subject": item.name,
            "version": item.version,
            "state": item.state,
            "severity": item.severity,
            "cves": item.cves,
            "clock": item.clock,
            "clock_start": item.clock_start,
            "first_detected": item.first_detected,
            "deadline": item.deadline,
            "installed_at": item.installed_at,
            "days": item.days,
            "known_exploited": item.known_exploited,
            "exploited_due": item.exploited_due,
            "reason": item.reason,
        }
    for asset in report.backups.assets:
        yield {
            "area": "backup",
            "host": asset.host,
            "subject": asset.job,
            "state": asset.state,
            "provider": asset.provider,
            "last_good": asset.last_good,
            "last_integrity": asset.last_integrity,
            "integrity_ok": asset.integrity_ok,
            "last_drill": asset.last_drill,
            "drill_ok": asset.drill_ok,
            "drill_due": asset.drill_due,
            "reason": asset.reason,
        }
    for breach in report.backups.breaches:
        yield {
            "area": "backup breach",
            "host": breach.host,
            "subject": breach.job,
            "state": "ongoing" if breach.end is None else "ended",
            "breach_start": breach.start,
            "breach_end": breach.end,
            "hours": breach.hours,
        }
    for failure in report.baseline.top_failing:
        yield {
            "area": "baseline failure",
            "subject": failure.rule,
            "state": "fail",
            "severity": failure.severity,
            "title": failure.title,
            "hosts_affected": failure.hosts,
        }
    for drift in report.baseline.drift:
        yield {
            "area": "baseline drift",
            "host": drift.host,
            "subject": drift.rule,
            "state": drift.after,
            "previous_state": drift.before,
            "title": drift.title,
        }
    for exception in report.exceptions:
        yield {
            "area": "exception",
            "host": exception.hosts,
            "subject": exception.subject,
            "state": exception.kind,
            "hosts_affected": len(exception.hosts),
            "approved_by": exception.approved_by,
            "approved_on": exception.approved_on,
            "expires": exception.expires,
            "reason": exception.reason,
        }
    for tick in [*report.schedule.earlier, *report.schedule.problems]:
        yield {
            "area": "scheduled run",
            "subject": f"{tick.policy}/{tick.action}",
            "state": tick.state,
            "due": tick.due,
            "reason": tick.reason,
        }
