"""Windows Update facts: the probe's JSON parsed into HostPatchFacts (pure, no host).

Golden fixtures: tests/fixtures/winrm/windows-update.yaml, one state per entry, each
naming the published output its values come from (none recorded from a host of ours).
The mapping rules that no published output exercises (drivers, the registry reboot
signals, names without IDs) are pinned with small documents built here, and say so.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from mspauto.lab.winrm_endpoint import MODELLED, CannedAnswer, check_source
from mspauto.patching.facts import HostPatchFacts
from mspauto.patching.windows import (
    CLASSIFICATIONS,
    PROBE_MARKER,
    SEARCH_CRITERIA,
    parse,
    probe_script,
)

FIXTURE = Path(__file__).parent.parent / "fixtures" / "winrm" / "windows-update.yaml"
STATES: dict[str, dict[str, Any]] = yaml.safe_load(FIXTURE.read_text())


def _facts(state: str) -> HostPatchFacts:
    """What the parser makes of the state's answer, as the endpoint sends it (CRLF)."""
    entry = STATES[state]
    return parse(entry["stdout"] + "\r\n", entry.get("stderr", ""), entry.get("exit_code", 0))


def _document(**updates: Any) -> dict[str, Any]:
    """The probe's document for one state, as the fixture for nothing-pending has it."""
    document: dict[str, Any] = json.loads(STATES["nothing-pending"]["stdout"])
    document.update(updates)
    return document


def _update(**fields: Any) -> dict[str, Any]:
    """An update entry shaped like the probe's (values for this test only)."""
    base: dict[str, Any] = json.loads(STATES["security-critical-important"]["stdout"])
    entry: dict[str, Any] = base["Updates"][0]
    entry.update(fields)
    return entry


def _parse(document: dict[str, Any]) -> HostPatchFacts:
    return parse(json.dumps(document, separators=(",", ":")) + "\r\n", "", 0)


@pytest.mark.parametrize("state", sorted(STATES))
def test_every_state_names_its_source_and_answers_the_probe(state: str) -> None:
    entry = STATES[state]
    check_source(entry["source"], entry.get("note", ""))
    assert entry["note"].strip()
    answer = CannedAnswer(re.escape(PROBE_MARKER), entry["source"], entry["note"], entry["stdout"])
    assert answer.matches(probe_script())
    json.loads(entry["stdout"])  # one JSON line, as the probe prints it


def test_only_the_update_free_state_is_modelled() -> None:
    modelled = {state for state, entry in STATES.items() if entry["source"] == MODELLED}
    assert modelled == {"nothing-pending"}


def test_critical_and_important_security_updates() -> None:
    facts = _facts("security-critical-important")
    assert facts.problem is None
    assert facts.reboot_pending is False
    ssu, dotnet = facts.updates
    assert (ssu.name, ssu.severity, ssu.severity_source) == (
        "KB4470788",
        "critical",
        "MsrcSeverity",
    )
    assert (dotnet.name, dotnet.severity) == ("KB4483452", "high")
    assert {u.classification for u in facts.updates} == {"security"}
    assert ssu.advisory == "KB4470788"
    assert ssu.candidate == "fe6bd8c2-3752-4c8b-ab3e-1a7ed08767ba.200"
    assert ssu.source == "Windows Update"
    assert ssu.categories == ("Security Updates", "Windows Server 2019")
    assert ssu.released == datetime(2018, 12, 5, 22, 0, 5, tzinfo=UTC)
    assert dotnet.released == datetime(2019, 2, 12, 18, 0, tzinfo=UTC)
    # A servicing stack update never reboots; a .NET update only may ask for one.
    assert (ssu.reboot_required, dotnet.reboot_required) == (False, None)


def test_definition_update_is_definition_and_unrated_not_other() -> None:
    (update,) = _facts("definition-only").updates
    assert update.name == "KB2267602"
    assert update.classification == "definition"
    assert update.severity == "unrated"
    assert update.severity_source is None
    assert update.reboot_required is False
    assert update.released is None
    assert update.title is not None and "Version 1.339.1923.0" in update.title


def test_one_update_given_as_an_object_reads_like_an_array_of_one() -> None:
    document = json.loads(STATES["definition-only"]["stdout"])
    document["Updates"] = document["Updates"][0]
    assert _parse(document).updates == _facts("definition-only").updates


