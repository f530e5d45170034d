"""Windows backup facts: one PowerShell probe over WinRM and the parser of what it prints.

One script per host answers for every Windows backup job a policy gives it, and prints
one line of JSON, ``{"Probe":1,"Jobs":[{"Job":INDEX,"Provider":...}, ...]}``, so the
parser never reads a table formatted for a console in the host's culture. What each
provider reads:

- ``windows-server-backup``: ``Get-WBSummary`` (module WindowsServerBackup, present
  once the Windows-Server-Backup feature is installed): the last successful and the
  last backup's times, ``LastBackupResultHR`` and ``LastBackupResultDetailedHR``,
  ``DetailedMessage``, ``NumberOfVersions``, ``CurrentOperationStatus`` and the target's
  label. No cmdlet is a ``tool-missing`` problem.
- ``veeam-agent``: the newest events 190 ("Backup Job Finished") of the ``Veeam Agent``
  event log, read with ``Get-WinEvent -FilterHashtable``; with ``veeam_job`` only those
  whose message contains that name (a literal, case-insensitive substring; no
  pattern). The result is the event's *level*, as Veeam's event table gives it
  (Information = Success, Warning, Error = Failed); the message's wording is taken only
  when the level is not one of those. No such event is no backup (``latest`` None);
  no such log is ``tool-missing`` (Veeam Agent is not installed).
- ``veeam-br``: ``Get-VBRBackupSession`` (module Veeam.Backup.PowerShell, or the
  VeeamPSSnapIn snap-in before Veeam 11), the sessions whose ``JobName`` equals
  ``veeam_job`` (PowerShell ``-eq``: literal, case-insensitive), newest first: their
  ``Result``, ``State``, ``CreationTime`` and ``EndTime`` (the ``...UTC`` properties when
  the session has them). A session whose end time is null or in the year 1900 (what
  Veeam shows while it runs), or whose result is ``None``, is running: it is not the
  latest finished backup, only a warning.

Times are made UTC on the host (``ToUniversalTime()``, or the session's own UTC
property) and printed as ``yyyy-MM-ddTHH:mm:ssZ`` with the invariant culture, so
neither the host's culture nor its zone reaches the parser. A time in or before 1900
(``DateTime.MinValue`` for "never", 1900-01-01 for "still running") is printed as it is
and read as no time at all.

How facts map: ``LastBackup.result`` is success, warning or failed; ``last_success`` is
the newest success *or warning* (a warning still produced a restore point, as Veeam's
own reports and public monitoring scripts count it); a Windows Server Backup whose
``LastBackupResultHR`` is not 0 failed, with the HRESULT in hex and its message, and
``count`` is its ``NumberOfVersions``. Veeam times are the session's start (B&R) or the
event's time, which is when the job *finished* (Agent): the age of an Agent backup is
measured from its end, up to one job's duration later than the start would give.

Policy values (``veeam_job``) never become code: the job list reaches the script as
one base64 string of UTF-8 JSON, decoded and read with ``ConvertFrom-Json``, so the
script is pure ASCII whatever the names hold.

Test data (tests/fixtures/winrm/backups.yaml) is this script's JSON shape carrying
values from published outputs (Get-WBSummary in a public ReadMe, Veeam B&R results in a
public issue, Veeam's event table), or modelled where none was published, each state
saying which. None was recorded from a host of ours. What is NOT proven: no Windows
host runs here and no PowerShell parses this script, so it is untested PowerShell with
a tested contract; no real ``Get-WBJob`` or event-190 text was found (the Agent messages
in the fixtures are Veeam's template filled in); Get-WBSummary's values when no backup
ever ran, how ``Get-VBRBackupSession`` performs on a server with years of sessions (it
lists them all), and whether an account that may not read the Veeam Agent log is told
so or sees no events are assumptions.

Known limits: an Agent job name is matched as a substring of the message, so a job
named ``Job`` also takes the events of ``Backup Job X``; a B&R job whose session never
ends (a backup copy job in continuous mode) has no finished session to judge, so it
shows its last *finished* one, which can look stale.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from mspauto.backup.facts import JobFacts, LastBackup, Problem
from mspauto.transport.powershell import as_list, error_headline, probe_document

__all__ = ["PROBE_MARKER", "PROVIDERS", "parse", "probe_script"]

PROBE_MARKER = "# mspauto backup probe v1"
"""The first line of the probe; the WinRM test endpoint recognises the probe by it."""

PROVIDERS = ("windows-server-backup", "veeam-agent", "veeam-br")
"""The providers this probe answers for."""

RECENT = 5
"""How many of a Veeam job's newest sessions or events the probe returns (and, besides
them, the newest successful one)."""

AGENT_EVENTS = 200
"""How many of the newest events 190 the probe reads before keeping one job's."""

