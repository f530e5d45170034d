"""One audit script per host, and reading its answer back rule by rule.

Every rule's audit runs in the same script (one connection, one round trip), each in
its own block between markers, with its exit code, so one rule that breaks cannot hide
or fake another's result. On Linux the pack's facts the rules need run first, once, and
the rules read them with ``fact NAME`` (the whole output) or ``fact NAME KEY`` (the
value on its last ``KEY value`` line); an audit explains itself with ``note TEXT`` (e.g.
why a setting is missing), which comes back in its own block.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mspauto.baseline.rules import Rule, RulePack
    from mspauto.inventory.models import Family

__all__ = [
    "MARK",
    "LinuxAudit",
    "RuleAnswer",
    "audit_script",
    "linux_script",
    "parse_answers",
    "windows_script",
]

MARK = "::mspauto-audit::"
_LINE = re.compile(rf"^{re.escape(MARK)} (BEGIN|STDERR|NOTE|END) (\S+)(?: (-?\d+))?\r?$")


@dataclass(frozen=True)
class RuleAnswer:
    """What one rule's audit printed, its exit code, what it reported as an error, and
    the notes it left (why a setting is missing, where a default comes from)."""

    output: str
    code: int
    errors: str
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class LinuxAudit:
    """One rule's shell audit, with the pack whose facts it reads."""

    rule_id: str
    command: str
    pack: str = ""


# The body runs in bash (the transport starts `sh -c`): one process for the whole
# audit, each rule in a subshell of it, and no other process unless an audit starts one.
# Facts are keyed "pack/name" and kept in a private directory: output, errors and notes
# in files, the exit code in FACT_RC, and each "key value" line of the output in
# FACT_VALUE["pack/name/key"] (the last line with a key wins), so `fact NAME KEY` is a
# lookup in this shell rather than a pipeline through awk.
_PRELUDE = r"""
export LC_ALL=C
MARK='::mspauto-audit::'
dir=$(mktemp -d) || exit 1
trap 'rm -rf "$dir"' EXIT
declare -A FACT_FILE FACT_RC FACT_VALUE
n=0
NOTES=$dir/notes

note() {
  printf '%s\n' "$*" >>"$NOTES"
}

gather() {
  local file=$dir/fact.$((++n)) key value
  FACT_FILE[$1]=$file
  NOTES=$file.notes
  ( set -o pipefail; eval "$2" ) >"$file.out" 2>"$file.err" </dev/null
  FACT_RC[$1]=$?
  while read -r key value; do
    [ -n "$key" ] && FACT_VALUE[$1/$key]=$value
  done <"$file.out"
}

fact() {
  local file=${FACT_FILE[$PACK/$1]-} line
  if [ -z "$file" ]; then
    printf 'mspauto: fact %s was not gathered\n' "$1" >&2
    return 2
  fi
  [ -s "$file.notes" ] && while IFS= read -r line; do note "$line"; done <"$file.notes"
  if [ $# -ge 2 ]; then
    [ -n "${FACT_VALUE[$PACK/$1/$2]+set}" ] && printf '%s\n' "${FACT_VALUE[$PACK/$1/$2]}"
  else
    local -a lines
    mapfile -t lines <"$file.out"
    (( ${#lines[@]} )) && printf '%s\n' "${lines[@]}"
  fi
  # A fact that succeeded but warned (sshd -T on an old config: "Deprecated option")
  # still answered: its warnings become notes. A fact that failed makes rules errors.
  if [ -s "$file.err" ]; then
    while IFS= read -r line; do
      if [ "${FACT_RC[$PACK/$1]}" = 0 ]; then note "$1: $line"; else printf '%s\n' "$line" >&2; fi
    done <"$file.err"
  fi
  return "${FACT_RC[$PACK/$1]}"
}

emit() {
  local line
  while IFS= read -r line || [ -n "$line" ]; do
    case $line in "$MARK"*) line=" $line" ;; esac
    printf '%s\n' "$line"
  done <"$1"
}

audit() {
  printf '%s BEGIN %s\n' "$MARK" "$1"
  PACK=$2
  NOTES=$dir/notes.$((++n))
  out=$( set -o pipefail; eval "$3" 2>"$dir/errors" </dev/null ); rc=$?
  if [ -n "$out" ]; then
    # A line of output that looks like a marker must not end or fake a block.
    out=${out//$'\n'"$MARK"/$'\n' "$MARK"}
    case $out in "$MARK"*) out=" $out" ;; esac
    printf '%s\n' "$out"
  fi
  if [ -s "$dir/errors" ]; then printf '%s STDERR %s\n' "$MARK" "$1"; emit "$dir/errors"; fi
  if [ -s "$NOTES" ]; then printf '%s NOTE %s\n' "$MARK" "$1"; emit "$NOTES"; fi
  printf '%s END %s %s\n' "$MARK" "$1" "$rc"
}
"""


