"""Baseline audits on the lab: exactly the planted drift fails, nothing else.

Compliant lab hosts must pass every rule of the shipped Debian pack, and drifted hosts
must fail every rule the lab plants drift for (all but one, see DRIFT_NOT_PLANTED).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mspauto.evidence.records import read_host_findings
from mspauto.evidence.store import EvidenceStore
from mspauto.lab.fleet import Lab
from mspauto.lab.testing import baseline_json, copy_project

pytestmark = pytest.mark.integration

# sshd refuses empty passwords by default, and planting the opposite would slow every
# login to the drifted hosts (PAM's failure delay): so it passes on both here, and
# test_remediation.py plants it on a lab of its own to see it fail.
DRIFT_NOT_PLANTED = {"ssh-permit-empty-passwords-disabled"}


def test_each_host_fails_exactly_what_was_planted(
    lab: Lab, tmp_path: Path, debian_rules: set[str]
) -> None:
    rules = debian_rules
    for client in ("acme", "globex"):
        code, report = baseline_json(lab.directory, tmp_path / "state", "--client", client)
        plans = {p.name: p for p in lab.plans() if p.client == client}
        assert {h["host"] for h in report["hosts"]} == set(plans)
        for host in report["hosts"]:
            plan = plans[host["host"]]
            statuses = {r["rule_id"]: r["status"] for r in host["results"]}
            if plan.fault is not None:
                assert host["unaudited"], host["host"]
                continue
            assert set(statuses) == rules
            failed = {rule for rule, status in statuses.items() if status == "fail"}
            if plan.baseline == "compliant":
                assert failed == set(), (host["host"], failed)
                assert host["score"] == 100
            else:
                assert failed == rules - DRIFT_NOT_PLANTED, (host["host"], failed)
            assert "error" not in statuses.values()
        assert report["below_floor"] is True and code == 3  # half the hosts are drifted


def test_observed_and_expected_are_reported(lab: Lab, tmp_path: Path) -> None:
    drifted = next(p for p in lab.plans() if p.baseline == "drifted" and p.fault is None)
    _, report = baseline_json(
        lab.directory, tmp_path / "state", "--client", drifted.client, "--hosts", drifted.name
    )
    results = {r["rule_id"]: r for r in report["hosts"][0]["results"]}
    assert (
        results["ssh-root-login-disabled"]["observed"],
        results["ssh-root-login-disabled"]["expected"],
    ) == ("yes", "= no")
    assert (
        results["shadow-permissions"]["observed"],
        results["shadow-permissions"]["expected"],
    ) == ("644", "mode 0640 or stricter")
    assert results["only-root-has-uid-0"]["observed"] == "root toor"
    assert results["only-root-has-uid-0"]["severity"] == "critical"


def test_waivers_and_overrides_apply(lab: Lab, tmp_path: Path) -> None:
    project = copy_project(lab, tmp_path / "project")
    drifted = next(p for p in lab.plans() if p.baseline == "drifted" and p.fault is None)
    compliant = next(
        p
        for p in lab.plans()
        if p.baseline == "compliant" and p.fault is None and p.client == drifted.client
    )
    (project / "policies" / "waiver.yaml").write_text(
        "kind: waiver\nname: legacy-root\nrule: ssh-root-login-disabled\n"
        f"targets: {{hosts: [{drifted.name}]}}\n"
        "justification: Legacy job logs in as root until the NAS is replaced.\n"
        "approved_by: Jane Doe\napproved_on: 2026-10-01\nexpires: 2099-12-31\n"
    )
    baseline_policy = project / "policies" / "baseline.yaml"
    baseline_policy.write_text(
        baseline_policy.read_text() + "overrides:\n  ssh-max-auth-tries: 3\n"
    )
    _, report = baseline_json(
        project,
        tmp_path / "state",
        "--client",
        drifted.client,
        "--hosts",
        drifted.name,
        "--hosts",
        compliant.name,
    )
    by_host = {h["host"]: {r["rule_id"]: r for r in h["results"]} for h in report["hosts"]}
    waived = by_host[drifted.name]["ssh-root-login-disabled"]
    assert (waived["status"], waived["waiver"]) == ("waived", "legacy-root")
    tightened = by_host[compliant.name]["ssh-max-auth-tries"]
    assert (tightened["status"], tightened["observed"], tightened["expected"]) == (
        "fail",
        "4",
        "<= 3",
    )
    _, later = baseline_json(
        project,
        tmp_path / "state",
        "--client",
        drifted.client,
        "--hosts",
        drifted.name,
        "--as-of",
        "2100-01-01",
    )
    lapsed = {r["rule_id"]: r for r in later["hosts"][0]["results"]}["ssh-root-login-disabled"]
    assert lapsed["status"] == "fail"  # the waiver expired: it no longer applies


def test_results_are_evidence(lab: Lab, tmp_path: Path) -> None:
    state = tmp_path / "state"
    _, report = baseline_json(lab.directory, state, "--client", "acme")
    store = EvidenceStore(f"sqlite:///{state / 'evidence.db'}", writable=False)
    records = list(store.records(kind="findings"))
    assert {r.host for r in records} == {h["host"] for h in report["hosts"]}
    assert all(r.run_id == report["run_id"] for r in records)
    for record in records:  # each host's findings are what the report showed for it
        shown = next(h for h in report["hosts"] if h["host"] == record.host)
        findings = read_host_findings(record.kind, record.payload)
        assert [(f.subject, str(f.status)) for f in findings.findings] == [
            (r["rule_id"], r["status"]) for r in shown["results"]
        ]
    run_kinds = [r.kind for r in store.records(run_id=report["run_id"])]
    assert run_kinds[-1] == "run_finished"  # findings were written before the run ended
    assert store.verify().problems == []
    store.close()
