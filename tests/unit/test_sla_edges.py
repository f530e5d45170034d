"""SLA edge cases an independent review found wrong (each failed before its fix)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from test_sla import (
    NOV,
    OCT,
    Chain,
    backup,
    contract,
    day,
    installed,
    patch_scan,
    rules,
    scope,
    update,
)

from mspauto.evidence.records import Finding, FindingStatus, HostFindings, RecordKind
from mspauto.policy.models import Waiver
from mspauto.sla.period import month_period
from mspauto.sla.report import ReportScope, compute_report

END = datetime(2026, 12, 5, tzinfo=UTC)


def test_a_backup_check_that_cannot_reach_the_host_is_not_a_success() -> None:
    """web1 answered the first check (ok), then every daily check could not reach it."""
    chain = Chain()
    chain.findings(day(1.5), backup("web1", "etc", "ok", day(1.1)))
    for n in range(2, 31):
        chain.findings(day(n + 0.5), HostFindings("backup", "web1", (), "unreachable: timeout"))
    r = compute_report(chain, scope({"web1": ["backup"]}), NOV, OCT, now=END)
    b = r.backups
    # 29 of 30 checks failed to read the job: docs say such a check 'counts as not successful'
    assert b.success_percent != 100.0


def test_a_future_dated_backup_is_not_the_last_good_one() -> None:
    """The check itself says a future-dated backup is untrusted (state 'unchecked');
    the report still shows it as the job's last good backup."""
    chain = Chain()
    future = datetime(2027, 6, 1, tzinfo=UTC)
    chain.findings(day(2.5), backup("web1", "etc", "ok", day(2.1)))
    chain.findings(day(20.5), backup("web1", "etc", "unchecked", future))
    r = compute_report(chain, scope({"web1": ["backup"]}), NOV, OCT, now=END)
    a = r.backups.assets[0]
    assert a.last_good is None or a.last_good <= END


def test_a_future_dated_backup_never_ends_a_breach() -> None:
    chain = Chain()
    chain.findings(day(1.5), backup("web1", "etc", "ok", day(1.1)))
    chain.findings(day(5.5), backup("web1", "etc", "stale", day(1.1)))  # breach from day 2.1
    # a skewed backup server (clock 3 days ahead) reports a backup "at day 9.5" on day 6.5
    chain.findings(day(6.5), backup("web1", "etc", "unchecked", day(9.5)))
    chain.findings(day(6.6), backup("web1", "etc", "unchecked", day(9.5)))
    # stale again by the real clock... nothing until day 20
    chain.findings(day(20.5), backup("web1", "etc", "ok", day(20.1)))
    r = compute_report(chain, scope({"web1": ["backup"]}), NOV, OCT, now=END)
    [breach] = r.backups.breaches
    assert (breach.start, breach.end) == (day(2.1), day(20.1))


def test_a_host_never_audited_counts_in_the_baseline_score() -> None:
    chain = Chain()
    chain.findings(day(3), rules("web1", a="pass", b="pass"))
    targets = {f"web{n}": ["baseline"] for n in range(1, 11)}
    r = compute_report(chain, scope(targets), NOV, OCT, now=END)
    # 9 of 10 baseline hosts never audited, yet the baseline score is 100 (contract 'met')
    assert r.baseline.score != 100.0


def test_a_successful_install_clears_an_earlier_failure() -> None:
    chain = Chain()
    chain.findings(day(2), patch_scan("web1", update("openssl", released=day(1), deadline=day(15))))
    chain.add(day(3), RecordKind.CHANGE_RESULT, installed("web1", failed=["openssl"]), "web1")
    chain.add(day(4), RecordKind.CHANGE_RESULT, installed("web1", "openssl"), "web1")
    r = compute_report(chain, scope({"web1": ["patch"]}), NOV, OCT, now=END)
    h = r.patching.hosts[0]
    assert h.state != "failed"


def test_waivers_in_force_are_judged_by_the_clients_days() -> None:
    w = Waiver.model_validate(
        {
            "kind": "waiver",
            "name": "w",
            "rule": "ssh-x11",
            "targets": {"hosts": ["web1"]},
            "justification": "justification long enough",
            "approved_by": "J",
            "approved_on": date(2026, 12, 1),
            "expires": date(2027, 3, 31),
        }
    )
    chain = Chain()
    chain.findings(day(2), patch_scan("web1"))
    r = compute_report(
        chain, scope({"web1": ["patch"]}, waivers=[(w, ("web1",))]), NOV, OCT, now=END
    )
    # a waiver approved on Dec 1 was not in force during November (New York)
    assert not r.exceptions


def test_a_waiver_expired_before_an_auckland_month_is_not_listed() -> None:
    sep = month_period("2026-09", "Pacific/Auckland")
    aug = month_period("2026-08", "Pacific/Auckland")
    w = Waiver.model_validate(
        {
            "kind": "waiver",
            "name": "w",
            "rule": "ssh-x11",
            "targets": {"hosts": ["web1"]},
            "justification": "justification long enough",
            "approved_by": "J",
            "approved_on": date(2026, 1, 1),
            "expires": date(2026, 8, 31),
        }
    )
    chain = Chain()
    chain.findings(datetime(2026, 9, 2, tzinfo=UTC), patch_scan("web1"))
    s = ReportScope(
        "acme",
        "Acme",
        "Pacific/Auckland",
        contract(),
        {"web1": frozenset({"patch"})},
        [(w, ("web1",))],
    )
    r = compute_report(chain, s, sep, aug, now=END)
    assert not r.exceptions  # expired Aug 31, before September began in Auckland


