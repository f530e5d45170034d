"""The monthly report as NIST OSCAL assessment results, for auditors' and GRC tools.

One OSCAL ``assessment-results`` document (OSCAL 1.0.6, JSON) per client and month:

- ``metadata``: the client as the party the results are prepared for, the month as the
  version, the report's generation time as ``last-modified``.
- ``import-ap``: OSCAL requires a reference to an assessment plan. mspauto has no plan
  document: the plan is the client's contract and the policies that schedule the checks.
  So ``import-ap`` points (``#uuid``) at a back-matter resource describing the contract's
  terms, and ``local-definitions.objectives-and-methods`` states each objective.
- one ``result`` for the month (``start``/``end`` = the period), whose reviewed controls
  are the contract's areas (:data:`CONTROLS`) plus every baseline rule failing at the
  month's last audits. Each host is an inventory item; each host (or backup job) gets
  one observation per area, pointing at its inventory item; each control gets one
  finding, ``satisfied`` or ``not-satisfied``; open overdue updates and RPO breaches are
  risks.
- ``back-matter``: the plan resource and one resource per evidence chain the report
  counted records from: the rule that selects them (the chain, the record kinds, the
  period), how many there are, the first and last (sequence number and record hash) and
  the SHA-256 binding them all, so an auditor can select them again from the evidence
  store and check them (``mspauto report verify --evidence``). Every observation with
  evidence refers to it (``relevant-evidence``).

Control ids live in mspauto's own namespace (:data:`NAMESPACE`, the ``catalog`` prop of
the control selection). Each control carries ``mapping`` props naming what a reader may
map it to (CIS Controls v8 and NIST SP 800-53 rev. 5 ids, OSCAL style): suggestions for
a GRC tool's crosswalk, not a claim that the whole external control is met.

A month without evidence for an area gives a ``not-satisfied`` finding whose remarks say
"no evidence", never ``satisfied``. UUIDs are version 5, derived from the client, the
month and the subject, so the same report always gives the same bytes and a host keeps
its inventory-item UUID from month to month. Text from hosts and policies is data: it is
cleaned to what the schema's string patterns accept, and escaped where OSCAL reads
Markdown (titles, descriptions, remarks).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from mspauto.sla.model import BackupAsset, EvidenceRange, MonthlyReport

__all__ = [
    "BACKUP",
    "BASELINE",
    "CONTROLS",
    "COVERAGE",
    "NAMESPACE",
    "OSCAL_VERSION",
    "PATCHING",
    "RESTORE_TEST",
    "Control",
    "assessment_results",
    "write_oscal",
]

OSCAL_VERSION = "1.0.6"
"""The OSCAL release whose assessment-results schema the output is validated against."""

NAMESPACE = "urn:mspauto:oscal"
"""The ``ns`` of mspauto's own props and control ids: a name, not a location."""

_UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, NAMESPACE)


@dataclass(frozen=True)
class Control:
    """One control of mspauto's SLA catalog: a contract area a finding is about."""

    id: str
    title: str
    mappings: tuple[tuple[str, str], ...]
    """``(framework, control id)`` pairs a reader may map this control to."""

    @property
    def objective_id(self) -> str:
        """The id of the control's objective, which findings target."""
        return f"{self.id}_obj"


PATCHING = Control(
    "sla-patching",
    "Updates installed within the contract's deadlines",
    (("cis-controls-v8", "7.3"), ("cis-controls-v8", "7.4"), ("nist-sp800-53-r5", "si-2")),
)
"""Patching against the contract's deadlines per severity."""
BACKUP = Control(
    "sla-backup",
    "Backups younger than the RPO, at the contract's success rate",
    (("cis-controls-v8", "11.2"), ("nist-sp800-53-r5", "cp-9")),
)
"""Backups against the RPO and the backup success target."""
RESTORE_TEST = Control(
    "sla-restore-test",
    "Restores tested at the contract's cadence",
    (("cis-controls-v8", "11.5"), ("nist-sp800-53-r5", "cp-9.1")),
)
"""Restore drills against the contract's cadence."""
BASELINE = Control(
    "sla-baseline",
    "Hardening score at or above the contract's floor",
    (("cis-controls-v8", "4.1"), ("nist-sp800-53-r5", "cm-6")),
)
"""The fleet's hardening score against the contract's floor."""
COVERAGE = Control(
    "sla-coverage",
    "Inventory hosts reached by their checks in the month",
    (("cis-controls-v8", "1.1"), ("nist-sp800-53-r5", "ca-7")),
)
"""Inventory hosts reached by their checks, against the coverage floor."""
CONTROLS: tuple[Control, ...] = (PATCHING, BACKUP, RESTORE_TEST, BASELINE, COVERAGE)
"""The contract's areas, in report order. Baseline rules are added per report."""


class _Outcome(StrEnum):
    """What one observation says about its subject."""

    PASS = "pass"
    FAIL = "fail"
    NO_DATA = "no-data"


