"""Policy kinds: what must be maintained, where, when, and what the contract promises.

Each YAML document under ``policies/`` is one policy; ``kind:`` picks its model:

- ``patch``: OS/application updates (approvals, windows, reboots, rings, checks)
- ``backup``: verify backups are recent, sane and restorable (RPO)
- ``baseline``: audit (and optionally remediate) hardening rule packs
- ``contract``: the SLA a client bought (patch deadlines, RPO, baseline floor)
- ``waiver``: an approved, expiring exception to a rule, package or backup job
- ``rulepack``: baseline rules as data (see :mod:`mspauto.baseline.rules`)
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from mspauto.baseline.rules import RulePack
from mspauto.fields import (
    CronExpression,
    Duration,
    Name,
    Port,
    ScheduleZone,
    SecretRef,
    StrictModel,
    TimeOfDay,
    WholeNumber,
    item_error,
)
from mspauto.inventory.selectors import Selector

__all__ = [
    "ApprovalRule",
    "BackupJob",
    "BackupPolicy",
    "BaselinePolicy",
    "Contract",
    "NotificationPolicy",
    "PatchPolicy",
    "RulePack",
    "Schedule",
    "Severity",
    "Waiver",
]

Severity = Literal["critical", "high", "medium", "low", "unrated"]
SEVERITIES: tuple[Severity, ...] = ("critical", "high", "medium", "low", "unrated")
Classification = Literal["security", "bugfix", "enhancement", "definition", "driver", "other"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Schedule(StrictModel):
    """When a policy runs: a cron expression read in a time zone.

    ``timezone: client`` reads the cron in each targeted client's own zone, so one
    policy can mean "02:00 local" for clients on different continents.
    """

    cron: CronExpression
    timezone: ScheduleZone
    catch_up: bool = Field(
        default=True,
        description=(
            "a time missed while the control node was down runs once when it is back, "
            "if the next time has not come yet (otherwise it is recorded as skipped)"
        ),
    )


class MaintenanceWindow(StrictModel):
    """When changes may be made, in the client's local time."""

    days: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS), min_length=1)
    start: TimeOfDay
    duration: Duration

    @field_validator("duration")
    @classmethod
    def _within_a_week(cls, value: timedelta) -> timedelta:
        if not timedelta(minutes=15) <= value <= timedelta(days=7):
            raise ValueError("a maintenance window lasts between 15m and 7d")
        return value


class _PolicyBase(StrictModel):
    name: Name
    description: str | None = None


class _TargetedPolicy(_PolicyBase):
    targets: Selector
    schedule: Schedule
    enabled: bool = True


class ApprovalMatch(StrictModel):
    """Which updates an approval rule covers; empty lists match everything."""

    severities: list[Severity] = Field(default_factory=list)
    classifications: list[Classification] = Field(default_factory=list)
    names: list[str] = Field(
        default_factory=list, description="regular expressions on the package/KB name"
    )
    known_exploited: bool | None = Field(
        default=None,
        description="true: only updates fixing a CVE in CISA's KEV catalogue; false: only "
        "others; unset: either",
    )

    @field_validator("names")
    @classmethod
    def _valid_regexes(cls, value: list[str]) -> list[str]:
        for index, pattern in enumerate(value):
            try:
                re.compile(pattern)
            except (re.error, OverflowError, RecursionError) as exc:
                raise item_error(
                    f"'{pattern}' is not a valid regular expression: {exc}", at=index
                ) from None
        return value


class ApprovalRule(StrictModel):
    """What to do with matching updates. The first matching rule wins."""

    match: ApprovalMatch = Field(default_factory=ApprovalMatch)
    action: Literal["auto", "manual", "defer", "reject"]
    defer: Duration | None = None

    @model_validator(mode="after")
    def _defer_needs_delay(self) -> ApprovalRule:
        if self.action == "defer" and self.defer is None:
            raise item_error("action 'defer' needs 'defer: <duration>' (e.g. 7d)", at="action")
        if self.action != "defer" and self.defer is not None:
            raise item_error("'defer' only goes with action: defer", at="defer")
        return self


