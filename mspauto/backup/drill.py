"""Restore drills: prove a backup restores, and keep the proof as evidence.

For every restic or borg job of a backup policy with ``restore_test:``, the probe
restores the policy's ``sample_paths`` from the newest backup into a scratch folder of
its own on the host (``/var/tmp/mspauto-drill-<random>-<job>``, made with ``mkdir -m
0700``, which fails rather than reuse anything already there: a restore never lands on
live data), hashes what came back, hashes the live files, and removes the folder. The
judge (pure) compares them:

- a restored file whose hash equals the live file's is **verified**;
- a live file changed (or created) after the backup was taken cannot be compared with
  it: it is counted as **changed since**, not as a failure;
- a file that was not changed since the backup but comes back different, or not at
  all, **fails** the drill, as does a restore that fails (a corrupted repository) or
  one that restores nothing.

The finding records the snapshot, the files and bytes restored, every restored file's
SHA-256 (up to :data:`MAX_HASHES`), what was verified, changed or wrong, and how long
the restore took. The repository password travels as for the backup check (stdin, then
the tool's environment); sample paths are data, one quoted word each.
"""

from __future__ import annotations

import json
import re
import secrets as random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mspauto.backup import borg, restic
from mspauto.backup.check import JobPlan, job_key, judge_job
from mspauto.backup.facts import JobFacts
from mspauto.backup.probe import CAPTURE_FUNCTION, Captured, capture, read_captures
from mspauto.checks.pipeline import Change, HostScope, Probe
from mspauto.checks.secrets import secret_variable
from mspauto.evidence.records import Finding, FindingStatus, HostFindings
from mspauto.inventory.resolve import Host
from mspauto.patching.facts import parse_time
from mspauto.policy.models import BackupPolicy
from mspauto.secrets import SecretError, resolve_secret
from mspauto.transport.base import CommandResult

__all__ = ["MAX_HASHES", "DrillCheck", "DrillPlan"]

MAX_HASHES = 500
"""Restored files whose hashes a finding keeps (the counts cover every file)."""

# Constant scripts: every value reaches them as a positional parameter, never as code.
_RESTIC_RESTORE = 'mkdir -m 0700 -- "$1" || exit 1; t=$1; shift; exec "$@" --target "$t"'
_BORG_NEWEST = 'archive=$(borg list --short --last 1 OWN-- "$repo") || exit 2; '
"""The newest archive's name (``OWN`` becomes this host's glob, or nothing)."""
_BORG_EXTRACT = (
    'mkdir -m 0700 -- "$1" && cd -- "$1" || exit 1; shift; repo=$1; shift; '
    + _BORG_NEWEST
    + '[ -n "$archive" ] || { echo "the repository holds no archive" >&2; exit 2; }; '
    'exec borg extract -- "$repo::$archive" "$@"'
)
_BORG_LISTING = (
    "repo=$1; shift; " + _BORG_NEWEST + 'exec borg list --json-lines -- "$repo::$archive" "$@"'
)
_OWN_ARCHIVES = '--glob-archives "$(hostname)-*" '


def _own(script: str, own_only: bool) -> str:
    """``script`` reading only this host's archives (or all of them)."""
    return script.replace("OWN", _OWN_ARCHIVES if own_only else "")


# Each file as "MTIME SIZE PATH" (find) and "HASH  PATH" (sha256sum), paths absolute.
_RESTORED = (
    'cd -- "$1" 2>/dev/null || exit 0; '
    "find . -type f -printf '%T@ %s %p\\n' | sed 's| \\./| /|'; "
    "find . -type f -exec sha256sum -- {} + | sed 's|  \\./|  /|'"
)
_LIVE = (
    'for p; do [ -e "$p" ] || continue; find "$p" -type f -printf "%T@ %s %p\\n"; '
    'find "$p" -type f -exec sha256sum -- {} +; done; true'
)


@dataclass(frozen=True)
class DrillPlan:
    """The jobs to drill on one host."""

    jobs: tuple[JobPlan, ...]
    samples: tuple[tuple[str, ...], ...]
    """Each job's sample paths (its policy's ``restore_test.sample_paths``)."""
    scratch: str
    """This probe's scratch folder prefix on the host (one folder per job)."""


