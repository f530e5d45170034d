"""The ``baseline`` and ``rulepack`` policy kinds: registration, summaries, cross-checks."""

from __future__ import annotations

from collections.abc import Iterator
from difflib import get_close_matches

from pydantic import ValidationError

from mspauto.baseline.rules import RulePack
from mspauto.inventory.resolve import Inventory
from mspauto.policy.loader import LoadedPolicy
from mspauto.policy.models import BaselinePolicy
from mspauto.policy.registry import CheckContext, PolicyKind, register
from mspauto.problems import Problem

__all__: list[str] = []


def _baseline(policy: BaselinePolicy) -> str:
    return f"packs {', '.join(policy.packs)}; remediate {policy.remediate}"


def _rulepack(policy: RulePack) -> str:
    return f"{len(policy.rules)} rules for {', '.join(policy.platforms)}: {policy.title}"


def _references(context: CheckContext) -> Iterator[Problem]:
    """Named packs exist, overridden rules exist, no rule id comes from two packs, and
    no host gets one rule from two policies."""
    policies, inventory = context.policies, context.inventory
    packs = {p.policy.name: p.policy for p in policies if isinstance(p.policy, RulePack)}
    baselines = [p for p in policies if isinstance(p.policy, BaselinePolicy)]
    for loaded in baselines:
        policy = loaded.policy
        assert isinstance(policy, BaselinePolicy)
        owner: dict[str, str] = {}
        for index, name in enumerate(policy.packs):
            pack = packs.get(name)
            if pack is None and context.may_define("rulepack", name):
                continue  # its own file's problems say what to fix
            if pack is None:
                close = get_close_matches(name, list(packs), n=1)
                hint = (
                    f" (did you mean '{close[0]}'?)"
                    if close
                    else "; rule packs are 'kind: rulepack' files, e.g. policies/baselines/"
                )
                yield Problem(
                    loaded.doc.location(("packs", index)),
                    f"packs[{index}]",
                    f"no rule pack is named '{name}'{hint}",
                )
                continue
            for rule in pack.rules:
                if rule.id in owner and owner[rule.id] != name:
                    yield Problem(
                        loaded.doc.location(("packs", index)),
                        f"packs[{index}]",
                        f"rule '{rule.id}' is in both {owner[rule.id]} and {name}; a "
                        "host can have only one verdict per rule: drop one pack or "
                        "rename the rule in your own pack",
                    )
                owner.setdefault(rule.id, name)
        rules = {r.id: r for name in policy.packs if name in packs for r in packs[name].rules}
        for rule_id, value in policy.overrides.items():
            at = loaded.doc.location(("overrides", rule_id))
            if owner and rule_id not in owner:
                close = get_close_matches(rule_id, sorted(owner), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                yield Problem(
                    at,
                    f"overrides.{rule_id}",
                    f"no rule '{rule_id}' in {', '.join(policy.packs)}{hint}",
                )
            elif rule_id in rules:
                expectation = rules[rule_id].expect
                try:
                    expectation.with_value(value)
                except ValidationError:
                    wanted = _KIND_OF_VALUE.get(expectation.comparator, "a value")
                    yield Problem(
                        at,
                        f"overrides.{rule_id}",
                        f"{value!r} cannot replace this rule's expected value "
                        f"({expectation.describe()}): give {wanted}",
                    )
    yield from _overlaps(baselines, packs, inventory)


_KIND_OF_VALUE = {
    "at_most": "a number",
    "at_least": "a number",
    "mode_at_most": "a file mode like '0640'",
    "one_of": "a list of values",
    "matches": "a regular expression",
    "empty": "true or false",
}


def _overlaps(
    baselines: list[LoadedPolicy], packs: dict[str, RulePack], inventory: Inventory
) -> Iterator[Problem]:
    """Two enabled policies giving one host the same rule: from two packs it is an error
    (two rules, one verdict); from one pack the first policy's expectation is used."""
    reported: set[tuple[str, str]] = set()
    for host in inventory.hosts():
        first: dict[str, tuple[LoadedPolicy, str]] = {}
        for loaded in baselines:
            policy = loaded.policy
            assert isinstance(policy, BaselinePolicy)
            if not (policy.enabled and policy.targets.matches(host)):
                continue
            for pack_name in policy.packs:
                for rule in packs[pack_name].rules if pack_name in packs else ():
                    earlier, earlier_pack = first.setdefault(rule.id, (loaded, pack_name))
                    pair = (earlier.policy.name, policy.name)
                    if earlier is loaded or pair in reported:
                        continue
                    reported.add(pair)
                    if earlier_pack != pack_name:
                        yield Problem(
                            loaded.doc.location(("packs",)),
                            "packs",
                            f"host {host.name} gets rule '{rule.id}' from {earlier_pack} "
                            f"(policy '{earlier.policy.name}') and from {pack_name}; a host "
                            "can have only one verdict per rule: rename the rule in your own "
                            "pack or narrow the policies' targets",
                        )
                    else:
                        yield Problem(
                            loaded.doc.location(("packs",)),
                            "packs",
                            f"host {host.name} gets rule '{rule.id}' (and maybe more) from "
                            f"both '{earlier.policy.name}' and '{policy.name}'; only "
                            f"'{earlier.policy.name}' ({earlier.location}) is used for them",
                            severity="warning",
                        )


register(
    PolicyKind(
        "baseline",
        BaselinePolicy,
        _baseline,
        _references,
        help="audit (and optionally remediate) hardening rule packs",
    )
)
register(PolicyKind("rulepack", RulePack, _rulepack, help="baseline rules as data"))