Result = Literal["success", "warning", "failed"]

# Windows PowerShell 5.1. A DateTime would serialise as "\/Date(ms)\/" and an enum as a
# number, so every value is converted first. A provider function only sets fields of
# its entry: its output is discarded, so a chatty cmdlet cannot add a job. Every
# non-ASCII character of the output is escaped, so the line survives whatever code page
# the remote console writes in.
_SCRIPT = r"""$ErrorActionPreference = 'Stop'
$invariant = [Globalization.CultureInfo]::InvariantCulture
$plan = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String('@PLAN@')) | ConvertFrom-Json
function Stamp($t, [switch]$AlreadyUtc) {
  if ($t -isnot [datetime]) { return $null }
  if (-not $AlreadyUtc -and $t.Year -gt 1900) { $t = $t.ToUniversalTime() }
  $t.ToString('yyyy-MM-ddTHH:mm:ss', $invariant) + 'Z'
}
function Either($utc, $local) {
  if ($utc -is [datetime]) { Stamp $utc -AlreadyUtc } else { Stamp $local }
}
function Problem($kind, $message, $hresult) {
  [ordered]@{ Kind = $kind; Message = [string]$message; HResult = $hresult }
}
function Caught($record) {
  $inner = $record.Exception
  while ($inner.InnerException) { $inner = $inner.InnerException }
  $hresult = '0x{0:X8}' -f $inner.HResult
  $denied = ($inner -is [UnauthorizedAccessException]) -or
    ([string]$record.CategoryInfo.Category -eq 'PermissionDenied') -or ($hresult -eq '0x80070005')
  $kind = 'Failed'
  if ($denied) { $kind = 'AccessDenied' }
  Problem $kind $record.Exception.Message $hresult
}
function Wsb($entry) {
  if (-not (Get-Command Get-WBSummary -ErrorAction SilentlyContinue)) {
    # Absent unless the feature is installed; the check below says so.
    try { Import-Module WindowsServerBackup -ErrorAction Stop } catch { }
  }
  if (-not (Get-Command Get-WBSummary -ErrorAction SilentlyContinue)) {
    $entry.Error = Problem 'ToolMissing' ('Get-WBSummary is not available: the Windows ' +
      'Server Backup feature (Windows-Server-Backup) is not installed') $null
    return
  }
  $s = Get-WBSummary
  $entry.Summary = [ordered]@{
    LastSuccessfulBackupTime = Stamp $s.LastSuccessfulBackupTime
    LastBackupTime = Stamp $s.LastBackupTime
    LastBackupResultHR = $s.LastBackupResultHR
    LastBackupResultDetailedHR = $s.LastBackupResultDetailedHR
    DetailedMessage = [string]$s.DetailedMessage
    NumberOfVersions = $s.NumberOfVersions
    CurrentOperationStatus = [string]$s.CurrentOperationStatus
    LastBackupTarget = [string]$s.LastBackupTarget
  }
}
function AgentEvent($e) {
  [ordered]@{
    TimeCreated = Stamp $e.TimeCreated; Level = [int]$e.Level; Message = [string]$e.Message
  }
}
function Agent($entry) {
  $events = @()
  try {
    $filter = @{ LogName = 'Veeam Agent'; Id = 190 }
    $events = @(Get-WinEvent -FilterHashtable $filter -MaxEvents @AGENT_EVENTS@ -ErrorAction Stop)
  } catch {
    $id = [string]$_.FullyQualifiedErrorId
    if ($id -like 'NoMatchingLogsFound*') {
      $entry.Error = Problem 'NoLog' $_.Exception.Message $null
      return
    }
    if ($id -notlike 'NoMatchingEventsFound*') { throw }
  }
  $name = [string]$entry.JobName
  $mine = @($events | Where-Object {
    $text = [string]$_.Message
    (-not $name) -or ($text.IndexOf($name, [StringComparison]::OrdinalIgnoreCase) -ge 0)
  })
  $entry.Seen = $events.Count
  $entry.Events = @($mine | Select-Object -First @RECENT@ | ForEach-Object { AgentEvent $_ })
  $entry.LastSuccess = $mine | Where-Object { $_.Level -eq 3 -or $_.Level -eq 4 } |
    Select-Object -First 1 | ForEach-Object { AgentEvent $_ }
}
function VbrSession($s) {
  [ordered]@{
    Name = [string]$s.Name
    Result = [string]$s.Result
    State = [string]$s.State
    CreationTime = Either $s.CreationTimeUTC $s.CreationTime
    EndTime = Either $s.EndTimeUTC $s.EndTime
  }
}
function Ended($s) {
  $end = $s.EndTimeUTC
  if ($end -isnot [datetime]) { $end = $s.EndTime }
  ($end -is [datetime]) -and ($end.Year -gt 1900)
}
function Vbr($entry) {
  $why = ''
  if (-not (Get-Command Get-VBRBackupSession -ErrorAction SilentlyContinue)) {
    try {
      Import-Module Veeam.Backup.PowerShell -DisableNameChecking -WarningAction SilentlyContinue `
        -ErrorAction Stop
    }
    catch {
      $why = ' (' + $_.Exception.Message + ')'
      # Before Veeam 11 the cmdlets came as a snap-in; the check below says if neither loaded.
      try { Add-PSSnapin VeeamPSSnapIn -ErrorAction Stop } catch { }
    }
  }
  if (-not (Get-Command Get-VBRBackupSession -ErrorAction SilentlyContinue)) {
    $entry.Error = Problem 'ToolMissing' ('Get-VBRBackupSession is not available: neither the ' +
      'Veeam.Backup.PowerShell module nor the VeeamPSSnapIn snap-in loads' + $why) $null
    return
  }
  $name = [string]$entry.JobName
  $all = @(Get-VBRBackupSession -WarningAction SilentlyContinue |
    Where-Object { [string]$_.JobName -eq $name } | Sort-Object CreationTime -Descending)
  $entry.Seen = $all.Count
  $entry.Sessions = @($all | Select-Object -First @RECENT@ | ForEach-Object { VbrSession $_ })
  $entry.LastSuccess = $all |
    Where-Object { (@('Success', 'Warning') -contains [string]$_.Result) -and (Ended $_) } |
    Select-Object -First 1 | ForEach-Object { VbrSession $_ }
}
$jobs = @(foreach ($j in @($plan.Jobs)) {
  $entry = [ordered]@{
    Job = [int]$j.Job; Provider = [string]$j.Provider; JobName = $j.JobName; Error = $null
  }
  try {
    if ($entry.Provider -eq 'windows-server-backup') { $null = Wsb $entry }
    elseif ($entry.Provider -eq 'veeam-agent') { $null = Agent $entry }
    elseif ($entry.Provider -eq 'veeam-br') { $null = Vbr $entry }
    else { $entry.Error = Problem 'Unsupported' 'this probe does not read that provider' $null }
  } catch { $entry.Error = Caught $_ }
  $entry
})
$json = ConvertTo-Json -InputObject ([ordered]@{ Probe = 1; Jobs = $jobs }) -Depth 6 -Compress
[regex]::Replace($json, '[^\x00-\x7F]', { param($m) '\u{0:x4}' -f [int]$m.Value[0] })
"""


