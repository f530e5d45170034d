"""The monthly SLA maths on hand-built evidence with answers worked out by hand."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from mspauto.evidence.records import (
    ChangeOutcome,
    ChangeResult,
    Finding,
    FindingStatus,
    HostFindings,
    RecordKind,
    ScheduledRun,
)
from mspauto.evidence.store import StoredRecord
from mspauto.policy.models import Contract, Waiver
from mspauto.sla.model import Band
from mspauto.sla.patching import nearest_rank
from mspauto.sla.period import MonthError, month_period, previous_month
from mspauto.sla.report import ReportScope, compute_report

NOV = month_period("2026-11", "America/New_York")
OCT = month_period("2026-10", "America/New_York")


def day(n: float, month: int = 11) -> datetime:
    """Day ``n`` of the month (1 = its first local midnight in New York, EST)."""
    base = datetime(2026, month, 1, 5, tzinfo=UTC)  # 00:00 EST
    return base + timedelta(days=n - 1)


class Chain:
    """Records of one client's chain, in order."""

    def __init__(self) -> None:
        self.records: list[StoredRecord] = []

    def add(self, at: datetime, kind: str, payload: dict[str, Any], host: str = "") -> None:
        seq = len(self.records) + 1
        self.records.append(
            StoredRecord(
                "acme", seq, kind, f"run-{seq}", host, at.isoformat(), payload, "", f"{seq:064x}"
            )
        )

    def findings(self, at: datetime, found: HostFindings) -> None:
        self.add(at, RecordKind.FINDINGS, found.payload(), found.host)

    def __iter__(self) -> Iterator[StoredRecord]:
        return iter(self.records)


def contract(**terms: Any) -> Contract:
    return Contract.model_validate({"kind": "contract", "name": "standard", **terms})


def scope(targets: Mapping[str, Sequence[str]], **kwargs: Any) -> ReportScope:
    return ReportScope(
        client="acme",
        client_name="Acme Corp",
        timezone="America/New_York",
        contract=kwargs.pop("terms", contract()),
        targets={h: frozenset(k) for h, k in targets.items()},
        waivers=kwargs.pop("waivers", ()),
    )


def update(
    name: str,
    *,
    severity: str = "high",
    released: datetime | None = None,
    action: str = "install",
    deadline: datetime | None = None,
    first: datetime | None = None,
    candidate: str = "2.0",
    installed: str = "1.0",
    kev_due: datetime | None = None,
) -> Finding:
    clock = "release" if released else "detection"
    return Finding(
        subject=name,
        policy="linux",
        status=FindingStatus.WAIVED if action == "waived" else FindingStatus.FAIL,
        detail={
            "manager": "apt",
            "update": {
                "name": name,
                "candidate": candidate,
                "installed": installed,
                "severity": severity,
                "classification": "security",
                "released": released.isoformat() if released else None,
                "known_exploited": kev_due is not None,
                "exploited_due": kev_due.isoformat() if kev_due else None,
                "cves": ["CVE-2026-0001"],
            },
            "decision": {
                "action": action,
                "reason": f"{action} by rule 1",
                "first_detected": (first or released or day(1)).isoformat(),
                "clock": clock,
                "deadline": deadline.isoformat() if deadline else None,
            },
        },
    )


def patch_scan(host: str, *items: Finding, unchecked: str | None = None) -> HostFindings:
    """A scan as PatchCheck records it: the updates, and the host's reboot state."""
    if unchecked:
        return HostFindings("patch", host, (), unchecked)
    reboot = Finding("reboot", "linux", FindingStatus.PASS, detail={"manager": "apt"})
    return HostFindings("patch", host, (*items, reboot))


def installed(host: str, *names: str, failed: Sequence[str] = ()) -> dict[str, Any]:
    changes = [
        ChangeOutcome(n, f"install {n}", "installed", FindingStatus.FAIL, FindingStatus.PASS)
        for n in names
    ] + [
        ChangeOutcome(n, f"install {n}", "failed", FindingStatus.FAIL, FindingStatus.FAIL, "E: x")
        for n in failed
    ]
    return ChangeResult("patch", host, "before", "install", "after", tuple(changes)).payload()


# --- Periods ------------------------------------------------------------------------