class RebootSettings(StrictModel):
    """Whether and when hosts reboot after patching."""

    policy: Literal["never", "if-required", "always"] = "if-required"
    window: MaintenanceWindow | None = None
    reconnect_wait: Duration = Field(
        default=timedelta(minutes=10),
        description="how long a rebooting host may take to answer again",
    )

    @field_validator("reconnect_wait")
    @classmethod
    def _a_sane_wait(cls, value: timedelta) -> timedelta:
        if not timedelta(minutes=1) <= value <= timedelta(hours=2):
            raise ValueError("a reconnect wait lasts between 1m and 2h")
        return value


class RolloutStage(StrictModel):
    """One ring of a staged rollout; later rings wait for this one."""

    ring: Name
    stop_if_failed_percent: float = Field(default=10, ge=0, le=100)
    wait: Duration = timedelta(0)


class HealthChecks(StrictModel):
    """Checked before and after patching; a failure stops the host's patching."""

    services: list[str] = Field(default_factory=list)
    min_free_disk_mb: WholeNumber | None = Field(default=None, ge=0)
    commands: list[str] = Field(default_factory=list)


class PatchPolicy(_TargetedPolicy):
    """Install approved updates in the maintenance window (``schedule`` is the install
    run; ``scan_schedule`` the read-only scan)."""

    kind: Literal["patch"]
    scan_schedule: Schedule | None = None
    window: MaintenanceWindow | None = None
    approvals: list[ApprovalRule] = Field(
        default_factory=lambda: [ApprovalRule(action="auto")], min_length=1
    )
    holds: list[str] = Field(default_factory=list, description="package/KB name patterns")
    reboot: RebootSettings = Field(default_factory=RebootSettings)
    rollout: list[RolloutStage] = Field(default_factory=list)
    pre_checks: HealthChecks = Field(default_factory=HealthChecks)
    post_checks: HealthChecks = Field(default_factory=HealthChecks)
    retries: WholeNumber = Field(default=1, ge=0, le=5)
    catch_up: bool = Field(
        default=True, description="patch hosts that were offline in their window at next sight"
    )


BackupProvider = Literal[
    "restic", "borg", "windows-server-backup", "veeam-agent", "veeam-br", "file-age"
]


class BackupJob(StrictModel):
    """One backup whose results are checked on each targeted host."""

    name: Name
    provider: BackupProvider
    repository: str | None = None
    password: SecretRef | None = None
    path: str | None = None
    own_backups_only: bool = Field(
        default=False,
        description=(
            "a repository several hosts back up to: count only this host's backups "
            "(restic: snapshots whose host is the host's name; borg: archives named "
            "'<hostname>-...')"
        ),
    )
    veeam_job: str | None = Field(
        default=None,
        description="veeam-br: the Veeam job's name; veeam-agent: only this job's events",
    )
    rpo: Duration | None = None
    min_files: WholeNumber | None = Field(default=None, ge=0)
    min_size_mb: float | None = Field(default=None, ge=0)
    integrity_every: Duration = Field(
        default=timedelta(days=7),
        description="how often the repository's integrity is checked (restic/borg check)",
    )
    read_data_subset: str | None = Field(
        default=None,
        pattern=r"^([0-9]+(\.[0-9]+)?%|[0-9]+/[0-9]+|[0-9]+[KMGT]?)$",
        description="restic: also read this part of the data when checking (5%, 1/10, 500M)",
    )

    @model_validator(mode="after")
    def _provider_needs(self) -> BackupJob:
        if self.provider in {"restic", "borg"} and not self.repository:
            raise item_error(f"provider {self.provider} needs 'repository'", at="provider")
        if self.repository and re.search(r"(^|[:/@])-", self.repository):
            raise item_error(
                "no part of a repository location may start with '-': restic and borg "
                "would hand it to ssh as an option",
                at="repository",
            )
        if self.provider == "borg" and self.repository and "::" in self.repository:
            raise item_error(
                "a borg repository, not an archive: leave out '::ARCHIVE'", at="repository"
            )
        floors = [f for f in ("min_files", "min_size_mb") if getattr(self, f) is not None]
        if floors and self.provider != "restic":
            raise item_error(
                f"{floors[0]}: {self.provider} reports no file count or size to compare "
                "(only restic 0.17 and later does)",
                at=floors[0],
            )
        if self.provider == "veeam-br" and not self.veeam_job:
            raise item_error(
                "provider veeam-br needs 'veeam_job' (the job's name as Veeam shows it)",
                at="provider",
            )
        if self.provider == "restic" and self.password is None:
            raise item_error(
                "provider restic needs 'password' (a reference such as {file: PATH}: "
                "every restic repository is encrypted)",
                at="provider",
            )
        if self.provider == "file-age" and not self.path:
            raise item_error(
                "provider file-age needs 'path' (the file or folder to age)", at="provider"
            )
        return self


