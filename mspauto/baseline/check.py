"""Baselines on the check pipeline: the four pieces that are a baseline's own.

- *plan*: the rules of the packs the host's baseline policies name, with the
  policies' overrides and today's waivers (the first policy to bring a rule wins;
  ``validate`` warns about overlaps);
- *probe*: every applicable rule's audit in one script for the host's family;
- *judge*: each rule's answer against its expectation (see
  :func:`mspauto.baseline.rules.judge_answer`), waivers applied;
- *changes*: each failed rule's remediation task, unless its policy says
  ``remediate: never``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mspauto.baseline.rules import Expectation, Rule, RulePack, judge_answer
from mspauto.baseline.script import audit_script, parse_answers
from mspauto.checks.pipeline import Change, HostScope
from mspauto.evidence.records import Finding, FindingStatus, HostFindings
from mspauto.inventory.resolve import Host
from mspauto.policy.models import BaselinePolicy
from mspauto.project import Project
from mspauto.transport.base import CommandResult

__all__ = ["BaselineCheck", "PlannedRule"]


@dataclass(frozen=True)
class PlannedRule:
    """A rule as it applies to one host: the policy and pack that bring it, the
    expectation (overrides applied) and the waiver covering it there, if any."""

    policy: BaselinePolicy
    pack: RulePack
    rule: Rule
    expectation: Expectation
    applicable: bool
    waiver: str | None = None


class BaselineCheck:
    """The baseline kind's plan, probe, judge and changes."""

    kind = "baseline"

    def __init__(self, packs: Mapping[str, RulePack]) -> None:
        self._packs = packs
        # Hosts with the same policies, waivers and platform get the same plan and the
        # same script: build each once per run, not once per host.
        self._plans: dict[tuple[object, ...], list[PlannedRule] | None] = {}
        self._scripts: dict[tuple[object, ...], str] = {}

    @classmethod
    def for_project(cls, project: Project) -> BaselineCheck:
        """The check with the project's rule packs (shipped ones included)."""
        return cls(
            {p.policy.name: p.policy for p in project.policies if isinstance(p.policy, RulePack)}
        )

    def plan(self, scope: HostScope) -> list[PlannedRule] | None:
        """Every rule that concerns the host, or None when no baseline policy selects it."""
        key = (
            tuple(id(p) for p in scope.policies),
            tuple(id(w) for w in scope.waivers),
            scope.host.platform,
        )
        if key not in self._plans:
            self._plans[key] = self._plan(scope)
        return self._plans[key]

    def _plan(self, scope: HostScope) -> list[PlannedRule] | None:
        planned: list[PlannedRule] = []
        seen: set[str] = set()
        for loaded in scope.policies:
            policy = loaded.policy
            assert isinstance(policy, BaselinePolicy)
            for pack_name in policy.packs:
                pack = self._packs[pack_name]
                for rule in pack.rules:
                    if rule.id in seen:
                        continue
                    seen.add(rule.id)
                    expectation = (
                        rule.expect.with_value(policy.overrides[rule.id])
                        if rule.id in policy.overrides
                        else rule.expect
                    )
                    waiver = next((w.name for w in scope.waivers if w.rule == rule.id), None)
                    planned.append(
                        PlannedRule(
                            policy,
                            pack,
                            rule,
                            expectation,
                            pack.applies(rule, scope.host),
                            waiver,
                        )
                    )
        return planned or None

    def probe(self, host: Host, plan: list[PlannedRule]) -> str | None:
        """One script with every applicable rule's audit, for the host's family."""
        rules = [(p.pack, p.rule) for p in plan if p.applicable]
        if not rules or host.family is None:
            return None
        key = (host.family, tuple((pack.name, rule.id) for pack, rule in rules))
        if key not in self._scripts:
            self._scripts[key] = audit_script(host.family, rules)
        return self._scripts[key]

    def judge(
        self, host: Host, plan: list[PlannedRule], result: CommandResult | None
    ) -> HostFindings:
        """Every rule's verdict; a host whose audit did not run has every applicable
        rule in error (so it scores 0) and says why."""
        unchecked = _why_unchecked(result)
        answers = parse_answers(result.stdout) if result is not None and not unchecked else {}
        if result is not None and not unchecked and not answers and result.rc != 0:
            # The script never got to its first rule: sudo refused, no shell, no bash.
            unchecked = f"the audit did not start: {_last_line(result.stderr) or result.message}"
        findings = []
        for planned in plan:
            if not planned.applicable:
                findings.append(_finding(planned, FindingStatus.NOT_APPLICABLE))
            elif unchecked is not None:
                findings.append(_finding(planned, FindingStatus.ERROR, reason=unchecked))
            else:
                verdict = judge_answer(
                    planned.rule, planned.expectation, answers.get(planned.rule.id)
                )
                status = FindingStatus(verdict.status)
                if status is FindingStatus.FAIL and planned.waiver is not None:
                    status = FindingStatus.WAIVED
                findings.append(_finding(planned, status, verdict.observed, verdict.reason))
        return HostFindings(self.kind, host.name, tuple(findings), unchecked)

    def changes(
        self, host: Host, plan: list[PlannedRule], findings: HostFindings
    ) -> Sequence[Change]:
        """The remediation of each failed rule; rules without one, or whose policy says
        ``remediate: never``, are left to a person (a change without a task)."""
        by_id = {p.rule.id: p for p in plan}
        changes = []
        for finding in findings.findings:
            if finding.status is not FindingStatus.FAIL:
                continue
            planned = by_id[finding.subject]
            remediation = planned.rule.remediation
            if planned.policy.remediate == "never":
                changes.append(
                    Change(
                        finding.subject,
                        f"policy '{planned.policy.name}' says remediate: never",
                        None,
                    )
                )
            elif remediation is None:
                changes.append(Change(finding.subject, "no automatic remediation", None))
            elif host.connection != "ssh":
                changes.append(
                    Change(
                        finding.subject,
                        f"remediations run through Ansible over SSH; this host is reached "
                        f"over {host.connection}",
                        None,
                    )
                )
            else:
                value = _value(getattr(planned.expectation, planned.expectation.comparator))
                changes.append(
                    Change(
                        finding.subject,
                        planned.expectation.describe(),
                        {remediation.module: _fill(remediation.args, value)},
                    )
                )
        return changes


def _why_unchecked(result: CommandResult | None) -> str | None:
    if result is None or result.rc is not None:
        return None
    return f"{result.error}: {result.message}"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _finding(
    planned: PlannedRule, status: FindingStatus, observed: str = "", reason: str = ""
) -> Finding:
    rule = planned.rule
    return Finding(
        subject=rule.id,
        policy=planned.policy.name,
        status=status,
        observed=observed,
        expected=planned.expectation.describe(),
        reason=reason,
        waiver=planned.waiver if status is FindingStatus.WAIVED else None,
        weight=rule.weight,
        detail={
            "title": rule.title,
            "pack": planned.pack.name,
            "severity": rule.severity,
            "cis": list(rule.cis),
        },
    )


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return str(value[0])
    return str(value)


def _fill(value: Any, expected: str) -> Any:
    """The remediation with ``{{ expected }}`` replaced by the value the host must have."""
    if isinstance(value, str):
        return value.replace("{{ expected }}", expected)
    if isinstance(value, dict):
        return {k: _fill(v, expected) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, expected) for v in value]
    return value
