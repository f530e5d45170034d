"""Baseline rules, scripts and scoring (pure), and the shipped rule packs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mspauto.baseline.evaluate import CheckedRule, HostBaseline, client_score, evaluate_host
from mspauto.baseline.rules import Expectation, Rule, RulePack
from mspauto.baseline.script import linux_script, parse_answers
from mspauto.config import Settings
from mspauto.project import load_project

REPO = Path(__file__).resolve().parent.parent.parent


@pytest.mark.parametrize(
    ("expect", "observed", "verdict"),
    [
        ({"equals": "no"}, "no", True),
        ({"equals": "no"}, "yes", False),
        ({"equals": 2}, "2", True),
        ({"at_most": 4}, "4", True),
        ({"at_most": 4}, "10", False),
        ({"at_most": 4}, "", None),
        ({"at_least": 14}, "8", False),
        ({"one_of": ["DROP", "REJECT"]}, "ACCEPT", False),
        ({"matches": "^[1-5]$"}, "0", False),
        ({"empty": True}, "", True),
        ({"empty": True}, "legacy", False),
        ({"mode_at_most": "0640"}, "640", True),
        ({"mode_at_most": "0640"}, "600", True),
        ({"mode_at_most": "0640"}, "644", False),
        ({"mode_at_most": "0755"}, "4755", False),
        ({"mode_at_most": "0640"}, "rw-r-----", None),
    ],
)
def test_expectations(expect: dict[str, object], observed: str, verdict: bool | None) -> None:
    assert Expectation.model_validate(expect).check(observed) is verdict


def test_an_expectation_has_exactly_one_comparator() -> None:
    with pytest.raises(ValueError, match="exactly one of"):
        Expectation.model_validate({"equals": "no", "at_most": 3})


def test_the_audit_script_keeps_each_rule_apart() -> None:
    script = linux_script(
        [
            ("says-yes", "echo yes"),
            ("breaks", "echo 'no such file' >&2; exit 3"),
            ("two-lines", "printf 'x\\ny\\n'"),
            ("quotes", "echo \"it's\" '$HOME'"),
            ("pipe-fails", "false | cat"),
            ("complains", "echo 'Bad configuration option' >&2; echo none"),
        ]
    )
    output = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout
    assert parse_answers("noise before\n" + output) == {
        "says-yes": ("yes", 0, ""),
        "breaks": ("", 3, "no such file"),
        "two-lines": ("x\ny", 0, ""),
        "quotes": ("it's $HOME", 0, ""),
        "pipe-fails": ("", 1, ""),
        "complains": ("none", 0, "Bad configuration option"),
    }


def test_a_block_cut_short_gives_no_answer() -> None:
    assert parse_answers("::mspauto-audit:: BEGIN a\npartial") == {}


def _rule(rule_id: str, severity: str = "high", expect: dict[str, object] | None = None) -> Rule:
    return Rule.model_validate(
        {
            "id": rule_id,
            "title": rule_id,
            "severity": severity,
            "audit": {"linux": "true"},
            "expect": expect or {"equals": "ok"},
        }
    )


def _check(rule: Rule, applicable: bool = True, waiver: str | None = None) -> CheckedRule:
    return CheckedRule("pack", rule, rule.expect, applicable, waiver)


def test_statuses_and_scores() -> None:
    checks = [
        _check(_rule("passes")),
        _check(_rule("fails", "medium")),
        _check(_rule("breaks")),
        _check(_rule("waived"), waiver="w1"),
        _check(_rule("elsewhere"), applicable=False),
        _check(_rule("silent", "low")),
        _check(_rule("complains", "low")),
    ]
    answers = {
        "passes": ("ok", 0, ""),
        "fails": ("nope", 0, ""),
        "breaks": ("boom", 2, ""),
        "waived": ("nope", 0, ""),
        "complains": ("ok", 0, "Bad configuration option"),
    }
    host = evaluate_host("h1", "acme", checks, answers)
    statuses = {r.rule_id: r.status for r in host.results}
    assert statuses == {
        "passes": "pass",
        "fails": "fail",
        "breaks": "error",
        "waived": "waived",
        "elsewhere": "not_applicable",
        "silent": "error",
        "complains": "error",
    }
    # pass 5 of (pass 5 + fail 3 + errors 5 + 1 + 1): waived and n/a do not count.
    assert host.score == round(100 * 5 / 15, 1)
    assert next(r for r in host.results if r.rule_id == "breaks").reason == "audit exited 2: boom"


def test_an_unaudited_host_pulls_the_client_score_down() -> None:
    checks = [_check(_rule("r1")), _check(_rule("r2"))]
    good = evaluate_host("h1", "acme", checks, {"r1": ("ok", 0, ""), "r2": ("ok", 0, "")})
    lost = evaluate_host("h2", "acme", checks, {}, unaudited="unreachable: refused")
    assert good.score == 100 and lost.score is None
    assert client_score([good, lost]) == 50
    assert client_score([HostBaseline("h", "acme")]) is None


def test_shipped_packs_load_and_cover_both_platforms() -> None:
    project = load_project(Settings.load(REPO))
    packs = {p.policy.name: p.policy for p in project.policies if isinstance(p.policy, RulePack)}
    assert len(packs["debian-cis"].rules) >= 40
    assert len(packs["windows-cis"].rules) >= 25
    for pack in packs.values():
        for rule in pack.rules:
            assert rule.cis, rule.id
            family = "windows" if pack.name == "windows-cis" else "linux"
            assert getattr(rule.audit, family), rule.id
