"""file-age facts: when a backup's file or folder last changed, for any tool without a catalogue.

The last modification time stands for the last backup: a dump written each night
(``/var/backups/db.sql.gz``), or rsnapshot's ``daily.0``, whose mtime rsnapshot sets
when it finishes the snapshot. Two commands per job:

- ``stat``: ``stat -L -c '%Y %F<newline>%n' -- PATH``, the path's own mtime (epoch
  seconds, so UTC whatever the host's zone), its type, and on the next line the path
  as given (the rest of the output, so a name with a newline in it stays whole); ``-L``
  follows a symlink (a ``latest`` link) to what it points at.
- ``entries``: ``find -L PATH -mindepth 1 -maxdepth 1 -printf '%T@\\n'``, the mtime of
  each entry directly in the folder (nothing for a file). A folder's own mtime moves
  when an entry is added, removed or renamed, but not when a file in it is rewritten in
  place (``pg_dump > /backups/db.sql``); the newest of the folder and its direct
  entries covers both. Deeper entries are not read: an rsnapshot tree holds millions
  of files, and rsync gives them the *source's* mtimes anyway. Only times are printed,
  never names, so no file name can break the output.

Both run with ``LC_ALL=C`` so ``stat``'s error reads the same on every host. A path
that does not exist is ``no-repository`` (the job counts as missing); one the probe may
not read is an ``error`` (unchecked: the backup may well be there). A ``find`` without
``-printf`` (BusyBox) costs only the entries: the folder's own time is used, with a
warning.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from mspauto.backup.facts import JobFacts, LastBackup, Problem
from mspauto.backup.probe import Captured, capture

__all__ = ["PROVIDER", "commands", "parse"]

PROVIDER = "file-age"

_ENVIRONMENT = {"LC_ALL": "C"}


def commands(job: int, path: str) -> str:
    """The sh lines that capture job ``job``'s ``stat`` and ``entries`` of ``path`` (one
    word, never evaluated; a relative path is taken from the probe's directory)."""
    # find has no "--": a path starting with "-" would be read as an expression.
    start = path if not path.startswith("-") else f"./{path}"
    return capture(
        job, "stat", ["stat", "-L", "-c", "%Y %F\n%n", "--", path], environment=_ENVIRONMENT
    ) + capture(
        job,
        "entries",
        ["find", "-L", start, "-mindepth", "1", "-maxdepth", "1", "-printf", "%T@\\n"],
        environment=_ENVIRONMENT,
    )


def parse(captured: Mapping[str, Captured]) -> JobFacts:
    """The job's facts: the newest mtime of the path and (for a folder) its direct
    entries, named by the path. Never raises."""
    stat = captured.get("stat")
    if stat is None:
        return JobFacts(PROVIDER, problem=Problem("error", "the probe printed no file-age answer"))
    if stat.rc != 0:
        return JobFacts(PROVIDER, problem=_problem(stat))
    first, _, path = stat.stdout.removesuffix("\n").partition("\n")
    mtime, _, kind = first.partition(" ")
    try:
        changed = datetime.fromtimestamp(int(mtime), UTC)
    except (ValueError, OverflowError, OSError):
        problem = Problem("error", f"stat printed no time: {stat.stdout[:200]!r}")
        return JobFacts(PROVIDER, problem=problem)
    warnings: list[str] = []
    entries = captured.get("entries")
    if kind == "directory" and entries is not None:
        newest, warning = _newest_entry(entries)
        if warning:
            warnings.append(f"{path}: {warning}; the folder's own time is used")
        if newest is not None and newest > changed:
            changed = newest
    latest = LastBackup(changed, path)
    return JobFacts(
        PROVIDER, latest=latest, last_success=changed, count=None, warnings=tuple(warnings)
    )


def _newest_entry(entries: Captured) -> tuple[datetime | None, str]:
    """The newest mtime ``find`` printed (None for an empty folder), and a warning when
    it could not list the folder (or not all of it)."""
    times: list[float] = []
    for line in entries.stdout.splitlines():
        try:
            times.append(float(line))
        except ValueError:
            continue
    warning = ""
    if entries.rc != 0:
        said = next((s.strip() for s in entries.stderr.splitlines() if s.strip()), "")
        warning = f"find exited {entries.rc} listing the entries ({said[:200] or 'no message'})"
    if not times:
        return None, warning
    try:
        return datetime.fromtimestamp(max(times), UTC), warning
    except (ValueError, OverflowError, OSError):
        return None, "find printed an impossible time"


def _problem(stat: Captured) -> Problem:
    said = next((s.strip() for s in stat.stderr.splitlines() if s.strip()), "")[:300]
    if stat.rc is None:
        return Problem("error", f"stat did not run: {stat.stderr}")
    if stat.rc == 127:
        return Problem("tool-missing", f"stat is not installed: {said}")
    if "No such file or directory" in said or "Not a directory" in said:
        return Problem("no-repository", f"the backup's path does not exist: {said}")
    if "Permission denied" in said:
        return Problem("error", f"the probe may not read the backup's path: {said}")
    return Problem("error", f"stat exited {stat.rc}: {said or 'no message'}")
