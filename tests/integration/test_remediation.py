"""Remediation on a lab of its own: a dry run changes nothing, a real run fixes every
control that has a remediation, and the evidence shows before and after."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mspauto.evidence.records import read_change_result
from mspauto.evidence.runs import list_runs
from mspauto.evidence.store import EvidenceStore
from mspauto.lab.fleet import Lab
from mspauto.lab.testing import lab_unavailable, running_lab, ssh

pytestmark = pytest.mark.integration


@pytest.fixture
def small_lab(tmp_path: Path, address_block: Callable[[int], str]) -> Iterator[Lab]:
    if reason := lab_unavailable():
        pytest.skip(f"lab unavailable: {reason}")
    with running_lab(
        tmp_path / "lab", 2, ["initech"], faults=False, first_address=address_block(4)
    ) as lab:
        yield lab


def mspauto(lab: Lab, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mspauto",
            "--project",
            str(lab.directory),
            "baseline",
            "--client",
            "initech",
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        env={**os.environ, "MSPAUTO_STATE_DIR": str(state)},
    )


def failed_rules(lab: Lab, state: Path) -> dict[str, set[str]]:
    report = json.loads(mspauto(lab, state, "--format", "json").stdout)
    return {
        h["host"]: {r["rule_id"] for r in h["results"] if r["status"] == "fail"}
        for h in report["hosts"]
    }


def test_dry_run_then_remediate(small_lab: Lab, tmp_path: Path, debian_rules: set[str]) -> None:
    state = tmp_path / "state"
    # The one drift the lab does not plant (it slows every login): plant it here, so
    # every Debian rule is seen failing somewhere in the suite.
    drifted_host = next(p for p in small_lab.plans() if p.name == "initech-lab02")
    planted = ssh(
        small_lab,
        drifted_host,
        "echo 'PermitEmptyPasswords yes' | sudo tee /etc/ssh/sshd_config.d/02-test.conf",
    )
    assert planted.returncode == 0, planted.stderr
    before = failed_rules(small_lab, state)
    drifted = len(before["initech-lab02"])
    assert before["initech-lab01"] == set()
    assert "ssh-permit-empty-passwords-disabled" in before["initech-lab02"]
    assert drifted == len(debian_rules)  # every rule of the pack fails on this host

    dry = mspauto(small_lab, state, "--remediate", "--dry-run")
    assert dry.returncode == 3, dry.stderr  # the client is under its floor, and stays so
    assert "would fix ssh-root-login-disabled (= no) on initech-lab02" in dry.stdout
    assert "initech-lab02: would change: ssh-root-login-disabled (= no)" in dry.stdout
    assert (
        "initech-lab02: needs a person: only-root-has-uid-0 (no automatic remediation)"
        in dry.stdout
    )
    assert failed_rules(small_lab, state) == before  # the dry run changed nothing

    fixed = mspauto(small_lab, state, "--remediate", "--forks", "1", "--timeout", "300")
    assert fixed.returncode == 0, fixed.stderr
    assert re.search(
        rf"initech-lab02: score [\d.]+ -> [\d.]+  \({drifted} -> 1 failed\)", fixed.stdout
    ), fixed.stdout
    assert failed_rules(small_lab, state) == {
        "initech-lab01": set(),
        "initech-lab02": {"only-root-has-uid-0"},
    }

    store = EvidenceStore(f"sqlite:///{state / 'evidence.db'}", writable=False)
    runs = {r.kind: r for r in list_runs(store)}
    # The change is a run of its own, recorded host by host, between the two audits.
    change_run = runs["baseline-change"]
    assert change_run.hosts == 1 and change_run.status == "completed"
    (started,) = store.records(run_id=change_run.run_id, kind="run_started")
    assert started.payload["forks"] == 1 and started.payload["timeout"] == 300
    (record,) = list(store.records(kind="change_result"))
    result = read_change_result(record.kind, record.payload)
    assert result.host == "initech-lab02" and result.change_run == change_run.run_id
    outcomes = {c.subject: c for c in result.changes}
    fixed_rule = outcomes["ssh-root-login-disabled"]
    assert (fixed_rule.before, fixed_rule.after, fixed_rule.status) == ("fail", "pass", "changed")
    assert "only-root-has-uid-0" not in outcomes  # nothing ran for it: a person decides
    assert store.verify().problems == []
    store.close()


def test_remediation_reports_as_json_and_respects_the_policy(
    small_lab: Lab, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    policy = small_lab.directory / "policies" / "baseline.yaml"
    written = policy.read_text()
    policy.write_text(written + "remediate: never\n")
    try:
        result = mspauto(small_lab, state, "--remediate", "--dry-run", "--format", "json")
    finally:
        policy.write_text(written)
    report = json.loads(result.stdout)
    assert result.returncode == 3, result.stderr  # under the floor; nothing may change
    assert report["dry_run"] is True and report["tasks"] == []
    manual = {m["rule_id"]: m["why"] for m in report["manual"]["initech-lab02"]}
    assert manual["ssh-root-login-disabled"] == "policy 'lab-cis' says remediate: never"
    assert report["before"]["hosts"][1]["results"]  # the audit itself is in the report


def test_a_broken_sshd_config_is_an_error_never_a_pass(small_lab: Lab, tmp_path: Path) -> None:
    compliant = next(p for p in small_lab.plans() if p.name == "initech-lab01")
    broke = ssh(
        small_lab,
        compliant,
        "echo 'BogusOption yes' | sudo tee /etc/ssh/sshd_config.d/03-bogus.conf",
    )
    assert broke.returncode == 0, broke.stderr
    report = json.loads(
        mspauto(small_lab, tmp_path / "state", "--hosts", compliant.name, "--format", "json").stdout
    )
    results = {r["rule_id"]: r for r in report["hosts"][0]["results"]}
    sshd_rules = [rule for rule in results if rule.startswith("ssh-")]
    assert len(sshd_rules) >= 10
    for rule in sshd_rules:
        assert results[rule]["status"] == "error", (rule, results[rule])
        assert "Bad configuration option" in results[rule]["reason"]
    assert results["shadow-permissions"]["status"] == "pass"  # other rules unaffected


def test_policy_values_never_run_as_templates_on_the_control_node(
    small_lab: Lab, tmp_path: Path
) -> None:
    marker = tmp_path / "templated"
    hostile = f"{{{{ lookup('pipe', 'touch {marker}') }}}}"
    policy = small_lab.directory / "policies" / "baseline.yaml"
    written = policy.read_text()
    policy.write_text(written + f'overrides:\n  ssh-root-login-disabled: "{hostile}"\n')
    try:
        result = mspauto(
            small_lab, tmp_path / "state", "--remediate", "--dry-run", "--format", "json"
        )
    finally:
        policy.write_text(written)
    report = json.loads(result.stdout)
    (task,) = [t for t in report["tasks"] if t["rule_id"] == "ssh-root-login-disabled"]
    assert task["expected"] == f"= {hostile}"  # it reached the play's task name as it is
    outcomes = [o["task"] for o in report["outcomes"]["initech-lab02"]]
    assert f"ssh-root-login-disabled (= {hostile})" in outcomes  # Ansible kept it literal
    assert not marker.exists()