def test_a_month_is_cut_at_local_midnights_across_a_dst_change() -> None:
    # New York leaves DST on 2026-11-01 at 02:00: November starts at EDT midnight
    # (04:00 UTC) and ends at EST midnight (05:00 UTC), so it is 30 days and an hour.
    assert NOV.start == datetime(2026, 11, 1, 4, tzinfo=UTC)
    assert NOV.end == datetime(2026, 12, 1, 5, tzinfo=UTC)
    assert NOV.end - NOV.start == timedelta(days=30, hours=1)
    assert OCT.end == NOV.start


def test_a_month_far_from_utc_starts_on_the_previous_utc_day() -> None:
    # Auckland enters DST on 2026-09-27: September starts at +12 and ends at +13.
    september = month_period("2026-09", "Pacific/Auckland")
    assert september.start == datetime(2026, 8, 31, 12, tzinfo=UTC)
    assert september.end == datetime(2026, 9, 30, 11, tzinfo=UTC)
    kiritimati = month_period("2026-01", "Pacific/Kiritimati")  # UTC+14
    assert kiritimati.start == datetime(2025, 12, 31, 10, tzinfo=UTC)


def test_months_are_checked_and_counted_back() -> None:
    assert previous_month("2026-01") == "2025-12"
    assert previous_month("2026-11") == "2026-10"
    for bad in ("2026-13", "2026-1", "26-11", "2026-11-01", "last"):
        with pytest.raises(MonthError, match="YYYY-MM"):
            month_period(bad, "UTC")


def test_a_record_belongs_to_the_month_of_the_clients_zone() -> None:
    """A scan at 2026-08-31 12:30 UTC is September in Auckland, not August."""
    chain = Chain()
    chain.findings(datetime(2026, 8, 31, 12, 30, tzinfo=UTC), patch_scan("web1"))
    september = month_period("2026-09", "Pacific/Auckland")
    august = month_period("2026-08", "Pacific/Auckland")
    report = compute_report(
        chain, scope({"web1": ["patch"]}), september, august, now=datetime(2026, 10, 5, tzinfo=UTC)
    )
    assert report.patching.compliant == 1
    assert report.headlines[1].previous is None  # August saw nothing


# --- Patching -----------------------------------------------------------------------


def test_nearest_rank_percentile() -> None:
    assert nearest_rank([], 90) is None
    assert nearest_rank([5.0], 90) == 5.0
    assert nearest_rank([float(n) for n in range(1, 11)], 90) == 9.0
    assert nearest_rank([float(n) for n in range(1, 12)], 90) == 10.0
    assert nearest_rank([3.0, 1.0, 2.0], 50) == 2.0


def patching_month() -> Chain:
    chain = Chain()
    # web1: openssl released Nov 1, found Nov 2, installed by a patch run Nov 4 (3 days),
    # then bash found Nov 5 and gone (installed by someone else) at the Nov 20 scan.
    openssl = update("openssl", released=day(1), deadline=day(15))
    chain.findings(day(2), patch_scan("web1", openssl))
    chain.add(day(4), RecordKind.CHANGE_RESULT, installed("web1", "openssl"), "web1")
    chain.findings(day(4), patch_scan("web1"))
    bash = update("bash", severity="medium", released=day(5), deadline=day(35))
    chain.findings(day(5), patch_scan("web1", bash))
    chain.findings(day(20), patch_scan("web1"))
    # web2: curl (critical) released in October, deadline Nov 10, still there: overdue.
    # Its KEV due date (Nov 8) passed too.
    curl = update(
        "curl", severity="critical", released=day(20, 10), deadline=day(10), kev_due=day(8)
    )
    chain.findings(day(3), patch_scan("web2", curl))
    chain.findings(day(25), patch_scan("web2", curl))
    # web3: scanned fine in October, but its November scan could not run.
    chain.findings(day(5, 10), patch_scan("web3"))
    chain.findings(day(12), patch_scan("web3", unchecked="unreachable: no route to host"))
    # web4: only a waived update past its deadline.
    waived = update("libfoo", released=day(1, 10), deadline=day(15, 10), action="waived")
    chain.findings(day(6), patch_scan("web4", waived))
    # web5: nothing at all in November (web6 is not targeted by any patch policy).
    # web6: installed late: zlib (low) released Oct 1, deadline Oct 31, installed Nov 2.
    zlib = update("zlib", severity="low", released=day(1, 10), deadline=day(31, 10))
    chain.findings(day(1, 10), patch_scan("web6", zlib))
    chain.add(day(2), RecordKind.CHANGE_RESULT, installed("web6", "zlib"), "web6")
    chain.findings(day(2), patch_scan("web6"))
    # A record after the month is ignored.
    chain.findings(day(2, 12), patch_scan("web2"))
    return chain


