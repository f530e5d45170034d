"""From a host's audit answers to rule results and scores (pure: no I/O).

Statuses: ``pass``, ``fail``, ``error`` (the audit broke, or its output cannot be
compared: never counted as a pass), ``not_applicable`` (no audit for this platform),
``waived`` (failed, but an approved, unexpired waiver covers it).

Score = weight of passed rules / weight of rules that count, where waived and
not-applicable rules do not count and errors count as not passed. A host that could not
be audited at all scores 0 in its client's score: an unchecked host is not compliant.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from mspauto.baseline.rules import Expectation, Rule
from mspauto.baseline.script import RuleAnswer

__all__ = ["CheckedRule", "HostBaseline", "RuleResult", "client_score", "evaluate_host"]

Status = Literal["pass", "fail", "error", "not_applicable", "waived"]


@dataclass(frozen=True)
class CheckedRule:
    """A rule as it applies to one host: its pack, expectation (overrides applied) and
    the waiver covering it there, if any."""

    pack: str
    rule: Rule
    expectation: Expectation
    applicable: bool
    waiver: str | None = None


@dataclass(frozen=True)
class RuleResult:
    """One control on one host: what was seen, what was expected, the verdict."""

    rule_id: str
    title: str
    pack: str
    severity: str
    weight: int
    status: Status
    observed: str
    expected: str
    reason: str = ""
    cis: tuple[str, ...] = ()
    waiver: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Machine-readable form."""
        return {**self.__dict__, "cis": list(self.cis)}


@dataclass(frozen=True)
class HostBaseline:
    """Every rule's result on one host (or why the host could not be audited)."""

    host: str
    client: str
    results: list[RuleResult] = field(default_factory=list)
    unaudited: str | None = None

    @property
    def counted_weight(self) -> int:
        """Weight of the rules that count in the score."""
        return sum(r.weight for r in self.results if r.status in ("pass", "fail", "error"))

    @property
    def passed_weight(self) -> int:
        """Weight of the rules that passed (0 for a host that was not audited)."""
        if self.unaudited:
            return 0
        return sum(r.weight for r in self.results if r.status == "pass")

    @property
    def score(self) -> float | None:
        """0..100, or None when nothing counts or the host was not audited."""
        if self.unaudited or not self.counted_weight:
            return None
        return round(100 * self.passed_weight / self.counted_weight, 1)

    def count(self, status: Status) -> int:
        """How many rules ended in ``status``."""
        return sum(1 for r in self.results if r.status == status)


def evaluate_host(
    host: str,
    client: str,
    checks: Sequence[CheckedRule],
    answers: Mapping[str, RuleAnswer],
    unaudited: str | None = None,
) -> HostBaseline:
    """Compare each rule's answer with its expectation."""
    results = []
    for check in checks:
        results.append(_judge(check, answers.get(check.rule.id), unaudited))
    return HostBaseline(host, client, results, unaudited)


def _judge(check: CheckedRule, answer: RuleAnswer | None, unaudited: str | None) -> RuleResult:
    rule, expected = check.rule, check.expectation.describe()

    def result(
        status: Status, observed: str = "", reason: str = "", waiver: str | None = None
    ) -> RuleResult:
        return RuleResult(
            rule.id,
            rule.title,
            check.pack,
            rule.severity,
            rule.weight,
            status,
            observed[:500],
            expected,
            reason,
            tuple(rule.cis),
            waiver,
        )

    if not check.applicable:
        return result("not_applicable")
    if unaudited is not None:
        return result("error", reason=unaudited)
    if answer is None:
        return result("error", reason="no answer: the audit script stopped early")
    observed, code, errors = answer
    if code != 0 or errors:
        detail = (errors or observed)[-200:]
        return result(
            "error",
            observed,
            f"audit exited {code}: {detail}" if code != 0 else f"audit reported an error: {detail}",
        )
    verdict = check.expectation.check(observed)
    if verdict is None:
        return result("error", observed, f"cannot compare '{observed[:80]}' with {expected}")
    if verdict:
        return result("pass", observed)
    if check.waiver is not None:
        return result("waived", observed, waiver=check.waiver)
    return result("fail", observed)


def client_score(hosts: Sequence[HostBaseline]) -> float | None:
    """The client's score: every host's counted weight, unaudited hosts as failed."""
    counted = sum(h.counted_weight for h in hosts)
    if not counted:
        return None
    return round(100 * sum(h.passed_weight for h in hosts) / counted, 1)


def waiver_applies(expires: date, today: date) -> bool:
    """A waiver applies up to and including its expiry day."""
    return today <= expires
