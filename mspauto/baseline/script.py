"""One audit script per host, and reading its answer back rule by rule.

Every rule's audit runs in the same script (one connection, one round trip), each in
its own block between markers, with its exit code, so one rule that breaks cannot hide
or fake another's result.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

__all__ = ["MARK", "RuleAnswer", "linux_script", "parse_answers", "windows_script"]

MARK = "::mspauto-audit::"
_LINE = re.compile(rf"^{re.escape(MARK)} (BEGIN|STDERR|END) (\S+)(?: (-?\d+))?\r?$")

RuleAnswer = tuple[str, int, str]
"""What one rule's audit printed, its exit code, and what it reported as an error."""


def linux_script(audits: Sequence[tuple[str, str]]) -> str:
    """A shell script running each ``(rule id, command)`` in its own block.

    Each audit runs under ``bash -o pipefail``, so a pipeline whose first command fails
    (``sshd -T | awk ...`` with a broken sshd_config) fails as a whole; whatever it
    writes to stderr is reported apart from its output, and makes the rule an error.
    """
    lines = [
        "#!/bin/sh",
        "# mspauto baseline audit: one block per rule, read back by the markers.",
        "errors=$(mktemp) || exit 1",
        "trap 'rm -f \"$errors\"' EXIT",
        "audit() {",
        f'  printf "%s BEGIN %s\\n" "{MARK}" "$1"',
        '  out=$(LC_ALL=C bash -o pipefail -c "$2" 2>"$errors" </dev/null); rc=$?',
        '  [ -n "$out" ] && printf "%s\\n" "$out"',
        f'  if [ -s "$errors" ]; then printf "%s STDERR %s\\n" "{MARK}" "$1"; cat "$errors"; fi',
        f'  printf "%s END %s %s\\n" "{MARK}" "$1" "$rc"',
        "}",
    ]
    lines += [f"audit {shlex.quote(rule_id)} {shlex.quote(command)}" for rule_id, command in audits]
    return "\n".join(lines) + "\n"


def windows_script(audits: Sequence[tuple[str, str]]) -> str:
    """A PowerShell script running each ``(rule id, script)`` in its own block; any
    error the audit raises is reported apart from its output and makes the rule an
    error."""
    lines = [
        "# mspauto baseline audit: one block per rule, read back by the markers.",
        f"$Mark = '{MARK}'",
        "function Invoke-Audit([string]$Id, [scriptblock]$Audit) {",
        '  "$Mark BEGIN $Id"',
        "  try {",
        "    $ErrorActionPreference = 'Stop'",
        "    $out = (& $Audit | Out-String).TrimEnd()",
        "    if ($out) { $out }",
        '    "$Mark END $Id 0"',
        "  } catch {",
        '    "$Mark STDERR $Id"',
        "    $_.Exception.Message",
        '    "$Mark END $Id 1"',
        "  }",
        "}",
    ]
    for rule_id, script in audits:
        lines += [f"Invoke-Audit '{rule_id}' {{", script, "}"]
    return "\r\n".join(lines) + "\r\n"


def parse_answers(output: str) -> dict[str, RuleAnswer]:
    """Rule id -> (output, exit code, error text), for every block that finished."""
    answers: dict[str, RuleAnswer] = {}
    current: str | None = None
    collected: list[str] = []
    errors: list[str] | None = None
    for line in output.splitlines():
        match = _LINE.match(line)
        if match is None:
            if current is not None:
                (collected if errors is None else errors).append(line.rstrip("\r"))
            continue
        kind, rule_id, code = match.groups()
        if kind == "BEGIN":
            current, collected, errors = rule_id, [], None
        elif kind == "STDERR" and current == rule_id:
            errors = []
        elif kind == "END" and current == rule_id and code is not None:
            error_text = "\n".join(errors or []).strip()
            answers[rule_id] = ("\n".join(collected).strip(), int(code), error_text)
            current = None
    return answers