def linux_script(audits: Sequence[LinuxAudit], facts: Sequence[tuple[str, str, str]] = ()) -> str:
    """A shell script gathering ``facts`` (``(pack, name, command)``) once, then running
    each audit in its own block.

    The script is one bash process; each fact and each audit runs in a subshell of it
    with ``pipefail``, so a pipeline whose first command fails fails as a whole, and an
    audit reading a fact that failed (``sshd -T`` on a broken sshd_config) fails with
    the fact's exit code and message. Whatever an audit writes to stderr is reported
    apart from its output and makes the rule an error. Rule ids, pack and fact names
    and commands are all quoted: data never becomes code.
    """
    lines = [
        f"gather {shlex.quote(f'{pack}/{name}')} {shlex.quote(command)}"
        for pack, name, command in facts
    ]
    lines += [
        f"audit {shlex.quote(a.rule_id)} {shlex.quote(a.pack)} {shlex.quote(a.command)}"
        for a in audits
    ]
    body = _PRELUDE + "\n".join(lines) + "\nexit 0\n"
    return (
        "#!/bin/sh\n"
        "# mspauto baseline audit: one block per rule, read back by the markers.\n"
        f"exec bash -c {shlex.quote(body)} mspauto-audit\n"
    )


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
        # A line of output that looks like a marker must not end or fake a block.
        "    if ($out) { $out -replace '(?m)^(?=::mspauto-audit::)', ' ' }",
        '    "$Mark END $Id 0"',
        "  } catch {",
        '    "$Mark STDERR $Id"',
        "    $_.Exception.Message -replace '(?m)^(?=::mspauto-audit::)', ' '",
        '    "$Mark END $Id 1"',
        "  }",
        "}",
    ]
    for rule_id, script in audits:
        lines += [f"Invoke-Audit '{rule_id}' {{", script, "}"]
    return "\r\n".join(lines) + "\r\n"


def audit_script(family: Family, rules: Sequence[tuple[RulePack, Rule]]) -> str:
    """The whole audit script for one host of ``family``: every rule's audit for that
    family and, on Linux, the facts those rules read (each gathered once)."""
    if family == "windows":
        return windows_script([(rule.id, rule.audit.windows or "") for _, rule in rules])
    facts: dict[tuple[str, str], str] = {}
    audits = []
    for pack, rule in rules:
        if rule.audit.linux is None:
            continue
        for name in rule.facts:
            facts.setdefault((pack.name, name), pack.facts[name].linux)
        audits.append(LinuxAudit(rule.id, rule.audit.linux, pack.name))
    return linux_script(audits, [(pack, name, command) for (pack, name), command in facts.items()])


def parse_answers(output: str) -> dict[str, RuleAnswer]:
    """Rule id -> its answer, for every block that finished (the first, if a rule's
    block appears twice). Lines end at ``\n`` only (``\r\n`` from PowerShell): a
    ``\r`` or other line separator an audit prints cannot start a fake marker line."""
    answers: dict[str, RuleAnswer] = {}
    current: str | None = None
    sections: dict[str, list[str]] = {}
    section = "output"
    for raw in output.split("\n"):
        line = raw.removesuffix("\r")
        match = _LINE.match(line)
        if match is None:
            if current is not None:
                sections[section].append(line.rstrip("\r"))
            continue
        kind, rule_id, code = match.groups()
        if kind == "BEGIN":
            current, section = rule_id, "output"
            sections = {"output": [], "STDERR": [], "NOTE": []}
        elif kind in ("STDERR", "NOTE") and current == rule_id:
            section = kind
        elif kind == "END" and current == rule_id and code is not None:
            answers.setdefault(
                rule_id,
                RuleAnswer(
                    "\n".join(sections["output"]).strip(),
                    int(code),
                    "\n".join(sections["STDERR"]).strip(),
                    tuple(note.strip() for note in sections["NOTE"] if note.strip()),
                ),
            )
            current = None
    return answers
