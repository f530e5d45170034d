"""Rules and rule packs: what to audit on a host, and what the answer must be.

A rule pack is data (``policies/baselines/*.yaml``, ``kind: rulepack``). Each rule has
one audit per platform family (a shell command for Linux, PowerShell for Windows) that
prints the *observed* value, and one expectation it is compared with. A pack may define
named *facts* (``sshd -T``, the sysctl configuration): each runs once per host, and the
rules that name it read its output with ``fact NAME``. When an audit prints nothing (the
setting is not there), the rule's ``unset`` says what holds: a verdict, or the default
that then applies. Judging is a pure function of the answer (:func:`judge_answer`), so
every rule is testable without a host.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from mspauto.fields import Name, StrictModel, item_error
from mspauto.inventory.models import Platform

if TYPE_CHECKING:
    from mspauto.baseline.script import RuleAnswer
    from mspauto.inventory.resolve import Host

__all__ = [
    "SEVERITY_WEIGHTS",
    "Audit",
    "Expectation",
    "Fact",
    "FactName",
    "Rule",
    "RulePack",
    "Unset",
    "Verdict",
    "judge_answer",
]

RuleSeverity = Literal["critical", "high", "medium", "low"]
SEVERITY_WEIGHTS: dict[str, int] = {"critical": 10, "high": 5, "medium": 3, "low": 1}


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


_FACT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
# `fact NAME` as an audit calls it (not inside a longer word such as `artifact`).
_FACT_CALL = re.compile(r"(?<![\w-])fact\s+([A-Za-z0-9_-]+)")


def _check_fact_name(value: str) -> str:
    if not _FACT_NAME.match(value):
        raise ValueError(
            f"'{value}' is not a valid fact name: a lowercase letter, then lowercase "
            "letters, digits or '_' (at most 32 characters)"
        )
    return value


FactName = Annotated[
    str,
    AfterValidator(_check_fact_name),
    WithJsonSchema({"type": "string", "pattern": _FACT_NAME.pattern}),
]
"""Name of a pack's fact: a safe identifier, as it is used in the audit script."""


class Fact(StrictModel):
    """A command run once per host whose output several rules read (``fact NAME``).

    Its output, errors and exit code are kept for the rules that use it: a fact that
    fails makes every rule reading it an error with the fact's message, never a pass.
    Facts are shell commands, for Linux hosts.
    """

    linux: str = Field(min_length=1)
    description: str | None = None


def _allow_verdict_shorthand(schema: dict[str, Any]) -> None:
    """Publish ``unset: pass`` / ``unset: fail`` as valid, as the model accepts them."""
    written_out = dict(schema)
    schema.clear()
    schema["anyOf"] = [{"type": "string", "enum": ["pass", "fail"]}, written_out]


