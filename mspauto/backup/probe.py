"""How a backup probe runs the providers' commands and hands their output back whole.

One probe per host runs every job's commands. Each command's exit code, stdout and
stderr come back as one record of three lines: a header, then stdout and stderr each in
base64 on a line of its own. Nothing a tool prints (a snapshot path, an archive name, a
message) can break the framing or fake another command's record, so parsers read each
command's own output exactly as the tool printed it.

Commands are argv lists, each word quoted for sh: values from the policy (a repository
path, a job name) are data, never code. Secrets never appear in the script: a command
that needs one names the shell variable that holds it (read from stdin before the
script runs, see :mod:`mspauto.checks.secrets`) and gets it exported in its own
subshell, so it reaches the tool's environment and nothing else.
"""

from __future__ import annotations

import base64
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["CAPTURE_FUNCTION", "Captured", "capture", "read_captures"]

HEADER = "@@mspauto-backup"

CAPTURE_FUNCTION = r"""mspauto_capture() {
  _job=$1; _name=$2; shift 2
  _out=$(mktemp) && _err=$(mktemp) || { echo "@@mspauto-backup $_job $_name mktemp"; return; }
  "$@" >"$_out" 2>"$_err" </dev/null
  _rc=$?
  printf '%s %s %s %s\n' "@@mspauto-backup" "$_job" "$_name" "$_rc"
  base64 -w0 <"$_out"; echo
  base64 -w0 <"$_err"; echo
  rm -f "$_out" "$_err"
}
"""
"""Defines ``mspauto_capture JOB NAME ARGV...``; a probe starts with it."""


@dataclass(frozen=True)
class Captured:
    """One command's exit code and output."""

    rc: int | None
    """None when the command could not be started at all (see ``stderr``)."""
    stdout: str
    stderr: str


def capture(
    job: int,
    name: str,
    argv: Sequence[str],
    *,
    environment: Mapping[str, str] | None = None,
    secrets: Mapping[str, str] | None = None,
) -> str:
    """The sh line that runs ``argv`` as job ``job``'s command ``name`` and prints its
    record. ``environment`` sets plain values (``TZ``); ``secrets`` maps an environment
    variable of the tool to the shell variable holding the secret. Both are exported
    in a subshell of this one command only. A secret whose shell variable is ``""`` (the
    job has none: an unencrypted borg repository) is left unset."""
    secrets = {var: shell for var, shell in (secrets or {}).items() if shell}
    exports = [f"export {var}={shlex.quote(value)}" for var, value in (environment or {}).items()]
    exports += [f'export {var}="${{{shell}}}"' for var, shell in secrets.items()]
    for var in [*(environment or {}), *secrets.values(), *secrets]:
        if not var.replace("_", "").isalnum() or var[0].isdigit():
            raise ValueError(f"not a variable name: {var!r}")
    words = " ".join(shlex.quote(word) for word in argv)
    command = f"mspauto_capture {int(job)} {shlex.quote(name)} {words}"
    return f"( {'; '.join([*exports, command])} )\n" if exports else command + "\n"


def read_captures(stdout: str) -> dict[tuple[int, str], Captured]:
    """Every record in a probe's output, by (job, command name)."""
    lines = stdout.splitlines()
    records: dict[tuple[int, str], Captured] = {}
    for index, line in enumerate(lines):
        parts = line.split()
        if len(parts) != 4 or parts[0] != HEADER or not parts[1].isdigit():
            continue
        job, name, rc = int(parts[1]), parts[2], parts[3]
        if rc == "mktemp":
            records[(job, name)] = Captured(None, "", "could not make a temporary file")
            continue
        out = lines[index + 1] if index + 1 < len(lines) else ""
        err = lines[index + 2] if index + 2 < len(lines) else ""
        records[(job, name)] = Captured(
            int(rc) if rc.lstrip("-").isdigit() else None, _decoded(out), _decoded(err)
        )
    return records


def _decoded(line: str) -> str:
    try:
        return base64.b64decode(line.strip(), validate=True).decode("utf-8", errors="replace")
    except ValueError:
        return ""
