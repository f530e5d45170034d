"""Windows Update facts: one PowerShell probe over WinRM and the parser of what it prints.

The probe asks the Windows Update Agent (``Microsoft.Update.Session``) for every update
that is neither installed nor hidden, software and drivers alike, and reads the host's
pending-reboot signals. It prints one JSON document, so the parser never reads a table
formatted for a console. See docs/patching-windows.md for what each field means and
what the tests do not prove.

Mapping to :class:`~mspauto.patching.facts.PendingUpdate`:

- ``name`` is ``KB`` + the first KB article ID; an update without one (some drivers
  and Defender packages) is named by its ``UpdateID``.
- ``candidate`` is the update's identity as Windows Update writes it in its own log,
  ``UpdateID.RevisionNumber``: a KB number stays the same across revisions (KB2267602
  changes several times a day), the identity does not.
- ``classification`` comes from the update's classification category (the category
  of type ``UpdateClassification``), matched by its GUID first, since category *names*
  can come translated on localised Windows, and by its English name second.
- ``severity`` is ``MsrcSeverity`` through :func:`severity_from_vendor`; an empty
  ``MsrcSeverity`` (definition, driver and non-security updates carry none) is ``unrated``,
  so a contract deadline for unrated updates applies to it instead of it vanishing
  into "other".
- ``released`` is ``LastDeploymentChangeTime``: when the update was last published or
  changed on the server that offers it, not necessarily its first release.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mspauto.patching.facts import (
    HostPatchFacts,
    PendingUpdate,
    parse_time,
    severity_from_vendor,
)
from mspauto.policy.models import Classification
from mspauto.transport.powershell import as_list, error_headline, probe_document

__all__ = [
    "CLASSIFICATIONS",
    "PROBE_MARKER",
    "SEARCH_CRITERIA",
    "parse",
    "probe_script",
]

PROBE_MARKER = "# mspauto windows-update probe v1"
"""The first line of the probe; the WinRM test endpoint recognises the probe by it."""

SEARCH_CRITERIA = "IsInstalled=0 and IsHidden=0"
"""No ``Type='Software'``: pending drivers are reported too, as ``driver``, so a
policy can leave them out instead of never seeing them. Hidden updates are ones a
person declined on the host; they are not pending."""

# Windows PowerShell 5.1 (Server 2016 and later, Windows 10 and later). No COM value
# reaches the output unconverted: DateTime would serialise as "\/Date(ms)\/" and COM
# collections as their type name. LastDeploymentChangeTime is documented as UTC but
# arrives as a DateTime of unspecified kind, so it is formatted as it is, never passed
# through ToUniversalTime(). Every non-ASCII character is escaped, so the document
# survives whatever code page the remote console writes in.
_SCRIPT = (
    PROBE_MARKER
    + r"""