def test_patch_compliance_counts_each_device_once() -> None:
    targets = {f"web{n}": ["patch"] for n in range(1, 7)}
    report = compute_report(
        patching_month(), scope(targets), NOV, OCT, now=datetime(2026, 12, 5, tzinfo=UTC)
    )
    p = report.patching
    states = {h.host: h.state for h in p.hosts}
    assert states == {
        "web1": "compliant",
        "web2": "pending",
        "web3": "failed",
        "web4": "exempted",
        "web5": "not checked",
        "web6": "compliant",
    }
    assert (p.devices, p.compliant, p.pending, p.failed, p.exempted, p.not_checked) == (
        6,
        2,
        1,
        1,
        1,
        1,
    )
    # (6 - 1 pending - 1 failed - 1 exempted - 1 not checked) / 6
    assert p.compliance_percent == 33.3
    assert p.missing_critical == 1  # web2's curl (web4's waived libfoo does not count)
    assert p.updates_installed == 3
    by_severity = {s.severity: s for s in p.latency}
    assert (by_severity["high"].count, by_severity["high"].median_days) == (1, 3.0)
    assert by_severity["medium"].median_days == 15.0  # bash: Nov 5 -> seen gone Nov 20
    assert (by_severity["low"].count, by_severity["low"].late) == (1, 1)
    assert p.past_deadline == {"critical": 1, "high": 0, "medium": 0, "low": 1, "unrated": 0}
    [kev] = p.kev
    assert (kev.name, kev.state, kev.exploited_due) == ("curl", "overdue", day(8))
    curl = next(i for i in p.items if i.name == "curl")
    assert curl.clock == "release" and curl.clock_start == day(20, 10)
    assert curl.days == pytest.approx((NOV.end - day(20, 10)).total_seconds() / 86400, abs=0.1)


def test_the_clock_starts_at_first_detection_when_the_release_is_unknown() -> None:
    chain = Chain()
    found = update("vendor-agent", released=None, first=day(3), deadline=day(17))
    chain.findings(day(3), patch_scan("web1", found))
    chain.findings(day(9), patch_scan("web1"))
    report = compute_report(chain, scope({"web1": ["patch"]}), NOV, OCT, now=day(40))
    [item] = report.patching.items
    assert (item.clock, item.clock_start, item.days, item.state) == (
        "detection",
        day(3),
        6.0,
        "installed",
    )


def test_a_failed_install_makes_the_device_failed_until_a_scan_shows_it_gone() -> None:
    chain = Chain()
    chain.findings(day(2), patch_scan("web1", update("openssl", released=day(1), deadline=day(15))))
    chain.add(day(3), RecordKind.CHANGE_RESULT, installed("web1", failed=["openssl"]), "web1")
    report = compute_report(chain, scope({"web1": ["patch"]}), NOV, OCT, now=day(5))
    assert report.patching.hosts[0].state == "failed"
    assert "openssl" in report.patching.hosts[0].reason
    chain.findings(day(6), patch_scan("web1"))
    report = compute_report(chain, scope({"web1": ["patch"]}), NOV, OCT, now=day(7))
    assert report.patching.hosts[0].state == "compliant"


def test_a_month_still_running_judges_deadlines_now_not_at_its_end() -> None:
    chain = Chain()
    chain.findings(day(2), patch_scan("web1", update("openssl", released=day(1), deadline=day(15))))
    early = compute_report(chain, scope({"web1": ["patch"]}), NOV, OCT, now=day(10))
    late = compute_report(chain, scope({"web1": ["patch"]}), NOV, OCT, now=day(20))
    assert early.missing_data[0] == (
        "the month is not over: figures are as of 2026-11-10 00:00 EST, deadlines judged then"
    )
    assert early.patching.hosts[0].state == "compliant"
    assert early.patching.items[0].state == "pending"
    assert late.patching.hosts[0].state == "pending"