def probe_script(jobs: Sequence[tuple[int, str, str | None]]) -> str:
    """The PowerShell (5.1) that reads every job and prints one JSON line.

    ``jobs`` are ``(index, provider, veeam_job)``; the index comes back as ``Job`` so
    the answers map to their jobs. The jobs travel as base64 of UTF-8 JSON: nothing a
    job name holds (quotes, ``$(...)``, newlines) is ever read as PowerShell. About 6 KB;
    the WinRM transport sends scripts on stdin, so no command-line limit applies.
    """
    plan = {
        "Jobs": [
            {"Job": index, "Provider": provider, "JobName": veeam_job}
            for index, provider, veeam_job in jobs
        ]
    }
    blob = base64.b64encode(json.dumps(plan, ensure_ascii=True).encode()).decode("ascii")
    body = (
        _SCRIPT.replace("@PLAN@", blob)
        .replace("@AGENT_EVENTS@", str(AGENT_EVENTS))
        .replace("@RECENT@", str(RECENT))
    )
    return f"{PROBE_MARKER}\n{body}"


def parse(
    stdout: str,
    stderr: str,
    rc: int | None,
    *,
    jobs: Sequence[tuple[int, str, str | None]] = (),
) -> dict[int, JobFacts]:
    """Every job's facts in the probe's output, by job index. Never raises.

    ``jobs`` (what :func:`probe_script` was given) makes the answer complete: every one
    of them gets facts, a :class:`Problem` when the output is unreadable, has no entry
    for it, or answers for another provider or another Veeam job. Without it, only the
    jobs found in the output are returned.
    """
    expected = {index: provider for index, provider, _ in jobs}
    names = {index: name for index, _, name in jobs}
    document = probe_document(stdout)
    if document is None:
        why = error_headline(stderr) or ("no output" if not stdout.strip() else "no JSON result")
        status = "did not run" if rc is None else f"exit code {rc}"
        problem = Problem("error", f"the Windows backup probe failed ({status}): {why}")
        return {index: JobFacts(provider, problem=problem) for index, provider in expected.items()}
    found: dict[int, JobFacts] = {}
    answered_name: dict[int, str | None] = {}
    for raw in as_list(document.get("Jobs")):
        index = raw.get("Job") if isinstance(raw, Mapping) else None
        if isinstance(raw, Mapping) and isinstance(index, int) and not isinstance(index, bool):
            found[index] = _job(raw)
            answered_name[index] = raw.get("JobName") if raw.get("JobName") else None
    if not expected:
        return found
    facts: dict[int, JobFacts] = {}
    for index, provider in expected.items():
        answer = found.get(index)
        if answer is None:
            answer = JobFacts(
                provider, problem=Problem("error", "the probe's output has no entry for this job")
            )
        elif answer.provider != provider:
            wrong = f"the probe answered for {answer.provider}, not {provider}"
            answer = JobFacts(provider, problem=Problem("error", wrong))
        elif answered_name.get(index) != names.get(index):
            wrong = f"the probe answered for job {answered_name.get(index)!r}, not {names[index]!r}"
            answer = JobFacts(provider, problem=Problem("error", wrong))
        facts[index] = answer
    return facts


