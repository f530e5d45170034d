"""restic facts: the newest snapshot, how many there are, and (when asked) ``restic check``.

Two commands per job, each captured whole by :mod:`mspauto.backup.probe`:

- ``snapshots``: ``restic --repo=REPO --no-cache --no-lock --json snapshots`` lists every
  snapshot. All of them, not ``--latest 1``: that flag keeps the newest *per host and
  path set*, so it is no shorter on a shared repository, and the full list gives the
  count. ``--no-lock`` because a running backup or prune holds a lock for hours and
  reading snapshots needs none (restic's own advice for read-only use); ``--no-cache``
  because a probe run as root must not leave a cache under ``/root/.cache``.
- ``check`` (only when the policy asks): ``restic --repo=REPO --no-cache check``, with
  ``--read-data-subset=X`` when given. Without it restic reads the structure (index,
  packs' presence, every tree) but no file data: a flipped byte in a data pack passes
  (see the ``corrupt-data`` fixture). check must lock the repository (restic 0.14 locks
  it exclusively), so a running backup or prune makes it fail: that is ``locked``.

The password reaches restic as ``RESTIC_PASSWORD`` from the shell variable the caller
names; ``RESTIC_PASSWORD_FILE``, ``RESTIC_PASSWORD_COMMAND`` and
``RESTIC_REPOSITORY_FILE`` are exported empty (restic treats empty as unset) so a value
left in root's environment cannot take precedence over the probe's own.

How failures read, per version (fixtures under ``tests/fixtures/backup/restic``):

- restic 0.14 (Debian 12) exits 1 for every failure, so the message decides: ``wrong
  password or no key found``, ``unable to open config file: ... no such file or
  directory`` (no repository there, or an empty directory: an unmounted disk looks like
  this), ``repository is already locked [exclusively] by PID ...``.
- restic 0.17 exits 10 (no repository) and 11 (lock failed), 0.17.1 also 12 (wrong
  password); the exit code decides, the message still names the cause.
- restic 0.18 prints fatal errors as one JSON line on stderr when ``--json`` is given:
  ``{"message_type":"exit_error","code":12,"message":"Fatal: ..."}``.
- A damaged config file (the lab's ``restic-failing``: ``config`` overwritten) makes
  restic 0.14 *panic* in ``LoadConfig`` (exit 2, a Go stack trace; recorded). That is
  ``unreadable``, not ``no-repository``: the repository is there and restic cannot read
  it, so its backups cannot be restored either (the job fails); when the check was
  asked for, it fails the same way and the facts carry a failed :class:`Integrity` too.
  Newer restic reports the decryption error in words (``ciphertext verification
  failed``); it is classified the same way.

``unreadable`` is kept for the repository's own bytes: a probe user that may not read
the repository (``permission denied``) or output in no known shape is an ``error``,
which leaves the job unchecked instead of failed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mspauto.backup.facts import Integrity, JobFacts, LastBackup, Problem, ProblemKind
from mspauto.backup.probe import Captured, capture

__all__ = ["OWN_HOST", "PROVIDER", "commands", "parse"]

PROVIDER = "restic"

# restic reads these before RESTIC_PASSWORD / --repo; empty means unset to restic.
_NEUTRAL_ENVIRONMENT = {
    "RESTIC_PASSWORD_FILE": "",
    "RESTIC_PASSWORD_COMMAND": "",
    "RESTIC_REPOSITORY_FILE": "",
}

# restic 0.17+ exit codes (doc/075_scripting.rst); 0.14 exits 1 for all of these.
_EXIT_CODES: dict[int, ProblemKind] = {10: "no-repository", 11: "locked", 12: "wrong-password"}

# Words that mean the repository's own bytes cannot be read: damage, not access.
_DAMAGE = (
    "ciphertext verification failed",
    "invalid data returned",
    "repository contains errors",
    "LoadIndex returned errors",
    "LoadConfig",
)
_NO_REPOSITORY = re.compile(
    r"repository does not exist"
    r"|unable to open config file:.*(no such file or directory|does not exist|not found)",
    re.IGNORECASE,
)
_PANIC = re.compile(r"^panic: (.*)$", re.MULTILINE)
# Lines that only point at a remedy or repeat the location: left out of messages.
_HINTS = ("the `unlock` command", "Is there a repository at the following location?")


def commands(
    job: int,
    repository: str,
    *,
    secret: str,
    check: bool,
    read_data_subset: str | None = None,
    own_only: bool = False,
) -> str:
    """The sh lines that capture job ``job``'s ``snapshots`` (and ``check`` when asked).
    ``secret`` is the name of the shell variable holding the repository password; the
    repository and the subset are data, one word each, never evaluated. ``own_only``
    lists only the snapshots this host made (``--host`` its own name, as restic
    records it)."""
    base = ["restic", f"--repo={repository}", "--no-cache"]
    secrets = {"RESTIC_PASSWORD": secret}
    listing = [*base, "--no-lock", "--json", "snapshots"]
    lines = capture(
        job,
        "snapshots",
        [*OWN_HOST, *listing] if own_only else listing,
        environment=_NEUTRAL_ENVIRONMENT,
        secrets=secrets,
    )
    if check:
        subset = [f"--read-data-subset={read_data_subset}"] if read_data_subset else []
        lines += capture(
            job,
            "check",
            [*base, "check", *subset],
            environment=_NEUTRAL_ENVIRONMENT,
            secrets=secrets,
        )
    return lines


OWN_HOST = ("sh", "-c", 'exec "$@" "--host=$(hostname)"', "mspauto-own")
"""Runs a restic command (its words follow) for this host's snapshots only."""