def test_cumulative_update_waiting_for_a_reboot_on_a_german_host() -> None:
    facts = _facts("cumulative-needs-reboot")
    (update,) = facts.updates
    assert update.name == "KB5032339"
    assert update.title == (
        "2023-11 Kumulatives Update für .NET Framework 3.5, 4.8 und 4.8.1 für Windows 10 "
        "Version 22H2 für x64 ((KB5032339))"
    )
    assert (update.severity, update.classification) == ("high", "security")
    assert update.categories == ()  # classified by the category GUID alone
    assert update.released == datetime(2023, 11, 14, tzinfo=UTC)
    assert update.reboot_required is True
    assert facts.reboot_pending is True
    assert "SystemInfo" in facts.reboot_reason


def test_pending_reboot_from_the_update_agent() -> None:
    facts = _facts("pending-reboot")
    assert facts.reboot_pending is True
    assert facts.reboot_reason == "Microsoft.Update.SystemInfo RebootRequired"
    assert [u.name for u in facts.updates] == ["KB2267602"]


def test_nothing_pending() -> None:
    facts = _facts("nothing-pending")
    assert facts == HostPatchFacts("windows-update", reboot_pending=False)


@pytest.mark.parametrize(
    ("state", "words"),
    [
        ("wsus-name-not-resolved", ("0x8024402C", "WU_E_PT_WINHTTP_NAME_NOT_RESOLVED")),
        ("endpoint-unreachable", ("0x80240438", "WU_E_PT_ENDPOINT_UNREACHABLE")),
    ],
)
def test_search_error_is_a_problem_with_its_hresult(state: str, words: tuple[str, str]) -> None:
    facts = _facts(state)
    assert facts.updates == ()
    assert facts.problem is not None
    assert facts.problem.startswith("the Windows Update search failed: ")
    assert all(word in facts.problem for word in words)
    assert facts.reboot_pending is False  # read before the search, so still known


def test_unknown_hresult_keeps_the_powershell_message() -> None:
    error = {"HResult": "0x8024A000", "Message": 'Exception calling "Search": "boom"'}
    facts = _parse(_document(Error=error, ResultCode=None))
    assert facts.problem == (
        'the Windows Update search failed: 0x8024A000 (Exception calling "Search": "boom")'
    )


# The rules below are exercised by no published output we found (no driver entry, no
# registry reboot flag, no English-only category list): documents built for the test.


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["Security Updates", "Windows 10"], "security"),
        (["Definition Updates"], "definition"),
        (["Drivers"], "driver"),
        (["Feature Packs"], "enhancement"),
        (["Upgrades"], "enhancement"),
        (["Critical Updates"], "bugfix"),
        (["Updates", "Windows Server 2019"], "bugfix"),
        (["Update Rollups"], "bugfix"),
        (["Service Packs"], "bugfix"),
        (["Tools"], "other"),
        (["Windows Server 2019"], "other"),
    ],
)
def test_classification_from_english_names_when_no_id_is_known(
    names: list[str], expected: str
) -> None:
    update = _update(Categories=names, ClassificationIDs=[])
    (pending,) = _parse(_document(Updates=[update])).updates
    assert pending.classification == expected


def test_classification_id_wins_over_a_translated_name() -> None:
    update = _update(Categories=["Definitionsupdates"], ClassificationIDs=[_id("Definition")])
    (pending,) = _parse(_document(Updates=[update])).updates
    assert pending.classification == "definition"


def test_security_wins_when_an_update_has_two_classifications() -> None:
    update = _update(ClassificationIDs=[_id("Update Rollups"), _id("Security Updates")])
    (pending,) = _parse(_document(Updates=[update])).updates
    assert pending.classification == "security"


def test_driver_without_kb_is_named_by_its_update_id() -> None:
    driver = _update(
        KBArticleIDs=[],
        Categories=[],
        ClassificationIDs=[],
        MsrcSeverity="",
        Type=2,
        UpdateID="0b4ba5ae-4a54-4b9f-bd53-1b1d1f3a1e30",
        RevisionNumber=1,
    )
    (pending,) = _parse(_document(Updates=[driver])).updates
    assert pending.name == "0b4ba5ae-4a54-4b9f-bd53-1b1d1f3a1e30"
    assert pending.advisory is None
    assert (pending.classification, pending.severity) == ("driver", "unrated")


def test_an_update_without_kb_or_id_is_skipped_with_a_warning() -> None:
    facts = _parse(_document(Updates=[_update(KBArticleIDs=[], UpdateID="")]))
    assert facts.updates == ()
    assert len(facts.warnings) == 1 and "neither a KB nor an UpdateID" in facts.warnings[0]