class _Method(StrEnum):
    """OSCAL observation methods mspauto uses."""

    TEST = "TEST"
    """A check ran on the host (scan, backup check, restore drill, audit)."""
    EXAMINE = "EXAMINE"
    """The evidence store and the inventory were examined (coverage, missing data)."""


def assessment_results(report: MonthlyReport) -> dict[str, Any]:
    """The report as an OSCAL 1.0.6 ``assessment-results`` document (a JSON object)."""
    return _Builder(report).document()


def write_oscal(report: MonthlyReport, path: Path) -> None:
    """Write :func:`assessment_results` as JSON: sorted keys, indented, UTF-8.

    The same report always gives the same bytes.
    """
    text = json.dumps(assessment_results(report), indent=2, sort_keys=True, ensure_ascii=False)
    path.write_bytes(text.encode() + b"\n")


class _Builder:
    """Assembles one report's document; keeps the UUIDs its parts refer to."""

    def __init__(self, report: MonthlyReport) -> None:
        self.report = report
        self.tool_uuid = _uuid("component", "mspauto")
        self.plan_uuid = _uuid("plan", report.client, report.period.month)
        self.observations: list[dict[str, Any]] = []
        self.observation_uuids: set[str] = set()
        self.risks: list[dict[str, Any]] = []
        self.findings: list[dict[str, Any]] = []
        self.hosts = self.all_hosts()
        self.retired = frozenset(report.coverage.extra)
        """Hosts in the evidence but no longer in the inventory."""
        self.host_uuids = {host: _uuid("host", report.client, host) for host in self.hosts}
        self.evidence_uuids = [self.evidence_uuid(counted) for counted in report.evidence]

    def host_uuid(self, host: str) -> str:
        """A host's inventory-item UUID: the same every month, as OSCAL asks."""
        known = self.host_uuids.get(host)
        return known if known is not None else _uuid("host", self.report.client, host)

    def observation_uuid(self, control: Control, *subject: str) -> str:
        return _uuid(
            "observation", self.report.client, self.report.period.month, control.id, *subject
        )

    def document(self) -> dict[str, Any]:
        report = self.report
        rule_controls = self.baseline_rule_controls()
        self.patching()
        self.backups()
        self.restore_tests()
        self.baseline(rule_controls)
        self.coverage()
        local: dict[str, Any] = {"components": [self.tool_component()]}
        if self.hosts:
            local["inventory-items"] = [self.inventory_item(host) for host in self.hosts]
        result: dict[str, Any] = {
            "uuid": _uuid("result", report.client, report.period.month),
            "title": f"SLA month {report.period.month} of {_md(report.client_name)}",
            "description": self.result_description(),
            "start": _time(report.period.start),
            "end": _time(report.period.end),
            "props": self.result_props(),
            "local-definitions": local,
            "reviewed-controls": self.reviewed_controls((*CONTROLS, *rule_controls)),
            "findings": self.findings,
        }
        if self.observations:
            result["observations"] = self.observations
        if self.risks:
            result["risks"] = self.risks
        remarks = self.result_remarks()
        if remarks:
            result["remarks"] = remarks
        return {
            "assessment-results": {
                "uuid": _uuid("assessment-results", report.client, report.period.month),
                "metadata": self.metadata(),
                "import-ap": {
                    "href": f"#{self.plan_uuid}",
                    "remarks": (
                        "mspauto keeps no separate assessment plan: the plan is the client's"
                        " contract and the policies that schedule its checks, described in"
                        " the back-matter resource this refers to and in the objectives of"
                        " local-definitions."
                    ),
                },
                "local-definitions": {
                    "objectives-and-methods": [
                        self.objective(control) for control in (*CONTROLS, *rule_controls)
                    ]
                },
                "results": [result],
                "back-matter": {"resources": [self.plan_resource(), *self.evidence_resources()]},
            }
        }

    # --- metadata, plan and evidence -------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        report = self.report
        client_uuid = _uuid("party", report.client)
        return {
            "title": (
                f"Monthly SLA assessment results: {_md(report.client_name)}, {report.period.month}"
            ),
            "last-modified": _time(report.generated_at),
            "version": _string(report.period.month),
            "oscal-version": OSCAL_VERSION,
            "props": [
                _prop("mspauto-version", report.mspauto_version),
                _prop("client", report.client),
            ],
            "roles": [{"id": "prepared-for", "title": "Prepared For"}],
            "parties": [
                {
                    "uuid": client_uuid,
                    "type": "organization",
                    "name": _string(report.client_name),
                    "short-name": _string(report.client),
                }
            ],
            "responsible-parties": [{"role-id": "prepared-for", "party-uuids": [client_uuid]}],
        }

    def plan_resource(self) -> dict[str, Any]:
        report = self.report
        name = _term(report.contract.get("name", ""))
        terms = "\n".join(
            f"- {_md(key)}: {_md(_term(value))}"
            for key, value in sorted(report.contract.items())
            if key != "name"
        )
        return {
            "uuid": self.plan_uuid,
            "title": f"Assessment plan: contract {_md(name)} and the client's policies",
            "description": (
                f"The checks mspauto ran for {_md(report.client_name)} in"
                f" {report.period.month} were scheduled by the client's policies and judged"
                " against the terms of its contract:\n\n" + terms
            ),
            "props": [_prop("contract", name)],
        }

    def evidence_uuid(self, counted: EvidenceRange) -> str:
        return _uuid(
            "evidence", self.report.client, self.report.period.month, counted.chain, counted.sha256
        )

    def evidence_resources(self) -> list[dict[str, Any]]:
        """One resource per chain the report counted records from: the rule that selects
        them again from the evidence store, and what the selection must give."""
        period = self.report.period
        resources = []
        for resource, counted in zip(self.evidence_uuids, self.report.evidence, strict=True):
            either = _either([_md(kind) for kind in counted.kinds])
            resources.append(
                {
                    "uuid": resource,
                    "title": (
                        f"Evidence records of {_md(counted.chain)} counted for {period.month}"
                    ),
                    "description": (
                        f"The {counted.count} records of evidence chain {_md(counted.chain)}"
                        f" the report counted: every record of the chain of kind {either}"
                        " whose recorded time (recorded_at) lies in the period, from"
                        f" {_time(period.start)} (included) to {_time(period.end)} (excluded)."
                        f" The first is #{counted.first_seq} (record hash"
                        f" {_md(counted.first_hash)}), the last #{counted.last_seq} (record"
                        f" hash {_md(counted.last_hash)}). To check them, select those records"
                        " again from the evidence store, in sequence order, and take the"
                        " SHA-256 over one line per record: its sequence number, a space, its"
                        f" record hash and a newline; it gives {_md(counted.sha256)}."
                        " 'mspauto report verify --evidence' does this, recomputing each"
                        " record's hash from its content, and 'mspauto evidence verify'"
                        " checks the whole chain."
                    ),
                    "props": [
                        _prop("evidence-chain", counted.chain),
                        *(_prop("evidence-kind", kind) for kind in counted.kinds),
                        _prop("evidence-count", str(counted.count)),
                        _prop("evidence-first-seq", str(counted.first_seq)),
                        _prop("evidence-first-hash", counted.first_hash),
                        _prop("evidence-last-seq", str(counted.last_seq)),
                        _prop("evidence-last-hash", counted.last_hash),
                        _prop("evidence-records-sha256", counted.sha256),
                    ],
                }
            )
        return resources

    def relevant_evidence(self) -> list[dict[str, Any]]:
        """What an observation rests on: the report does not tie records to hosts, so
        every observation points at the month's counted records as a whole."""
        return [
            {
                "href": f"#{resource}",
                "description": (
                    f"One or more of the {counted.count} records of evidence chain"
                    f" {_md(counted.chain)} counted for {self.report.period.month}."
                ),
            }
            for resource, counted in zip(self.evidence_uuids, self.report.evidence, strict=True)
        ]

    # --- controls and objectives -----------------------------------------------------

    def baseline_rule_controls(self) -> list[Control]:
        return [
            Control(
                f"baseline-rule.{_token_tail(failure.rule)}",
                f"Baseline rule {_md(failure.rule)}: {_md(failure.title)}",
                BASELINE.mappings,
            )
            for failure in self.report.baseline.top_failing
        ]

    def reviewed_controls(self, controls: Sequence[Control]) -> dict[str, Any]:
        contract = _term(self.report.contract.get("name", ""))
        return {
            "description": (
                f"The terms of contract {_md(contract)} as mspauto's SLA controls, and the"
                " baseline rules failing at the month's last audits."
            ),
            "control-selections": [
                {
                    "description": (
                        "Control ids are mspauto's (namespace " + NAMESPACE + "); each"
                        " objective's mapping props name CIS Controls v8 and NIST SP 800-53"
                        " controls a reader may map it to."
                    ),
                    "props": [_prop("catalog", "mspauto-sla")],
                    "include-controls": [{"control-id": control.id} for control in controls],
                }
            ],
        }

    def objective(self, control: Control) -> dict[str, Any]:
        return {
            "control-id": control.id,
            "description": control.title,
            "props": _mapping_props(control),
            "parts": [
                {
                    "id": control.objective_id,
                    "name": "objective",
                    "prose": self.objective_prose(control),
                }
            ],
        }

    def objective_prose(self, control: Control) -> str:
        report = self.report
        contract = report.contract
        if control is PATCHING:
            deadlines = contract.get("patch_deadlines_days")
            if isinstance(deadlines, dict) and deadlines:
                listed = ", ".join(
                    f"{_md(severity)} {_md(_term(days))} days"
                    for severity, days in deadlines.items()
                )
            else:
                listed = "as the contract sets them"
            clock = _md(_term(contract.get("patch_clock_starts", "release")))
            return (
                f"Every update is installed within its severity's deadline, counted from its"
                f" {clock}: {listed}. A host whose last scan failed, or that no scan"
                " reached in the month, does not meet it."
            )
        if control is BACKUP:
            return (
                "Every backup job has a good backup younger than the RPO"
                f" ({_number(report.backups.rpo_hours)} hours) throughout the month, and at"
                f" least {_number(report.backups.target_percent)}% of backup checks succeed."
            )
        if control is RESTORE_TEST:
            every = contract.get("restore_test_every_days")
            cadence = f"every {_md(_term(every))} days" if every is not None else "as agreed"
            return f"Every backup job has a successful restore test {cadence}."
        if control is BASELINE:
            return (
                "The fleet's hardening score at the month's last audits is at least"
                f" {_number(report.baseline.floor)}."
            )
        if control is COVERAGE:
            return (
                f"At least {_number(report.coverage.floor)}% of inventory hosts are reached"
                " in the month by every check that targets them."
            )
        return "The rule passes on every audited host that no waiver exempts."

    # --- hosts -----------------------------------------------------------------------

    def all_hosts(self) -> list[str]:
        """Every host the document mentions: inventory hosts, and hosts the evidence
        still has though the inventory no longer does."""
        report = self.report
        names = {h.host for h in report.patching.hosts}
        names.update(item.host for item in report.patching.items)
        names.update(asset.host for asset in report.backups.assets)
        names.update(breach.host for breach in report.backups.breaches)
        names.update(h.host for h in report.baseline.hosts)
        names.update(h.host for h in report.coverage.unchecked)
        names.update(report.coverage.extra)
        return sorted(names)

    def inventory_item(self, host: str) -> dict[str, Any]:
        retired = host in self.retired
        description = (
            f"Host {_md(host)}: in the month's evidence but no longer in the inventory."
            if retired
            else f"Host {_md(host)} of {_md(self.report.client_name)}'s inventory."
        )
        return {
            "uuid": self.host_uuid(host),
            "description": description,
            "props": [
                {"name": "asset-id", "value": _string(host)},
                _prop("in-inventory", "false" if retired else "true"),
            ],
        }

    def unchecked(self, kind: str, already: Iterable[str]) -> list[str]:
        """Inventory hosts no ``kind`` check reached, that no section lists."""
        seen = set(already)
        return [
            h.host
            for h in self.report.coverage.unchecked
            if h.checked.get(kind) is False and h.host not in seen
        ]

    # --- observations, risks, findings -----------------------------------------------

    def observe(
        self,
        control: Control,
        host: str,
        *,
        subject: Sequence[str] = (),
        title: str,
        description: str,
        outcome: _Outcome,
        state: str,
        collected: datetime | None,
        method: _Method = _Method.TEST,
    ) -> str:
        """Add one observation of ``host`` for ``control``; return its UUID."""
        obs_uuid = self.observation_uuid(control, host, *subject)
        observation: dict[str, Any] = {
            "uuid": obs_uuid,
            "title": title,
            "description": description,
            "props": [
                _prop("control", control.id),
                _prop("outcome", outcome.value),
                _prop("state", state),
            ],
            "methods": [(_Method.EXAMINE if outcome is _Outcome.NO_DATA else method).value],
            "types": ["control-objective"] + (["finding"] if outcome is _Outcome.FAIL else []),
            "origins": [self.origin()],
            "subjects": [
                {
                    "subject-uuid": self.host_uuid(host),
                    "type": "inventory-item",
                    "title": _md(host),
                }
            ],
            # When the host was checked; otherwise when mspauto read the evidence.
            "collected": _time(collected or self.report.generated_at),
        }
        evidence = self.relevant_evidence()
        if evidence and outcome is not _Outcome.NO_DATA:
            observation["relevant-evidence"] = evidence
        self.observations.append(observation)
        self.observation_uuids.add(obs_uuid)
        return obs_uuid

    def origin(self) -> dict[str, Any]:
        return {"actors": [{"type": "tool", "actor-uuid": self.tool_uuid}]}

    def tool_component(self) -> dict[str, Any]:
        return {
            "uuid": self.tool_uuid,
            "type": "software",
            "title": "mspauto",
            "description": (
                "The MSP's maintenance automation: it ran the checks, kept their evidence"
                " records and computed this report from them."
            ),
            "props": [_prop("version", self.report.mspauto_version)],
            "status": {"state": "operational"},
        }

    def find(
        self,
        control: Control,
        *,
        satisfied: bool,
        description: str,
        observations: Sequence[str],
        risks: Sequence[str] = (),
        no_evidence: str = "",
    ) -> None:
        """Add the finding for ``control``. ``no_evidence`` says what is missing: such
        a finding is never satisfied."""
        status: dict[str, Any]
        if no_evidence:
            status = {"state": "not-satisfied", "reason": "other", "remarks": no_evidence}
        else:
            status = {
                "state": "satisfied" if satisfied else "not-satisfied",
                "reason": "pass" if satisfied else "fail",
            }
        finding: dict[str, Any] = {
            "uuid": _uuid("finding", self.report.client, self.report.period.month, control.id),
            "title": control.title,
            "description": description,
            "props": _mapping_props(control),
            "origins": [self.origin()],
            "target": {
                "type": "objective-id",
                "target-id": control.objective_id,
                "status": status,
            },
        }
        if observations:
            finding["related-observations"] = [{"observation-uuid": u} for u in observations]
        if risks:
            finding["related-risks"] = [{"risk-uuid": u} for u in risks]
        self.findings.append(finding)

    def patching(self) -> None:
        report = self.report
        patching = report.patching
        observed: list[str] = []
        for host in patching.hosts:
            outcome = {
                "compliant": _Outcome.PASS,
                "exempted": _Outcome.PASS,
                "not checked": _Outcome.NO_DATA,
            }.get(host.state, _Outcome.FAIL)
            scanned = f"last scan {_when(host.last_scan)}" if host.last_scan else "not scanned"
            observed.append(
                self.observe(
                    PATCHING,
                    host.host,
                    title=f"Patch state of {_md(host.host)}",
                    description=_sentences(
                        f"{_md(host.host)} was {_md(host.state)} ({scanned}):"
                        f" {_count(host.pending, 'update')} pending, {host.overdue} past their"
                        f" deadline, {host.installed} installed in the month",
                        _reason(host.reason),
                    ),
                    outcome=outcome,
                    state=host.state,
                    collected=host.last_scan,
                )
            )
        for name in self.unchecked("patch", (h.host for h in patching.hosts)):
            observed.append(self.no_data(PATCHING, name, "no patch scan reached the host"))

        risks: list[str] = []
        for index, item in enumerate(patching.items):
            if item.state != "overdue":
                continue
            related = self.observation_uuid(PATCHING, item.host)
            risk_uuid = _uuid(
                "risk", report.client, report.period.month, "patch", str(index), item.host
            )
            cves = ", ".join(_md(cve) for cve in item.cves)
            risk: dict[str, Any] = {
                "uuid": risk_uuid,
                "title": f"{_md(item.name)} {_md(item.version)} past its deadline on"
                f" {_md(item.host)}",
                "description": _sentences(
                    f"The {_md(item.severity)} update {_md(item.name)} {_md(item.version)}"
                    f" on {_md(item.host)} was still not installed at the end of the month,"
                    f" {_number(item.days)} days after its clock started"
                    + (f" ({_when(item.deadline)} was the deadline)" if item.deadline else ""),
                    f"CVEs: {cves}" if cves else "",
                    "The update is known to be exploited" if item.known_exploited else "",
                    f"Policy decision: {_md(item.reason)}" if item.reason else "",
                ),
                "statement": (
                    "A known flaw stays open on the host past the time the contract allows"
                    " for fixing it."
                ),
                "props": [
                    _prop("severity", item.severity),
                    _prop("known-exploited", "true" if item.known_exploited else "false"),
                    *(_prop("cve", cve) for cve in item.cves),
                ],
                "status": "open",
            }
            if item.deadline:
                risk["deadline"] = _time(item.deadline)
            if related in self.observation_uuids:
                risk["related-observations"] = [{"observation-uuid": related}]
            self.risks.append(risk)
            risks.append(risk_uuid)

        late = {severity: n for severity, n in patching.past_deadline.items() if n}
        if patching.compliance_percent is None:
            self.find(
                PATCHING,
                satisfied=False,
                description="No patch figures for the month.",
                observations=observed,
                no_evidence="no evidence: no patch scan result in the month's evidence",
            )
            return
        failing = patching.pending + patching.failed + patching.not_checked
        self.find(
            PATCHING,
            satisfied=not failing and not late,
            description=_sentences(
                f"Patch compliance {_number(patching.compliance_percent)}% of"
                f" {patching.devices} devices: {patching.compliant} compliant,"
                f" {patching.pending} with updates past their deadline, {patching.failed}"
                f" failed, {patching.exempted} exempted (waived updates only),"
                f" {patching.not_checked} not checked",
                "Past their deadline in the month: "
                + ", ".join(f"{_md(severity)} {n}" for severity, n in sorted(late.items()))
                if late
                else "No update went past its deadline in the month",
            ),
            observations=observed,
            risks=risks,
        )

    def backups(self) -> None:
        report = self.report
        backups = report.backups
        observed: dict[tuple[str, str], str] = {}
        for asset in backups.assets:
            outcome = {
                "ok": _Outcome.PASS,
                "waived": _Outcome.PASS,
                "not checked": _Outcome.NO_DATA,
            }.get(asset.state, _Outcome.FAIL)
            observed[(asset.host, asset.job)] = self.observe(
                BACKUP,
                asset.host,
                subject=(asset.job,),
                title=f"Backup job {_md(asset.job)} on {_md(asset.host)}",
                description=_sentences(
                    f"Backup job {_md(asset.job)} ({_md(asset.provider)}) on"
                    f" {_md(asset.host)} was {_md(asset.state)}: last good backup"
                    f" {_when(asset.last_good, 'none on record')}, {asset.checks_ok} of"
                    f" {asset.checks} checks"
                    f" succeeded, integrity {_verdict(asset.integrity_ok)}"
                    + (f" ({_when(asset.last_integrity)})" if asset.last_integrity else ""),
                    _reason(asset.reason),
                ),
                outcome=outcome,
                state=asset.state,
                collected=None,
            )
        hosts_with_jobs = (asset.host for asset in backups.assets)
        extra = [
            self.no_data(BACKUP, name, "no backup check reached the host")
            for name in self.unchecked("backup", hosts_with_jobs)
        ]

        risks: list[str] = []
        for breach in backups.breaches:
            risk_uuid = _uuid(
                "risk",
                report.client,
                report.period.month,
                "rpo",
                breach.host,
                breach.job,
                _time(breach.start),
            )
            until = _when(breach.end) if breach.end else "the end of the month"
            risk: dict[str, Any] = {
                "uuid": risk_uuid,
                "title": f"RPO breached by backup job {_md(breach.job)} on {_md(breach.host)}",
                "description": (
                    f"Backup job {_md(breach.job)} on {_md(breach.host)} had no backup younger"
                    f" than the RPO ({_number(backups.rpo_hours)} hours) from"
                    f" {_when(breach.start)} to {until}: {_number(breach.hours)} hours in"
                    " the month."
                ),
                "statement": (
                    "Data changed since the last good backup would be lost if the host failed now."
                ),
                "status": "open" if breach.end is None else "closed",
            }
            related = observed.get((breach.host, breach.job))
            if related:
                risk["related-observations"] = [{"observation-uuid": related}]
            self.risks.append(risk)
            risks.append(risk_uuid)

        observations = [*observed.values(), *extra]
        if backups.success_percent is None:
            self.find(
                BACKUP,
                satisfied=False,
                description="No backup figures for the month.",
                observations=observations,
                no_evidence="no evidence: no backup check result in the month's evidence",
            )
            return
        bad = [a for a in backups.assets if a.state not in ("ok", "waived")]
        self.find(
            BACKUP,
            satisfied=(
                backups.success_percent >= backups.target_percent
                and not backups.breaches
                and not bad
                and not extra
            ),
            description=_sentences(
                f"{_number(backups.success_percent)}% of {backups.checks} backup checks"
                f" succeeded (target {_number(backups.target_percent)}%)",
                f"{_count(len(backups.breaches), 'RPO breach', 'RPO breaches')} in the month",
                f"{len(bad)} of {len(backups.assets)} backup jobs not ok at their last check",
                f"{backups.integrity_failed} of {backups.integrity_checks} integrity checks failed",
            ),
            observations=observations,
            risks=risks,
        )

    def restore_tests(self) -> None:
        backups = self.report.backups
        observed: list[str] = []
        failing = 0
        for asset in backups.assets:
            outcome, state = self.drill_state(asset)
            if outcome is not _Outcome.PASS:
                failing += 1
            drilled = (
                f"last restore test {_when(asset.last_drill)} {_verdict(asset.drill_ok)}"
                if asset.last_drill
                else "no restore test on record"
            )
            due = f"Next test due {_when(asset.drill_due)}" if asset.drill_due else ""
            observed.append(
                self.observe(
                    RESTORE_TEST,
                    asset.host,
                    subject=(asset.job,),
                    title=f"Restore tests of backup job {_md(asset.job)} on {_md(asset.host)}",
                    description=_sentences(
                        f"Backup job {_md(asset.job)} on {_md(asset.host)}: {drilled}", due
                    ),
                    outcome=outcome,
                    state=state,
                    collected=asset.last_drill,
                    method=_Method.TEST if asset.last_drill else _Method.EXAMINE,
                )
            )
        if not backups.assets:
            self.find(
                RESTORE_TEST,
                satisfied=False,
                description="No backup job in the month's evidence.",
                observations=observed,
                no_evidence="no evidence: no backup job, so no restore test, in the month",
            )
            return
        self.find(
            RESTORE_TEST,
            satisfied=not failing and not backups.drills_due and not backups.drills_failed,
            description=_sentences(
                f"{_count(backups.drills, 'restore test')} in the month,"
                f" {backups.drills_failed} failed",
                f"{_count(backups.drills_due, 'backup job')} overdue for a restore test",
            ),
            observations=observed,
        )

    def drill_state(self, asset: BackupAsset) -> tuple[_Outcome, str]:
        if asset.last_drill is None:
            return _Outcome.FAIL, "never tested"
        if asset.drill_ok is False:
            return _Outcome.FAIL, "failed"
        if asset.drill_due is not None and asset.drill_due <= self.report.period.end:
            return _Outcome.FAIL, "due"
        return _Outcome.PASS, "tested"

    def baseline(self, rule_controls: Sequence[Control]) -> None:
        baseline = self.report.baseline
        observed: list[str] = []
        for host in baseline.hosts:
            if host.score is None:
                outcome = _Outcome.NO_DATA
            else:
                outcome = _Outcome.PASS if host.score >= baseline.floor else _Outcome.FAIL
            score = _number(host.score) if host.score is not None else "no data"
            observed.append(
                self.observe(
                    BASELINE,
                    host.host,
                    title=f"Hardening of {_md(host.host)}",
                    description=_sentences(
                        f"{_md(host.host)} ({_md(host.platform)}) scored {score} at its last"
                        f" audit ({_when(host.audited)}), floor {_number(baseline.floor)}:"
                        f" {host.passed} rules passed, {host.failed} failed, {host.errors} in"
                        f" error, {host.waived} waived",
                        _reason(host.reason),
                    ),
                    outcome=outcome,
                    state=score,
                    collected=host.audited,
                )
            )
        for name in self.unchecked("baseline", (h.host for h in baseline.hosts)):
            observed.append(self.no_data(BASELINE, name, "no baseline audit reached the host"))

        if baseline.score is None:
            self.find(
                BASELINE,
                satisfied=False,
                description="No baseline score for the month.",
                observations=observed,
                no_evidence="no evidence: no baseline audit result in the month's evidence",
            )
        else:
            self.find(
                BASELINE,
                satisfied=baseline.score >= baseline.floor,
                description=(
                    f"The fleet scored {_number(baseline.score)} at the month's last audits"
                    f" (floor {_number(baseline.floor)}, {len(baseline.hosts)} hosts audited)."
                ),
                observations=observed,
            )
        newly_failing: dict[str, list[str]] = {}
        for drift in baseline.drift:
            if drift.after == "fail" and drift.before != "fail":
                newly_failing.setdefault(drift.rule, []).append(_md(drift.host))
        for control, failure in zip(rule_controls, baseline.top_failing, strict=True):
            drifted = newly_failing.get(failure.rule, [])
            self.find(
                control,
                satisfied=False,
                description=_sentences(
                    f"Rule {_md(failure.rule)} ({_md(failure.severity)}) fails on"
                    f" {failure.hosts} hosts at their last audit",
                    "It passed last month on: " + ", ".join(drifted) if drifted else "",
                ),
                observations=(),
            )

    def coverage(self) -> None:
        coverage = self.report.coverage
        unchecked = {h.host: h for h in coverage.unchecked}
        observed: list[str] = []
        for name in self.hosts:
            if name in self.retired:
                continue
            missed = unchecked.get(name)
            if coverage.percent is None:
                observed.append(self.no_data(COVERAGE, name, "no check reached the host"))
                continue
            if missed is None:
                observed.append(
                    self.observe(
                        COVERAGE,
                        name,
                        title=f"Checks that reached {_md(name)}",
                        description=(
                            f"Every check that targets {_md(name)} reached it in the month."
                        ),
                        outcome=_Outcome.PASS,
                        state="checked",
                        collected=None,
                        method=_Method.EXAMINE,
                    )
                )
                continue
            kinds = ", ".join(_md(kind) for kind, ok in sorted(missed.checked.items()) if not ok)
            observed.append(
                self.observe(
                    COVERAGE,
                    name,
                    title=f"Checks that reached {_md(name)}",
                    description=(f"Checks that target {_md(name)} but never reached it: {kinds}."),
                    outcome=_Outcome.FAIL,
                    state="not checked",
                    collected=None,
                    method=_Method.EXAMINE,
                )
            )
        retired = ", ".join(_md(name) for name in coverage.extra)
        if coverage.percent is None or not coverage.hosts:
            self.find(
                COVERAGE,
                satisfied=False,
                description="No inventory host for the month.",
                observations=observed,
                no_evidence="no evidence: no inventory host to check in the month",
            )
            return
        self.find(
            COVERAGE,
            satisfied=coverage.percent >= coverage.floor,
            description=_sentences(
                f"{coverage.checked} of {coverage.hosts} inventory hosts"
                f" ({_number(coverage.percent)}%) were reached by every check that targets"
                f" them (floor {_number(coverage.floor)}%)",
                f"In the evidence but no longer in the inventory: {retired}" if retired else "",
            ),
            observations=observed,
        )

    def no_data(self, control: Control, host: str, what: str) -> str:
        return self.observe(
            control,
            host,
            title=f"No data for {_md(host)}",
            description=f"{_md(host)}: {what} in the month.",
            outcome=_Outcome.NO_DATA,
            state="not checked",
            collected=None,
        )

    # --- the result's own text -------------------------------------------------------

    def result_description(self) -> str:
        report = self.report
        score = (
            f"overall score {_number(report.score)} ({report.band})"
            if report.score is not None
            else "no overall score (no data)"
        )
        return (
            f"{_md(report.client_name)}'s month {report.period.month} (cut in"
            f" {_md(report.period.timezone)}), judged by mspauto against contract"
            f" {_md(_term(report.contract.get('name', '')))}: {score}."
        )

    def result_props(self) -> list[dict[str, Any]]:
        report = self.report
        props = [
            _prop("period-timezone", report.period.timezone),
            _prop("contract", _term(report.contract.get("name", ""))),
            _prop("sla-band", report.band.value),
        ]
        if report.score is not None:
            props.append(_prop("sla-score", _number(report.score)))
        return props

    def result_remarks(self) -> str:
        report = self.report
        parts: list[str] = []
        if report.missing_data:
            parts.append(
                "Missing from the month's evidence:\n\n"
                + "\n".join(f"- {_md(line)}" for line in report.missing_data)
            )
        if report.exceptions:
            lines = []
            for item in report.exceptions:
                details = [
                    f"approved by {_md(item.approved_by)}" if item.approved_by else "",
                    f"approved on {_md(item.approved_on)}" if item.approved_on else "",
                    f"expires {_md(item.expires)}" if item.expires else "",
                ]
                approval = "; ".join(d for d in details if d)
                lines.append(
                    f"- {_md(item.kind)} {_md(item.subject)} on"
                    f" {', '.join(_md(h) for h in item.hosts) or 'all hosts'}:"
                    f" {_md(item.reason)}" + (f" ({approval})" if approval else "")
                )
            parts.append("Exceptions in force during the month:\n\n" + "\n".join(lines))
        return "\n\n".join(parts)


