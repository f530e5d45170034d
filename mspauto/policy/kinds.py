"""mspauto's own kinds that have no package of their own yet: patch, backup, contract,
waiver. Baselines and rule packs register in :mod:`mspauto.baseline.policy`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, timedelta

from mspauto.fields import format_duration
from mspauto.inventory.resolve import Inventory
from mspauto.policy.loader import LoadedPolicy
from mspauto.policy.models import BackupPolicy, Contract, PatchPolicy, Waiver
from mspauto.policy.registry import PolicyKind, register
from mspauto.problems import Problem

__all__ = ["WAIVER_WARNING_DAYS"]

WAIVER_WARNING_DAYS = 14


def _patch(policy: PatchPolicy) -> str:
    rings = " > ".join(stage.ring for stage in policy.rollout) or "all at once"
    return f"reboot {policy.reboot.policy}; rollout {rings}"


def _backup(policy: BackupPolicy) -> str:
    jobs = ", ".join(f"{j.name} ({j.provider})" for j in policy.jobs)
    return f"RPO {format_duration(policy.rpo)}; {jobs}"


def _contract(policy: Contract) -> str:
    deadlines = policy.patch_deadlines
    return (
        f"critical {format_duration(deadlines['critical'])}, high "
        f"{format_duration(deadlines['high'])}; RPO {format_duration(policy.rpo)}; "
        f"baseline >= {policy.baseline_score_floor:g}"
    )


def _waiver(policy: Waiver) -> str:
    return f"{policy.subject} until {policy.expires}, approved by {policy.approved_by}"


def _waiver_dates(
    policies: Sequence[LoadedPolicy], _inventory: Inventory, today: date
) -> Iterator[Problem]:
    """Expired waivers are errors (they no longer apply); soon-expiring ones warn."""
    for loaded in policies:
        waiver = loaded.policy
        if not isinstance(waiver, Waiver):
            continue
        at = loaded.doc.location(("expires",))
        if waiver.expires < today:
            yield Problem(
                at,
                "expires",
                f"waiver expired on {waiver.expires} and no longer applies; renew it "
                "(new expiry, approver and date) or delete it",
            )
        elif waiver.expires - today <= timedelta(days=WAIVER_WARNING_DAYS):
            days = (waiver.expires - today).days
            yield Problem(
                at,
                "expires",
                f"waiver expires in {days} day{'s' if days != 1 else ''} "
                f"({waiver.expires}); renew it or plan the fix",
                severity="warning",
            )


register(PolicyKind("patch", PatchPolicy, _patch, help="install approved OS/application updates"))
register(PolicyKind("backup", BackupPolicy, _backup, help="verify backups against the RPO"))
register(PolicyKind("contract", Contract, _contract, help="the SLA a client bought"))
register(
    PolicyKind("waiver", Waiver, _waiver, _waiver_dates, help="an approved, expiring exception")
)