def _job(raw: Mapping[str, Any]) -> JobFacts:
    provider = str(raw.get("Provider") or "")
    error = raw.get("Error")
    if isinstance(error, Mapping):
        return JobFacts(provider, problem=_problem(provider, error))
    if provider == "windows-server-backup":
        return _wsb(raw)
    if provider == "veeam-agent":
        return _agent(raw)
    if provider == "veeam-br":
        return _vbr(raw)
    return JobFacts(provider, problem=Problem("error", f"no parser for provider {provider!r}"))


def _problem(provider: str, error: Mapping[str, Any]) -> Problem:
    kind = str(error.get("Kind") or "")
    message = " ".join(str(error.get("Message") or "").split())
    hresult = error.get("HResult")
    detail = f"{message} ({hresult})" if hresult and str(hresult) not in message else message
    if kind == "ToolMissing":
        return Problem("tool-missing", message)
    if kind == "NoLog":
        return Problem(
            "tool-missing",
            "there is no 'Veeam Agent' event log: Veeam Agent for Microsoft Windows is not "
            f"installed ({message})",
        )
    if kind == "AccessDenied":
        return Problem("error", f"access denied: {detail}")
    return Problem("error", f"the {provider} probe failed: {detail or 'unknown error'}")


# --- Windows Server Backup -------------------------------------------------------------