# --- values as the schema's patterns accept them -------------------------------------


def _uuid(*parts: str) -> str:
    """A version 5 UUID of ``parts`` (JSON-encoded, so no two part lists collide)."""
    return str(uuid.uuid5(_UUID_NAMESPACE, json.dumps(parts)))


def _time(moment: datetime) -> str:
    """An OSCAL date-time (UTC, ``Z``)."""
    if moment.utcoffset() is None:
        raise ValueError(f"{moment.isoformat()} has no time zone: report times must be aware")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _when(moment: datetime | None, none: str = "never") -> str:
    """A time as people read it in a description."""
    if moment is None:
        return none
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _number(value: float | None) -> str:
    if value is None:
        return "no data"
    return f"{value:.1f}".removesuffix(".0")


def _count(n: int, one: str, many: str = "") -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _reason(text: str) -> str:
    return f"Reason: {_md(text)}" if _line(text) else ""


def _verdict(ok: bool | None) -> str:
    return {True: "ok", False: "failed", None: "not checked"}[ok]


def _term(value: Any) -> str:
    """A contract term's value as text."""
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, dict):
        return ", ".join(f"{key} {_term(v)}" for key, v in value.items())
    return str(value)


_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]|[\ud800-\udfff]")
_WHITESPACE = re.compile(r"\s+")


