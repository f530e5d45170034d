"""Windows backup facts: the probe's JSON parsed into JobFacts, and the probe's data safety.

Golden fixtures: tests/fixtures/winrm/backups.yaml, one host state per entry, each naming
the published output its values come from, or ``modelled`` with what it is modelled on
(none recorded from a host of ours). Rules no published output exercises (a backup that
never ran, a signed HRESULT, a session whose result is None, unreadable documents) are
pinned with small documents built here, which say so. No PowerShell runs here: the
script is tested for what it carries (job names only as base64 data), not for running.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from mspauto.backup.facts import JobFacts, LastBackup, Problem
from mspauto.backup.windows import PROBE_MARKER, parse, probe_script
from mspauto.lab.winrm_endpoint import CannedAnswer, check_source

FIXTURE = Path(__file__).parent.parent / "fixtures" / "winrm" / "backups.yaml"
STATES: dict[str, dict[str, Any]] = yaml.safe_load(FIXTURE.read_text())

WSB = "windows-server-backup"
AGENT = "veeam-agent"
VBR = "veeam-br"


def _utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, sec, tzinfo=UTC)


def _job(state: str) -> dict[str, Any]:
    """The state's one job entry (index 0)."""
    entry: dict[str, Any] = json.loads(STATES[state]["stdout"])["Jobs"][0]
    return entry


def _facts(state: str) -> JobFacts:
    """What the parser makes of the state's answer, as the endpoint sends it (CRLF)."""
    job = _job(state)
    entry = STATES[state]
    answer = parse(
        entry["stdout"] + "\r\n",
        entry.get("stderr", ""),
        entry.get("exit_code", 0),
        jobs=[(0, job["Provider"], job["JobName"])],
    )
    assert list(answer) == [0]
    return answer[0]


def _document(*jobs: dict[str, Any]) -> str:
    return json.dumps({"Probe": 1, "Jobs": list(jobs)}, separators=(",", ":")) + "\r\n"


def _parse_one(job: dict[str, Any]) -> JobFacts:
    """Parse a document holding this one job entry, built in the test."""
    return parse(_document(job), "", 0, jobs=[(job["Job"], job["Provider"], job["JobName"])])[
        job["Job"]
    ]


@pytest.mark.parametrize("state", sorted(STATES))
def test_every_state_names_its_source_and_answers_the_probe(state: str) -> None:
    entry = STATES[state]
    check_source(entry["source"], entry.get("note", ""))
    assert entry["note"].strip()
    answer = CannedAnswer(re.escape(PROBE_MARKER), entry["source"], entry["note"], entry["stdout"])
    job = _job(state)
    assert answer.matches(probe_script([(0, job["Provider"], job["JobName"])]))