def _wsb(raw: Mapping[str, Any]) -> JobFacts:
    provider = "windows-server-backup"
    summary = raw.get("Summary")
    if not isinstance(summary, Mapping):
        return JobFacts(provider, problem=Problem("error", "Get-WBSummary returned nothing"))
    warnings: list[str] = []
    last_success = _instant(summary.get("LastSuccessfulBackupTime"), warnings)
    last_time = _instant(summary.get("LastBackupTime"), warnings)
    hresult = _hresult(summary.get("LastBackupResultHR"))
    detailed = _hresult(summary.get("LastBackupResultDetailedHR"))
    words = " ".join(str(summary.get("DetailedMessage") or "").split())
    operation = str(summary.get("CurrentOperationStatus") or "")
    if operation and operation != "NoOperationInProgress":
        warnings.append(f"an operation is in progress now ({operation})")
    target = str(summary.get("LastBackupTarget") or "").strip()
    name = f"Windows Server Backup to {target}" if target else "Windows Server Backup"
    codes = _codes(hresult, detailed)
    latest = None
    if hresult:
        message = f"{codes}: {words}" if words else codes
        if last_time is None:
            warnings.append(f"the last backup failed ({message}) at no readable time")
        else:
            latest = LastBackup(last_time, name, "failed", message=message)
    else:
        when = last_time if last_time is not None else last_success
        if when is not None:
            # HRESULT 0 with a detailed HRESULT that is not 0: it finished, with a note.
            result: Result = "warning" if detailed else "success"
            message = (f"{codes}: {words}" if words else codes) if detailed else ""
            latest = LastBackup(when, name, result, message=message)
    versions = summary.get("NumberOfVersions")
    return JobFacts(
        provider,
        latest=latest,
        last_success=last_success,
        count=versions if isinstance(versions, int) and not isinstance(versions, bool) else None,
        warnings=tuple(warnings),
    )


def _hresult(value: object) -> int:
    """An HRESULT as unsigned 32 bits: Get-WBSummary prints them unsigned (2155348165),
    an Int32 would come negative; 0 when absent."""
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return value & 0xFFFFFFFF


def _codes(hresult: int, detailed: int) -> str:
    text = f"HRESULT 0x{hresult:08X}"
    return f"{text}, detailed 0x{detailed:08X}" if detailed else text


# --- Veeam Agent -----------------------------------------------------------------------

_LEVELS: Mapping[int, Result] = {4: "success", 3: "warning", 2: "failed", 1: "failed"}
"""Event levels: 4 Information (Success), 3 Warning, 2 Error (Failed), 1 Critical."""
_WORDS: Mapping[str, Result] = {
    "success": "success",
    "warning": "warning",
    "failed": "failed",
    "error": "failed",
}
_AGENT_MESSAGE = re.compile(r"^Veeam Agent\s+'?(?P<job>.*?)'?\s+finished with\s+(?P<word>\w+)")


def _agent(raw: Mapping[str, Any]) -> JobFacts:
    provider = "veeam-agent"
    warnings: list[str] = []
    job_name = str(raw.get("JobName") or "")
    events = [
        backup
        for backup in (_agent_event(e, job_name, warnings) for e in as_list(raw.get("Events")))
        if backup is not None
    ]
    events.sort(key=lambda backup: backup.time, reverse=True)
    newest_good = _agent_event(raw.get("LastSuccess"), job_name, warnings)
    seen = raw.get("Seen")
    if not events and job_name and isinstance(seen, int) and seen > 0:
        warnings.append(
            f"{seen} 'backup job finished' events (190) in the Veeam Agent log, "
            f"none naming {job_name!r}"
        )
    elif not events:
        warnings.append("no 'backup job finished' event (190) in the Veeam Agent log")
    return JobFacts(
        provider,
        latest=events[0] if events else None,
        last_success=_newest_good([*events, *([newest_good] if newest_good else [])]),
        warnings=tuple(warnings),
    )