def test_an_update_that_reappears_is_installed_once_and_open_again() -> None:
    chain = Chain()
    u = update("openssl", released=day(1), deadline=day(15))
    chain.findings(day(2), patch_scan("web1", u))
    chain.findings(day(3), patch_scan("web1"))  # gone: installed
    chain.findings(day(4), patch_scan("web1", u))  # back (rolled back / reinstalled old)
    chain.findings(day(5), patch_scan("web1"))  # gone again
    chain.findings(day(6), patch_scan("web1", u))  # back again
    r = compute_report(chain, scope({"web1": ["patch"]}), NOV, OCT, now=END)
    assert r.patching.updates_installed == 1
    assert [i.state for i in r.patching.items if i.installed_at is None] == ["overdue"]


def test_waived_backup_checks_make_no_breach() -> None:
    chain = Chain()
    for n in range(1, 31):
        f = backup("web1", "etc", "stale", day(1) - timedelta(days=10))
        f = HostFindings(
            "backup",
            "web1",
            (Finding("etc", "backups", FindingStatus.WAIVED, detail=f.findings[0].detail),),
        )
        chain.findings(day(n + 0.5), f)
    r = compute_report(chain, scope({"web1": ["backup"]}), NOV, OCT, now=END)
    b = r.backups
    assert not b.breaches  # docs: waived checks are left out


def test_last_months_baseline_is_the_month_before_only() -> None:
    chain = Chain()
    chain.findings(day(5, 6), rules("web1", a="pass", b="pass"))  # June
    chain.findings(day(5), rules("web1", a="fail", b="pass"))  # November
    r = compute_report(chain, scope({"web1": ["baseline"]}), NOV, OCT, now=END)
    assert r.baseline.previous is None


def test_a_host_mspauto_cannot_patch_is_never_a_compliant_device() -> None:
    """PatchCheck.judge on a platform without a patch manager writes one NOT_APPLICABLE
    reboot finding and no 'unchecked' (patching/check.py:144-160)."""
    chain = Chain()
    na = HostFindings(
        "patch",
        "switch1",
        (
            Finding(
                "reboot",
                "linux",
                FindingStatus.NOT_APPLICABLE,
                reason="mspauto does not patch network hosts",
            ),
        ),
    )
    for n in range(1, 31):
        chain.findings(day(n), na)
    r = compute_report(chain, scope({"switch1": ["patch"]}), NOV, OCT, now=END)
    assert r.patching.compliance_percent != 100.0


def test_an_audit_months_old_is_not_this_months() -> None:
    chain = Chain()
    chain.findings(day(5, 6), rules("web1", a="pass", b="pass"))  # June only
    r = compute_report(chain, scope({"web1": ["baseline"]}), NOV, OCT, now=END)
    assert r.baseline.score is None and r.baseline.previous is None
    assert r.baseline.hosts[0].audited is None


def test_records_not_in_mspauto_form_are_counted_and_named_never_a_crash() -> None:
    """Anyone who can write the database can add records with valid hashes (unsigned,
    so verify names them); a report over them says so instead of stopping."""
    chain = Chain()
    chain.findings(day(2), rules("web1", a="pass"))
    typed_wrong = patch_scan("web1", update("openssl", released=day(1))).payload()
    typed_wrong["findings"][0]["detail"]["update"].update(released=5, severity=["x"])
    typed_wrong["findings"][0]["detail"]["decision"].update(deadline={}, first_detected=7)
    bad: list[dict[str, Any]] = [
        {},
        {"check": ["patch"], "host": {"a": 1}},
        {"check": "patch", "host": "web1", "findings": [{"x": 1}]},
        {"check": "patch", "host": "web1", "findings": "nope"},
        typed_wrong,
        {
            "check": "backup",
            "host": "web1",
            "findings": [{"subject": "j", "status": "fail", "detail": {"last_success": 5}}],
        },
        {"check": "baseline", "host": "web1", "findings": [{"subject": 5, "status": "bogus"}]},
    ]
    for n, payload in enumerate(bad):
        chain.add(day(3 + n / 10), RecordKind.FINDINGS, payload, "web1")
    chain.add(day(4), RecordKind.CHANGE_RESULT, {"check": "patch", "changes": 3}, "web1")
    targets = {"web1": ["patch", "backup", "baseline"]}
    r = compute_report(chain, scope(targets), NOV, OCT, now=END)
    assert sum(e.count for e in r.evidence) == 1 + len(bad) + 1  # the month's, all bound
    # {} and a list as check (no header), findings that are no findings (two), and the
    # change result: unreadable. Times of the wrong type are unknown times instead.
    assert r.missing_data[0].startswith("5 evidence records of the month could not be read")
    # The host's last audit is unreadable: it is judged unaudited, and says why.
    [host] = r.baseline.hosts
    assert (host.score, host.reason) == (None, "not audited: its evidence record could not be read")