EXPECTED: dict[str, JobFacts] = {
    "wsb-success": JobFacts(
        WSB,
        latest=LastBackup(
            _utc(2024, 3, 15, 11, 16, 38),
            "Windows Server Backup to Toothle 2023_11_18 13:54 DISK_01",
            "success",
        ),
        last_success=_utc(2024, 3, 15, 11, 16, 38),
        count=101,
    ),
    "wsb-last-failed": JobFacts(
        WSB,
        latest=LastBackup(
            _utc(2024, 3, 15, 4, 30, 9),
            "Windows Server Backup to WIN-LAB 2024_01_08 09:12 DISK_01",
            "failed",
            message="HRESULT 0x80780049, detailed 0x8007007B: The filename, directory name "
            "or volume label syntax is incorrect",
        ),
        last_success=_utc(2024, 3, 14, 4, 30, 41),
        count=100,
    ),
    "wsb-not-installed": JobFacts(
        WSB,
        problem=Problem(
            "tool-missing",
            "Get-WBSummary is not available: the Windows Server Backup feature "
            "(Windows-Server-Backup) is not installed",
        ),
    ),
    "agent-success": JobFacts(
        AGENT,
        latest=LastBackup(_utc(2024, 3, 15, 22, 41, 7), "Backup Job WIN-LAB01", "success"),
        last_success=_utc(2024, 3, 15, 22, 41, 7),
    ),
    "agent-warning": JobFacts(
        AGENT,
        latest=LastBackup(
            _utc(2024, 3, 15, 22, 47, 55),
            "Backup Job WIN-LAB01",
            "warning",
            message="Veeam Agent Backup Job WIN-LAB01 finished with Warning.",
        ),
        last_success=_utc(2024, 3, 15, 22, 47, 55),
    ),
    "agent-failed": JobFacts(
        AGENT,
        latest=LastBackup(
            _utc(2024, 3, 15, 22, 5, 13),
            "Backup Job WIN-LAB01",
            "failed",
            message="Veeam Agent Backup Job WIN-LAB01 finished with Failed.",
        ),
        last_success=_utc(2024, 3, 14, 22, 38, 52),
    ),
    "agent-no-events": JobFacts(
        AGENT, warnings=("no 'backup job finished' event (190) in the Veeam Agent log",)
    ),
    "agent-log-missing": JobFacts(
        AGENT,
        problem=Problem(
            "tool-missing",
            "there is no 'Veeam Agent' event log: Veeam Agent for Microsoft Windows is not "
            'installed (There is not an event log on the localhost computer that matches "Veeam '
            'Agent".)',
        ),
    ),
    "vbr-success": JobFacts(
        VBR,
        latest=LastBackup(
            _utc(2022, 2, 4, 0, 0, 19), "Backup Job Application (Incremental)", "success"
        ),
        last_success=_utc(2022, 2, 4, 0, 0, 19),
    ),
    "vbr-failed": JobFacts(
        VBR,
        latest=LastBackup(
            _utc(2022, 2, 4, 3, 23, 58),
            "Backup Job Business Data (Incremental)",
            "failed",
            message="Veeam session 'Backup Job Business Data (Incremental)' ended Failed",
        ),
        last_success=_utc(2022, 2, 3, 3, 0, 12),
    ),
    "vbr-running-1900": JobFacts(
        VBR,
        latest=LastBackup(_utc(2022, 2, 2, 22, 3, 3), "Backup Copy Job Long Retention", "success"),
        last_success=_utc(2022, 2, 2, 22, 3, 3),
        warnings=(
            "session 'Backup Copy Job Long Retention' started 2022-02-04T22:00:02+00:00 is "
            "still running (Working)",
        ),
    ),
    "vbr-module-missing": JobFacts(
        VBR,
        problem=Problem(
            "tool-missing",
            "Get-VBRBackupSession is not available: neither the Veeam.Backup.PowerShell module "
            "nor the VeeamPSSnapIn snap-in loads (The specified module 'Veeam.Backup.PowerShell' "
            "was not loaded because no valid module file was found in any module directory.)",
        ),
    ),
    "vbr-no-sessions": JobFacts(
        VBR, warnings=("no session of Veeam job 'Backup Job Application' on this server",)
    ),
}
EXPECTED["vbr-running-null"] = EXPECTED["vbr-running-1900"]


def test_every_state_has_an_expectation() -> None:
    assert set(EXPECTED) == set(STATES)


@pytest.mark.parametrize("state", sorted(EXPECTED))
def test_state_parses_into_its_facts(state: str) -> None:
    assert _facts(state) == EXPECTED[state]


@pytest.mark.parametrize("state", sorted(STATES))
def test_every_time_is_aware_utc(state: str) -> None:
    facts = _facts(state)
    times = [t for t in (facts.last_success, facts.latest and facts.latest.time) if t]
    assert times or facts.latest is None
    assert all(t.utcoffset() == timedelta(0) for t in times)


