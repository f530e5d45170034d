"""The monthly report as OSCAL assessment results: valid against NIST's 1.0.6 schema,
read back whole by a second, independent reader (compliance-trestle), and saying what
the report says: failing areas not satisfied, empty months never satisfied, every
reference resolving, the same bytes for the same report, hostile text kept as data."""

from __future__ import annotations

import copy
import functools
import json
import re
import sys
import unicodedata
from collections.abc import Iterator
from dataclasses import fields, is_dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator, FormatChecker, ValidationError, validators
from jsonschema.protocols import Validator
from report_sample import empty_report, sample_report
from trestle.oscal import OSCAL_VERSION as TRESTLE_OSCAL_VERSION
from trestle.oscal.assessment_results import AssessmentResults

from mspauto.report.oscal import (
    BACKUP,
    BASELINE,
    COVERAGE,
    OSCAL_VERSION,
    PATCHING,
    RESTORE_TEST,
    assessment_results,
    write_oscal,
)
from mspauto.sla.model import MonthlyReport

SCHEMA = (
    Path(__file__).parent.parent
    / "fixtures"
    / "oscal"
    / f"oscal_assessment-results_schema-{OSCAL_VERSION}.json"
)


@functools.cache
def _category_class(major: str) -> str:
    """A ``re`` character class of every code point in Unicode category ``major``*."""
    ranges: list[str] = []
    start: int | None = None
    for code in range(sys.maxunicode + 2):
        inside = code <= sys.maxunicode and unicodedata.category(chr(code)).startswith(major)
        if inside and start is None:
            start = code
        elif not inside and start is not None:
            ranges.append(f"\\U{start:08x}-\\U{code - 1:08x}")
            start = None
    return "[" + "".join(ranges) + "]"


@functools.cache
def _python_pattern(pattern: str) -> re.Pattern[str]:
    """A schema pattern as ``re`` reads it with the schema's meaning: ``\\p{L}`` and
    ``\\p{N}`` spelled out, and a final ``$`` that, as in ECMA 262, does not also match
    before a trailing newline."""
    translated = pattern.replace(r"\p{L}", _category_class("L"))
    translated = translated.replace(r"\p{N}", _category_class("N"))
    assert r"\p{" not in translated, pattern
    if translated.endswith("$"):
        translated = translated[:-1] + r"\Z"
    return re.compile(translated)


def _pattern(
    validator: Validator, pattern: str, instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _python_pattern(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


# jsonschema's extend() has no annotations; it returns a Draft 7 validator class.
OscalValidator: type[Validator] = validators.extend(  # type: ignore[no-untyped-call]
    Draft7Validator, {"pattern": _pattern}
)


@pytest.fixture(scope="module")
def validator() -> Validator:
    checks = set(Draft7Validator.FORMAT_CHECKER.checkers)
    missing = {"date-time", "uri", "uri-reference"} - checks
    assert not missing, f"jsonschema checks {missing} only with jsonschema[format-nongpl]"
    schema = json.loads(SCHEMA.read_text())
    assert schema["$id"].endswith(f"/{OSCAL_VERSION}/oscal-ar-schema.json")
    # The meta-schema's "regex" format is Python's re, which has no \p{..}: check the
    # schema's structure only.
    Draft7Validator.check_schema(schema, format_checker=FormatChecker(formats=()))
    return OscalValidator(schema, format_checker=Draft7Validator.FORMAT_CHECKER)


def _errors(validator: Validator, document: dict[str, Any]) -> list[str]:
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message[:300]}"
        for error in validator.iter_errors(document)
    ]


def _trestle_reads(report: MonthlyReport, tmp_path: Path) -> dict[str, Any]:
    """The document as compliance-trestle reads the written file and writes it back."""
    path = tmp_path / f"{report.client}-{report.period.month}.json"
    write_oscal(report, path)
    model = AssessmentResults.oscal_read(path)
    assert isinstance(model, AssessmentResults)
    written: dict[str, Any] = model.oscal_dict()
    return written