def _line(text: str) -> str:
    """``text`` on one line: control characters and lone surrogates (which neither
    OSCAL's XML form nor UTF-8 can carry) replaced, whitespace runs collapsed."""
    return _WHITESPACE.sub(" ", _CONTROL.sub("\ufffd", text)).strip()


def _string(text: str) -> str:
    """An OSCAL ``string``: one line, no outer whitespace, not empty."""
    return _line(text) or "(empty)"


_TOKEN_KEEP = re.compile(r"[A-Za-z0-9.-]")


def _token_tail(text: str) -> str:
    """``text`` as the tail of an OSCAL ``token`` (an XML NCName), one to one: ASCII
    letters, digits, ``.`` and ``-`` are kept, anything else becomes its code point in
    hex between two ``_``. (A token must not start with a digit: callers prefix it.)"""
    return "".join(c if _TOKEN_KEEP.fullmatch(c) else f"_{ord(c):x}_" for c in text)


_MARKDOWN = re.compile(r"[\\`*{}\[\]<>&#]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
"""What would format, link, embed or insert in OSCAL's Markdown. An underscore inside a
word never starts emphasis (CommonMark), so ``New_York`` stays as it is."""


def _md(text: str) -> str:
    """Text from a host or a policy inside an OSCAL markup field (titles, descriptions,
    remarks): OSCAL reads those as Markdown, so it is escaped to read back as written."""
    return _MARKDOWN.sub(lambda match: "\\" + match.group(), _string(text))


def _either(words: Sequence[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    return " or ".join([", ".join(words[:-1]), words[-1]] if len(words) > 1 else words)


def _sentences(*parts: str) -> str:
    return " ".join(part if part.endswith(".") else f"{part}." for part in parts if part)


def _prop(name: str, value: str, *, cls: str | None = None) -> dict[str, Any]:
    """An mspauto prop (``ns`` = :data:`NAMESPACE`)."""
    prop = {"name": name, "ns": NAMESPACE, "value": _string(value)}
    if cls:
        prop["class"] = cls
    return prop


def _mapping_props(control: Control) -> list[dict[str, Any]]:
    return [_prop(framework, ident, cls="mapping") for framework, ident in control.mappings]
