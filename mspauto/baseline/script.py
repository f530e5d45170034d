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
_LINE = re.compile(rf"^{re.escape(MARK)} (BEGIN|END) (\S+)(?: (-?\d+))?\r?$")

RuleAnswer = tuple[str, int]
"""What one rule's audit printed (stdout and stderr together) and its exit code."""


def linux_script(audits: Sequence[tuple[str, str]]) -> str:
    """A POSIX shell script running each ``(rule id, command)`` in its own block."""
    lines = [
        "#!/bin/sh",
        "# mspauto baseline audit: one block per rule, read back by the markers.",
        "audit() {",
        f'  printf "%s BEGIN %s\\n" "{MARK}" "$1"',
        '  out=$(LC_ALL=C sh -c "$2" 2>&1 </dev/null); rc=$?',
        '  [ -n "$out" ] && printf "%s\\n" "$out"',
        f'  printf "%s END %s %s\\n" "{MARK}" "$1" "$rc"',
        "}",
    ]
    lines += [f"audit {shlex.quote(rule_id)} {shlex.quote(command)}" for rule_id, command in audits]
    return "\n".join(lines) + "\n"


def windows_script(audits: Sequence[tuple[str, str]]) -> str:
    """A PowerShell script running each ``(rule id, script)`` in its own block."""
    lines = [
        "# mspauto baseline audit: one block per rule, read back by the markers.",
        f"$Mark = '{MARK}'",
        "function Invoke-Audit([string]$Id, [scriptblock]$Audit) {",
        '  "$Mark BEGIN $Id"',
        "  try {",
        "    $out = (& $Audit 2>&1 | Out-String).TrimEnd()",
        "    if ($out) { $out }",
        '    "$Mark END $Id 0"',
        "  } catch {",
        "    $_.Exception.Message",
        '    "$Mark END $Id 1"',
        "  }",
        "}",
    ]
    for rule_id, script in audits:
        lines += [f"Invoke-Audit '{rule_id}' {{", script, "}"]
    return "\r\n".join(lines) + "\r\n"


def parse_answers(output: str) -> dict[str, RuleAnswer]:
    """Rule id -> (printed text, exit code), for every block that finished."""
    answers: dict[str, RuleAnswer] = {}
    current: str | None = None
    collected: list[str] = []
    for line in output.splitlines():
        match = _LINE.match(line)
        if match is None:
            if current is not None:
                collected.append(line.rstrip("\r"))
            continue
        kind, rule_id, code = match.groups()
        if kind == "BEGIN":
            current, collected = rule_id, []
        elif current == rule_id and code is not None:
            answers[rule_id] = ("\n".join(collected).strip(), int(code))
            current = None
    return answers