def _same_times(value: Any) -> Any:
    """``value`` with date-times as datetimes (trestle writes ``+00:00`` for ``Z``)."""
    if isinstance(value, dict):
        return {key: _same_times(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_same_times(item) for item in value]
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d\d-\d\dT\S+", value):
        return datetime.fromisoformat(value)
    return value


REPORTS = {
    "sample": sample_report,
    "50 hosts": functools.partial(sample_report, hosts=50),
    "empty": empty_report,
}


@pytest.mark.parametrize("make", REPORTS.values(), ids=REPORTS.keys())
def test_valid_against_the_oscal_schema(make: Any, validator: Validator) -> None:
    document = assessment_results(make())
    assert _errors(validator, document) == []
    assert document["assessment-results"]["metadata"]["oscal-version"] == OSCAL_VERSION


BROKEN = {
    "version 1 uuid": (
        lambda d: d["results"][0]["findings"][0],
        "uuid",
        "c232ab00-9414-11ec-b3c8-9f6bdeced846",
    ),
    "token with a space": (
        lambda d: d["results"][0]["reviewed-controls"]["control-selections"][0]["include-controls"][
            0
        ],
        "control-id",
        "sla patching",
    ),
    "string ending in a newline": (lambda d: d["metadata"], "version", "2026-11\n"),
    "date-time without a zone": (lambda d: d["metadata"], "last-modified", "2026-12-01T06:00:00"),
    "uri with a space": (lambda d: d["metadata"]["props"][0], "ns", "urn:mspauto:has space"),
    "uri-reference with a space": (lambda d: d["import-ap"], "href", "#not a reference"),
    "unknown key": (lambda d: d["results"][0], "verdict", "fine"),
}


@pytest.mark.parametrize("where", BROKEN.values(), ids=BROKEN.keys())
def test_the_validator_rejects_what_the_schema_forbids(where: Any, validator: Validator) -> None:
    """The checks above can fail: patterns, formats and closed objects are enforced."""
    document = copy.deepcopy(assessment_results(sample_report()))
    part, key, value = where
    part(document["assessment-results"])[key] = value
    assert _errors(validator, document)


@pytest.mark.parametrize("make", REPORTS.values(), ids=REPORTS.keys())
def test_trestle_reads_the_written_file_whole(make: Any, tmp_path: Path) -> None:
    # trestle's models follow a newer OSCAL (1.2.x), but it does not reject a document
    # for its oscal-version, and every construct used here is the same in 1.0.6 and
    # 1.2: so trestle reads the file exactly as written, no copy with another version.
    # Reading it back must lose or change nothing but how date-times are spelled.
    report = make()
    assert TRESTLE_OSCAL_VERSION != OSCAL_VERSION
    read = _trestle_reads(report, tmp_path)
    assert read["assessment-results"]["metadata"]["oscal-version"] == OSCAL_VERSION
    assert _same_times(read) == _same_times(assessment_results(report))


def _results(report: MonthlyReport) -> dict[str, Any]:
    results: dict[str, Any] = assessment_results(report)["assessment-results"]["results"][0]
    return results


def _states(report: MonthlyReport) -> dict[str, str]:
    return {
        finding["target"]["target-id"]: finding["target"]["status"]["state"]
        for finding in _results(report)["findings"]
    }


def test_a_failing_area_gives_a_not_satisfied_finding() -> None:
    report = sample_report()
    assert _states(report) == {
        PATCHING.objective_id: "not-satisfied",  # curl overdue on web3, bash installed late
        BACKUP.objective_id: "not-satisfied",  # web1's RPO breach
        RESTORE_TEST.objective_id: "not-satisfied",  # web1 never restore-tested
        BASELINE.objective_id: "satisfied",  # 86.4 >= 80
        COVERAGE.objective_id: "satisfied",  # 3 of 3 hosts checked
        "baseline-rule.ssh-permit-root-login_obj": "not-satisfied",
        "baseline-rule.sysctl-ip-forward_obj": "not-satisfied",
    }
    below_floor = replace(report, baseline=replace(report.baseline, score=79.9))
    assert _states(below_floor)[BASELINE.objective_id] == "not-satisfied"
    half_checked = replace(report, coverage=replace(report.coverage, checked=2, percent=66.7))
    assert _states(half_checked)[COVERAGE.objective_id] == "not-satisfied"


def test_an_rpo_breach_fails_backups_even_when_recovered_by_month_end() -> None:
    report = sample_report()
    all_ok = [replace(asset, state="ok", reason="") for asset in report.backups.assets]
    (breach,) = report.backups.breaches
    recovered = replace(breach, end=breach.start + timedelta(hours=5), hours=5.0)
    healthy = replace(report, backups=replace(report.backups, assets=all_ok, breaches=[]))
    breached = replace(healthy, backups=replace(healthy.backups, breaches=[recovered]))

    assert _states(healthy)[BACKUP.objective_id] == "satisfied"
    assert _states(breached)[BACKUP.objective_id] == "not-satisfied"
    (risk,) = [r for r in _results(breached)["risks"] if "RPO" in r["title"]]
    assert risk["status"] == "closed"


def test_the_failing_host_is_observed_failing_with_its_risk() -> None:
    results = _results(sample_report())
    host_uuid = {
        _prop(item, "asset-id"): item["uuid"]
        for item in results["local-definitions"]["inventory-items"]
    }
    patch = {
        o["subjects"][0]["subject-uuid"]: o
        for o in results["observations"]
        if _prop(o, "control") == PATCHING.id
    }
    assert {uuid: _prop(o, "outcome") for uuid, o in patch.items()} == {
        host_uuid["web1"]: "pass",
        host_uuid["web2"]: "pass",
        host_uuid["web3"]: "fail",
    }
    (overdue,) = [risk for risk in results["risks"] if "curl" in risk["title"]]
    assert overdue["status"] == "open"
    assert overdue["related-observations"] == [
        {"observation-uuid": patch[host_uuid["web3"]]["uuid"]}
    ]
    (finding,) = [
        f for f in results["findings"] if f["target"]["target-id"] == PATCHING.objective_id
    ]
    assert {"risk-uuid": overdue["uuid"]} in finding["related-risks"]


@pytest.mark.parametrize("hosts", [1, 3, 50])
def test_one_inventory_item_per_host(hosts: int) -> None:
    report = sample_report(hosts=hosts)
    items = _results(report)["local-definitions"]["inventory-items"]
    assert len(items) == report.coverage.hosts == hosts
    assert {_prop(item, "asset-id") for item in items} == {f"web{i + 1}" for i in range(hosts)}
    per_area = {
        control.id: sum(
            1 for o in _results(report)["observations"] if _prop(o, "control") == control.id
        )
        for control in (PATCHING, BACKUP, RESTORE_TEST, BASELINE, COVERAGE)
    }
    assert set(per_area.values()) == {hosts}


@pytest.mark.parametrize("make", REPORTS.values(), ids=REPORTS.keys())
def test_every_reference_resolves(make: Any) -> None:
    document = assessment_results(make())["assessment-results"]
    results = document["results"][0]
    local = results["local-definitions"]
    hosts = {item["uuid"] for item in local.get("inventory-items", [])}
    tools = {component["uuid"] for component in local["components"]}
    observations = {o["uuid"] for o in results.get("observations", [])}
    risks = {risk["uuid"] for risk in results.get("risks", [])}
    resources = {resource["uuid"] for resource in document["back-matter"]["resources"]}
    objectives = document["local-definitions"]["objectives-and-methods"]
    objective_ids = {part["id"] for o in objectives for part in o["parts"]}

    for observation in results.get("observations", []):
        for subject in observation["subjects"]:
            assert subject["type"] == "inventory-item"
            assert subject["subject-uuid"] in hosts
        for origin in observation["origins"]:
            assert {actor["actor-uuid"] for actor in origin["actors"]} <= tools
    for finding in results["findings"]:
        assert finding["target"]["target-id"] in objective_ids
        related = {r["observation-uuid"] for r in finding.get("related-observations", [])}
        assert related <= observations
        assert {r["risk-uuid"] for r in finding.get("related-risks", [])} <= risks
    for risk in results.get("risks", []):
        assert {r["observation-uuid"] for r in risk.get("related-observations", [])} <= observations
    assert document["import-ap"]["href"].removeprefix("#") in resources
    for observation in results.get("observations", []):
        for evidence in observation.get("relevant-evidence", []):
            assert evidence["href"].removeprefix("#") in resources
    selected = results["reviewed-controls"]["control-selections"][0]["include-controls"]
    assert [c["control-id"] for c in selected] == [o["control-id"] for o in objectives]

    parties = {party["uuid"] for party in document["metadata"]["parties"]}
    for responsible in document["metadata"]["responsible-parties"]:
        assert set(responsible["party-uuids"]) <= parties
    defined = re.findall(r'"uuid": "([^"]+)"', json.dumps(document))
    assert len(defined) == len(set(defined)), "a UUID is defined twice"


def test_each_area_names_what_to_map_it_to() -> None:
    objectives = {
        o["control-id"]: {
            (p["name"], p["value"]) for p in o["props"] if p.get("class") == "mapping"
        }
        for o in assessment_results(sample_report())["assessment-results"]["local-definitions"][
            "objectives-and-methods"
        ]
    }
    assert {("cis-controls-v8", "7.3"), ("cis-controls-v8", "7.4")} <= objectives[PATCHING.id]
    assert ("cis-controls-v8", "11.2") in objectives[BACKUP.id]
    assert ("cis-controls-v8", "11.5") in objectives[RESTORE_TEST.id]
    assert ("cis-controls-v8", "4.1") in objectives[BASELINE.id]
    assert ("cis-controls-v8", "4.1") in objectives["baseline-rule.ssh-permit-root-login"]


def test_the_counted_records_are_one_resource_per_chain_that_observations_cite() -> None:
    report = sample_report(hosts=50)
    (counted,) = report.evidence
    document = assessment_results(report)["assessment-results"]
    resources = [r for r in document["back-matter"]["resources"] if _prop(r, "evidence-chain")]
    assert len(resources) == 1
    (resource,) = resources
    assert {
        name: _prop(resource, name)
        for name in (
            "evidence-chain",
            "evidence-count",
            "evidence-first-seq",
            "evidence-first-hash",
            "evidence-last-seq",
            "evidence-last-hash",
            "evidence-records-sha256",
        )
    } == {
        "evidence-chain": "acme",
        "evidence-count": "5",
        "evidence-first-seq": "1",
        "evidence-first-hash": counted.first_hash,
        "evidence-last-seq": "5",
        "evidence-last-hash": counted.last_hash,
        "evidence-records-sha256": counted.sha256,
    }
    assert [p["value"] for p in resource["props"] if p["name"] == "evidence-kind"] == list(
        counted.kinds
    )
    # The description says how to select the records again.
    assert (
        "every record of the chain of kind findings or change_result whose"
        in (resource["description"])
    )
    assert (
        "2026-11-01T04:00:00Z (included) to 2026-12-01T05:00:00Z (excluded)"
        in (resource["description"])
    )
    observations = document["results"][0]["observations"]
    cited = {evidence["href"] for o in observations for evidence in o.get("relevant-evidence", [])}
    assert cited == {f"#{resource['uuid']}"}
    assert sum("relevant-evidence" in o for o in observations) == sum(
        _prop(o, "outcome") != "no-data" for o in observations
    )


def test_the_same_report_gives_the_same_bytes(tmp_path: Path) -> None:
    write_oscal(sample_report(), tmp_path / "first.json")
    write_oscal(sample_report(), tmp_path / "second.json")
    assert (tmp_path / "first.json").read_bytes() == (tmp_path / "second.json").read_bytes()

    report = sample_report()
    next_month = replace(report, period=replace(report.period, month="2026-12"))
    this, that = assessment_results(report), assessment_results(next_month)
    assert this["assessment-results"]["uuid"] != that["assessment-results"]["uuid"]
    # A host keeps its inventory-item UUID from one month to the next.
    assert (
        _results(report)["local-definitions"]["inventory-items"]
        == _results(next_month)["local-definitions"]["inventory-items"]
    )


def test_a_month_without_evidence_is_never_satisfied() -> None:
    results = _results(empty_report())
    assert '"satisfied"' not in json.dumps(results)
    no_evidence = {
        f["target"]["target-id"]: f["target"]["status"]
        for f in results["findings"]
        if f["target"]["status"].get("remarks", "").startswith("no evidence")
    }
    assert set(no_evidence) == {
        PATCHING.objective_id,
        BACKUP.objective_id,
        RESTORE_TEST.objective_id,
        BASELINE.objective_id,
    }
    assert {status["reason"] for status in no_evidence.values()} == {"other"}
    assert all("relevant-evidence" not in o for o in results["observations"])
    assert {
        _prop(o, "outcome") for o in results["observations"] if _prop(o, "control") == PATCHING.id
    } == {"no-data"}


HOSTILE = {
    "web1": "<script>alert(1)</script>",
    "web2": "web 2\n\t",
    "web3": "[x](javascript:alert(1))",
    "web4": "",
    "web5": "bad\udc80\x00host\u2028",
    "web6": "1-starts-with-a-digit",
    "ssh-permit-root-login": "ssh permit/root:login ü",
    "sysctl-ip-forward": "9lives",
    "Acme Corp": "Acme\n\n# Corp &amp; <b>co</b>",
    "approved by approval rule 1 (severity: high)": "  \nline\r\nbreak\t",
}


def _swap(value: Any) -> Any:
    """``value`` (a report's dataclass tree) with every string in HOSTILE replaced."""
    if is_dataclass(value) and not isinstance(value, type):
        return replace(value, **{f.name: _swap(getattr(value, f.name)) for f in fields(value)})
    if isinstance(value, str):
        return HOSTILE.get(value, value)
    if isinstance(value, list | tuple):
        return type(value)(_swap(item) for item in value)
    if isinstance(value, dict):
        return {_swap(key): _swap(item) for key, item in value.items()}
    return value


def test_hostile_text_stays_data(validator: Validator, tmp_path: Path) -> None:
    report = _swap(sample_report(hosts=6))
    assert isinstance(report, MonthlyReport)
    assert report.patching.hosts[0].host == HOSTILE["web1"]
    document = assessment_results(report)
    assert _errors(validator, document) == []
    assert _same_times(_trestle_reads(report, tmp_path)) == _same_times(document)

    results = document["assessment-results"]["results"][0]
    items = results["local-definitions"]["inventory-items"]
    assert len(items) == 6
    assert {_prop(item, "asset-id") for item in items} == {
        "<script>alert(1)</script>",
        "web 2",
        "[x](javascript:alert(1))",
        "(empty)",
        "bad\ufffd\ufffdhost",
        "1-starts-with-a-digit",
    }
    # Markup fields are Markdown to OSCAL tools: the text is escaped, not interpreted.
    markup = json.dumps([o["title"] for o in results["observations"]])
    assert "<script>" not in markup
    assert "\\\\<script\\\\>" in markup
    assert "\\\\[x\\\\](javascript" in markup
    title = document["assessment-results"]["metadata"]["title"]
    assert title.startswith("Monthly SLA assessment results: Acme \\# Corp \\&amp; \\<b\\>co")
    controls = [
        c["control-id"]
        for c in results["reviewed-controls"]["control-selections"][0]["include-controls"]
    ]
    assert "baseline-rule.ssh_20_permit_2f_root_3a_login_20__fc_" in controls
    assert "baseline-rule.9lives" in controls


def _prop(part: dict[str, Any], name: str) -> str | None:
    values = [p["value"] for p in part.get("props", []) if p["name"] == name]
    assert len(values) <= 1, (name, values)
    return values[0] if values else None