def test_a_failed_wsb_run_keeps_the_older_success_apart() -> None:
    facts = _facts("wsb-last-failed")
    assert facts.latest is not None and facts.latest.result == "failed"
    assert facts.last_success is not None and facts.last_success < facts.latest.time


@pytest.mark.parametrize("state", ["vbr-running-1900", "vbr-running-null"])
def test_a_running_vbr_session_is_not_the_latest_backup(state: str) -> None:
    facts = _facts(state)
    assert facts.latest is not None
    assert facts.latest.time == _utc(2022, 2, 2, 22, 3, 3)  # the finished one, not 2022-02-04
    assert "still running" in facts.warnings[0]


# --- rules no published output shows (documents built here) ---------------------------


def _wsb_entry(**summary: Any) -> dict[str, Any]:
    """wsb-success's entry with some Summary fields changed (values for this test only)."""
    entry = _job("wsb-success")
    entry["Summary"].update(summary)
    return entry


def test_wsb_that_never_ran_has_no_backup() -> None:
    # Modelled: DateTime.MinValue (printed unconverted by the probe) and no versions.
    facts = _parse_one(
        _wsb_entry(
            LastSuccessfulBackupTime="0001-01-01T00:00:00Z",
            LastBackupTime="0001-01-01T00:00:00Z",
            NumberOfVersions=0,
            LastBackupTarget="",
        )
    )
    assert facts == JobFacts(WSB, count=0)


def test_wsb_hresult_reads_the_same_signed_or_unsigned() -> None:
    # An Int32 HRESULT would reach the JSON negative; Get-WBSummary prints it unsigned.
    signed = _parse_one(_wsb_entry(LastBackupResultHR=0x807800C5 - 2**32))
    unsigned = _parse_one(_wsb_entry(LastBackupResultHR=0x807800C5))
    assert signed == unsigned
    assert signed.latest is not None and signed.latest.result == "failed"
    assert signed.latest.message == "HRESULT 0x807800C5"


def test_wsb_detailed_hresult_alone_is_a_warning() -> None:
    facts = _parse_one(_wsb_entry(LastBackupResultDetailedHR=0x800701B1, DetailedMessage="note"))
    assert facts.latest is not None
    assert (facts.latest.result, facts.latest.message) == (
        "warning",
        "HRESULT 0x00000000, detailed 0x800701B1: note",
    )
    assert facts.last_success == _utc(2024, 3, 15, 11, 16, 38)


def test_wsb_operation_in_progress_is_a_warning() -> None:
    facts = _parse_one(_wsb_entry(CurrentOperationStatus="BackupInProgress"))
    assert facts.warnings == ("an operation is in progress now (BackupInProgress)",)
    assert facts.latest is not None and facts.latest.result == "success"


def _agent_entry(*events: dict[str, Any], last_success: Any = None) -> dict[str, Any]:
    return {
        "Job": 0,
        "Provider": AGENT,
        "JobName": None,
        "Error": None,
        "Seen": len(events),
        "Events": list(events),
        "LastSuccess": last_success,
    }


def _event(time: str, level: int, word: str, job: str = "Backup Job WIN-LAB01") -> dict[str, Any]:
    return {
        "TimeCreated": time,
        "Level": level,
        "Message": f"Veeam Agent {job} finished with {word}.",
    }


def test_agent_unknown_level_falls_back_to_the_status_word() -> None:
    facts = _parse_one(_agent_entry(_event("2024-03-15T22:00:00Z", 0, "Warning")))
    assert facts.latest is not None and facts.latest.result == "warning"


def test_agent_event_without_any_known_result_is_a_failure_with_a_warning() -> None:
    facts = _parse_one(_agent_entry(_event("2024-03-15T22:00:00Z", 5, "Pondering")))
    assert facts.latest is not None and facts.latest.result == "failed"
    assert facts.warnings == ("a Veeam Agent event of level 5 says no known result",)


