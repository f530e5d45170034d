"""A hand-built monthly report for the renderers' tests (no evidence store needed).

The figures are consistent with each other (what a computed report would hold) so a
renderer's output can be checked against them; the SLA maths has its own tests.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mspauto.sla.model import (
    BackupAsset,
    BackupSla,
    Band,
    BaselineHost,
    BaselineSla,
    Breach,
    ControlFailure,
    Coverage,
    CoverageHost,
    Drift,
    EvidenceRange,
    ExceptionItem,
    Headline,
    LatencyStats,
    MonthlyReport,
    PatchHost,
    PatchItem,
    PatchSla,
    Period,
    PlatformScore,
    ScheduledItem,
    ScheduledRuns,
)

START = datetime(2026, 11, 1, 4, 0, tzinfo=UTC)  # 2026-11-01 00:00 America/New_York
END = datetime(2026, 12, 1, 5, 0, tzinfo=UTC)  # after the DST change on 11-01


def _item(host: str, name: str, state: str, *, days: float, severity: str = "high") -> PatchItem:
    released = START + timedelta(days=2)
    installed = released + timedelta(days=days) if state.startswith("installed") else None
    return PatchItem(
        host=host,
        name=name,
        version="1.2.3-1+deb12u1",
        severity=severity,
        classification="security",
        state=state,
        action="install",
        clock="release",
        clock_start=released,
        deadline=released + timedelta(days=14),
        first_detected=released + timedelta(hours=6),
        installed_at=installed,
        days=days,
        cves=("CVE-2026-1234",),
        reason="approved by approval rule 1 (severity: high)",
    )


def sample_report(*, hosts: int = 3) -> MonthlyReport:
    """A report of ``hosts`` hosts (web1, web2, ...) with a bit of everything."""
    names = [f"web{i + 1}" for i in range(hosts)]
    items = [_item(n, "openssl", "installed", days=3.5) for n in names]
    items.append(_item(names[-1], "curl", "overdue", days=20.0, severity="critical"))
    items.append(_item(names[0], "bash", "installed late", days=16.0, severity="medium"))
    kev = PatchItem(
        **{
            **_item(names[0], "libxml2", "installed", days=1.0, severity="critical").__dict__,
            "known_exploited": True,
            "exploited_due": START + timedelta(days=20),
        }
    )
    items.append(kev)
    assets = [
        BackupAsset(
            host=n,
            job="etc",
            provider="restic",
            state="ok" if i else "stale",
            last_good=END - timedelta(hours=3 + 40 * (i == 0)),
            checks=30,
            checks_ok=30 - 2 * (i == 0),
            last_integrity=END - timedelta(days=3),
            integrity_ok=True,
            last_drill=END - timedelta(days=10) if i else None,
            drill_ok=True if i else None,
            drill_due=END + timedelta(days=80) if i else START,
            reason="" if i else "last good backup 1 day 19 hours ago, older than the RPO 24h",
        )
        for i, n in enumerate(names)
    ]
    return MonthlyReport(
        client="acme",
        client_name="Acme Corp",
        period=Period("2026-11", "America/New_York", START, END),
        generated_at=datetime(2026, 12, 1, 6, 0, tzinfo=UTC),
        mspauto_version="0.1.0",
        contract={
            "name": "standard",
            "patch_deadlines_days": {
                "critical": 14,
                "high": 14,
                "medium": 30,
                "low": 60,
                "unrated": 14,
            },
            "patch_clock_starts": "release",
            "rpo_hours": 24.0,
            "backup_success_percent": 95.0,
            "restore_test_every_days": 90.0,
            "baseline_score_floor": 80.0,
            "coverage_floor_percent": 95.0,
        },
        score=84.2,
        band=Band.FAIR,
        headlines=[
            Headline("Overall score", 84.2, "%", 88.0),
            Headline("Patch compliance", 66.7, "%", 100.0),
            Headline("Backup success", 97.8, "%", 96.0),
            Headline("Baseline score", 86.4, "%", 82.0),
            Headline("Coverage", 100.0, "%", 100.0),
        ],
        patching=PatchSla(
            devices=hosts,
            compliant=hosts - 1,
            pending=1,
            failed=0,
            exempted=0,
            not_checked=0,
            compliance_percent=round(100 * (hosts - 1) / hosts, 1),
            missing_critical=1,
            updates_installed=hosts + 2,
            past_deadline={"critical": 1, "high": 0, "medium": 1, "low": 0, "unrated": 0},
            latency=[
                LatencyStats("critical", 1, 1.0, 1.0, 0),
                LatencyStats("high", hosts, 3.5, 3.5, 0),
                LatencyStats("medium", 1, 16.0, 16.0, 0),
                LatencyStats("low", 0, None, None, 0),
                LatencyStats("unrated", 0, None, None, 0),
            ],
            kev=[kev],
            hosts=[
                PatchHost(
                    n,
                    "pending" if n == names[-1] else "compliant",
                    END - timedelta(hours=5),
                    1 if n == names[-1] else 0,
                    1 if n == names[-1] else 0,
                    1,
                )
                for n in names
            ],
            items=items,
        ),
        backups=BackupSla(
            checks=30 * hosts,
            checks_ok=30 * hosts - 2,
            success_percent=round(100 * (30 * hosts - 2) / (30 * hosts), 1),
            target_percent=95.0,
            rpo_hours=24.0,
            breaches=[
                Breach(names[0], "etc", END - timedelta(hours=19), None, 19.0),
            ],
            assets=assets,
            integrity_checks=4 * hosts,
            integrity_failed=0,
            drills=hosts - 1,
            drills_failed=0,
            drills_due=1,
        ),
        baseline=BaselineSla(
            score=86.4,
            previous=82.0,
            floor=80.0,
            hosts=[
                BaselineHost(n, "debian-cis", 86.4, 82.0, 38, 6, 0, 1, END - timedelta(hours=7))
                for n in names
            ],
            platforms=[PlatformScore("debian-cis", hosts, 86.4)],
            top_failing=[
                ControlFailure(
                    "ssh-permit-root-login", "SSH root login is disabled", "high", hosts
                ),
                ControlFailure("sysctl-ip-forward", "IP forwarding is disabled", "medium", 2),
            ],
            drift=[
                Drift(
                    names[0], "ssh-permit-root-login", "SSH root login is disabled", "pass", "fail"
                )
            ],
        ),
        coverage=Coverage(
            hosts=hosts,
            checked=hosts,
            percent=100.0,
            floor=95.0,
            unchecked=[],
            extra=[],
        ),
        exceptions=[
            ExceptionItem(
                "waiver",
                "rule:ssh-x11-forwarding",
                (names[0],),
                "X11 needed by the CAD team's legacy viewer",
                "J. Smith (IT manager)",
                "2026-10-01",
                "2027-03-31",
            ),
            ExceptionItem(
                "hold",
                "package:postgresql-15",
                (names[-1],),
                "held by policy 'linux-security' (holds: postgresql-*)",
            ),
        ],
        missing_data=[],
        evidence=[
            EvidenceRange(
                "acme", ("findings", "change_result"), 5, 1, f"{1:064x}", 5, f"{5:064x}", "ab" * 32
            )
        ],
        schedule=ScheduledRuns(
            total=62,
            ok=59,
            failed=1,
            interrupted=1,
            skipped=1,
            problems=[
                ScheduledItem(
                    datetime(2026, 11, 7, 12, 30, tzinfo=UTC),
                    "nightly",
                    "backup",
                    "skipped",
                    "missed while the control node was down; its maintenance window has closed",
                ),
                ScheduledItem(
                    datetime(2026, 11, 9, 10, 0, tzinfo=UTC),
                    "lab-cis",
                    "baseline",
                    "interrupted",
                    "the scheduler was stopped (SIGTERM): the run finished the hosts it was on",
                ),
                ScheduledItem(
                    datetime(2026, 11, 12, 12, 30, tzinfo=UTC), "nightly", "backup", "failed", "", 2
                ),
            ],
        ),
    )


def empty_report() -> MonthlyReport:
    """A month with no evidence at all: every figure is 'no data'."""
    full = sample_report(hosts=2)
    return MonthlyReport(
        **{
            **full.__dict__,
            "score": None,
            "band": Band.NO_DATA,
            "headlines": [Headline(h.label, None, h.unit) for h in full.headlines],
            "patching": PatchSla(2, 0, 0, 0, 0, 2, None, 0, 0, {}, [], [], [], []),
            "backups": BackupSla(0, 0, None, 95.0, 24.0, [], [], 0, 0, 0, 0, 0),
            "baseline": BaselineSla(None, None, 80.0, [], [], [], []),
            "coverage": Coverage(
                2,
                0,
                0.0,
                95.0,
                [CoverageHost("web1", {"patch": False}), CoverageHost("web2", {"patch": False})],
                [],
            ),
            "exceptions": [],
            "missing_data": [
                "no patch scan in the month",
                "no backup check in the month",
                "no baseline audit in the month",
            ],
            "evidence": [],
        }
    )