class RestoreTest(StrictModel):
    """Periodic restore of sample paths into a scratch folder, compared by hash."""

    every: Duration = timedelta(days=90)
    sample_paths: list[str] = Field(min_length=1)


class BackupPolicy(_TargetedPolicy):
    """Verify that backups ran, are recent enough and are restorable."""

    kind: Literal["backup"]
    jobs: list[BackupJob] = Field(min_length=1)
    rpo: Duration = timedelta(hours=24)
    restore_test: RestoreTest | None = None


class BaselinePolicy(_TargetedPolicy):
    """Audit hosts against hardening rule packs."""

    kind: Literal["baseline"]
    packs: list[Name] = Field(min_length=1)
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="rule id -> expected value for these hosts"
    )
    remediate: Literal["never", "on-request", "auto"] = "on-request"


def _default_deadlines() -> dict[Severity, timedelta]:
    # UK Cyber Essentials: 14 days for critical, high and unrated fixes; the rest follow
    # common MSP contracts (PCI DSS allows a month for what is not critical).
    return {
        "critical": timedelta(days=14),
        "high": timedelta(days=14),
        "medium": timedelta(days=30),
        "low": timedelta(days=60),
        "unrated": timedelta(days=14),
    }


class Contract(_PolicyBase):
    """The service levels promised to a client; reports are judged against these."""

    kind: Literal["contract"]
    patch_deadlines: dict[Severity, Duration] = Field(default_factory=_default_deadlines)
    patch_clock_starts: Literal["release", "detection"] = "release"
    rpo: Duration = timedelta(hours=24)
    backup_success_percent: float = Field(default=95, ge=0, le=100)
    restore_test_every: Duration = timedelta(days=90)
    baseline_score_floor: float = Field(default=80, ge=0, le=100)
    coverage_floor_percent: float = Field(default=95, ge=0, le=100)
    report_schedule: Schedule = Field(
        default_factory=lambda: Schedule(cron="0 6 1 * *", timezone="client"),
        description="when the control node makes last month's report (default: the 1st, 06:00)",
    )

    @field_validator("patch_deadlines")
    @classmethod
    def _every_severity(cls, value: dict[Severity, timedelta]) -> dict[Severity, timedelta]:
        missing = [s for s in SEVERITIES if s not in value]
        if missing:
            raise ValueError("give a deadline for every severity; missing: " + ", ".join(missing))
        for severity, deadline in value.items():
            if deadline <= timedelta(0):
                raise item_error(
                    "a deadline of 0 makes every update late the moment it is released; "
                    "give the time the contract allows (e.g. 14d)",
                    at=severity,
                )
        return value

    @field_validator("rpo", "restore_test_every")
    @classmethod
    def _longer_than_nothing(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than 0 (e.g. 24h)")
        return value


class Waiver(_PolicyBase):
    """An approved exception: a rule, package or backup job excused on some hosts."""

    kind: Literal["waiver"]
    rule: str | None = None
    package: str | None = None
    backup_job: Name | None = None
    targets: Selector
    justification: str = Field(min_length=10)
    approved_by: str = Field(min_length=1)
    approved_on: date
    expires: date

    @model_validator(mode="after")
    def _one_subject_and_sane_dates(self) -> Waiver:
        subjects = [s for s in ("rule", "package", "backup_job") if getattr(self, s)]
        if len(subjects) != 1:
            raise item_error(
                "a waiver covers exactly one of rule, package or backup_job",
                at=subjects[1] if subjects else None,
            )
        if self.expires <= self.approved_on:
            raise item_error("must be after approved_on", at="expires")
        return self

    @property
    def subject(self) -> str:
        """``rule:ID``, ``package:NAME`` or ``backup_job:NAME``."""
        for field in ("rule", "package", "backup_job"):
            value = getattr(self, field)
            if value:
                return f"{field}:{value}"
        raise AssertionError("validated to have one subject")


NotificationEvent = Literal["run-failed", "sla-breached", "waiver-expiring", "report-ready"]
NOTIFICATION_EVENTS: tuple[NotificationEvent, ...] = (
    "run-failed",
    "sla-breached",
    "waiver-expiring",
    "report-ready",
)
_ADDRESS = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+$")


class EmailChannel(StrictModel):
    """Email over SMTP (STARTTLS when asked; a login when a user is given)."""

    to: list[str] = Field(min_length=1)
    sender: str = Field(alias="from")
    server: str = Field(min_length=1)
    port: Port = 25
    starttls: bool = False
    username: str | None = None
    password: SecretRef | None = None

    @field_validator("to", "sender")
    @classmethod
    def _addresses(cls, value: Any) -> Any:
        for address in value if isinstance(value, list) else [value]:
            if not _ADDRESS.match(address):
                raise ValueError(f"'{address}' is not an email address (name@domain)")
        return value


class WebhookChannel(StrictModel):
    """A JSON POST: ``{"text": ...}`` is what Slack and Teams incoming webhooks show;
    the event's fields are under ``mspauto``."""

    url: str = Field(pattern=r"^https?://[^\s]+$")


class NotificationPolicy(_PolicyBase):
    """Who hears about which of the control node's events, for which clients. Each event
    is sent once per channel (a failed delivery is retried, and recorded)."""

    kind: Literal["notification"]
    clients: list[str] = Field(min_length=1, description="client names, or '*' for every client")
    events: list[NotificationEvent] = Field(
        default_factory=lambda: list(NOTIFICATION_EVENTS), min_length=1
    )
    email: EmailChannel | None = None
    webhook: WebhookChannel | None = None
    psa: PsaChannel | None = Field(
        default=None, description="a ticket per SLA breach in the MSP's PSA"
    )
    waiver_warning: Duration = Field(
        default=timedelta(days=14), description="how long before a waiver expires to say so"
    )

    @model_validator(mode="after")
    def _a_channel(self) -> NotificationPolicy:
        if self.email is None and self.webhook is None and self.psa is None:
            raise item_error("give 'email', 'webhook' or 'psa': where to send", at=None)
        return self

    def covers(self, client: str) -> bool:
        return "*" in self.clients or client in self.clients


_API_URL = r"^https?://[^\s]+$"


class _Psa(StrictModel):
    url: str = Field(pattern=_API_URL, description="the API's base URL")
    companies: dict[Name, str] = Field(
        min_length=1, description="mspauto client -> the PSA's id of that company or client"
    )
    timeout: float = Field(default=30, gt=0, le=300, description="seconds per API call")


class ConnectWisePsa(_Psa):
    """ConnectWise Manage (PSA): ``POST {url}/service/tickets``, Basic auth
    ``company+public_key:private_key`` and a ``clientId`` header."""

    system: Literal["connectwise"]
    company: str = Field(min_length=1, description="the login company id")
    public_key: str = Field(min_length=1)
    private_key: SecretRef
    client_id: str = Field(min_length=1, description="the integration's clientId (a GUID)")
    board: str = Field(min_length=1, description="the service board's name")


class AutotaskPsa(_Psa):
    """Autotask REST: ``POST {url}/Tickets`` with the ApiIntegrationCode, UserName and
    Secret headers (``url`` is the zone's, e.g. .../atservicesrest/v1.0)."""

    system: Literal["autotask"]
    integration_code: SecretRef
    username: str = Field(min_length=1)
    secret: SecretRef
    queue_id: int | None = None
    priority: int = 2


class HaloPsa(_Psa):
    """HaloPSA: ``POST {url}/api/Tickets`` (a JSON array), OAuth2 client credentials
    from ``auth_url`` (``.../auth/token``)."""

    system: Literal["halopsa"]
    auth_url: str = Field(pattern=_API_URL)
    client_id: str = Field(min_length=1)
    client_secret: SecretRef
    ticket_type_id: int | None = None


PsaChannel = Annotated[ConnectWisePsa | AutotaskPsa | HaloPsa, Field(discriminator="system")]


NotificationPolicy.model_rebuild()