@dataclass(frozen=True)
class _Failure:
    """Why a restic command failed, and whether it says the repository is damaged."""

    problem: Problem
    damaged: bool


def parse(captured: Mapping[str, Captured]) -> JobFacts:
    """The job's facts from its captured commands (``snapshots``, and ``check`` if it
    ran). Never raises: output restic did not print in a known shape is a problem."""
    snapshots = captured.get("snapshots")
    if snapshots is None:
        return JobFacts(PROVIDER, problem=Problem("error", "the probe printed no restic answer"))
    integrity, check_failure = _integrity(captured.get("check"))
    if snapshots.rc != 0:
        failure = _failure(snapshots, "snapshots")
        return JobFacts(PROVIDER, integrity=integrity, problem=failure.problem)
    latest, count, warnings = _newest(snapshots.stdout)
    if count is None:
        problem = Problem("error", f"restic snapshots printed no snapshot list: {warnings[0]}")
        return JobFacts(PROVIDER, integrity=integrity, problem=problem)
    return JobFacts(
        PROVIDER,
        latest=latest,
        last_success=latest.time if latest else None,
        count=count,
        integrity=integrity,
        problem=check_failure.problem if check_failure else None,
        warnings=tuple(warnings),
    )


def _newest(stdout: str) -> tuple[LastBackup | None, int | None, list[str]]:
    """(newest snapshot, how many, warnings) from ``snapshots --json``; a count of None
    when the output is not a JSON list (the first warning then says what it was)."""
    try:
        document = json.loads(stdout)
    except ValueError:
        return None, None, [_first_line(stdout) or "empty output"]
    if not isinstance(document, list):
        return None, None, [f"a JSON {type(document).__name__}, not a list"]
    warnings: list[str] = []
    newest: LastBackup | None = None
    for entry in document:
        backup = _snapshot(entry)
        if backup is None:
            warnings.append(f"a snapshot without a readable time or ID: {str(entry)[:120]}")
        elif newest is None or backup.time > newest.time:
            newest = backup
    return newest, len(document), warnings


