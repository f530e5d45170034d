"""Audit a client's hosts against the rule packs its baseline policies name.

Per host: the rules that apply (policies selecting the host, their packs, overrides,
and the waivers covering the host today) are batched into one script, run through the
engine (so the run is evidence like any other), then judged rule by rule. Each host's
judged results are recorded as a ``baseline_result`` evidence record in the same chain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from mspauto.baseline.evaluate import (
    CheckedRule,
    HostBaseline,
    client_score,
    evaluate_host,
    waiver_applies,
)
from mspauto.baseline.rules import RulePack, family_of
from mspauto.baseline.script import linux_script, parse_answers, windows_script
from mspauto.engine import RunSpec, run_command
from mspauto.engine.progress import Progress
from mspauto.evidence.store import EvidenceStore, NewRecord
from mspauto.inventory.resolve import Host
from mspauto.policy.models import BaselinePolicy, Waiver
from mspauto.project import Project
from mspauto.transport.base import Transport

__all__ = ["BaselineReport", "audit_client", "checks_for"]


@dataclass
class BaselineReport:
    """A client's baseline audit: per host results, the client score, the floor."""

    client: str
    run_id: str | None
    hosts: list[HostBaseline] = field(default_factory=list)
    floor: float | None = None

    @property
    def score(self) -> float | None:
        """The client's score (unaudited hosts count as failed)."""
        return client_score(self.hosts)

    @property
    def below_floor(self) -> bool:
        """True when the score is under the contract's baseline floor."""
        return self.floor is not None and (self.score or 0.0) < self.floor

    def as_dict(self) -> dict[str, Any]:
        """Machine-readable form."""
        return {
            "client": self.client,
            "run_id": self.run_id,
            "score": self.score,
            "floor": self.floor,
            "below_floor": self.below_floor,
            "hosts": [
                {
                    "host": h.host,
                    "score": h.score,
                    "unaudited": h.unaudited,
                    "counts": {
                        s: h.count(s) for s in ("pass", "fail", "error", "waived", "not_applicable")
                    },
                    "results": [r.as_dict() for r in h.results],
                }
                for h in self.hosts
            ],
        }


def checks_for(project: Project, host: Host, today: date) -> list[CheckedRule]:
    """Every rule that concerns ``host``, with overrides and today's waivers applied."""
    packs = {p.policy.name: p.policy for p in project.policies if isinstance(p.policy, RulePack)}
    waivers = [
        p.policy
        for p in project.policies
        if isinstance(p.policy, Waiver)
        and p.policy.rule
        and waiver_applies(p.policy.expires, today)
        and p.policy.targets.matches(host)
    ]
    checks: list[CheckedRule] = []
    seen: set[str] = set()
    for loaded in project.policies:
        policy = loaded.policy
        if not (
            isinstance(policy, BaselinePolicy) and policy.enabled and policy.targets.matches(host)
        ):
            continue
        for pack_name in policy.packs:
            pack = packs[pack_name]
            for rule in pack.rules:
                if rule.id in seen:
                    continue
                seen.add(rule.id)
                expectation = (
                    rule.expect.with_value(policy.overrides[rule.id])
                    if rule.id in policy.overrides
                    else rule.expect
                )
                waiver = next((w.name for w in waivers if w.rule == rule.id), None)
                checks.append(
                    CheckedRule(
                        pack.name, rule, expectation, pack.applies(rule, host.platform), waiver
                    )
                )
    return checks


def _script(host: Host, checks: list[CheckedRule]) -> str | None:
    family = family_of(host.platform)
    audits = [
        (c.rule.id, getattr(c.rule.audit, family))
        for c in checks
        if c.applicable and family is not None
    ]
    if not audits:
        return None
    return linux_script(audits) if family == "linux" else windows_script(audits)


def audit_client(
    project: Project,
    client_name: str,
    hosts: list[Host],
    transport: Transport,
    store: EvidenceStore | None,
    *,
    progress: Progress | None = None,
    today: date | None = None,
    timeout: float = 120.0,
    forks: int = 50,
) -> BaselineReport:
    """Audit ``hosts`` (of one client) and record the judged results as evidence."""
    today = today or datetime.now(UTC).date()
    client = project.inventory.clients[client_name]
    contract = project.contracts().get(client.spec.contract)
    checks = {host.name: checks_for(project, host, today) for host in hosts}
    scripts = {}
    for host in hosts:
        script = _script(host, checks[host.name])
        if script is not None:
            scripts[host.name] = script
    report = BaselineReport(
        client_name, None, floor=contract.baseline_score_floor if contract else None
    )
    audited = [host for host in hosts if host.name in scripts]
    outcomes = {}
    if audited:
        outcome = run_command(
            RunSpec(
                client=client,
                hosts=audited,
                command="# mspauto baseline audit",
                commands=scripts,
                sudo=True,
                timeout=timeout,
                forks=forks,
                kind="baseline",
            ),
            transport,
            store,
            progress,
        )
        report.run_id = outcome.run_id
        outcomes = {r.host: r for r in outcome.results}
    for host in hosts:
        result = outcomes.get(host.name)
        unaudited = None
        if result is not None and result.rc is None:
            unaudited = f"{result.error}: {result.message}"
        answers = parse_answers(result.stdout) if result is not None else {}
        report.hosts.append(
            evaluate_host(host.name, client_name, checks[host.name], answers, unaudited)
        )
    if store is not None and report.run_id is not None:
        store.append(
            [
                NewRecord(
                    chain=client_name,
                    kind="baseline_result",
                    run_id=report.run_id,
                    host=h.host,
                    recorded_at=datetime.now(UTC),
                    payload={
                        "host": h.host,
                        "score": h.score,
                        "unaudited": h.unaudited,
                        "results": [r.as_dict() for r in h.results],
                    },
                )
                for h in report.hosts
            ]
        )
    return report
