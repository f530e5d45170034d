"""Patch decisions and maintenance windows (pure)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from mspauto.patching.facts import PendingUpdate
from mspauto.patching.planner import Decision, decide, window_state
from mspauto.policy.models import Contract, MaintenanceWindow, PatchPolicy, Waiver

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def _policy(**settings: Any) -> PatchPolicy:
    return PatchPolicy.model_validate(
        {
            "kind": "patch",
            "name": "p",
            "targets": {"clients": ["*"]},
            "schedule": {"cron": "0 1 * * sat", "timezone": "client"},
            **settings,
        }
    )


def _update(name: str = "openssl", **facts: Any) -> PendingUpdate:
    return PendingUpdate(name=name, candidate="2", installed="1", **facts)


def _decide(policy: PatchPolicy, update: PendingUpdate, **options: Any) -> Decision:
    settings: dict[str, Any] = {
        "host_holds": (),
        "waivers": (),
        "contract": None,
        "first_detected": NOW,
        "now": NOW,
    }
    settings.update(options)
    return decide(policy, update, **settings)


APPROVALS = [
    {
        "match": {"severities": ["critical", "high"], "classifications": ["security"]},
        "action": "auto",
    },
    {"match": {"known_exploited": True}, "action": "auto"},
    {"match": {"names": ["^linux-image-"]}, "action": "manual"},
    {"match": {"classifications": ["enhancement"]}, "action": "reject"},
    {"match": {"classifications": ["other"]}, "action": "defer", "defer": "7d"},
]


@pytest.mark.parametrize(
    ("update", "action", "rule"),
    [
        (_update(classification="security", severity="critical"), "install", 0),
        (_update(classification="security", severity="unrated"), "manual", None),
        (_update(classification="security", known_exploited=True), "install", 1),
        (_update("linux-image-amd64", classification="security"), "manual", 2),
        (_update(classification="enhancement"), "reject", 3),
        (_update(classification="other"), "defer", 4),
    ],
)
def test_the_first_matching_rule_decides(
    update: PendingUpdate, action: str, rule: int | None
) -> None:
    decision = _decide(_policy(approvals=APPROVALS), update)
    assert (decision.action, decision.rule) == (action, rule)


def test_no_matching_rule_needs_a_person() -> None:
    decision = _decide(_policy(approvals=APPROVALS), _update(classification="security"))
    assert decision.reason == "needs a person: no approval rule matches it"


def test_a_deferral_counts_from_release_and_ends() -> None:
    policy = _policy(approvals=[{"action": "defer", "defer": "7d"}])
    fresh = _update(released=NOW - timedelta(days=2))
    decision = _decide(policy, fresh)
    assert decision.action == "defer"
    assert decision.until == NOW + timedelta(days=5)
    old = _update(released=NOW - timedelta(days=8))
    assert _decide(policy, old).action == "install"
    # Unknown release: the deferral counts from first detection.
    unknown = _decide(policy, _update(), first_detected=NOW - timedelta(days=1))
    assert unknown.until == NOW + timedelta(days=6)
    assert "after first detection" in unknown.reason


def test_holds_by_policy_pattern_and_by_the_host_win_over_approval() -> None:
    policy = _policy(holds=["linux-image-*"])
    assert _decide(policy, _update("linux-image-6.1.0-18-amd64")).action == "hold"
    assert _decide(policy, _update("linux-headers-amd64")).action == "install"
    held = _decide(policy, _update("docker-ce:amd64"), host_holds=("docker-ce",))
    assert held.action == "hold" and "on the host" in held.reason


def test_a_package_waiver_excuses_the_update() -> None:
    waiver = Waiver.model_validate(
        {
            "kind": "waiver",
            "name": "keep-old-php",
            "package": "php8.2*",
            "targets": {"clients": ["*"]},
            "justification": "the client's shop needs the old extension",
            "approved_by": "jane",
            "approved_on": date(2026, 11, 1),
            "expires": date(2027, 1, 1),
        }
    )
    decision = _decide(_policy(), _update("php8.2-cli"), waivers=(waiver,))
    assert (decision.action, decision.waiver) == ("waived", "keep-old-php")


def test_deadlines_follow_the_contract_clock_and_kev_due_dates() -> None:
    contract = Contract.model_validate({"kind": "contract", "name": "c"})
    released = _update(severity="critical", released=NOW - timedelta(days=20))
    decision = _decide(_policy(), released, contract=contract)
    assert decision.clock == "release"
    assert decision.deadline == NOW - timedelta(days=6)
    assert decision.overdue(NOW)
    detected = _decide(_policy(), _update(severity="low"), contract=contract)
    assert (detected.clock, detected.deadline) == ("detection", NOW + timedelta(days=60))
    kev = _update(severity="low", known_exploited=True, exploited_due=date(2026, 12, 10))
    assert _decide(_policy(), kev, contract=contract).deadline == datetime(
        2026, 12, 10, 23, 59, 59, 999999, tzinfo=UTC
    )
    by_detection = Contract.model_validate(
        {"kind": "contract", "name": "c", "patch_clock_starts": "detection"}
    )
    assert _decide(_policy(), released, contract=by_detection).clock == "detection"


def _window(days: list[str], start: str, duration: str) -> MaintenanceWindow:
    return MaintenanceWindow.model_validate({"days": days, "start": start, "duration": duration})


def test_a_window_is_read_in_the_clients_zone() -> None:
    window = _window(["sat"], "01:00", "4h")
    # Saturday 2026-12-05 01:00 in New York is 06:00 UTC.
    inside = window_state(window, "America/New_York", datetime(2026, 12, 5, 7, 0, tzinfo=UTC))
    assert inside.open and inside.closes == datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
    before = window_state(window, "America/New_York", datetime(2026, 12, 5, 5, 59, tzinfo=UTC))
    assert not before.open
    assert before.opens == datetime(2026, 12, 5, 6, 0, tzinfo=UTC)
    assert "sat 2026-12-05 01:00 EST" in before.reason
    # The same UTC moment is outside the window for a client in Berlin.
    assert not window_state(window, "Europe/Berlin", datetime(2026, 12, 5, 7, 0, tzinfo=UTC)).open


def test_a_window_spanning_midnight_and_no_window_at_all() -> None:
    window = _window(["fri"], "22:00", "6h")
    saturday_early = datetime(2026, 12, 5, 2, 0, tzinfo=UTC)  # Fri 22:00 + 4h, in UTC
    assert window_state(window, "UTC", saturday_early).open
    assert window_state(None, "UTC", NOW).open


def test_a_window_on_a_dst_change_day() -> None:
    # 2027-03-28: Europe/Berlin skips 02:00-03:00. A window at 02:30 still opens once.
    window = _window(["sun"], "02:30", "1h")
    state = window_state(window, "Europe/Berlin", datetime(2027, 3, 28, 0, 0, tzinfo=UTC))
    assert not state.open and state.opens is not None
    assert window_state(window, "Europe/Berlin", state.opens).open


def test_a_package_the_upgrade_adds_goes_in_only_as_a_dependency() -> None:
    # apt lists a new kernel ABI package beside its metapackage: holding the
    # metapackage must keep the new kernel out too, so the new one is never named.
    new = PendingUpdate(name="linux-image-6.1.0-20-amd64", candidate="6.1.85-1")
    decision = _decide(_policy(), new, adds_packages=True)
    assert decision.action == "dependency"
    # Other managers (Windows Update) have no installed version for any update.
    assert _decide(_policy(), new).action == "install"


def test_a_waived_update_is_never_overdue() -> None:
    from mspauto.patching.status import PendingItem

    item = PendingItem(_update(), "waived", "waiver w", NOW, "detection", NOW - timedelta(days=1))
    assert not item.overdue(NOW)
    assert PendingItem(_update(), "manual", "", NOW, "detection", NOW - timedelta(days=1)).overdue(
        NOW
    )


def test_a_hold_written_as_a_pattern_on_the_host_holds() -> None:
    # dnf's excludepkgs are patterns (kernel*), apt's holds exact names.
    held = _decide(_policy(), _update("kernel-core"), host_holds=("kernel*",))
    assert held.action == "hold"
