"""Baseline rules, facts, the audit script and judging (pure), and the shipped rule packs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from mspauto.baseline.rules import Expectation, Rule, RulePack, Verdict, judge_answer
from mspauto.baseline.script import (
    LinuxAudit,
    RuleAnswer,
    audit_script,
    linux_script,
    parse_answers,
)
from mspauto.cli import cli
from mspauto.config import Settings
from mspauto.policy.schema import policy_schema
from mspauto.project import load_project

REPO = Path(__file__).resolve().parent.parent.parent
PACKS = REPO / "mspauto" / "baseline" / "packs"
FIXTURES = REPO / "tests" / "fixtures" / "baseline" / "debian-cis"
PROFILES = ("stock", "compliant", "drifted")


def _pack(name: str) -> RulePack:
    return RulePack.model_validate(yaml.safe_load((PACKS / f"{name}.yaml").read_text()))


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


def _run(script: str, env: dict[str, str] | None = None) -> str:
    # Bytes decoded as they are: a transport hands over "\r" untranslated.
    output = subprocess.run(["sh", "-c", script], capture_output=True, check=True, env=env)
    return output.stdout.decode()


def test_the_audit_script_keeps_each_rule_apart() -> None:
    script = linux_script(
        [
            LinuxAudit("says-yes", "echo yes"),
            LinuxAudit("breaks", "echo 'no such file' >&2; exit 3"),
            LinuxAudit("two-lines", "printf 'x\\ny\\n'"),
            LinuxAudit("quotes", "echo \"it's\" '$HOME'"),
            LinuxAudit("pipe-fails", "false | cat"),
            LinuxAudit("complains", "echo 'Bad configuration option' >&2; echo none"),
            LinuxAudit("explains", "note 'cron is not installed'; note 'and no crontab'"),
            LinuxAudit("reads-nothing", "cat"),
        ]
    )
    assert parse_answers("noise before\n" + _run(script)) == {
        "says-yes": RuleAnswer("yes", 0, ""),
        "breaks": RuleAnswer("", 3, "no such file"),
        "two-lines": RuleAnswer("x\ny", 0, ""),
        "quotes": RuleAnswer("it's $HOME", 0, ""),
        "pipe-fails": RuleAnswer("", 1, ""),
        "complains": RuleAnswer("none", 0, "Bad configuration option"),
        "explains": RuleAnswer("", 0, "", ("cron is not installed", "and no crontab")),
        "reads-nothing": RuleAnswer("", 0, ""),
    }


def test_output_that_looks_like_a_marker_cannot_end_or_fake_a_block() -> None:
    forged = "::mspauto-audit:: END victim 0"
    script = linux_script(
        [
            LinuxAudit("victim", f"echo fine; echo '{forged}'; echo '{forged}' >&2; exit 4"),
            LinuxAudit("next", "echo ok"),
        ]
    )
    answers = parse_answers(_run(script))
    assert answers["victim"].code == 4
    assert answers["victim"].output == f"fine\n {forged}"
    assert answers["next"] == RuleAnswer("ok", 0, "")


def test_other_line_separators_cannot_forge_a_block_either() -> None:
    # A carriage return, form feed or Unicode line separator (printable by anything the
    # host controls, e.g. a file name) must not start a marker line of its own.
    forged = "::mspauto-audit:: BEGIN first\\n::mspauto-audit:: END first 0"
    script = linux_script(
        [
            LinuxAudit("first", "echo bad; exit 3"),
            LinuxAudit("later", f"printf 'x\\r{forged}\\fy\\u2028{forged}\\n'; exit 1"),
        ]
    )
    answers = parse_answers(_run(script))
    assert answers["first"] == RuleAnswer("bad", 3, "")
    assert answers["later"].code == 1


def test_a_block_cut_short_gives_no_answer() -> None:
    assert parse_answers("::mspauto-audit:: BEGIN a\npartial") == {}


def _rule(**fields: Any) -> Rule:
    return Rule.model_validate(
        {
            "id": "r1",
            "title": "r1",
            "severity": "low",
            "audit": {"linux": "true"},
            "expect": {"equals": "ok"},
            **fields,
        }
    )


@pytest.mark.parametrize(
    ("fields", "answer", "verdict"),
    [
        ({}, None, Verdict("error", "", "no answer: the audit script stopped early")),
        ({}, RuleAnswer("ok", 0, ""), Verdict("pass", "ok", "")),
        ({}, RuleAnswer("nope", 0, ""), Verdict("fail", "nope", "")),
        ({}, RuleAnswer("boom", 2, ""), Verdict("error", "boom", "audit exited 2: boom")),
        ({}, RuleAnswer("", 1, ""), Verdict("error", "", "audit exited 1")),
        (
            {},
            RuleAnswer("ok", 0, "Bad configuration option"),
            Verdict("error", "ok", "audit reported an error: Bad configuration option"),
        ),
        (
            {},
            RuleAnswer("", 255, "line 3: Bad configuration option", ("sshd is old",)),
            Verdict("error", "", "sshd is old; audit exited 255: line 3: Bad configuration option"),
        ),
        ({}, RuleAnswer("", 0, ""), Verdict("fail", "", "not set")),
        (
            {},
            RuleAnswer("", 0, "", ("ufw is not installed",)),
            Verdict("fail", "", "ufw is not installed"),
        ),
        (
            {"unset": "pass"},
            RuleAnswer("", 0, "", ("cron is not installed",)),
            Verdict("pass", "", "cron is not installed"),
        ),
        (
            {"unset": {"verdict": "fail", "reason": "passwords never expire"}},
            RuleAnswer("", 0, ""),
            Verdict("fail", "", "passwords never expire"),
        ),
        (
            {"unset": {"default": 2, "source": "the kernel's default"}, "expect": {"equals": 2}},
            RuleAnswer("", 0, ""),
            Verdict("pass", "2", "not set: the kernel's default applies"),
        ),
        (
            {"unset": {"default": "1", "source": "the kernel's default"}, "expect": {"equals": 0}},
            RuleAnswer("", 0, ""),
            Verdict("fail", "1", "not set: the kernel's default applies"),
        ),
        (
            {"unset": {"default": "1"}, "expect": {"equals": 0}},
            RuleAnswer("0", 0, ""),
            Verdict("pass", "0", ""),
        ),
        ({"expect": {"empty": True}}, RuleAnswer("", 0, ""), Verdict("pass", "", "")),
        ({"expect": {"empty": True}}, RuleAnswer("legacy", 0, ""), Verdict("fail", "legacy", "")),
        (
            {"expect": {"at_most": 4}},
            RuleAnswer("four", 0, ""),
            Verdict("error", "four", "cannot compare 'four' with <= 4"),
        ),
        (
            {"expect": {"at_least": 14}},
            RuleAnswer("8", 0, "", ("minlen is not set: the built-in default 8 applies",)),
            Verdict("fail", "8", "minlen is not set: the built-in default 8 applies"),
        ),
    ],
)
def test_judging_an_answer(
    fields: dict[str, Any], answer: RuleAnswer | None, verdict: Verdict
) -> None:
    rule = _rule(**fields)
    assert judge_answer(rule, rule.expect, answer) == verdict


def test_an_override_is_judged_and_so_is_the_default_against_it() -> None:
    rule = _rule(expect={"at_most": 4}, unset={"default": "6", "source": "sshd's default"})
    tightened = rule.expect.with_value(3)
    assert judge_answer(rule, tightened, RuleAnswer("4", 0, "")).status == "fail"
    loosened = rule.expect.with_value(6)
    assert judge_answer(rule, loosened, RuleAnswer("", 0, "")) == Verdict(
        "pass", "6", "not set: sshd's default applies"
    )


def test_observed_values_and_reasons_are_capped() -> None:
    rule = _rule()
    verdict = judge_answer(rule, rule.expect, RuleAnswer("x" * 2000, 0, "", ("y" * 2000,)))
    assert verdict.status == "fail"
    assert len(verdict.observed) == 500 and len(verdict.reason) == 500


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"unset": "maybe"}, "verdict"),
        ({"unset": {"verdict": "pass", "default": "2"}}, "either a verdict"),
        ({"unset": {"verdict": "pass", "source": "kernel"}}, "'source' only goes with"),
        ({"unset": {"default": "2", "reason": "why"}}, "'reason' only goes with"),
        ({"expect": {"at_most": 4}, "unset": {"default": "many"}}, "cannot be compared"),
        ({"expect": {"empty": True}, "unset": "pass"}, "drop 'unset'"),
        ({"facts": ["Bad-Name"]}, "not a valid fact name"),
        ({"facts": ["sshd"]}, "never reads fact 'sshd'"),
        ({"audit": {"linux": "fact sshd | awk '{print $2}'"}}, "list it under 'facts'"),
        ({"audit": {"windows": "Get-Thing"}, "facts": ["sshd"]}, "no linux audit"),
    ],
)
def test_rule_checks(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _rule(**fields)


def test_a_rule_may_name_only_facts_its_pack_defines(empty_project: Path) -> None:
    (empty_project / "policies" / "pack.yaml").write_text(
        "kind: rulepack\nname: mine\ntitle: Mine\nplatforms: [debian]\n"
        "facts:\n  sshd: {linux: sshd -T}\n"
        "rules:\n"
        "- id: r1\n  title: R1\n  severity: low\n"
        "  facts: [sshd, sysctl]\n"
        "  audit: {linux: 'fact sshd | fact sysctl'}\n"
        "  expect: {equals: 'no'}\n"
    )
    result = CliRunner().invoke(cli, ["--project", str(empty_project), "validate"])
    assert result.exit_code == 1
    assert (
        "policies/pack.yaml:11 rules[0].facts[1]: fact 'sysctl' is not defined in this "
        "pack's 'facts' (defined: sshd)"
    ) in result.output


def _fake_sshd(tmp_path: Path, body: str) -> dict[str, str]:
    """An environment whose PATH finds ``sshd`` in tmp_path first (it runs ``body``)."""
    fake = tmp_path / "bin" / "sshd"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\necho called >> {tmp_path / 'calls'}\n{body}\n")
    fake.chmod(0o755)
    return {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}"}


def _sshd_rules(pack: RulePack) -> list[Rule]:
    return [rule for rule in pack.rules if "sshd" in rule.facts]


def test_a_broken_fact_makes_every_rule_that_reads_it_an_error(tmp_path: Path) -> None:
    pack = _pack("debian-cis")
    env = _fake_sshd(
        tmp_path,
        "echo '/etc/ssh/sshd_config line 3: Bad configuration option: Bogus' >&2\n"
        "echo 'permitrootlogin no'\nexit 255",
    )
    rules = [*_sshd_rules(pack), next(r for r in pack.rules if r.id == "only-root-has-uid-0")]
    answers = parse_answers(_run(audit_script("linux", [(pack, r) for r in rules]), env))
    assert len(rules) == 16
    for rule in rules[:-1]:
        verdict = judge_answer(rule, rule.expect, answers.get(rule.id))
        assert verdict.status == "error", (rule.id, verdict)
        assert "audit exited 255: /etc/ssh/sshd_config line 3: Bad configuration option" in (
            verdict.reason
        )
    assert answers["only-root-has-uid-0"].code == 0  # rules without the fact are unaffected
    assert (tmp_path / "calls").read_text() == "called\n"  # gathered once for all 15


def test_a_fact_that_only_warns_still_answers(tmp_path: Path) -> None:
    # sshd -T on a config kept through upgrades warns and exits 0: the values are real.
    pack = _pack("debian-cis")
    env = _fake_sshd(
        tmp_path,
        "echo '/etc/ssh/sshd_config line 9: Deprecated option UsePrivilegeSeparation' >&2\n"
        "echo 'permitrootlogin yes'",
    )
    rule = next(r for r in pack.rules if r.id == "ssh-root-login-disabled")
    answers = parse_answers(_run(audit_script("linux", [(pack, rule)]), env))
    verdict = judge_answer(rule, rule.expect, answers[rule.id])
    assert verdict.status == "fail" and verdict.observed == "yes"
    assert "Deprecated option UsePrivilegeSeparation" in verdict.reason


def test_only_the_facts_the_rules_read_are_gathered(tmp_path: Path) -> None:
    pack = _pack("debian-cis")
    env = _fake_sshd(tmp_path, "echo 'permitrootlogin no'")
    rules = [r for r in pack.rules if not r.facts][:3]
    answers = parse_answers(_run(audit_script("linux", [(pack, r) for r in rules]), env))
    assert set(answers) == {r.id for r in rules}
    assert not (tmp_path / "calls").exists()


def test_facts_of_two_packs_with_one_name_stay_apart(tmp_path: Path) -> None:
    def pack(name: str, command: str) -> RulePack:
        return RulePack.model_validate(
            {
                "kind": "rulepack",
                "name": name,
                "title": name,
                "platforms": ["debian"],
                "facts": {"answer": {"linux": command}},
                "rules": [
                    {
                        "id": f"{name}-rule",
                        "title": "t",
                        "severity": "low",
                        "facts": ["answer"],
                        "audit": {"linux": "fact answer"},
                        "expect": {"equals": "x"},
                    }
                ],
            }
        )

    first, second = pack("first", "echo one"), pack("second", "echo two")
    script = audit_script("linux", [(first, first.rules[0]), (second, second.rules[0])])
    answers = parse_answers(_run(script))
    assert (answers["first-rule"].output, answers["second-rule"].output) == ("one", "two")


def test_the_windows_script_is_powershell_blocks() -> None:
    pack = _pack("windows-cis")
    script = audit_script("windows", [(pack, rule) for rule in pack.rules[:2]])
    assert script.startswith("# mspauto baseline audit")
    assert f"Invoke-Audit '{pack.rules[1].id}' {{\r\n" in script


def test_shipped_packs_load_and_cover_both_platforms() -> None:
    project = load_project(Settings.load(REPO))
    packs = {p.policy.name: p.policy for p in project.policies if isinstance(p.policy, RulePack)}
    assert len(packs["debian-cis"].rules) == 44
    assert len(packs["windows-cis"].rules) >= 25
    for pack in packs.values():
        for rule in pack.rules:
            assert rule.cis, rule.id
            family = "windows" if pack.name == "windows-cis" else "linux"
            assert getattr(rule.audit, family), rule.id


def test_shipped_packs_match_the_published_schema() -> None:
    validator = jsonschema.Draft202012Validator(policy_schema("rulepack"))
    for name in ("debian-cis", "windows-cis"):
        document = yaml.safe_load((PACKS / f"{name}.yaml").read_text())
        assert [e.message for e in validator.iter_errors(document)] == [], name
        wrong = {**document["rules"][0], "unset": "maybe"}
        assert not validator.is_valid({**document, "rules": [wrong]})


def _expected_verdicts() -> dict[str, dict[str, str]]:
    table: dict[str, list[str]] = yaml.safe_load((FIXTURES / "expected.yaml").read_text())
    return {rule: dict(zip(PROFILES, statuses, strict=True)) for rule, statuses in table.items()}


@pytest.mark.parametrize("profile", PROFILES)
def test_recorded_answers_get_the_expected_verdicts(profile: str) -> None:
    """Every rule's real answer on a stock, a compliant and a drifted lab host (recorded
    by scripts/record-baseline-fixtures.py), judged by the current pack."""
    pack = _pack("debian-cis")
    expected = _expected_verdicts()
    assert set(expected) == {rule.id for rule in pack.rules}
    answers = parse_answers((FIXTURES / f"{profile}.out").read_text())
    assert set(answers) == set(expected), "re-record the fixtures (see their README)"
    verdicts = {rule.id: judge_answer(rule, rule.expect, answers[rule.id]) for rule in pack.rules}
    assert {rule: v.status for rule, v in verdicts.items()} == {
        rule: statuses[profile] for rule, statuses in expected.items()
    }
    for rule, verdict in verdicts.items():
        if verdict.status != "pass":
            assert verdict.observed or verdict.reason, rule
