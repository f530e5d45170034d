"""What the control node runs on a schedule: one job per client and scheduled thing.

Each enabled patch, backup and baseline policy gives a job per client it selects hosts
of (a patch policy with a ``scan_schedule`` gives a second, read-only one), and each
client's contract gives the monthly report. A job's run is the same command a tech
would type (``mspauto patch --client acme --hosts web1 ...``): the scheduler only
decides when, so a scheduled run and a manual one are the same pipeline and evidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from mspauto.policy.models import (
    BackupPolicy,
    BaselinePolicy,
    MaintenanceWindow,
    PatchPolicy,
    Schedule,
)
from mspauto.project import Project
from mspauto.sla.period import previous_month

__all__ = ["Job", "job_client", "job_parts", "jobs_of"]

ACTIONS = ("patch", "patch-scan", "backup", "backup-drill", "baseline", "report")
"""What a job does: install patches, scan for them, check backups, drill restores when
due, audit, report."""


@dataclass(frozen=True)
class Job:
    """One scheduled thing for one client."""

    client: str
    policy: str
    """The policy's name (the contract's, for the report)."""
    action: str
    cron: str
    zone: str
    """The IANA zone the cron is read in (``timezone: client`` resolved)."""
    catch_up: bool
    hosts: tuple[str, ...] = ()
    """The client's hosts the policy selects; empty: every host (or a report)."""
    remediate: bool = False
    """A baseline policy with ``remediate: auto``."""
    window: MaintenanceWindow | None = None
    """A patch install's maintenance window (a missed tick runs late only inside it)."""
    window_zone: str = "UTC"
    """The client's zone, where the window is read."""

    @property
    def name(self) -> str:
        return f"{self.client}/{self.policy}/{self.action}"

    def run_key(self, due: datetime) -> str:
        """The tick's key: the same for every scheduler that sees this tick, so it is
        run once whoever stamps it first."""
        return f"{self.name}@{due:%Y-%m-%dT%H:%MZ}"

    def command(self, due: datetime) -> list[str]:
        """The mspauto arguments of the tick's run (after ``mspauto --project P``)."""
        selection = [arg for host in self.hosts for arg in ("--hosts", host)]
        client = ["--client", self.client]
        json = ["--format", "json"]
        if self.action == "patch":
            return ["patch", *client, *selection, *json]
        if self.action == "patch-scan":
            return ["patch", *client, "--dry-run", *selection, *json]
        if self.action == "backup":
            return ["backups", *client, *selection, *json]
        if self.action == "backup-drill":
            return ["backups", "restore-test", *client, "--due", *selection, *json]
        if self.action == "baseline":
            remediate = ["--remediate"] if self.remediate else []
            return ["baseline", *client, *remediate, *selection, *json]
        # The report of the month that ended before the tick, where the client is.
        month = previous_month(due.astimezone(ZoneInfo(self.zone)).strftime("%Y-%m"))
        return ["report", *client, "--month", month, *json]


def job_parts(name: str) -> tuple[str, str, str]:
    """A :attr:`Job.name`'s client, policy and action (names never hold '/')."""
    client, policy, action = name.split("/", 2)
    return client, policy, action


def job_client(name: str) -> str:
    """Whose job a :attr:`Job.name` is."""
    return job_parts(name)[0]


def jobs_of(project: Project) -> list[Job]:
    """Every job of every client, in client and job order."""
    contracts = project.contracts()
    jobs: list[Job] = []
    for client in sorted(project.inventory.clients.values(), key=lambda c: c.name):
        zone = client.spec.timezone
        hosts = sorted(client.hosts.values(), key=lambda h: h.name)
        for loaded in project.policies:
            policy = loaded.policy
            if not isinstance(policy, PatchPolicy | BackupPolicy | BaselinePolicy):
                continue
            if not policy.enabled:
                continue
            chosen = tuple(h.name for h in hosts if policy.targets.matches(h))
            if not chosen:
                continue
            selection = () if len(chosen) == len(hosts) else chosen
            remediate = isinstance(policy, BaselinePolicy) and policy.remediate == "auto"
            runs: list[tuple[str, Schedule]] = [(policy.kind, policy.schedule)]
            if isinstance(policy, PatchPolicy) and policy.scan_schedule is not None:
                runs.append(("patch-scan", policy.scan_schedule))
            if isinstance(policy, BackupPolicy) and policy.restore_test is not None:
                # Looked at with each check; a drill runs when its 'every' has passed.
                runs.append(("backup-drill", policy.schedule))
            for action, schedule in runs:
                window = policy.window if isinstance(policy, PatchPolicy) else None
                jobs.append(
                    Job(
                        client.name,
                        policy.name,
                        action,
                        schedule.cron,
                        zone if schedule.timezone == "client" else schedule.timezone,
                        schedule.catch_up,
                        selection,
                        remediate,
                        window if action == "patch" else None,
                        zone,
                    )
                )
        contract = contracts.get(client.spec.contract)
        if contract is not None:
            report = contract.report_schedule
            jobs.append(
                Job(
                    client.name,
                    contract.name,
                    "report",
                    report.cron,
                    zone if report.timezone == "client" else report.timezone,
                    report.catch_up,
                )
            )
    return jobs