def test_unknown_severity_word_is_unrated_with_a_warning() -> None:
    facts = _parse(_document(Updates=[_update(MsrcSeverity="Unspecified")]))
    (pending,) = facts.updates
    assert (pending.severity, pending.severity_source) == ("unrated", None)
    assert facts.warnings == ("KB4470788: unknown MsrcSeverity 'Unspecified', read as unrated",)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"RebootRequired": True, "RebootBehavior": 0}, True),
        ({"RebootBehavior": 1}, True),
        ({"RebootBehavior": 0}, False),
        ({"RebootBehavior": 2}, None),
    ],
)
def test_per_update_reboot(fields: dict[str, Any], expected: bool | None) -> None:
    (pending,) = _parse(_document(Updates=[_update(**fields)])).updates
    assert pending.reboot_required is expected


def test_kb_ids_with_prefix_and_cves_are_kept() -> None:
    update = _update(KBArticleIDs=["KB5034441", "5034439"], CveIDs=["CVE-2024-20666"])
    (pending,) = _parse(_document(Updates=[update])).updates
    assert (pending.name, pending.cves) == ("KB5034441", ("CVE-2024-20666",))


def test_wsus_server_is_the_source() -> None:
    document = _document(Server="http://wsus01.contoso.local:8530", Updates=[_update()])
    (pending,) = _parse(document).updates
    assert pending.source == "WSUS http://wsus01.contoso.local:8530"


@pytest.mark.parametrize(
    ("signals", "pending", "reason"),
    [
        ({"ComponentServicing": True}, True, "Component Based Servicing\\RebootPending"),
        ({"WindowsUpdate": True}, True, "WindowsUpdate\\Auto Update\\RebootRequired"),
        ({"PendingFileRename": True}, True, "Session Manager PendingFileRenameOperations"),
        ({"SystemInfo": None}, False, ""),
    ],
)
def test_registry_reboot_signals(signals: dict[str, Any], pending: bool, reason: str) -> None:
    reboot = {
        "SystemInfo": False,
        "ComponentServicing": False,
        "WindowsUpdate": False,
        "PendingFileRename": False,
    } | signals
    facts = _parse(_document(Reboot=reboot))
    assert (facts.reboot_pending, facts.reboot_reason) == (pending, reason)


def test_no_reboot_signal_read_is_unknown() -> None:
    assert _parse(_document(Reboot=None)).reboot_pending is None


def test_search_with_errors_is_a_warning_and_a_failed_search_a_problem() -> None:
    partial = _parse(_document(ResultCode=3, Warnings=["0x8024401C"], Updates=[_update()]))
    assert partial.problem is None and len(partial.updates) == 1
    assert partial.warnings == (
        "the search succeeded with errors; some update services may be missing (0x8024401C)",
    )
    failed = _parse(_document(ResultCode=4))
    assert failed.problem == "the Windows Update search did not succeed: failed"


def test_unreadable_time_is_a_warning() -> None:
    facts = _parse(_document(Updates=[_update(LastDeploymentChangeTime="/Date(1699920000000)/")]))
    assert facts.updates[0].released is None
    assert facts.warnings == ("KB4470788: unreadable LastDeploymentChangeTime",)


def test_lines_before_the_document_are_skipped() -> None:
    stdout = "WARNING: profile loaded\r\n{not json\r\n" + STATES["nothing-pending"]["stdout"]
    assert parse(stdout, "", 0) == _facts("nothing-pending")


@pytest.mark.parametrize(
    ("stdout", "stderr", "rc", "problem"),
    [
        (
            "",
            "New-Object : Retrieving the COM class factory failed.\r\n"
            "At line:3 char:1\r\n+ New-Object -ComObject X\r\n",
            1,
            "the Windows Update probe failed (exit code 1): New-Object : Retrieving the COM "
            "class factory failed.",
        ),
        ("", "", None, "the Windows Update probe failed (did not run): no output"),
        (
            "Access is denied.\r\n",
            "",
            0,
            "the Windows Update probe failed (exit code 0): no JSON result",
        ),
    ],
)
def test_no_document_is_a_problem(stdout: str, stderr: str, rc: int | None, problem: str) -> None:
    assert parse(stdout, stderr, rc) == HostPatchFacts("windows-update", problem=problem)


def test_probe_script_searches_software_and_drivers_and_prints_json() -> None:
    script = probe_script()
    assert script.splitlines()[0] == PROBE_MARKER
    assert f"Search('{SEARCH_CRITERIA}')" in script
    assert "Type=" not in SEARCH_CRITERIA
    # LastDeploymentChangeTime is UTC already: converting it again would shift it.
    assert "ToUniversalTime" not in script
    assert "ConvertTo-Json -InputObject $doc -Depth 4 -Compress" in script


def _id(name: str) -> str:
    return next(guid for guid, (known, _) in CLASSIFICATIONS.items() if known.startswith(name))