def _agent_event(raw: object, job_name: str, warnings: list[str]) -> LastBackup | None:
    if not isinstance(raw, Mapping):
        return None
    time = _instant(raw.get("TimeCreated"), warnings)
    if time is None:
        warnings.append("a Veeam Agent event has no readable time")
        return None
    message = " ".join(str(raw.get("Message") or "").split())
    match = _AGENT_MESSAGE.match(message)
    level = raw.get("Level")
    result = _LEVELS.get(level) if isinstance(level, int) else None
    if result is None:
        result = _WORDS.get(match.group("word").lower()) if match else None
        if result is None:
            warnings.append(f"a Veeam Agent event of level {level} says no known result")
            result = "failed"
    name = (match.group("job") if match else "") or job_name or "Veeam Agent"
    return LastBackup(time, name, result, message="" if result == "success" else message)


# --- Veeam Backup & Replication --------------------------------------------------------

_SESSION_RESULTS: Mapping[str, Result] = {
    "Success": "success",
    "Warning": "warning",
    "Failed": "failed",
}


def _vbr(raw: Mapping[str, Any]) -> JobFacts:
    provider = "veeam-br"
    warnings: list[str] = []
    job_name = str(raw.get("JobName") or "")
    finished: list[LastBackup] = []
    running: list[tuple[datetime, str, str]] = []
    for session in as_list(raw.get("Sessions")):
        if not isinstance(session, Mapping):
            continue
        started = _instant(session.get("CreationTime"), warnings)
        if started is None:
            warnings.append("a Veeam session has no readable start time")
            continue
        name = str(session.get("Name") or "") or job_name
        state = str(session.get("State") or "")
        ended = _instant(session.get("EndTime"), warnings)
        result = _SESSION_RESULTS.get(str(session.get("Result") or ""))
        if ended is None or result is None:
            running.append((started, name, state))
            continue
        message = "" if result == "success" else f"Veeam session {name!r} ended {session['Result']}"
        finished.append(LastBackup(started, name, result, message=message))
    finished.sort(key=lambda backup: backup.time, reverse=True)
    latest = finished[0] if finished else None
    newer = [r for r in running if latest is None or r[0] > latest.time]
    if newer:
        started, name, state = max(newer)
        warnings.append(
            f"session {name!r} started {started.isoformat()} is still running"
            + (f" ({state})" if state else "")
        )
    good = raw.get("LastSuccess")
    newest_good = None
    if isinstance(good, Mapping) and _instant(good.get("EndTime"), []) is not None:
        started = _instant(good.get("CreationTime"), warnings)
        result = _SESSION_RESULTS.get(str(good.get("Result") or ""))
        if started is not None and result in ("success", "warning"):
            newest_good = LastBackup(started, str(good.get("Name") or job_name), result)
    seen = raw.get("Seen")
    if seen == 0:
        warnings.append(f"no session of Veeam job {job_name!r} on this server")
    return JobFacts(
        provider,
        latest=latest,
        last_success=_newest_good([*finished, *([newest_good] if newest_good else [])]),
        warnings=tuple(warnings),
    )


# --- shared ----------------------------------------------------------------------------


def _newest_good(backups: Sequence[LastBackup]) -> datetime | None:
    """The newest backup that produced a restore point: success or warning."""
    return max((b.time for b in backups if b.result != "failed"), default=None)


_NO_TIME_BEFORE = 1901


def _instant(value: object, warnings: list[str]) -> datetime | None:
    """A probe time (``yyyy-MM-ddTHH:mm:ssZ``, UTC) as an aware datetime; None for
    null and for the sentinels in or before 1900 (never, still running)."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        warnings.append(f"unreadable time {value[:40]!r}")
        return None
    if parsed.year < _NO_TIME_BEFORE:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