$ErrorActionPreference = 'Stop'
function HR($e) { while ($e.InnerException) { $e = $e.InnerException }; '0x{0:X8}' -f $e.HResult }
function Utc($t) {
  $invariant = [Globalization.CultureInfo]::InvariantCulture
  if ($t) { $t.ToString('yyyy-MM-ddTHH:mm:ss', $invariant) + 'Z' }
}
function Has($path) { Test-Path -LiteralPath $path }
function Prop($path, $name) { (Get-ItemProperty $path -ErrorAction SilentlyContinue).$name }
$doc = [ordered]@{
  Probe = 1; Server = $null; ResultCode = $null; Warnings = @(); Updates = @()
  Reboot = $null; Error = $null
}
$policy = 'HKLM:\SOFTWARE\Policies\Microsoft\Windows\WindowsUpdate'
if ((Prop "$policy\AU" 'UseWUServer') -eq 1) { $doc.Server = Prop $policy 'WUServer' }
$sysinfo = $null
try { $sysinfo = [bool](New-Object -ComObject Microsoft.Update.SystemInfo).RebootRequired }
catch { }
$cv = 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion'
$session = 'HKLM:\SYSTEM\CurrentControlSet\Control\Session Manager'
$doc.Reboot = [ordered]@{
  SystemInfo = $sysinfo
  ComponentServicing = Has "$cv\Component Based Servicing\RebootPending"
  WindowsUpdate = Has "$cv\WindowsUpdate\Auto Update\RebootRequired"
  PendingFileRename = [bool](Prop $session 'PendingFileRenameOperations')
}
try {
  $searcher = (New-Object -ComObject Microsoft.Update.Session).CreateUpdateSearcher()
  $result = $searcher.Search('"""
    + SEARCH_CRITERIA
    + r"""')
  $doc.ResultCode = [int]$result.ResultCode
  $doc.Warnings = @(foreach ($w in $result.Warnings) { '0x{0:X8}' -f $w.HResult })
  $doc.Updates = @(foreach ($u in $result.Updates) {
    $cats = @($u.Categories)
    [ordered]@{
      KBArticleIDs = @(foreach ($k in $u.KBArticleIDs) { [string]$k })
      Title = [string]$u.Title
      Categories = @(foreach ($c in $cats) { [string]$c.Name })
      ClassificationIDs = @(
        foreach ($c in $cats) { if ($c.Type -eq 'UpdateClassification') { [string]$c.CategoryID } }
      )
      MsrcSeverity = [string]$u.MsrcSeverity
      LastDeploymentChangeTime = Utc $u.LastDeploymentChangeTime
      RebootRequired = [bool]$u.RebootRequired
      RebootBehavior = [int]$u.InstallationBehavior.RebootBehavior
      CveIDs = @(foreach ($v in $u.CveIDs) { [string]$v })
      UpdateID = [string]$u.Identity.UpdateID
      RevisionNumber = [int]$u.Identity.RevisionNumber
      IsDownloaded = [bool]$u.IsDownloaded
      Type = [int]$u.Type
    }
  })
} catch {
  $doc.Error = [ordered]@{ HResult = HR $_.Exception; Message = [string]$_.Exception.Message }
}
$json = ConvertTo-Json -InputObject $doc -Depth 4 -Compress
[regex]::Replace($json, '[^\x00-\x7F]', { param($m) '\u{0:x4}' -f [int]$m.Value[0] })
"""
)


def probe_script() -> str:
    """The PowerShell (5.1) that searches for pending updates and prints one JSON line.

    About 2.7 KB, near the ~3 KB that fits on a WinRM command line; the WinRM
    transport sends every script on stdin, so that limit does not apply to it.
    """
    return _SCRIPT


# Microsoft's update classifications (KB824684; the WSUS UpdateClassification GUIDs).
# Critical Updates are "a critical, non-security-related bug" fix, hence bugfix.
CLASSIFICATIONS: Mapping[str, tuple[str, Classification]] = {
    "0FA1201D-4330-4FA8-8AE9-B877473B6441": ("Security Updates", "security"),
    "E0789628-CE08-4437-BE74-2495B842F43B": ("Definition Updates", "definition"),
    "EBFC1FC5-71A4-4F7B-9ACA-3B9A503104A0": ("Drivers", "driver"),
    "E6CF1350-C01B-414D-A61F-263D14D133B4": ("Critical Updates", "bugfix"),
    "CD5FFD1E-E932-4E3A-BF74-18BF0B1BBD83": ("Updates", "bugfix"),
    "28BC880E-0592-4CBF-8F95-C79B17911D5F": ("Update Rollups", "bugfix"),
    "68C5B0A3-D1A6-4553-AE49-01D3A7827828": ("Service Packs", "bugfix"),
    "B54E7D24-7ADD-428F-8B75-90A396FA584F": ("Feature Packs", "enhancement"),
    "3689BDC8-B205-4AF4-8D4A-A63924C5E9D5": ("Upgrades", "enhancement"),
    "B4832BD8-E735-4761-8DAF-37F882276DAB": ("Tools", "other"),
    "5C9376AB-8CE6-464A-B136-22113DD69801": ("Applications", "other"),
    "434DE588-ED14-48F5-8EED-A15E09A991F6": ("Connectors", "other"),
    "E140075D-8433-45C3-AD87-E72345B36078": ("Developer Kits", "other"),
    "9511D615-35B2-47BB-927F-F73D8E9260BB": ("Guidance", "other"),
}
"""Classification category GUID -> (English name, mspauto classification)."""

_BY_NAME: Mapping[str, Classification] = {
    name.lower(): kind for name, kind in CLASSIFICATIONS.values()
}
# When an update carries two classification categories, the one a deadline hangs on wins.
_RANK: Sequence[Classification] = (
    "security",
    "definition",
    "driver",
    "bugfix",
    "enhancement",
    "other",
)
_DRIVER_TYPE = 2  # IUpdate.Type: 1 software, 2 driver
_REBOOT_BEHAVIOR: Mapping[int, bool | None] = {0: False, 1: True, 2: None}
"""InstallationBehavior.RebootBehavior: never reboots, always requires one, can request one."""

_RESULT_CODES: Mapping[int, str] = {
    0: "not started",
    1: "in progress",
    2: "succeeded",
    3: "succeeded with errors",
    4: "failed",
    5: "aborted",
}
# Search errors seen in the field, named as wuerror.h and WinHTTP name them.
_HRESULTS: Mapping[str, str] = {
    "0x8024402C": "WU_E_PT_WINHTTP_NAME_NOT_RESOLVED: the update server's (or proxy's) "
    "name does not resolve",
    "0x80240438": "WU_E_PT_ENDPOINT_UNREACHABLE: no route or network connectivity to the "
    "update service",
    "0x8024401C": "WU_E_PT_HTTP_STATUS_REQUEST_TIMEOUT: the update server timed out (HTTP 408)",
    "0x80244017": "WU_E_PT_HTTP_STATUS_DENIED: the update server asks for authentication "
    "(HTTP 401)",
    "0x80244019": "WU_E_PT_HTTP_STATUS_NOT_FOUND: the update server has no such URL (HTTP 404)",
    "0x8024401F": "WU_E_PT_HTTP_STATUS_SERVER_ERROR: the update server failed (HTTP 500)",
    "0x80244022": "WU_E_PT_HTTP_STATUS_SERVICE_UNAVAIL: the update server is overloaded (HTTP 503)",
    "0x8024001F": "WU_E_NO_CONNECTION: the network connection was unavailable",
    "0x8024002E": "WU_E_WU_DISABLED: policy forbids an unmanaged update server",
    "0x80240032": "WU_E_INVALID_CRITERIA: the search criteria were refused",
    "0x80072EE2": "ERROR_WINHTTP_TIMEOUT: the connection to the update server timed out",
    "0x80072EFD": "ERROR_WINHTTP_CANNOT_CONNECT: the update server refused the connection",
    "0x80070005": "E_ACCESSDENIED: the account may not use the Windows Update Agent",
}
_REBOOT_SIGNALS = (
    ("SystemInfo", "Microsoft.Update.SystemInfo RebootRequired"),
    ("ComponentServicing", "Component Based Servicing\\RebootPending"),
    ("WindowsUpdate", "WindowsUpdate\\Auto Update\\RebootRequired"),
    ("PendingFileRename", "Session Manager PendingFileRenameOperations"),
)


def parse(stdout: str, stderr: str, rc: int | None) -> HostPatchFacts:
    """The facts in the probe's output. Never raises: output that cannot be read, a
    failed search or a failed command becomes :attr:`HostPatchFacts.problem`."""
    document = probe_document(stdout)
    if document is None:
        why = error_headline(stderr) or ("no output" if not stdout.strip() else "no JSON result")
        status = "did not run" if rc is None else f"exit code {rc}"
        return HostPatchFacts(
            "windows-update", problem=f"the Windows Update probe failed ({status}): {why}"
        )
    warnings: list[str] = []
    reboot_pending, reboot_reason = _reboot(document.get("Reboot"))
    problem = _search_problem(document, warnings)
    source = _source(document.get("Server"))
    updates: list[PendingUpdate] = []
    for raw in as_list(document.get("Updates")):
        if not isinstance(raw, Mapping):
            warnings.append(f"an update entry is not an object: {str(raw)[:80]}")
            continue
        update = _update(raw, source, warnings)
        if update is not None:
            updates.append(update)
    return HostPatchFacts(
        "windows-update",
        updates=tuple(updates),
        reboot_pending=reboot_pending,
        reboot_reason=reboot_reason,
        problem=problem,
        warnings=tuple(warnings),
    )


def _search_problem(document: Mapping[str, Any], warnings: list[str]) -> str | None:
    error = document.get("Error")
    if isinstance(error, Mapping):
        code = str(error.get("HResult") or "").upper().replace("0X", "0x")
        meaning = _HRESULTS.get(code, "")
        message = " ".join(str(error.get("Message") or "").split())
        detail = f"{code} {meaning}".strip() if meaning else code or "unknown error"
        return f"the Windows Update search failed: {detail}" + (
            f" ({message})" if message and not meaning else ""
        )
    result = document.get("ResultCode")
    if result == 3:
        hresults = ", ".join(str(w) for w in as_list(document.get("Warnings")))
        warnings.append(
            "the search succeeded with errors; some update services may be missing"
            + (f" ({hresults})" if hresults else "")
        )
    elif result != 2:
        meaning = _RESULT_CODES.get(result, str(result)) if isinstance(result, int) else "no result"
        return f"the Windows Update search did not succeed: {meaning}"
    return None


def _update(raw: Mapping[str, Any], source: str, warnings: list[str]) -> PendingUpdate | None:
    update_id = str(raw.get("UpdateID") or "").strip()
    kbs = [k for k in (_kb(k) for k in as_list(raw.get("KBArticleIDs"))) if k]
    title = str(raw.get("Title") or "").strip() or None
    if not kbs and not update_id:
        warnings.append(f"an update has neither a KB nor an UpdateID: {title or '(no title)'}")
        return None
    name = f"KB{kbs[0]}" if kbs else update_id
    revision = raw.get("RevisionNumber")
    word = str(raw.get("MsrcSeverity") or "").strip()
    severity = severity_from_vendor(word)
    if word and severity == "unrated":
        warnings.append(f"{name}: unknown MsrcSeverity {word!r}, read as unrated")
    released = None
    try:
        released = parse_time(_text(raw.get("LastDeploymentChangeTime")))
    except ValueError:
        warnings.append(f"{name}: unreadable LastDeploymentChangeTime")
    return PendingUpdate(
        name=name,
        candidate=f"{update_id}.{revision}" if update_id and revision is not None else update_id,
        source=source,
        classification=_classification(raw),
        severity=severity,
        severity_source="MsrcSeverity" if severity != "unrated" else None,
        released=released,
        advisory=name if kbs else None,
        title=title,
        cves=tuple(str(c) for c in as_list(raw.get("CveIDs")) if str(c).strip()),
        reboot_required=_reboot_required(raw),
        categories=tuple(str(c) for c in as_list(raw.get("Categories"))),
    )


def _classification(raw: Mapping[str, Any]) -> Classification:
    found: set[Classification] = set()
    for category_id in as_list(raw.get("ClassificationIDs")):
        known = CLASSIFICATIONS.get(str(category_id).strip().upper())
        if known:
            found.add(known[1])
    if not found:
        for name in as_list(raw.get("Categories")):
            kind = _BY_NAME.get(str(name).strip().lower())
            if kind:
                found.add(kind)
    if not found and raw.get("Type") == _DRIVER_TYPE:
        found.add("driver")
    return next((kind for kind in _RANK if kind in found), "other")


def _reboot_required(raw: Mapping[str, Any]) -> bool | None:
    # RebootRequired is true once the update is installed and waits for a restart;
    # before that, RebootBehavior says what installing it will need.
    if raw.get("RebootRequired") is True:
        return True
    behavior = raw.get("RebootBehavior")
    return _REBOOT_BEHAVIOR.get(behavior) if isinstance(behavior, int) else None


def _reboot(raw: object) -> tuple[bool | None, str]:
    if not isinstance(raw, Mapping):
        return None, ""
    seen = {key: raw.get(key) for key, _ in _REBOOT_SIGNALS}
    reasons = [label for key, label in _REBOOT_SIGNALS if seen[key] is True]
    if reasons:
        return True, ", ".join(reasons)
    if all(value is None for value in seen.values()):
        return None, ""
    return False, ""


def _source(server: object) -> str:
    # With the default ServerSelection the agent asks the WSUS server named by policy
    # when UseWUServer is set, otherwise Windows Update (or Microsoft Update).
    return f"WSUS {server}" if isinstance(server, str) and server.strip() else "Windows Update"


def _kb(value: object) -> str:
    text = str(value).strip()
    return text[2:] if text.upper().startswith("KB") else text


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
