"""mspauto's own kinds that have no package of their own yet: patch, backup, contract,
waiver. Baselines and rule packs register in :mod:`mspauto.baseline.policy`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from mspauto.fields import format_duration
from mspauto.policy.models import (
    BackupPolicy,
    Contract,
    NotificationPolicy,
    PatchPolicy,
    Waiver,
)
from mspauto.policy.registry import CheckContext, PolicyKind, register
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


def _waiver_dates(context: CheckContext) -> Iterator[Problem]:
    """Expired waivers are errors (they no longer apply); soon-expiring ones warn."""
    today = context.today
    for loaded in context.policies:
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


def _notification(policy: NotificationPolicy) -> str:
    channels = [c for c in ("email", "webhook") if getattr(policy, c) is not None]
    if policy.psa is not None:
        channels.append(f"{policy.psa.system} tickets")
    return f"{', '.join(policy.events)} for {', '.join(policy.clients)} by {' and '.join(channels)}"


def _notification_clients(context: CheckContext) -> Iterator[Problem]:
    """Every client a notification names exists (a typo would silence it)."""
    known = set(context.inventory.clients) | set(context.broken_clients)
    for loaded in context.policies:
        policy = loaded.policy
        if not isinstance(policy, NotificationPolicy):
            continue
        for index, name in enumerate(policy.clients):
            if name != "*" and name not in known:
                yield Problem(
                    loaded.doc.location(("clients", index)),
                    f"clients[{index}]",
                    f"no client is named '{name}' (clients: {', '.join(sorted(known)) or 'none'})",
                )


def _rollout_rings(context: CheckContext) -> Iterator[Problem]:
    """Every ring of a rollout holds some host the policy targets: a stage with no host
    would pass at once (or wait forever), and the rings after it would never be staged."""
    if context.broken_clients:
        return  # their hosts may be the ones in the ring
    for loaded in context.policies:
        policy = loaded.policy
        if not isinstance(policy, PatchPolicy) or not policy.rollout:
            continue
        rings = {h.ring for h in policy.targets.select(context.inventory) if h.ring}
        for index, stage in enumerate(policy.rollout):
            if stage.ring not in rings:
                present = ", ".join(sorted(rings)) or "none"
                yield Problem(
                    loaded.doc.location(("rollout", index, "ring")),
                    f"rollout[{index}].ring",
                    f"no host this policy targets is in ring '{stage.ring}' (rings of its "
                    f"hosts: {present}); set 'ring:' on the hosts or fix the stage",
                )


def _patch_overlaps(context: CheckContext) -> Iterator[Problem]:
    """Two enabled patch policies selecting one host: only the first (in file order)
    decides its updates, so the second is a warning naming a host it loses."""
    patches = [
        (loaded, loaded.policy)
        for loaded in context.policies
        if isinstance(loaded.policy, PatchPolicy) and loaded.policy.enabled
    ]
    reported: set[tuple[str, str]] = set()
    for host in context.inventory.hosts():
        selecting = [(loaded, policy) for loaded, policy in patches if policy.targets.matches(host)]
        for later, policy in selecting[1:]:
            pair = (selecting[0][1].name, policy.name)
            if pair in reported:
                continue
            reported.add(pair)
            yield Problem(
                later.doc.location(("targets",)),
                "targets",
                f"host {host.name} is also selected by patch policy '{pair[0]}', which comes "
                "first and decides its updates; this policy does not apply there (narrow "
                "one of the targets, e.g. with exclude_tags)",
                severity="warning",
            )


def _patch_checks(context: CheckContext) -> Iterator[Problem]:
    yield from _rollout_rings(context)
    yield from _patch_overlaps(context)


register(
    PolicyKind(
        "patch",
        PatchPolicy,
        _patch,
        _patch_checks,
        help="install approved OS/application updates",
    )
)
register(PolicyKind("backup", BackupPolicy, _backup, help="verify backups against the RPO"))
register(PolicyKind("contract", Contract, _contract, help="the SLA a client bought"))
register(
    PolicyKind("waiver", Waiver, _waiver, _waiver_dates, help="an approved, expiring exception")
)
register(
    PolicyKind(
        "notification",
        NotificationPolicy,
        _notification,
        _notification_clients,
        help="who hears about failed runs, SLA breaches, expiring waivers, reports",
    )
)