# --- Backups ------------------------------------------------------------------------


def backup(
    host: str, job: str, state: str, last: datetime | None, *, integrity: Any = None
) -> HostFindings:
    status = {"ok": FindingStatus.PASS, "unchecked": FindingStatus.ERROR}.get(
        state, FindingStatus.FAIL
    )
    return HostFindings(
        "backup",
        host,
        (
            Finding(
                job,
                "backups",
                status,
                reason=f"{state} reason",
                detail={
                    "provider": "restic",
                    "state": state,
                    "rpo_seconds": 86400,
                    "last_success": last.isoformat() if last else None,
                    "integrity": integrity,
                },
            ),
        ),
    )


def drill(host: str, job: str, ok: bool) -> HostFindings:
    status = FindingStatus.PASS if ok else FindingStatus.FAIL
    return HostFindings("backup-drill", host, (Finding(job, "backups", status),))


def test_backup_success_breaches_integrity_and_drills() -> None:
    chain = Chain()
    # web1 "etc": good backups daily at 01:00 until Nov 10, then none until Nov 12 07:00.
    for n in range(1, 11):
        chain.findings(day(n + 0.5), backup("web1", "etc", "ok", day(n + 1 / 24)))
    # Checks on Nov 11 and 12 at noon still see the Nov 10 01:00 backup: breach from
    # Nov 11 01:00 (10 01:00 + 24 h) to the next good backup, Nov 13 07:00 = 54 h.
    chain.findings(day(11.5), backup("web1", "etc", "stale", day(10 + 1 / 24)))
    chain.findings(day(12.5), backup("web1", "etc", "stale", day(10 + 1 / 24)))
    chain.findings(
        day(13.5),
        backup(
            "web1",
            "etc",
            "ok",
            day(13 + 7 / 24),
            integrity={"at": day(13.5).isoformat(), "ok": True, "message": "no errors"},
        ),
    )
    # web2 "db": never had a backup: in breach from its first check, still at the end.
    chain.findings(day(20), backup("web2", "db", "missing", None))
    chain.findings(day(21), backup("web2", "db", "unchecked", None))
    # Drills: web1 passed one in July (past the 90-day cadence); web2 never had one;
    # a failed drill in November.
    chain.findings(day(1, 7), drill("web1", "etc", True))
    chain.findings(day(14), drill("web2", "db", False))
    report = compute_report(
        chain,
        scope({"web1": ["backup"], "web2": ["backup"]}),
        NOV,
        OCT,
        now=datetime(2026, 12, 2, tzinfo=UTC),
    )
    b = report.backups
    assert (b.checks, b.checks_ok) == (15, 11)
    assert b.success_percent == round(100 * 11 / 15, 1)
    assert b.target_percent == 95 and b.rpo_hours == 24
    first, second = b.breaches
    assert (first.host, first.start, first.end, first.hours) == (
        "web1",
        day(11 + 1 / 24),
        day(13 + 7 / 24),
        54.0,
    )
    assert (second.host, second.start, second.end) == ("web2", day(20), None)
    assert second.hours == pytest.approx((NOV.end - day(20)).total_seconds() / 3600, abs=0.1)
    assert (b.integrity_checks, b.integrity_failed) == (1, 0)
    assert (b.drills, b.drills_failed, b.drills_due) == (1, 1, 2)
    web1 = next(a for a in b.assets if a.host == "web1")
    assert (web1.state, web1.last_good, web1.last_integrity) == ("ok", day(13 + 7 / 24), day(13.5))
    assert web1.last_drill == day(1, 7) and web1.drill_due == day(1, 7) + timedelta(days=90)


# --- Baselines and coverage ---------------------------------------------------------


def rules(host: str, **verdicts: str) -> HostFindings:
    return HostFindings(
        "baseline",
        host,
        tuple(
            Finding(
                rule,
                "cis",
                FindingStatus(status),
                detail={"title": rule.upper(), "pack": "debian-cis", "severity": "high"},
            )
            for rule, status in verdicts.items()
        ),
    )


