"""One line per policy: what it is, when it runs, and what it reaches."""

from __future__ import annotations

from typing import Any

from mspauto.inventory.selectors import Selector
from mspauto.policy.registry import policy_kinds
from mspauto.project import Project

__all__ = ["summarize"]


def summarize(project: Project, client: str | None = None) -> list[dict[str, Any]]:
    """Rows for ``policy list``; with ``client``, only what concerns that client."""
    contracts_in_use = {
        c.spec.contract
        for c in project.inventory.clients.values()
        if client is None or c.name == client
    }
    kinds = policy_kinds()
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
            client is not None and policy.kind == "contract" and policy.name not in contracts_in_use
        ):
            continue
        schedule = getattr(policy, "schedule", None)
        rows.append(
            {
                "kind": policy.kind,
                "name": policy.name,
                "schedule": f"{schedule.cron} ({schedule.timezone})" if schedule else None,
                "hosts": hosts,
                "detail": kinds[policy.kind].describe(policy),
                "defined_at": str(loaded.location),
            }
        )
    return rows