def test_agent_job_name_comes_from_the_message_when_no_job_was_named() -> None:
    facts = _parse_one(_agent_entry(_event("2024-03-15T22:00:00Z", 4, "Success", "'Nightly'")))
    assert facts.latest is not None and facts.latest.name == "Nightly"


def test_agent_events_out_of_order_and_success_only_in_last_success() -> None:
    facts = _parse_one(
        _agent_entry(
            _event("2024-03-14T22:00:00Z", 2, "Failed"),
            _event("2024-03-15T22:00:00Z", 2, "Failed"),
            last_success=_event("2024-03-01T22:00:00Z", 4, "Success"),
        )
    )
    assert facts.latest is not None and facts.latest.time == _utc(2024, 3, 15, 22)
    assert facts.last_success == _utc(2024, 3, 1, 22)


def test_agent_events_of_other_jobs_only_say_so() -> None:
    entry = _agent_entry()
    entry.update(JobName="Backup Job SQL01", Seen=7)
    assert _parse_one(entry).warnings == (
        "7 'backup job finished' events (190) in the Veeam Agent log, none naming "
        "'Backup Job SQL01'",
    )


def _vbr_entry(*sessions: dict[str, Any], last_success: Any = None) -> dict[str, Any]:
    return {
        "Job": 0,
        "Provider": VBR,
        "JobName": "Nightly",
        "Error": None,
        "Seen": len(sessions),
        "Sessions": list(sessions),
        "LastSuccess": last_success,
    }


def _session(result: str, start: str, end: str | None, state: str = "Stopped") -> dict[str, Any]:
    return {
        "Name": "Nightly",
        "Result": result,
        "State": state,
        "CreationTime": start,
        "EndTime": end,
    }


def test_vbr_session_with_an_end_but_no_result_is_still_running() -> None:
    facts = _parse_one(
        _vbr_entry(
            _session("None", "2024-03-15T22:00:00Z", "2024-03-15T23:00:00Z", "Postprocessing"),
            _session("Warning", "2024-03-14T22:00:00Z", "2024-03-14T23:00:00Z"),
        )
    )
    assert facts.latest is not None
    assert (facts.latest.result, facts.latest.time) == ("warning", _utc(2024, 3, 14, 22))
    assert facts.last_success == _utc(2024, 3, 14, 22)  # a warning is still a backup
    assert facts.warnings == (
        "session 'Nightly' started 2024-03-15T22:00:00+00:00 is still running (Postprocessing)",
    )


@pytest.mark.parametrize("end", ["1900-01-01T00:00:00Z", "1899-12-31T23:00:00Z", None])
def test_vbr_session_without_a_real_end_is_running_whatever_its_result(end: str | None) -> None:
    # Modelled on centreon-plugins#3444: a continuously running copy job's session shows
    # a "normal" result with EndTime 1/1/1900 (here also as a zone east of UTC shifts it).
    running = _session("Success", "2024-03-15T22:00:00Z", end, "Working")
    facts = _parse_one(
        _vbr_entry(
            running,
            _session("Success", "2024-03-14T22:00:00Z", "2024-03-14T23:00:00Z"),
            last_success=running,
        )
    )
    assert facts.latest is not None and facts.latest.time == _utc(2024, 3, 14, 22)
    assert facts.last_success == _utc(2024, 3, 14, 22)
    assert facts.warnings == (
        "session 'Nightly' started 2024-03-15T22:00:00+00:00 is still running (Working)",
    )


def test_vbr_last_success_beyond_the_recent_sessions() -> None:
    failures = [
        _session("Failed", f"2024-03-{day:02d}T22:00:00Z", f"2024-03-{day:02d}T22:05:00Z")
        for day in range(15, 10, -1)
    ]
    facts = _parse_one(
        _vbr_entry(
            *failures,
            last_success=_session("Success", "2024-03-02T22:00:00Z", "2024-03-02T23:00:00Z"),
        )
    )
    assert facts.latest is not None and facts.latest.result == "failed"
    assert facts.last_success == _utc(2024, 3, 2, 22)