class DrillCheck:
    """The restore drill's plan, probe and judge (recorded as ``backup-drill``)."""

    kind = "backup-drill"

    def __init__(
        self,
        project_root: Path,
        *,
        now: datetime | None = None,
        last_drills: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.root = project_root
        self.now = now or datetime.now(UTC)
        self.last_drills = last_drills
        """Given: only jobs whose drill is due (no passing drill within ``every``)."""

    def plan(self, scope: HostScope) -> DrillPlan | None:
        """Every job whose policy asks for restore tests (and, with ``last_drills``,
        whose drill is due); None when none does."""
        jobs, samples = [], []
        for loaded in scope.policies:
            policy = loaded.policy
            assert isinstance(policy, BackupPolicy)
            if policy.restore_test is None:
                continue
            for job in policy.jobs:
                if not self._due(scope.host.name, policy, job.name):
                    continue
                problem = None
                if job.provider not in ("restic", "borg") or scope.host.platform == "windows":
                    problem = f"restore drills from {job.provider} jobs are not built yet"
                elif job.password is not None:
                    try:
                        resolve_secret(job.password, self.root)
                    except SecretError as exc:
                        problem = f"the repository password cannot be read: {exc}"
                waiver = next((w for w in scope.waivers if w.backup_job == job.name), None)
                jobs.append(
                    JobPlan(policy, job, job.rpo or policy.rpo, False, None, waiver, problem)
                )
                samples.append(tuple(policy.restore_test.sample_paths))
        if not jobs:
            return None
        scratch = f"/var/tmp/mspauto-drill-{random.token_hex(8)}"
        return DrillPlan(tuple(jobs), tuple(samples), scratch)

    def _due(self, host: str, policy: BackupPolicy, job: str) -> bool:
        if self.last_drills is None or policy.restore_test is None:
            return True
        last = self.last_drills.get(job_key(host, policy.name, job))
        if last is None or last["status"] != "pass":
            return True  # never drilled, or the last drill failed: due now
        done = parse_time(str(last["at"]))
        return done is None or self.now - done >= policy.restore_test.every

    def probe(self, host: Host, plan: DrillPlan) -> Probe | None:
        """Restore, hash and clean up, job by job."""
        # Scratch folders of drills a day old or more (one stopped before its cleanup).
        sweep = ["find", "/var/tmp", "-maxdepth", "1", "-name", "mspauto-drill-*", "-mmin"]
        sweep += ["+1440", "-exec", "rm", "-rf", "--", "{}", "+"]
        lines = [CAPTURE_FUNCTION, capture(len(plan.jobs), "sweep", sweep)]
        secrets: list[str] = []
        for index, (item, samples) in enumerate(zip(plan.jobs, plan.samples, strict=True)):
            job = item.job
            if item.problem is not None or job.repository is None:
                continue
            variable = ""
            if job.password is not None:
                try:
                    value = resolve_secret(job.password, self.root)
                except SecretError:
                    continue  # unreadable since the plan read it: this job gets no answer
                variable = secret_variable(len(secrets))
                secrets.append(value)
            scratch = f"{plan.scratch}-{index}"
            if job.provider == "restic":
                own = job.own_backups_only
                lines.append(
                    restic.commands(
                        index, job.repository, secret=variable, check=False, own_only=own
                    )
                )
                includes = [f"--include={path}" for path in samples]
                restore = ["restic", f"--repo={job.repository}", "--no-cache", "restore"]
                argv = [
                    *("sh", "-c", _RESTIC_RESTORE, "mspauto-drill", scratch),
                    *(restic.OWN_HOST if own else ()),
                    *restore,
                    *("latest", *includes),
                ]
                environment = {"RESTIC_PASSWORD_FILE": "", "RESTIC_PASSWORD_COMMAND": ""}
                secret_env = {"RESTIC_PASSWORD": variable}
                listing = [
                    *(restic.OWN_HOST if own else ()),
                    *("restic", f"--repo={job.repository}", "--no-cache", "--no-lock"),
                    *("--json", "ls", "--recursive", "latest", *samples),
                ]
            else:
                own = job.own_backups_only
                lines.append(
                    borg.commands(index, job.repository, secret=variable, check=False, own_only=own)
                )
                extract = _own(_BORG_EXTRACT, own)
                argv = [
                    *("sh", "-c", extract, "mspauto-drill", scratch, job.repository),
                    *(path.lstrip("/") for path in samples),
                ]
                environment = dict(borg.ENVIRONMENT)
                secret_env = {"BORG_PASSPHRASE": variable}
                listing = [
                    *("sh", "-c", _own(_BORG_LISTING, own), "mspauto-drill", job.repository),
                    *(path.lstrip("/") for path in samples),
                ]
            lines.append(capture(index, "clock-start", ["date", "+%s.%N"]))
            lines.append(
                capture(index, "restore", argv, environment=environment, secrets=secret_env)
            )
            lines.append(capture(index, "clock-end", ["date", "+%s.%N"]))
            lines.append(
                capture(index, "listing", listing, environment=environment, secrets=secret_env)
            )
            lines.append(capture(index, "restored", ["sh", "-c", _RESTORED, "drill", scratch]))
            lines.append(capture(index, "live", ["sh", "-c", _LIVE, "drill", *samples]))
            lines.append(capture(index, "cleanup", ["rm", "-rf", "--", scratch]))
        if len(lines) == 2:
            return None
        return Probe("".join(lines), tuple(secrets))

    def judge(self, host: Host, plan: DrillPlan, result: CommandResult | None) -> HostFindings:
        """One finding per drilled job."""
        if result is not None and result.error is not None and result.rc is None:
            return HostFindings(self.kind, host.name, (), f"{result.error}: {result.message}")
        captured = read_captures(result.stdout) if result is not None else {}
        findings = []
        for index, item in enumerate(plan.jobs):
            own = {name: c for (job, name), c in captured.items() if job == index}
            findings.append(self._finding(item, own))
        return HostFindings(self.kind, host.name, tuple(findings))

    def _finding(self, item: JobPlan, own: Mapping[str, Captured]) -> Finding:
        def finding(status: FindingStatus, reason: str, **detail: Any) -> Finding:
            return Finding(
                item.job.name,
                item.policy.name,
                status,
                reason=reason,
                detail={"provider": item.job.provider, "at": self.now.isoformat(), **detail},
            )

        if item.problem is not None:
            return finding(FindingStatus.ERROR, item.problem)
        if "restore" not in own:
            return finding(FindingStatus.ERROR, "the drill did not run on the host")
        parse = restic.parse if item.job.provider == "restic" else borg.parse
        facts = parse({k: v for k, v in own.items() if k in ("snapshots", "list", "info")})
        state, why = judge_job(item, facts, self.now)
        if state == "unchecked":
            return finding(FindingStatus.ERROR, why)
        if state == "missing" or facts.latest is None:
            return finding(FindingStatus.FAIL, f"nothing to restore: {why}")
        return _compare(finding, facts, own)

    def changes(self, host: Host, plan: DrillPlan, findings: HostFindings) -> Sequence[Change]:
        """A drill changes nothing."""
        return ()


def _compare(
    finding: Callable[..., Finding], facts: JobFacts, own: Mapping[str, Captured]
) -> Finding:
    """The drill's verdict from the backup's own listing, what came back, the live files."""
    assert facts.latest is not None
    restore = own["restore"]
    started, ended = _clock(own.get("clock-start")), _clock(own.get("clock-end"))
    duration = round(ended - started, 3) if started is not None and ended is not None else None
    snapshot = {"name": facts.latest.name, "time": facts.latest.time.isoformat()}
    said = [ln.strip() for ln in restore.stderr.splitlines() if ln.strip()]
    if restore.rc != 0:
        # A lock (a backup running), a full disk or no scratch folder is not a failed
        # restore: the drill could not run, and says why.
        busy = any(w in restore.stderr for w in ("locked", "lock", "mkdir:", "No space left"))
        return finding(
            FindingStatus.ERROR if busy else FindingStatus.FAIL,
            f"the restore {'could not run' if busy else 'failed'} (exit {restore.rc}): "
            f"{(said[-1] if said else '')[:300]}",
            snapshot=snapshot,
            duration_seconds=duration,
        )
    if facts.provider == "restic" and any(
        ln.startswith(("ignoring error", "Fatal")) for ln in said
    ):
        # restic reports a file it could not restore and may still exit 0.
        return finding(
            FindingStatus.FAIL,
            f"the restore reported errors: {said[0][:300]}",
            snapshot=snapshot,
            duration_seconds=duration,
        )
    listing = own.get("listing")
    if listing is None or listing.rc != 0:
        # restic 0.14 restores a damaged file without a word (exit 0): the listing, the
        # hashes or this is what catches it.
        first = next((ln for ln in (listing.stderr if listing else "").splitlines() if ln), "")
        return finding(
            FindingStatus.FAIL,
            f"the backup's file listing cannot be read: {first.strip()[:300] or 'no answer'}",
            snapshot=snapshot,
            duration_seconds=duration,
        )
    listed = _listing(listing)
    restored_hashes, restored_files = _hashes(own.get("restored")), _times(own.get("restored"))
    live_hashes, live_files = _hashes(own.get("live")), _times(own.get("live"))
    verified, changed, wrong = [], [], []
    # A sample file older than the backup but not in it: the backup silently left it
    # out. (One made after the backup is simply new.)
    taken = facts.latest.time.timestamp()
    wrong += [
        f"{path}: not in the backup"
        for path in sorted(set(live_files) - set(listed))
        if live_files[path][0] < taken
    ]
    for path, (mtime, size) in sorted(listed.items()):
        got = restored_files.get(path)
        live = live_files.get(path)
        if got is None or path not in restored_hashes:
            wrong.append(f"{path}: not restored")
        elif got[1] != size or abs(got[0] - mtime) > 1:
            wrong.append(f"{path}: restored as {got[1]} bytes, the backup lists {size}")
        elif live is not None and live[1] == size and abs(live[0] - mtime) <= 1:
            # Unchanged since the backup: the restored bytes must be the live ones.
            if restored_hashes[path] == live_hashes.get(path):
                verified.append(path)
            else:
                wrong.append(f"{path}: restored content differs from the unchanged file")
        else:
            changed.append(path)  # matches the backup's listing; the source moved on
    detail = {
        "snapshot": snapshot,
        "duration_seconds": duration,
        "files": len(restored_files),
        "bytes": sum(size for _, size in restored_files.values()),
        "verified": len(verified),
        "changed_since": changed[:50],
        "wrong": wrong[:50],
        "hashes": dict(sorted(restored_hashes.items())[:MAX_HASHES]),
        "cleanup_ok": own.get("cleanup", Captured(None, "", "")).rc == 0,
    }
    if not listed:
        return finding(FindingStatus.FAIL, "the backup holds none of the sample paths", **detail)
    if not wrong and not verified:
        # Every file changed since the backup: sizes and times match its listing, but
        # no restored byte could be compared with anything. Not a pass.
        return finding(
            FindingStatus.ERROR,
            f"inconclusive: all {len(changed)} files changed since the backup, so no "
            "restored content could be compared; add a sample path that does not change",
            **detail,
        )
    if wrong:
        return finding(
            FindingStatus.FAIL,
            f"{len(wrong)} of {len(listed)} files are wrong: {wrong[0]}",
            **detail,
        )
    return finding(
        FindingStatus.PASS,
        f"{len(restored_files)} files restored"
        + (f" in {duration}s" if duration is not None else "")
        + f": {len(verified)} identical to "
        f"the live files, {len(changed)} changed since the backup (match its listing)",
        **detail,
    )


def _listing(captured: Captured | None) -> dict[str, tuple[float, int]]:
    """path -> (mtime, size) of each regular file the backup lists: restic's ``ls
    --json`` nodes, or borg's ``list --json-lines`` items (relative paths made absolute;
    borg runs with TZ=UTC, so its naive times are UTC)."""
    found = {}
    for line in (captured.stdout if captured and captured.rc == 0 else "").splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if not isinstance(item, dict) or item.get("type") not in ("file", "-"):
            continue
        stamp = _instant(str(item.get("mtime", "")))
        if stamp is None or not isinstance(item.get("size"), int):
            continue
        path = str(item.get("path", ""))
        found[path if path.startswith("/") else "/" + path] = (stamp, int(item["size"]))
    return found


def _instant(text: str) -> float | None:
    """Seconds since the epoch of an RFC 3339 time (nanoseconds cut to micro); a time
    without a zone is UTC."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.strip()).replace("Z", "+00:00")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _clock(captured: Captured | None) -> float | None:
    try:
        return float(captured.stdout.strip()) if captured and captured.rc == 0 else None
    except ValueError:
        return None


def _hashes(captured: Captured | None) -> dict[str, str]:
    """path -> sha256 from ``sha256sum`` lines (``HASH  PATH``)."""
    found = {}
    for line in (captured.stdout if captured else "").splitlines():
        digest, sep, path = line.partition("  ")
        if sep and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest):
            found[path] = digest
    return found


def _times(captured: Captured | None) -> dict[str, tuple[float, int]]:
    """path -> (mtime, size) from the live listing's ``%T@ %s %p`` lines."""
    found = {}
    for line in (captured.stdout if captured else "").splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[1].isdigit():
            try:
                found[parts[2]] = (float(parts[0]), int(parts[1]))
            except ValueError:
                continue
    return found
