"""One line per policy: what it is, when it runs, and what it reaches."""

from __future__ import annotations

from typing import Any

from mspauto.fields import format_duration
from mspauto.inventory.selectors import Selector
from mspauto.policy.models import (
    BackupPolicy,
    BaselinePolicy,
    Contract,
    PatchPolicy,
    RulePack,
    Waiver,
)
from mspauto.project import Project

__all__ = ["summarize"]


def summarize(project: Project, client: str | None = None) -> list[dict[str, Any]]:
    """Rows for ``policy list``; with ``client``, only what concerns that client."""
    contracts_in_use = {
        c.spec.contract
        for c in project.inventory.clients.values()
        if client is None or c.name == client
    }
    rows = []
    for loaded in project.policies:
        policy = loaded.policy
        targets: Selector | None = getattr(policy, "targets", None)
        hosts = None
        if targets is not None:
            selected = [
                h for h in targets.select(project.inventory) if client is None or h.client == client
            ]
            hosts = len(selected)
            if client is not None and not selected:
                continue
        elif (
            client is not None
            and policy.name not in contracts_in_use
            and not isinstance(policy, RulePack)
        ):
            continue
        schedule = getattr(policy, "schedule", None)
        rows.append(
            {
                "kind": policy.kind,
                "name": policy.name,
                "schedule": f"{schedule.cron} ({schedule.timezone})" if schedule else None,
                "hosts": hosts,
                "detail": _detail(policy),
                "defined_at": str(loaded.location),
            }
        )
    return rows


def _detail(policy: object) -> str:
    if isinstance(policy, PatchPolicy):
        rings = " > ".join(stage.ring for stage in policy.rollout) or "all at once"
        return f"reboot {policy.reboot.policy}; rollout {rings}"
    if isinstance(policy, BackupPolicy):
        jobs = ", ".join(f"{j.name} ({j.provider})" for j in policy.jobs)
        return f"RPO {format_duration(policy.rpo)}; {jobs}"
    if isinstance(policy, BaselinePolicy):
        return f"packs {', '.join(policy.packs)}; remediate {policy.remediate}"
    if isinstance(policy, Contract):
        deadlines = policy.patch_deadlines
        return (
            f"critical {format_duration(deadlines['critical'])}, high "
            f"{format_duration(deadlines['high'])}; RPO {format_duration(policy.rpo)}; "
            f"baseline >= {policy.baseline_score_floor:g}"
        )
    if isinstance(policy, RulePack):
        return f"{len(policy.rules)} rules for {', '.join(policy.platforms)}: {policy.title}"
    if isinstance(policy, Waiver):
        return f"{policy.subject} until {policy.expires}, approved by {policy.approved_by}"
    return ""