def test_baseline_scores_top_failing_and_drift() -> None:
    chain = Chain()
    chain.findings(day(20, 10), rules("web1", a="pass", b="pass", c="fail", d="pass"))
    chain.findings(day(20, 10), rules("web2", a="pass", b="pass", c="pass", d="pass"))
    chain.findings(day(3), rules("web1", a="pass", b="fail", c="fail", d="pass"))
    chain.findings(day(28), rules("web1", a="fail", b="fail", c="pass", d="pass"))
    chain.findings(day(28), rules("web2", a="pass", b="fail", c="pass", d="not_applicable"))
    report = compute_report(
        chain,
        scope({"web1": ["baseline"], "web2": ["baseline"], "web3": ["baseline"]}),
        NOV,
        OCT,
        now=day(40),
    )
    s = report.baseline
    # web1 2/4, web2 2/3 (n/a not counted), web3 never audited: an audit where nothing
    # passed, weighing the audited hosts' average (3.5).
    assert s.score == round(100 * 4 / (7 + 3.5), 1)
    # October by the same maths: web1 3/4, web2 4/4, web3 never audited (weighing 4).
    assert s.previous == round(100 * 7 / 12, 1)
    assert [(c.rule, c.hosts) for c in s.top_failing] == [("b", 2), ("a", 1)]
    assert {(d.host, d.rule, d.before, d.after) for d in s.drift} == {
        ("web1", "a", "pass", "fail"),
        ("web1", "b", "pass", "fail"),
        ("web1", "c", "fail", "pass"),
        ("web2", "b", "pass", "fail"),
    }
    assert [p.platform for p in s.platforms] == ["debian-cis"]
    web3 = next(h for h in s.hosts if h.host == "web3")
    assert web3.score is None and "no baseline audit" in web3.reason
    c = report.coverage
    assert (c.hosts, c.checked, c.percent) == (3, 2, 66.7)
    assert [u.host for u in c.unchecked] == ["web3"]
    assert "1 of 3 hosts had no baseline audit in the month" in report.missing_data


def test_coverage_counts_a_host_no_policy_targets_and_names_hosts_gone_from_inventory() -> None:
    chain = Chain()
    chain.findings(day(2), patch_scan("web1"))
    chain.findings(day(2), patch_scan("old9"))
    report = compute_report(chain, scope({"web1": ["patch"], "web2": []}), NOV, OCT, now=day(40))
    c = report.coverage
    assert (c.hosts, c.checked) == (2, 1)
    assert c.unchecked[0].host == "web2" and c.unchecked[0].checked == {}
    assert c.extra == ["old9"]


# --- Exceptions, the summary, and a month without data ------------------------------


def test_exceptions_list_waivers_in_force_holds_and_deferrals() -> None:
    waiver = Waiver.model_validate(
        {
            "kind": "waiver",
            "name": "cad-x11",
            "rule": "ssh-x11",
            "targets": {"hosts": ["web1"]},
            "justification": "the CAD viewer needs X11",
            "approved_by": "J. Smith",
            "approved_on": date(2026, 10, 1),
            "expires": date(2027, 3, 31),
        }
    )
    old = waiver.model_copy(update={"name": "old", "expires": date(2026, 10, 15)})
    chain = Chain()
    chain.findings(
        day(2),
        patch_scan(
            "web1",
            update("postgresql-15", action="hold", released=day(1), deadline=day(15)),
            update("nginx", action="defer", released=day(1), deadline=day(15)),
        ),
    )
    report = compute_report(
        chain,
        scope({"web1": ["patch"]}, waivers=[(waiver, ("web1",)), (old, ("web1",))]),
        NOV,
        OCT,
        now=day(5),
    )
    kinds = [(e.kind, e.subject) for e in report.exceptions]
    assert kinds == [
        ("waiver", "rule:ssh-x11"),
        ("deferral", "package:nginx"),
        ("hold", "package:postgresql-15"),
    ]
    assert report.exceptions[0].approved_by == "J. Smith"
    # Held and deferred updates are listed, and still late once past the deadline.
    later = compute_report(
        chain, scope({"web1": ["patch"]}, waivers=[(waiver, ("web1",))]), NOV, OCT, now=day(20)
    )
    assert later.patching.hosts[0].state == "pending"