def test_vbr_only_a_running_session_means_no_backup_yet() -> None:
    facts = _parse_one(_vbr_entry(_session("None", "2024-03-15T22:00:00Z", None, "Working")))
    assert (facts.latest, facts.last_success) == (None, None)
    assert "still running" in facts.warnings[0]


@pytest.mark.parametrize(
    ("error", "problem"),
    [
        (
            {"Kind": "AccessDenied", "Message": "Access is denied.", "HResult": "0x80070005"},
            Problem("error", "access denied: Access is denied. (0x80070005)"),
        ),
        (
            {"Kind": "Failed", "Message": "The RPC server is unavailable", "HResult": "0x800706BA"},
            Problem(
                "error", "the veeam-br probe failed: The RPC server is unavailable (0x800706BA)"
            ),
        ),
        (
            {"Kind": "Unsupported", "Message": "this probe does not read that provider"},
            Problem("error", "the veeam-br probe failed: this probe does not read that provider"),
        ),
    ],
)
def test_errors_other_than_a_missing_tool_leave_the_job_unchecked(
    error: dict[str, Any], problem: Problem
) -> None:
    entry = _vbr_entry()
    entry["Error"] = error
    assert _parse_one(entry) == JobFacts(VBR, problem=problem)


# --- output that cannot be read ---------------------------------------------------------

JOBS = [(0, WSB, None), (1, AGENT, "Backup Job WIN-LAB01"), (2, VBR, "Nightly")]


@pytest.mark.parametrize(
    ("stdout", "stderr", "rc", "words"),
    [
        ("", "", 0, "(exit code 0): no output"),
        ("", "", None, "(did not run): no output"),
        ("Windows PowerShell\r\nCopyright\r\n", "", 0, "(exit code 0): no JSON result"),
        ('{"Probe":1,"Jobs":[{"Job":0,', "", 1, "(exit code 1): no JSON result"),
        (
            "",
            "ConvertFrom-Json : Invalid JSON primitive: .\r\nAt line:3 char:80\r\n+ $plan\r\n",
            1,
            "(exit code 1): ConvertFrom-Json : Invalid JSON primitive: .",
        ),
    ],
)
def test_unreadable_output_gives_every_job_a_problem(
    stdout: str, stderr: str, rc: int | None, words: str
) -> None:
    facts = parse(stdout, stderr, rc, jobs=JOBS)
    assert sorted(facts) == [0, 1, 2]
    for index, provider, _ in JOBS:
        problem = facts[index].problem
        assert facts[index].provider == provider
        assert problem is not None and problem.kind == "error"
        assert problem.message == f"the Windows backup probe failed {words}"


@pytest.mark.parametrize(
    "document",
    [
        {"Probe": 1},
        {"Probe": 1, "Jobs": "nope"},
        {"Probe": 1, "Jobs": [1, None, "x", {"Job": True, "Provider": WSB}]},
        {"Probe": 1, "Jobs": {"Job": 0, "Provider": WSB, "Summary": []}},
        {"Probe": 1, "Jobs": [{"Job": 1, "Provider": AGENT, "Events": [{"TimeCreated": 5}]}]},
        {"Probe": 1, "Jobs": [{"Job": 2, "Provider": VBR, "Sessions": {"CreationTime": "x"}}]},
        {"Probe": 1, "Jobs": [{"Job": 2, "Provider": VBR, "LastSuccess": {"EndTime": []}}]},
        {"Probe": 1, "Jobs": [{"Job": 0, "Provider": WSB, "Error": {"Kind": None}}]},
    ],
)
def test_odd_documents_never_raise_and_every_job_gets_facts(document: dict[str, Any]) -> None:
    facts = parse(json.dumps(document), "", 0, jobs=JOBS)
    assert [(i, facts[i].provider) for i in sorted(facts)] == [(i, p) for i, p, _ in JOBS]


