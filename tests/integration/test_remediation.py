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
    assert dry.returncode == 0, dry.stderr
    assert "would fix ssh-root-login-disabled (= no) on initech-lab02" in dry.stdout
    assert "initech-lab02: would change: ssh-root-login-disabled (= no)" in dry.stdout
    assert (
        "initech-lab02: needs a person (no automatic remediation): only-root-has-uid-0"
        in dry.stdout
    )
    assert failed_rules(small_lab, state) == before  # the dry run changed nothing

    fixed = mspauto(small_lab, state, "--remediate")
    assert fixed.returncode == 0, fixed.stderr
    assert re.search(
        rf"initech-lab02: score [\d.]+ -> [\d.]+  \({drifted} -> 1 failed\)", fixed.stdout
    ), fixed.stdout
    assert failed_rules(small_lab, state) == {
        "initech-lab01": set(),
        "initech-lab02": {"only-root-has-uid-0"},
    }

    store = EvidenceStore(f"sqlite:///{state / 'evidence.db'}", writable=False)
    (record,) = list(store.records(kind="baseline_remediation"))
    assert record.host == "initech-lab02"
    assert record.payload["rules"]["ssh-root-login-disabled"] == {"before": "fail", "after": "pass"}
    assert record.payload["rules"]["only-root-has-uid-0"] == {"before": "fail", "after": "fail"}
    assert store.verify()[1] == []
    store.close()


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
