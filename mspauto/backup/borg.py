"""BorgBackup 1.x facts: the newest archive, how many there are, and (when asked) ``borg check``.

Two commands per job, each captured whole by :mod:`mspauto.backup.probe`:

- ``list``: ``borg list --json --log-json --bypass-lock -- REPO`` lists every archive
  from the manifest alone: newest and count in one read, no archive loaded, no chunks
  cache touched. ``--bypass-lock`` for the reason restic's snapshots run with
  ``--no-lock``: ``borg create`` holds the repository's lock for the whole backup, and a
  listing taken while it runs should still answer (it sees the last committed state).
  ``borg info --last 1`` would add the newest archive's size and file count, but it
  builds or syncs the chunks cache (``~/.cache/borg``) and walks the whole archive's
  metadata: far too heavy for every probe. So borg gives no size or file count here.
- ``check`` (only when the policy asks): ``borg check --info --log-json --lock-wait 1 --
  REPO``, a full repository and archive check. It needs the exclusive lock; another
  borg holding it for more than a second makes it fail fast as ``locked``. ``--info``
  makes borg print its verdict (``... no problems found.``) and not just the errors.

``--log-json`` turns borg's log on stderr into JSON lines that carry a ``msgid``
(``PassphraseWrong``, ``Repository.DoesNotExist``, ``LockTimeout``), which classify a
failure better than words; plain text (older wrappers, other options) is read too.

Environment of every command:

- ``TZ=UTC``: borg 1.x prints archive times as *naive local* times of the borg process;
  with its zone set to UTC they are UTC (fixtures ``fresh`` and ``fresh-auckland``
  show the same archives listed both ways; the host's own zone no longer matters).
- ``BORG_PASSPHRASE`` from the shell variable the caller names; it wins over
  ``BORG_PASSCOMMAND`` and ``BORG_PASSPHRASE_FD``. A wrong one is an error at once.
- ``BORG_RELOCATED_REPO_ACCESS_IS_OK=no``, ``BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=no``
  and ``BORG_CHECK_I_KNOW_WHAT_I_AM_DOING=NO``: every yes/no question borg can ask on
  these commands is answered "no" from the environment, so borg never waits on a
  prompt; the relocated question (a repository seen before at another path) then
  ends as ``Repository access aborted``, which is reported, never waved through.

A repository whose own bytes cannot be read (a damaged config file: borg 1.2 dies with
a ``configparser`` traceback; an integrity error) is ``unreadable``, and fails a check
that was asked for; a probe user that may not read it is an ``error``.

Exit codes (legacy, borg's default): 0 ok, 1 *warning* (the listing is still used, the
warnings are kept), 2 error. ``borg check`` returns 1 when it found problems: for check,
1 is a failed integrity check. The "modern" codes of borg 1.4 (``BORG_EXIT_CODES=modern``:
13 no repository, 52 wrong passphrase, 70-75 lock, 90 integrity) are read too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from mspauto.backup.facts import Integrity, JobFacts, LastBackup, Problem, ProblemKind
from mspauto.backup.probe import Captured, capture

__all__ = ["ENVIRONMENT", "OWN_ARCHIVES", "PROVIDER", "commands", "parse"]

PROVIDER = "borg"

ENVIRONMENT = {
    "TZ": "UTC",
    "BORG_RELOCATED_REPO_ACCESS_IS_OK": "no",
    "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "no",
    "BORG_CHECK_I_KNOW_WHAT_I_AM_DOING": "NO",
}
"""What every borg command of the probe runs with (see the module docstring)."""

# borg's msgid (--log-json) -> why the job could not be read. "damaged" kinds also
# fail an integrity check when they stop one.
_MSGIDS: dict[str, ProblemKind] = {
    "Repository.DoesNotExist": "no-repository",
    "Repository.InvalidRepository": "no-repository",
    "PassphraseWrong": "wrong-password",
    "PasswordRetriesExceeded": "wrong-password",
    "NoPassphraseFailure": "wrong-password",
    "KeyfileNotFoundError": "wrong-password",
    "KeyfileInvalidError": "wrong-password",
    "KeyfileMismatchError": "wrong-password",
    "LockTimeout": "locked",
    "LockError": "locked",
    "LockErrorT": "locked",
    "IntegrityError": "unreadable",
    "Repository.ObjectNotFound": "unreadable",
    "Repository.CheckNeeded": "unreadable",
}
_DAMAGE_MSGIDS = {"IntegrityError", "Repository.ObjectNotFound", "Repository.CheckNeeded"}
# borg 1.4 with BORG_EXIT_CODES=modern (docs/internals/frontends.rst).
_MODERN_CODES: dict[int, ProblemKind] = {
    13: "no-repository",
    15: "no-repository",
    51: "wrong-password",
    52: "wrong-password",
    70: "locked",
    71: "locked",
    73: "locked",
    90: "unreadable",
}
# The same causes in borg's plain-text words, for output without --log-json.
_TEXTS: tuple[tuple[re.Pattern[str], ProblemKind], ...] = (
    (re.compile(r"Repository .* does not exist\.|is not a valid repository"), "no-repository"),
    (re.compile(r"passphrase supplied in BORG_PASSPHRASE.* is incorrect"), "wrong-password"),
    (re.compile(r"Failed to create/acquire the lock .*\(timeout\)"), "locked"),
    (re.compile(r"Data integrity error"), "unreadable"),
)
# The last line of a Python traceback: "module.SomeError: what went wrong".
_EXCEPTION = re.compile(r"^[\w.]*(Error|Exception): .*$", re.MULTILINE)


OWN_ARCHIVES = (
    "sh",
    "-c",
    'r=$1; shift; exec "$@" "--glob-archives=$(hostname)-*" -- "$r"',
    "mspauto-own",
)
"""Runs a borg command on this host's archives only (named ``<hostname>-...``, borg's
own ``{hostname}-{now}`` convention): the repository, then the command's words
without ``-- REPO``."""


def commands(job: int, repository: str, *, secret: str, check: bool, own_only: bool = False) -> str:
    """The sh lines that capture job ``job``'s ``list`` (and ``check`` when asked).
    ``secret`` is the name of the shell variable holding the passphrase. A repository
    with ``::`` would name an *archive* to borg (list its files, check one archive):
    refused here, since the policy names repositories."""
    if "::" in repository:
        raise ValueError(f"a borg repository, not an archive, is needed: {repository!r}")
    secrets = {"BORG_PASSPHRASE": secret}
    listing = ["borg", "list", "--json", "--log-json", "--bypass-lock"]
    lines = capture(
        job,
        "list",
        [*OWN_ARCHIVES, repository, *listing] if own_only else [*listing, "--", repository],
        environment=ENVIRONMENT,
        secrets=secrets,
    )
    if check:
        lines += capture(
            job,
            "check",
            ["borg", "check", "--info", "--log-json", "--lock-wait", "1", "--", repository],
            environment=ENVIRONMENT,
            secrets=secrets,
        )
    return lines


def parse(captured: Mapping[str, Captured]) -> JobFacts:
    """The job's facts from its captured commands (``list``, and ``check`` if it ran).
    Never raises: output borg did not print in a known shape is a problem."""
    listing = captured.get("list")
    if listing is None:
        return JobFacts(PROVIDER, problem=Problem("error", "the probe printed no borg answer"))
    integrity, check_problem = _integrity(captured.get("check"))
    if listing.rc not in (0, 1):
        problem, _ = _failure(listing, "list")
        return JobFacts(PROVIDER, integrity=integrity, problem=problem)
    warnings = [f"borg list: {text}" for level, _, text in _log(listing) if level == "WARNING"]
    try:
        document = json.loads(listing.stdout)
        archives = document["archives"]
        if not isinstance(archives, list):
            raise TypeError("archives is not a list")
    except (ValueError, KeyError, TypeError) as error:
        problem = Problem("error", f"borg list printed no archive list ({error})")
        return JobFacts(PROVIDER, integrity=integrity, problem=problem)
    newest: LastBackup | None = None
    for entry in archives:
        archive = _archive(entry)
        if archive is None:
            warnings.append(f"an archive without a readable time or name: {str(entry)[:120]}")
        elif newest is None or archive.time > newest.time:
            newest = archive
    return JobFacts(
        PROVIDER,
        latest=newest,
        last_success=newest.time if newest else None,
        count=len(archives),
        integrity=integrity,
        problem=check_problem,
        warnings=tuple(warnings),
    )


def _archive(entry: Any) -> LastBackup | None:
    """One archive of ``list --json``. Its ``time`` (alias of ``start``) is naive: local
    time of the borg process, which runs with ``TZ=UTC``, so it is read as UTC. A time
    with an offset (borg 2 prints them) is converted."""
    if not isinstance(entry, dict):
        return None
    name = entry.get("name") or entry.get("archive")
    try:
        started = datetime.fromisoformat(str(entry.get("time") or entry.get("start")))
    except ValueError:
        return None
    if not name:
        return None
    started = started.replace(tzinfo=UTC) if started.tzinfo is None else started.astimezone(UTC)
    return LastBackup(started, str(name))


def _integrity(check: Captured | None) -> tuple[Integrity | None, Problem | None]:
    """What ``borg check`` found: exit 0 is a clean repository (borg's last words as the
    message), exit 1 means it found problems, and an error that is about the
    repository's own bytes fails the check too; any other error (a lock, a wrong
    passphrase) kept the check from running and is a problem instead."""
    if check is None:
        return None, None
    if check.rc == 0:
        said = [text for _, _, text in _log(check)]
        return Integrity(True, said[-1] if said else "no problems found"), None
    if check.rc == 1:
        errors = [text for level, _, text in _log(check) if level in ("ERROR", "CRITICAL")]
        found = "; ".join(errors[:3]) or "borg check found problems"
        return Integrity(False, found[:400]), None
    problem, damaged = _failure(check, "check")
    return (Integrity(False, problem.message), None) if damaged else (None, problem)


def _failure(result: Captured, command: str) -> tuple[Problem, bool]:
    """Classify a failed borg command (exit 2 or a modern code): its ``msgid``, then a
    modern exit code, then its words. The flag is True when the repository's own bytes
    are at fault (damage), not access to it."""
    if result.rc is None:
        return Problem("error", f"borg {command} did not run: {result.stderr}"), False
    if result.rc == 127:
        return Problem("tool-missing", f"borg is not installed: {_plain(result.stderr)}"), False
    errors = [(msgid, text) for level, msgid, text in _log(result) if level == "ERROR"]
    msgid, text = next(((m, t) for m, t in errors if m), errors[0] if errors else ("", ""))
    if msgid == "Exception" or _EXCEPTION.search(text):
        # "Local Exception" and a traceback: the exception's own line says what failed.
        found = [
            m.group(0) for t in (text, *(t for _, t in errors)) for m in _EXCEPTION.finditer(t)
        ]
        if found:
            text = found[-1]
    text = text or _plain(result.stderr) or f"exit {result.rc}, no message"
    prompt = next((t for level, m, t in _log(result) if level == "PROMPT"), "")
    if msgid == "Cache.RepositoryAccessAborted" and prompt:
        text = f"{text}: {prompt}"
    message = f"borg {command}: {' '.join(text.split())}"[:400]
    kind = _MSGIDS.get(msgid) or _MODERN_CODES.get(result.rc)
    if kind is None:
        kind = next((k for pattern, k in _TEXTS if pattern.search(text)), None)
    if kind is None and "Permission denied" in text:
        # The probe's user, not the repository: unchecked, not failed.
        return Problem("error", message), False
    if kind is None and "configparser" in text:
        # A config file that is not an INI file any more (overwritten, truncated).
        kind = "unreadable"
    damaged = msgid in _DAMAGE_MSGIDS or kind == "unreadable"
    return Problem(kind or "error", message), damaged


def _log(result: Captured) -> Iterator[tuple[str, str, str]]:
    """(level, msgid, message) of each line borg logged on stderr: the JSON lines of
    ``--log-json`` (a question borg asked comes as level ``PROMPT``), then plain lines
    as ``ERROR`` when there is no JSON at all (borg without ``--log-json``)."""
    plain: list[str] = []
    found_json = False
    for line in result.stderr.splitlines():
        document = _json_line(line)
        if document is None:
            plain.append(line)
            continue
        found_json = True
        kind = document.get("type")
        if kind == "log_message":
            level = str(document.get("levelname", ""))
            yield level, str(document.get("msgid") or ""), str(document.get("message", ""))
        elif kind == "question_prompt":
            yield "PROMPT", str(document.get("msgid") or ""), str(document.get("message", ""))
    if not found_json:
        text = _plain("\n".join(plain))
        if text:
            yield "ERROR", "", text


def _json_line(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        document = json.loads(line)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def _plain(text: str) -> str:
    """borg's plain-text error: its lines without the ``Remote:`` prefix of ssh
    repositories and the ``terminating with ... rc N`` footer of ``--show-rc``."""
    lines = [line.strip().removeprefix("Remote: ") for line in text.splitlines()]
    kept = [line for line in lines if line and not line.startswith("terminating with")]
    return " ".join(kept)[:300]
