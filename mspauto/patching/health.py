"""Pre- and post-checks of a patch policy, run inside the host's facts probe.

``pre_checks`` are checked by the scan right before the install (a host failing one is
not patched, and says why); ``post_checks`` by the scan after it (a host failing one
counts as failed for its ring). On Linux, free disk is read with ``df`` on ``/`` and
``/var``; a service is active per systemd where systemd runs, else per its init script
(``service NAME status``); a command passes when it exits 0 under bash. On Windows,
free disk is the system drive's (where Windows Update stages and installs), a service
is active when it is Running, and a command runs in Windows PowerShell. Service names
and commands come from the policy: each reaches the host as one quoted word (a
command is the policy author's code by design, but it stays one argument).
"""

from __future__ import annotations

import base64
import shlex
from dataclasses import dataclass

from mspauto.policy.models import HealthChecks

__all__ = ["CheckResult", "checks_script", "read_checks", "windows_checks_script"]

SECTION = "@@mspauto checks"

_SERVICE_STATE = r"""svc_state() {
  if [ -d /run/systemd/system ]; then systemctl is-active "$1" 2>/dev/null || true
  elif service "$1" status >/dev/null 2>&1; then echo active
  else echo inactive; fi
}
"""


@dataclass(frozen=True)
class CheckResult:
    """One health check on one host."""

    what: str
    ok: bool
    observed: str


def checks_script(checks: HealthChecks) -> str:
    """bash that prints the checks' raw answers (empty when nothing is checked)."""
    if not (checks.services or checks.commands or checks.min_free_disk_mb is not None):
        return ""
    lines = [f'echo "{SECTION}"']
    if checks.min_free_disk_mb is not None:
        lines.append("df -Pm / /var 2>/dev/null | awk 'NR > 1 { print \"disk\", $6, $4 }'")
    if checks.services:
        lines.append(_SERVICE_STATE.rstrip())
        for index, service in enumerate(checks.services):
            lines.append(f'echo "service {index} $(svc_state {shlex.quote(service)})"')
    for index, command in enumerate(checks.commands):
        lines.append(
            f'bash -c {shlex.quote(command)} </dev/null >/dev/null 2>&1; echo "command {index} $?"'
        )
    return "\n".join(lines) + "\n"


def windows_checks_script(checks: HealthChecks) -> str:
    """Windows PowerShell that prints the same raw answers as :func:`checks_script`."""
    if not (checks.services or checks.commands or checks.min_free_disk_mb is not None):
        return ""
    # Windows PowerShell 5.1 turns a native command's redirected stderr into a
    # terminating error under the probe's 'Stop'.
    lines = ["$ErrorActionPreference = 'Continue'", f"'{SECTION}'"]
    if checks.min_free_disk_mb is not None:
        lines += [
            "$drive = Get-PSDrive $env:SystemDrive.TrimEnd(':') -ErrorAction SilentlyContinue",
            "if ($drive) { 'disk {0} {1}' -f $env:SystemDrive, [math]::Floor($drive.Free / 1MB) }",
        ]
    for index, service in enumerate(checks.services):
        # Compared by name, not given to -Name, which would read it as a wildcard.
        lines += [
            "$service = @(Get-Service -ErrorAction SilentlyContinue | "
            f"Where-Object {{ $_.Name -eq {_powershell_quote(service)} }})",
            f"'service {index} ' + $(if ($service.Status -eq 'Running') {{ 'active' }} "
            "else { 'inactive' })",
        ]
    for index, command in enumerate(checks.commands):
        encoded = base64.b64encode(command.encode("utf-16-le")).decode()
        lines += [
            f"$null = powershell.exe -NoProfile -NonInteractive -EncodedCommand {encoded} 2>&1",
            f"'command {index} ' + $LASTEXITCODE",
        ]
    return "\n".join(lines) + "\n"


def _powershell_quote(text: str) -> str:
    """A single-quoted PowerShell string: every quote PowerShell reads as a single
    quote (it accepts the typographic ones too) is doubled."""
    return "'" + "".join(c * 2 if c in "'\u2018\u2019\u201a\u201b" else c for c in text) + "'"


def read_checks(stdout: str, checks: HealthChecks) -> list[CheckResult]:
    """Each configured check's verdict from the probe's output; a check the host did not
    answer fails with that reason."""
    answers: list[str] = []
    inside = False
    for line in stdout.splitlines():
        if line.startswith("@@mspauto "):
            inside = line == SECTION
        elif inside:
            answers.append(line)
    results = []
    if checks.min_free_disk_mb is not None:
        free = {
            parts[1]: int(parts[2])
            for parts in (a.split() for a in answers)
            if len(parts) == 3 and parts[0] == "disk" and parts[2].isdigit()
        }
        if not free:
            results.append(CheckResult("free disk", False, "df gave no answer"))
        for mount, megabytes in sorted(free.items()):
            results.append(
                CheckResult(
                    f"free disk on {mount} >= {checks.min_free_disk_mb} MB",
                    megabytes >= checks.min_free_disk_mb,
                    f"{megabytes} MB free",
                )
            )
    states = {
        parts[1]: (parts[2] if len(parts) > 2 else "unknown")
        for parts in (a.split() for a in answers)
        if len(parts) >= 2 and parts[0] == "service"
    }
    for index, service in enumerate(checks.services):
        state = states.get(str(index), "no answer")
        results.append(CheckResult(f"service {service} active", state == "active", state))
    codes = {
        parts[1]: parts[2]
        for parts in (a.split() for a in answers)
        if len(parts) == 3 and parts[0] == "command"
    }
    for index, command in enumerate(checks.commands):
        code = codes.get(str(index), "no answer")
        results.append(CheckResult(f"command {command!r} exits 0", code == "0", f"exit {code}"))
    return results