def test_lines_before_the_document_are_skipped() -> None:
    stdout = "WARNING: module banner\r\n" + STATES["wsb-success"]["stdout"] + "\r\n"
    assert parse(stdout, "", 0, jobs=[(0, WSB, None)])[0] == EXPECTED["wsb-success"]


# --- many jobs in one probe -------------------------------------------------------------


def test_a_multi_job_output_maps_back_to_its_jobs() -> None:
    wsb, agent, vbr = _job("wsb-last-failed"), _job("agent-success"), _job("vbr-running-1900")
    wsb["Job"], agent["Job"], vbr["Job"] = 7, 3, 0
    jobs = [
        (3, AGENT, agent["JobName"]),
        (0, VBR, vbr["JobName"]),
        (7, WSB, None),
    ]
    facts = parse(_document(vbr, wsb, agent), "", 0, jobs=jobs)
    assert facts == {
        3: EXPECTED["agent-success"],
        0: EXPECTED["vbr-running-1900"],
        7: EXPECTED["wsb-last-failed"],
    }


def test_a_job_missing_from_the_output_or_answered_as_another_provider_is_a_problem() -> None:
    agent = _job("agent-success")
    agent["Job"] = 1
    facts = parse(_document(agent), "", 0, jobs=[(0, WSB, None), (1, VBR, "Nightly")])
    assert facts == {
        0: JobFacts(WSB, problem=Problem("error", "the probe's output has no entry for this job")),
        1: JobFacts(
            VBR, problem=Problem("error", "the probe answered for veeam-agent, not veeam-br")
        ),
    }


def test_without_the_job_list_only_the_jobs_found_are_returned() -> None:
    agent = _job("agent-success")
    agent["Job"] = 4
    assert parse(_document(agent), "", 0) == {4: EXPECTED["agent-success"]}
    assert parse("", "boom", 1) == {}


# --- the script: job names are data -----------------------------------------------------

_BLOB = re.compile(r"FromBase64String\('([A-Za-z0-9+/=]*)'\)")

HOSTILE = [
    "x'; Remove-Item -Recurse -Force C:\\; '",
    "O\u2019Brien\u2018s job \u201a\u201b",  # quotes PowerShell reads as single quotes
    '"; exit 1; "',
    "$(Stop-Computer -Force)",
    "`$env:PATH`n",
    "two\r\nlines",
    "@PLAN@ @RECENT@ @AGENT_EVENTS@",
    "Bj\u00f6rn's \u65e5\u672c \U0001f600",
]


def _blob(script: str) -> str:
    (blob,) = _BLOB.findall(script)
    return str(blob)


def test_probe_script_starts_with_the_marker_and_is_ascii() -> None:
    script = probe_script(JOBS)
    assert script.splitlines()[0] == PROBE_MARKER
    assert script.isascii()


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_job_name_reaches_the_script_only_as_base64_data(name: str) -> None:
    jobs = [(0, AGENT, name), (1, VBR, name)]
    script = probe_script(jobs)
    benign = probe_script([(0, AGENT, "a"), (1, VBR, "a")])
    # The name changes the base64 literal and nothing else in the script.
    assert script.replace(_blob(script), "BLOB") == benign.replace(_blob(benign), "BLOB")
    assert script.isascii()
    plan = json.loads(base64.b64decode(_blob(script)).decode("utf-8"))
    assert plan == {
        "Jobs": [
            {"Job": 0, "Provider": AGENT, "JobName": name},
            {"Job": 1, "Provider": VBR, "JobName": name},
        ]
    }


def test_probe_script_carries_every_job_in_order() -> None:
    plan = json.loads(base64.b64decode(_blob(probe_script(JOBS))))
    assert [(j["Job"], j["Provider"], j["JobName"]) for j in plan["Jobs"]] == JOBS
