"""The backup kind on the check pipeline: plan each host's jobs, probe, judge each job.

*Plan* (pure): every job of every backup policy selecting the host, with its RPO (the
job's, else the policy's), whether its repository's integrity check is due (the last
one recorded is older than the job's ``integrity_every``, or ``--check-integrity``),
and the waiver that excuses it. *Probe*: one script per host running every job's
provider commands, each command's output framed whole (mspauto.backup.probe); a
repository password is resolved on the control node and sent on the script's stdin,
never in the script (mspauto.checks.secrets). *Judge* (pure): one finding per job, its
state (see mspauto.backup.facts) as the verdict: ``ok`` passes; ``stale``, ``failed``
and ``missing`` fail; ``unchecked`` is an error, neither a pass nor a backup failure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from mspauto.backup import borg, fileage, restic, windows
from mspauto.backup.facts import JobFacts, JobState, Problem
from mspauto.backup.probe import CAPTURE_FUNCTION, Captured, read_captures
from mspauto.checks.pipeline import Change, HostScope, Probe
from mspauto.checks.secrets import secret_variable
from mspauto.evidence.records import Finding, FindingStatus, HostFindings
from mspauto.fields import format_duration
from mspauto.inventory.resolve import Host
from mspauto.policy.models import BackupJob, BackupPolicy, Waiver
from mspauto.secrets import SecretError, resolve_secret
from mspauto.transport.base import CommandResult

__all__ = ["BackupCheck", "BackupPlan", "JobPlan", "human_age", "job_key", "judge_job"]

WINDOWS_PROVIDERS = windows.PROVIDERS
"""Checked over WinRM by one PowerShell probe (mspauto.backup.windows)."""
_PARSERS: Mapping[str, Callable[[Mapping[str, Captured]], JobFacts]] = {
    "restic": restic.parse,
    "borg": borg.parse,
    "file-age": fileage.parse,
}
_STATUS: Mapping[JobState, FindingStatus] = {
    "ok": FindingStatus.PASS,
    "stale": FindingStatus.FAIL,
    "failed": FindingStatus.FAIL,
    "missing": FindingStatus.FAIL,
    "unchecked": FindingStatus.ERROR,
}


FUTURE_TOLERANCE = timedelta(minutes=10)
"""How far in the future a backup may be dated (clock drift) before it is not trusted."""


def job_key(host: str, policy: str, job: str) -> str:
    """How a job on a host is known across runs (integrity history, drills)."""
    return f"{host}/{policy}/{job}"


@dataclass(frozen=True)
class JobPlan:
    """One job to check on one host."""

    policy: BackupPolicy
    job: BackupJob
    rpo: timedelta
    check_integrity: bool
    last_integrity: Mapping[str, Any] | None
    """The last integrity check recorded for this job on this host (at, ok, message)."""
    waiver: Waiver | None
    problem: str | None = None
    """Why the job cannot be probed as configured (its password cannot be resolved;
    a provider not built for this platform yet)."""


@dataclass(frozen=True)
class BackupPlan:
    """Every job to check on one host."""

    jobs: tuple[JobPlan, ...]


class BackupCheck:
    """The backup kind's plan, probe and judge."""

    kind = "backup"

    def __init__(
        self,
        project_root: Path,
        *,
        now: datetime,
        last_integrity: Mapping[str, Mapping[str, Any]] | None = None,
        check_integrity: bool = False,
    ) -> None:
        self.root = project_root
        self.now = now
        self.last_integrity = last_integrity or {}
        """job_key -> the last recorded integrity check (at, ok, message)."""
        self.force_integrity = check_integrity

    def plan(self, scope: HostScope) -> BackupPlan | None:
        """Every job of every backup policy selecting the host; None when none does."""
        jobs = []
        for loaded in scope.policies:
            policy = loaded.policy
            assert isinstance(policy, BackupPolicy)
            for job in policy.jobs:
                key = job_key(scope.host.name, policy.name, job.name)
                last = self.last_integrity.get(key)
                # A failed check is checked again at every run until it passes.
                due = (
                    self.force_integrity
                    or last is None
                    or not last.get("ok")
                    or self.now - datetime.fromisoformat(str(last["at"])) >= job.integrity_every
                )
                jobs.append(
                    JobPlan(
                        policy,
                        job,
                        job.rpo or policy.rpo,
                        check_integrity=due and job.provider in ("restic", "borg"),
                        last_integrity=last,
                        waiver=next((w for w in scope.waivers if w.backup_job == job.name), None),
                        problem=self._problem(scope.host, job),
                    )
                )
        return BackupPlan(tuple(jobs)) if jobs else None

    def _problem(self, host: Host, job: BackupJob) -> str | None:
        on_windows = host.platform == "windows"
        if on_windows != (job.provider in WINDOWS_PROVIDERS):
            where = "Windows hosts only" if job.provider in WINDOWS_PROVIDERS else "Linux hosts"
            return f"{job.provider} jobs are checked on {where}, not on {host.platform}"
        if job.password is not None:
            try:
                password = resolve_secret(job.password, self.root)
            except SecretError as exc:
                return f"the repository password cannot be read: {exc}"
            if any(c in password for c in "\r\n\0"):
                return "the repository password holds a line break (a file saved with CRLF?)"
        return None

    def probe(self, host: Host, plan: BackupPlan) -> Probe | str | None:
        """Every job's provider commands in one script; passwords on stdin. Windows
        hosts run one PowerShell probe (its providers need no password)."""
        if host.platform == "windows":
            jobs = _windows_jobs(plan)
            return windows.probe_script(jobs) if jobs else None
        lines = [CAPTURE_FUNCTION]
        secrets: list[str] = []
        for index, item in enumerate(plan.jobs):
            job = item.job
            if item.problem is not None:
                continue
            secret = ""
            if job.password is not None:
                try:
                    value = resolve_secret(job.password, self.root)
                except SecretError:
                    continue  # unreadable since the plan read it: this job gets no answer
                secret = secret_variable(len(secrets))
                secrets.append(value)
            if job.provider == "restic":
                assert job.repository is not None
                lines.append(
                    restic.commands(
                        index,
                        job.repository,
                        secret=secret,
                        check=item.check_integrity,
                        read_data_subset=job.read_data_subset,
                        own_only=job.own_backups_only,
                    )
                )
            elif job.provider == "borg":
                assert job.repository is not None
                lines.append(
                    borg.commands(
                        index,
                        job.repository,
                        secret=secret,
                        check=item.check_integrity,
                        own_only=job.own_backups_only,
                    )
                )
            else:
                assert job.path is not None
                lines.append(fileage.commands(index, job.path))
        if len(lines) == 1:
            return None
        return Probe("".join(lines), tuple(secrets))

    def judge(self, host: Host, plan: BackupPlan, result: CommandResult | None) -> HostFindings:
        """One finding per job."""
        if result is not None and result.error is not None and result.rc is None:
            return HostFindings(self.kind, host.name, (), f"{result.error}: {result.message}")
        on_windows = host.platform == "windows"
        captured = read_captures(result.stdout) if result is not None and not on_windows else {}
        answered = (
            windows.parse(result.stdout, result.stderr, result.rc, jobs=_windows_jobs(plan))
            if result is not None and on_windows
            else {}
        )
        findings = []
        for index, item in enumerate(plan.jobs):
            own = {name: c for (job, name), c in captured.items() if job == index}
            why = result.message if result is not None else "the probe did not run"
            if item.problem is not None:
                facts = JobFacts(item.job.provider, problem=Problem("error", item.problem))
            elif on_windows:
                facts = answered.get(index) or JobFacts(
                    item.job.provider, problem=Problem("error", f"no answer ({why})")
                )
            elif not own:
                facts = JobFacts(item.job.provider, problem=Problem("error", f"no answer ({why})"))
            else:
                facts = _PARSERS[item.job.provider](own)
            findings.append(self._finding(item, facts))
        return HostFindings(self.kind, host.name, tuple(findings))

    def _finding(self, item: JobPlan, facts: JobFacts) -> Finding:
        state, why = judge_job(item, facts, self.now)
        status = _STATUS[state]
        if status is FindingStatus.FAIL and item.waiver is not None:
            status = FindingStatus.WAIVED
        integrity = dict(item.last_integrity) if item.last_integrity else None
        if facts.integrity is not None:
            integrity = {"at": self.now.isoformat(), **facts.integrity.as_dict()}
        age = self.now - facts.last_success if facts.last_success else None
        return Finding(
            item.job.name,
            item.policy.name,
            status,
            observed=(
                f"last good backup {human_age(age)} ago" if age is not None else "no good backup"
            ),
            expected=f"a backup younger than {format_duration(item.rpo)}",
            reason=why,
            waiver=item.waiver.name if status is FindingStatus.WAIVED and item.waiver else None,
            detail={
                **facts.as_dict(),
                "state": state,
                "provider": item.job.provider,
                "repository": item.job.repository or item.job.path,
                "rpo_seconds": int(item.rpo.total_seconds()),
                "age_seconds": int(age.total_seconds()) if age is not None else None,
                "integrity": integrity,
            },
        )

    def changes(self, host: Host, plan: BackupPlan, findings: HostFindings) -> Sequence[Change]:
        """Nothing to change automatically: a missing backup needs a person."""
        return ()