class Unset(StrictModel):
    """What holds when the audit prints nothing (the setting is not configured).

    Either a ``verdict`` (``pass`` or ``fail``, optionally with the ``reason`` shown in
    the finding), or the ``default`` value that applies then and its ``source`` (e.g.
    the kernel's default), which is compared like an observed value. In YAML, ``unset:
    fail`` and ``unset: pass`` are short for ``{verdict: ...}``.
    """

    model_config = ConfigDict(json_schema_extra=_allow_verdict_shorthand)

    verdict: Literal["pass", "fail"] | None = None
    reason: str | None = Field(default=None, min_length=1)
    default: str | None = None
    source: str | None = Field(default=None, min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"verdict": data}
        default = data.get("default") if isinstance(data, dict) else None
        if isinstance(default, int | float) and not isinstance(default, bool):
            return {**data, "default": str(default)}  # `default: 2` means the text "2"
        return data

    @model_validator(mode="after")
    def _verdict_or_default(self) -> Unset:
        if (self.verdict is None) == (self.default is None):
            raise ValueError(
                "give either a verdict (unset: pass, unset: fail) or the default that "
                "applies (unset: {default: VALUE, source: WHERE IT COMES FROM})"
            )
        if self.verdict is not None and self.source is not None:
            raise item_error("'source' only goes with 'default'", at="source")
        if self.default is not None and self.reason is not None:
            raise item_error(
                "'reason' only goes with 'verdict'; with a default, the reason names its 'source'",
                at="reason",
            )
        return self


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
    facts: list[FactName] = Field(
        default_factory=list, description="the pack's facts its audit reads with `fact NAME`"
    )
    unset: Unset = Field(
        default_factory=lambda: Unset(verdict="fail"),
        description="what holds when the audit prints nothing (default: fail)",
    )
    remediation: Remediation | None = None
    rationale: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        if self.facts:
            if self.audit.linux is None:
                raise item_error(
                    "facts are shell commands: this rule has no linux audit", at="facts"
                )
            called = set(_FACT_CALL.findall(self.audit.linux))
            for index, name in enumerate(self.facts):
                if name not in called:
                    raise item_error(
                        f"the linux audit never reads fact '{name}' (fact {name} KEY)",
                        at=("facts", index),
                    )
        undeclared = sorted(set(_FACT_CALL.findall(self.audit.linux or "")) - set(self.facts))
        if undeclared:
            raise item_error(
                f"the linux audit reads fact '{undeclared[0]}': list it under 'facts'",
                at="facts" if self.facts else "audit",
            )
        if self.expect.empty is not None and "unset" in self.model_fields_set:
            raise item_error(
                "an 'empty' expectation judges an empty answer itself: drop 'unset'",
                at="unset",
            )
        default = self.unset.default
        if default is not None and self.expect.check(default) is None:
            raise item_error(
                f"the default '{default}' cannot be compared with {self.expect.describe()}",
                at=("unset", "default"),
            )
        return self

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
    facts: dict[FactName, Fact] = Field(
        default_factory=dict, description="commands run once per host, read by the rules"
    )
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

    @model_validator(mode="after")
    def _facts_defined(self) -> RulePack:
        for index, rule in enumerate(self.rules):
            for position, name in enumerate(rule.facts):
                if name not in self.facts:
                    defined = ", ".join(sorted(self.facts)) or "none"
                    raise item_error(
                        f"fact '{name}' is not defined in this pack's 'facts' (defined: {defined})",
                        at=("rules", index, "facts", position),
                    )
        return self

    def applies(self, rule: Rule, host: Host) -> bool:
        """True when ``rule`` is meant for the host's platform and has an audit for its
        family."""
        return (
            host.platform in (rule.platforms or self.platforms)
            and host.family is not None
            and getattr(rule.audit, host.family) is not None
        )


_OBSERVED_CAP = 500
_DETAIL_CAP = 200


@dataclass(frozen=True)
class Verdict:
    """A rule's verdict on one host: the status, what was seen, and why."""

    status: Literal["pass", "fail", "error"]
    observed: str
    reason: str


def judge_answer(rule: Rule, expectation: Expectation, answer: RuleAnswer | None) -> Verdict:
    """Judge one rule's answer against ``expectation`` (the rule's, or an override).

    ``error`` only when the audit could not run or its answer cannot be read: no answer,
    a non-zero exit, anything on stderr, or a value the expectation cannot compare. An
    empty answer is judged by the rule's ``unset`` (except for an ``empty``
    expectation, where empty is the answer). The audit's notes head the reason.
    """
    if answer is None:
        return Verdict("error", "", "no answer: the audit script stopped early")
    notes = "; ".join(note for note in answer.notes if note.strip())
    observed = answer.output.strip()

    def because(*parts: str) -> str:
        return "; ".join(part for part in (notes, *parts) if part)[:_OBSERVED_CAP]

    if answer.code != 0 or answer.errors:
        detail = (answer.errors or observed)[-_DETAIL_CAP:]
        reason = f"audit exited {answer.code}" if answer.code != 0 else "audit reported an error"
        return Verdict(
            "error", observed[:_OBSERVED_CAP], because(f"{reason}: {detail}" if detail else reason)
        )
    if observed == "" and expectation.empty is None:
        unset = rule.unset
        if unset.default is None:
            assert unset.verdict is not None  # Unset holds one or the other
            # The audit's own notes say best why nothing was found; else the rule's.
            reason = notes or unset.reason or "not set"
            return Verdict(unset.verdict, "", reason[:_OBSERVED_CAP])
        observed = unset.default
        setting = f"not set: {unset.source or 'the built-in default'} applies"
    else:
        setting = ""
    verdict = expectation.check(observed)
    if verdict is None:
        return Verdict(
            "error",
            observed[:_OBSERVED_CAP],
            because(setting, f"cannot compare '{observed[:80]}' with {expectation.describe()}"),
        )
    return Verdict("pass" if verdict else "fail", observed[:_OBSERVED_CAP], because(setting))
