"""Rules and rule packs: what to audit on a host, and what the answer must be.

A rule pack is data (``policies/baselines/*.yaml``, ``kind: rulepack``). Each rule has
one audit per platform family (a shell command for Linux, PowerShell for Windows) that
prints the *observed* value, and one expectation it is compared with. Comparisons are
pure functions of the observed text, so every rule is testable without a host.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from mspauto.fields import Name, StrictModel, item_error
from mspauto.inventory.models import Platform

__all__ = ["SEVERITY_WEIGHTS", "Audit", "Expectation", "Rule", "RulePack", "family_of"]

RuleSeverity = Literal["critical", "high", "medium", "low"]
SEVERITY_WEIGHTS: dict[str, int] = {"critical": 10, "high": 5, "medium": 3, "low": 1}
Family = Literal["linux", "windows"]


def family_of(platform: str) -> Family | None:
    """``linux`` for Debian, Ubuntu and RHEL, ``windows`` for Windows, else None."""
    if platform in ("debian", "ubuntu", "rhel"):
        return "linux"
    return "windows" if platform == "windows" else None


class Audit(StrictModel):
    """The command that prints the observed value, per platform family."""

    linux: str | None = None
    windows: str | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> Audit:
        if self.linux is None and self.windows is None:
            raise ValueError("give an audit for linux, windows or both")
        return self


_COMPARATORS = (
    "equals",
    "not_equals",
    "one_of",
    "at_most",
    "at_least",
    "matches",
    "empty",
    "mode_at_most",
)


class Expectation(StrictModel):
    """How the observed value must compare; exactly one comparator."""

    equals: str | None = None
    not_equals: str | None = None
    one_of: list[str] | None = None
    at_most: float | None = None
    at_least: float | None = None
    matches: str | None = None
    empty: bool | None = None
    mode_at_most: str | None = Field(default=None, pattern=r"^0?[0-7]{3,4}$")

    @model_validator(mode="before")
    @classmethod
    def _scalars_are_text(cls, data: Any) -> Any:
        # `equals: 2` and `equals: "2"` mean the same: commands print text.
        if isinstance(data, dict):
            return {
                k: (
                    str(v)
                    if k in ("equals", "not_equals", "mode_at_most")
                    and isinstance(v, int | float)
                    and not isinstance(v, bool)
                    else v
                )
                for k, v in data.items()
            }
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> Expectation:
        given = [name for name in _COMPARATORS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of {', '.join(_COMPARATORS)}"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.matches is not None:
            try:
                re.compile(self.matches)
            except re.error as exc:
                raise item_error(f"not a valid regular expression: {exc}", at="matches") from None
        return self

    @property
    def comparator(self) -> str:
        """The one comparator given."""
        return next(name for name in _COMPARATORS if getattr(self, name) is not None)

    def with_value(self, value: Any) -> Expectation:
        """The same comparison against another value (a policy's override)."""
        return Expectation.model_validate({self.comparator: value})

    def describe(self) -> str:
        """What is expected, for reports: ``= no``, ``<= 4``, ``mode 0640 or stricter``..."""
        if self.equals is not None:
            return f"= {self.equals}"
        if self.not_equals is not None:
            return f"!= {self.not_equals}"
        if self.one_of is not None:
            return "one of " + ", ".join(v or "(unset)" for v in self.one_of)
        if self.at_most is not None:
            return f"<= {self.at_most:g}"
        if self.at_least is not None:
            return f">= {self.at_least:g}"
        if self.matches is not None:
            return f"matches /{self.matches}/"
        if self.empty is not None:
            return "nothing found" if self.empty else "something found"
        return f"mode {self.mode_at_most} or stricter"

    def check(self, observed: str) -> bool | None:
        """True/False, or None when the observed value cannot be compared (an error)."""
        text = observed.strip()
        if self.equals is not None:
            return text == self.equals
        if self.not_equals is not None:
            return text != self.not_equals
        if self.one_of is not None:
            return text in self.one_of
        if self.at_most is not None or self.at_least is not None:
            try:
                number = float(text)
            except ValueError:
                return None
            if self.at_most is not None:
                return number <= self.at_most
            return number >= (self.at_least or 0.0)
        if self.matches is not None:
            return re.search(self.matches, text) is not None
        if self.empty is not None:
            return (text == "") == self.empty
        assert self.mode_at_most is not None
        return _mode_within(text, self.mode_at_most)


def _mode_within(observed: str, limit: str) -> bool | None:
    """True when every permission bit set in ``observed`` is also allowed by ``limit``."""
    try:
        mode, allowed = int(observed, 8), int(limit, 8)
    except ValueError:
        return None
    return mode & ~allowed & 0o7777 == 0


class Remediation(StrictModel):
    """How to fix a failed rule: one Ansible task (module and its arguments)."""

    module: str
    args: dict[str, Any] = Field(default_factory=dict)
    description: str | None = None


class Rule(StrictModel):
    """One control of a baseline."""

    id: Name
    title: str = Field(min_length=1)
    cis: list[str] = Field(default_factory=list, description="CIS benchmark references")
    severity: RuleSeverity
    platforms: list[Platform] | None = None
    audit: Audit
    expect: Expectation
    remediation: Remediation | None = None
    rationale: str | None = None

    @property
    def weight(self) -> int:
        """Its weight in the score (by severity)."""
        return SEVERITY_WEIGHTS[self.severity]


class RulePack(StrictModel):
    """A set of rules shipped or written as data (``kind: rulepack``)."""

    kind: Literal["rulepack"]
    name: Name
    title: str
    description: str | None = None
    platforms: list[Platform] = Field(min_length=1)
    rules: list[Rule] = Field(min_length=1)

    @field_validator("rules")
    @classmethod
    def _unique_ids(cls, rules: list[Rule]) -> list[Rule]:
        seen: set[str] = set()
        for index, rule in enumerate(rules):
            if rule.id in seen:
                raise item_error(
                    f"rule id '{rule.id}' is used twice in this pack", at=(index, "id")
                )
            seen.add(rule.id)
        return rules

    def applies(self, rule: Rule, platform: str) -> bool:
        """True when ``rule`` is meant for ``platform`` and has an audit for its family."""
        family = family_of(platform)
        return (
            platform in (rule.platforms or self.platforms)
            and family is not None
            and getattr(rule.audit, family) is not None
        )