def test_a_month_without_evidence_says_so_and_never_shows_100() -> None:
    chain = Chain()
    chain.findings(day(5, 10), patch_scan("web1"))  # only October has anything
    report = compute_report(
        chain,
        scope({"web1": ["patch", "backup", "baseline"], "web2": ["patch"]}),
        NOV,
        OCT,
        now=day(40),
    )
    assert report.score is None and report.band is Band.NO_DATA
    assert report.patching.compliance_percent is None
    assert report.backups.success_percent is None
    assert report.baseline.score is None
    assert report.coverage.percent is None
    assert report.missing_data[0].startswith("no evidence at all")
    assert "no patch scan reached any host in the month" in report.missing_data
    assert all(h.value is None for h in report.headlines)
    assert report.evidence == []


def test_the_summary_averages_the_areas_and_counts_its_evidence() -> None:
    chain = patching_month()
    report = compute_report(
        chain,
        scope({f"web{n}": ["patch"] for n in range(1, 7)}),
        NOV,
        OCT,
        now=datetime(2026, 12, 5, tzinfo=UTC),
    )
    # Patch compliance 33.3 and coverage: web3 (failed scan) and web5 (none) unreached.
    assert report.coverage.percent == round(100 * 4 / 6, 1)
    assert report.score == round((33.3 + 66.7) / 2, 1)
    assert report.band is Band.POOR
    november = [r for r in chain if NOV.start <= datetime.fromisoformat(r.recorded_at) < NOV.end]
    [counted] = report.evidence
    lines = "".join(f"{r.seq} {r.hash}\n" for r in november)
    assert (counted.chain, counted.count) == ("acme", len(november))
    assert (counted.first_seq, counted.last_seq) == (november[0].seq, november[-1].seq)
    assert counted.sha256 == hashlib.sha256(lines.encode()).hexdigest()
    assert "findings" in counted.kinds and "change_result" in counted.kinds
    assert report.as_dict()["period"]["month"] == "2026-11"


def scheduled(key: str, due: datetime, state: str, reason: str = "") -> dict[str, Any]:
    policy, action = key.split("/")[1:3]
    return ScheduledRun(
        f"{key}@{due:%Y-%m-%dT%H:%MZ}", policy, action, due.isoformat(), state, reason, None
    ).payload()


def test_scheduled_runs_are_counted_once_each_and_the_missed_ones_named() -> None:
    chain = Chain()
    backup = "acme/nightly/backup"
    chain.add(day(5, 10), RecordKind.SCHEDULED_RUN, scheduled(backup, day(5, 10), "skipped"))
    chain.add(day(2), RecordKind.SCHEDULED_RUN, scheduled(backup, day(2), "ok"))
    missed = scheduled(backup, day(3), "skipped", "missed while the control node was down")
    chain.add(day(4), RecordKind.SCHEDULED_RUN, missed)
    chain.add(day(4), RecordKind.SCHEDULED_RUN, missed)  # appended twice: one tick
    stopped = scheduled("acme/audit/baseline", day(4), "interrupted", "SIGTERM")
    chain.add(day(4), RecordKind.SCHEDULED_RUN, stopped)
    chain.add(day(5), RecordKind.SCHEDULED_RUN, scheduled(backup, day(5), "failed", "exit 2"))
    chain.add(day(6), RecordKind.SCHEDULED_RUN, {**missed, "state": "lost"})  # not mspauto's
    # Due on 31 October, found missed when the node came back on 2 November.
    late = scheduled(backup, day(31, 10), "skipped", "missed while the control node was down")
    chain.add(day(2), RecordKind.SCHEDULED_RUN, late)
    report = compute_report(chain, scope({"web1": ["backup"]}), NOV, OCT, now=day(40))
    schedule = report.schedule
    counts = (schedule.total, schedule.ok, schedule.failed, schedule.interrupted)
    assert counts == (4, 1, 1, 1) and schedule.skipped == 1
    assert [(t.due, t.policy, t.action, t.state) for t in schedule.problems] == [
        (day(3), "nightly", "backup", "skipped"),
        (day(4), "audit", "baseline", "interrupted"),
        (day(5), "nightly", "backup", "failed"),
    ]
    assert schedule.problems[0].reason == "missed while the control node was down"
    assert any(
        "1 evidence records of the month could not be read" in m for m in report.missing_data
    )
    assert [(t.due, t.state) for t in schedule.earlier] == [(day(31, 10), "skipped")]
    [counted] = report.evidence
    assert counted.count == 7  # every November record, the unreadable one too
