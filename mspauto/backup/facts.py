"""What a backup provider says about one job: the facts every backup judgement reads.

Each provider (restic, borg, Windows Server Backup, Veeam, file age) parses its own
output into :class:`JobFacts`; the judge (RPO, integrity and restore-drill cadence) and
the evidence never branch on the provider. Times are UTC, always: a provider whose
tool prints naive local times converts them before they get here.

A job ends in one of these states, never confused:

- ``ok``: the newest good backup is within the RPO;
- ``stale``: the newest good backup is older than the RPO;
- ``failed``: the last backup (or the repository's integrity check) failed;
- ``missing``: no backup is configured where the policy says one is, or the
  repository does not exist or holds no backup at all;
- ``unchecked``: mspauto could not tell (host unreachable, wrong password, a lock
  held, the tool not installed): neither a pass nor a backup failure, and says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

__all__ = [
    "PROBLEMS",
    "Integrity",
    "JobFacts",
    "JobState",
    "LastBackup",
    "Problem",
    "ProblemKind",
]

JobState = Literal["ok", "stale", "failed", "missing", "unchecked"]

ProblemKind = Literal[
    "no-repository",
    "wrong-password",
    "locked",
    "tool-missing",
    "unreadable",
    "error",
]
"""Why a provider could not answer. ``no-repository`` makes the job ``missing``;
``unreadable`` (the repository exists but its own structure cannot be read, e.g. a
damaged config) makes it ``failed``, since a restore would fail the same way; every
other kind makes it ``unchecked``. Damaged data is found by the integrity check, which
fails the job."""
PROBLEMS: tuple[ProblemKind, ...] = get_args(ProblemKind)


@dataclass(frozen=True)
class Problem:
    """Why the provider gave no usable answer, in one line."""

    kind: ProblemKind
    message: str

    def as_dict(self) -> dict[str, str]:
        """Machine-readable form."""
        return {"kind": self.kind, "message": self.message}


@dataclass(frozen=True)
class LastBackup:
    """The newest backup the provider knows of."""

    time: datetime
    """When it was taken (its start, for restic and borg), UTC."""
    name: str
    """The snapshot ID (restic), archive name (borg), job or session name."""
    result: Literal["success", "warning", "failed"] = "success"
    """restic and borg keep only backups that finished; job-based providers (Windows
    Server Backup, Veeam) report the last job's result, which may be a failure."""
    size_bytes: int | None = None
    files: int | None = None
    message: str = ""
    """The provider's own words for a warning or a failure."""

    def as_dict(self) -> dict[str, Any]:
        """Machine-readable form."""
        return {
            "time": self.time.isoformat(),
            "name": self.name,
            "result": self.result,
            "size_bytes": self.size_bytes,
            "files": self.files,
            "message": self.message,
        }


@dataclass(frozen=True)
class Integrity:
    """The result of a repository integrity check run by this probe."""

    ok: bool
    message: str
    """The check's last meaningful line (``no errors were found``, or the error)."""

    def as_dict(self) -> dict[str, Any]:
        """Machine-readable form."""
        return {"ok": self.ok, "message": self.message}


@dataclass(frozen=True)
class JobFacts:
    """One job's facts from one probe."""

    provider: str
    latest: LastBackup | None = None
    """The newest backup; None when there is none (or the provider could not say)."""
    last_success: datetime | None = None
    """The newest backup that succeeded (UTC): ``latest.time`` unless the latest failed."""
    count: int | None = None
    """How many backups (snapshots, archives, versions) the repository holds."""
    integrity: Integrity | None = None
    """Set when this probe ran the integrity check."""
    problem: Problem | None = None
    warnings: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """Machine-readable form."""
        return {
            "provider": self.provider,
            "latest": self.latest.as_dict() if self.latest else None,
            "last_success": self.last_success.isoformat() if self.last_success else None,
            "count": self.count,
            "integrity": self.integrity.as_dict() if self.integrity else None,
            "problem": self.problem.as_dict() if self.problem else None,
            "warnings": list(self.warnings),
        }