def _windows_jobs(plan: BackupPlan) -> list[tuple[int, str, str | None]]:
    """(index, provider, Veeam job) of each job the Windows probe reads."""
    return [
        (i, item.job.provider, item.job.veeam_job)
        for i, item in enumerate(plan.jobs)
        if item.problem is None
    ]


def judge_job(item: JobPlan, facts: JobFacts, now: datetime) -> tuple[JobState, str]:
    """The job's state and why, in words."""
    job = item.job
    listed = facts.latest is not None or facts.count is not None
    if facts.problem is not None and facts.problem.kind == "locked" and listed:
        # Only the integrity check met the lock (a backup running): judge the backups.
        state, why = judge_job(item, replace(facts, problem=None), now)
        return state, f"{why} (integrity check skipped: {facts.problem.message})"
    if facts.problem is not None:
        if facts.problem.kind == "no-repository":
            return "missing", f"no repository: {facts.problem.message}"
        if facts.problem.kind == "unreadable":
            # It exists and the password opens nothing: what a restore would meet.
            return "failed", f"the repository cannot be read: {facts.problem.message}"
        return "unchecked", f"could not check ({facts.problem.kind}): {facts.problem.message}"
    if facts.integrity is not None and not facts.integrity.ok:
        return "failed", f"the repository failed its integrity check: {facts.integrity.message}"
    last = item.last_integrity
    if facts.integrity is None and last is not None and not last.get("ok"):
        return "failed", (
            f"the repository failed its last integrity check ({str(last.get('at'))[:10]}): "
            f"{last.get('message', '')}"
        )
    latest = facts.latest
    if latest is None:
        return "missing", "the repository holds no backup"
    if facts.last_success is not None and facts.last_success - now > FUTURE_TOLERANCE:
        return "unchecked", (
            f"the last backup is dated {facts.last_success:%Y-%m-%d %H:%M} UTC, in the future: "
            "a clock is wrong, and its age cannot be judged"
        )
    if latest.result == "failed" and facts.last_success is None:
        return "failed", f"the last backup failed ({latest.message}) and none succeeded"
    if latest.result == "failed":
        return "failed", f"the last backup failed: {latest.message}"
    if facts.last_success is None:
        return "missing", "no backup succeeded"
    age = now - facts.last_success
    if age > item.rpo:
        return "stale", (
            f"the last good backup is {human_age(age)} old, past the RPO of "
            f"{format_duration(item.rpo)}"
        )
    if job.min_files is not None and latest.files is not None and latest.files < job.min_files:
        return "failed", f"the last backup holds {latest.files} files, fewer than {job.min_files}"
    if job.min_size_mb is not None and latest.size_bytes is not None:
        size_mb = latest.size_bytes / 1_000_000
        if size_mb < job.min_size_mb:
            return "failed", f"the last backup is {size_mb:.1f} MB, less than {job.min_size_mb} MB"
    unknown = [
        floor
        for floor, value, measured in (
            ("min_files", job.min_files, latest.files),
            ("min_size_mb", job.min_size_mb, latest.size_bytes),
        )
        if value is not None and measured is None
    ]
    note = f" ({', '.join(unknown)} not judged: this restic records no size)" if unknown else ""
    return "ok", f"the last good backup is {human_age(age)} old{note}"


def human_age(age: timedelta) -> str:
    """``3d 4h``, ``5h 12m``, ``12m``: an age to read at a glance."""
    minutes = max(0, int(age.total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {minutes}m" if hours else f"{minutes}m"