def _snapshot(entry: Any) -> LastBackup | None:
    """One snapshot of ``snapshots --json``. ``time`` is when the backup *started*, with
    the offset of the zone restic ran in (``+12:00`` from a host in Auckland): UTC here.
    ``summary`` (sizes, file counts) exists only in snapshots made by restic 0.17+."""
    if not isinstance(entry, dict):
        return None
    name = entry.get("short_id") or str(entry.get("id", ""))[:8]
    try:
        started = datetime.fromisoformat(str(entry.get("time")))
    except ValueError:
        return None
    if not name or started.tzinfo is None:
        return None
    summary = entry.get("summary")
    size = files = None
    if isinstance(summary, dict):
        size = _count(summary.get("total_bytes_processed"))
        files = _count(summary.get("total_files_processed"))
    return LastBackup(started.astimezone(UTC), str(name), size_bytes=size, files=files)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _integrity(check: Captured | None) -> tuple[Integrity | None, _Failure | None]:
    """What ``restic check`` found: an :class:`Integrity` when it got to judge the
    repository (or the repository's own bytes stopped it), else the failure that kept
    it from running (a lock, a wrong password, no repository)."""
    if check is None:
        return None, None
    if check.rc == 0:
        return Integrity(True, _last_line(check.stdout) or "no errors were found"), None
    failure = _failure(check, "check")
    if failure.damaged:
        return Integrity(False, failure.problem.message), None
    return None, failure


def _failure(result: Captured, command: str) -> _Failure:
    """Classify a failed restic command by exit code (0.17+), JSON error (0.18) or
    message (0.14, where every failure exits 1)."""
    if result.rc is None:
        return _Failure(Problem("error", f"restic {command} did not run: {result.stderr}"), False)
    if result.rc == 127:
        return _Failure(
            Problem("tool-missing", f"restic is not installed: {_words(result)}"), False
        )
    code, text = _exit_error(result)
    damaged = any(word in text for word in _DAMAGE)
    panic = _PANIC.search(text)
    if panic:
        where = "loading the repository config" if "LoadConfig" in text else "(a restic bug?)"
        message = f"restic {command} crashed {where}: {panic.group(1)}"
    else:
        message = f"restic {command}: {_message(text)}"
    kind: ProblemKind
    if code in _EXIT_CODES:
        kind = _EXIT_CODES[code]
    elif "wrong password or no key found" in text or "empty password" in text:
        kind = "wrong-password"
    elif "repository is already locked" in text:
        kind = "locked"
    elif _NO_REPOSITORY.search(text):
        kind = "no-repository"
    elif damaged:
        kind = "unreadable"
    elif "permission denied" in text.lower():
        kind = "error"
        message = f"{message} (the probe's user may not read the repository)"
    else:
        kind = "error"
        message = f"{message} (exit {result.rc})"
    return _Failure(Problem(kind, message), damaged and kind == "unreadable")


def _exit_error(result: Captured) -> tuple[int | None, str]:
    """(exit code, error text): restic 0.18's ``exit_error`` JSON line on stderr when
    there is one (its code and message), else the exit code and stderr plus stdout
    (``check`` prints its findings on stdout and its verdict on stderr)."""
    for line in result.stderr.splitlines():
        if not line.startswith("{"):
            continue
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if isinstance(document, dict) and document.get("message_type") == "exit_error":
            code = document.get("code")
            return (code if isinstance(code, int) else result.rc), str(document.get("message"))
    return result.rc, "\n".join(part for part in (result.stderr, result.stdout) if part.strip())


def _message(text: str) -> str:
    """restic's error in one line: the ``Fatal:`` verdict, then up to two findings (an
    indented detail joined to the line it belongs to), without progress lines, remedies
    or the ``Fatal:`` prefix."""
    lines: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and raw[:1].isspace() and lines:
            lines[-1] = f"{lines[-1]} {line}"
        elif line and not line.startswith(("[", "{", *_HINTS)):
            lines.append(line)
    fatal = [line for line in lines if line.startswith("Fatal:")]
    findings = [line for line in lines if line.startswith(("error", "pack ", "Pack ID"))]
    detail = fatal + findings[:2] if fatal else lines[:2]
    words = "; ".join(line.removeprefix("Fatal: ") for line in detail)
    return words[:400] or "no message"


def _words(result: Captured) -> str:
    return _first_line(result.stderr) or _first_line(result.stdout) or "no message"


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")[:300]


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""
