"""Scan and patch a client: facts, decisions, the installs ring by ring, the scans after.

``scan_client`` is the read-only half (``mspauto patch --dry-run``): one probe per host
through the check pipeline, each update decided and recorded.

``patch_client`` then installs what each host's policy approves, ring by ring, inside
the maintenance window (or outside it when the caller forces it with a reason, which
is recorded). Each install is one Ansible run through the engine (a ``patch-change``
run, never retried inside the run: a lost connection may hide an install that already
ran), followed by a scan whose ``change_result`` records say, per approved update,
whether it is now installed, with the versions before and after. What failed is tried
again, each update alone; hosts reboot as the policy says (a ``patch-reboot`` run and a
scan after it); a ring over its failure threshold stops the rollout, recorded in a
``patch_rollout`` record that holds later runs back until a person resumes.

While an apt host installs, every other pending package (held, deferred, waiting for a
person, rejected, waived) is pinned at its version by APT preferences that apt reads for
those commands only, so a dependency cannot pull it up and nothing stays held if the
run is stopped half-way. dnf hosts ``--exclude`` them the same way.
"""

from __future__ import annotations

import importlib.util
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

from mspauto.checks.pipeline import (
    CheckRun,
    ClientScope,
    RunOptions,
    run_checks,
    scope_client,
)
from mspauto.engine import Executor, RunOutcome, RunSpec, run_command
from mspauto.evidence.records import (
    ChangeOutcome,
    ChangeResult,
    FindingStatus,
    HostFindings,
    RecordKind,
    RunStatus,
    read_host_findings,
)
from mspauto.evidence.store import EvidenceStore, NewRecord
from mspauto.fields import format_duration
from mspauto.inventory.resolve import Client, Host
from mspauto.patching.check import (
    APT_NAME,
    APT_VERSION,
    CHECK_SUBJECTS,
    DNF_SPEC,
    MANAGER_OF_PLATFORM,
    REBOOT_SUBJECT,
    PatchCheck,
    PatchPlan,
    decisions_of,
)
from mspauto.patching.facts import PendingUpdate, parse_time
from mspauto.patching.planner import WindowState, window_state
from mspauto.patching.severity import SeveritySources
from mspauto.policy.models import Contract, PatchPolicy, RolloutStage
from mspauto.project import Project
from mspauto.transport.ansible import TaskOutcome, task_outcomes
from mspauto.transport.base import Transport

__all__ = [
    "Dispatch",
    "PatchReport",
    "first_detections",
    "has_patch_policy",
    "install_play",
    "patch_client",
    "patched_hosts",
    "reboot_play",
    "scan_client",
    "worker_play",
]

Dispatch = Callable[[Mapping[str, Any]], Executor]
"""Who carries out each run of a patch run, given what the run is (a job of
:mod:`mspauto.distributed.jobs`): workers, for ``--distributed``."""

APT_ENVIRONMENT = {
    "DEBIAN_FRONTEND": "noninteractive",
    # needrestart (Ubuntu 22.04+) asks which services to restart unless told: list only.
    "NEEDRESTART_MODE": "l",
    "NEEDRESTART_SUSPEND": "1",
    "LC_ALL": "C",
}
DNF_TASKS = Path(__file__).resolve().parent / "playbooks" / "dnf.yml"
"""The packaged dnf install task file (docs/patching-dnf.md)."""


@dataclass
class InstallRound:
    """One install run (a ring's first try or a retry) and the scan after it."""

    ring: str | None
    attempt: int
    """1 for the first try, 2 and up for retries of what failed."""
    install: RunOutcome
    outcomes: dict[str, list[TaskOutcome]] = field(default_factory=dict)
    after: CheckRun[PatchPlan] | None = None
    ended: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True)
class StageResult:
    """How one ring of one policy's rollout went in this run."""

    policy: str
    ring: str | None
    hosts: tuple[str, ...]
    """The ring's hosts that had something to install or could not be patched."""
    failed: tuple[str, ...]
    threshold: float | None
    stopped: str | None = None
    """Why the rollout stopped after this ring (failures over the threshold), or None."""

    @property
    def failed_percent(self) -> float:
        """Share of the ring's hosts that failed."""
        return 100 * len(self.failed) / len(self.hosts) if self.hosts else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Evidence and JSON form."""
        return {
            "policy": self.policy,
            "ring": self.ring,
            "hosts": list(self.hosts),
            "failed": list(self.failed),
            "failed_percent": round(self.failed_percent, 1),
            "threshold": self.threshold,
            "stopped": self.stopped,
        }


@dataclass
class PatchReport:
    """A client's patch scan, and the installs (ring by ring) and scans after them."""

    client: str
    now: datetime
    scan: CheckRun[PatchPlan]
    window: dict[str, WindowState] = field(default_factory=dict)
    """Per host: its policy's maintenance window at ``now``."""
    forced: str | None = None
    """Why the window was overridden (``--force-window --reason``)."""
    rounds: list[InstallRound] = field(default_factory=list)
    stages: list[StageResult] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    """Rings that may not go yet, each with when it may."""
    installed: dict[str, list[ChangeOutcome]] = field(default_factory=dict)
    """Per host: each approved update and whether it is installed now."""
    latest: dict[str, HostFindings] = field(default_factory=dict)
    """Per host: its latest scan (after its last install, else the first scan)."""
    latest_run: dict[str, str] = field(default_factory=dict)
    """Per host: the run that recorded its latest scan (a worker installs from it)."""
    unsupported: dict[str, str] = field(default_factory=dict)
    """Hosts with approved updates that mspauto cannot install yet, and why."""
    reboots: dict[str, str] = field(default_factory=dict)
    """Per host: ``rebooted``, or why not (``deferred: ...``, ``pending: ...``,
    ``failed: ...``)."""
    reboot_runs: list[RunOutcome] = field(default_factory=list)
    reboot_scans: list[CheckRun[PatchPlan]] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    """Policies whose rollout stopped in an earlier run and waits for a person."""
    refused: str | None = None
    """Why nothing was installed at all (the scan could not be recorded)."""
    dry_run: bool = True

    def __post_init__(self) -> None:
        for findings in self.scan.hosts:
            self.latest.setdefault(findings.host, findings)
            self.latest_run.setdefault(findings.host, self.scan.run_id or "")

    def approved(self, host: str) -> list[PendingUpdate]:
        """The updates the policy approves on ``host`` at its latest scan."""
        findings = self.latest.get(host)
        if findings is None or findings.unchecked:
            return []
        return [u for u, d in decisions_of(findings) if d["action"] == "install"]

    def reboot_state(self, host: str) -> bool | None:
        """Whether the host's latest scan says a reboot is pending (None: cannot tell)."""
        findings = self.latest.get(host)
        for finding in findings.findings if findings else ():
            if finding.subject == REBOOT_SUBJECT:
                return {"fail": True, "pass": False}.get(str(finding.status))
        return None

    def check_failed(self, host: str) -> str | None:
        """Why the host's latest pre- or post-checks failed, or None."""
        findings = self.latest.get(host)
        for finding in findings.findings if findings else ():
            if finding.subject in CHECK_SUBJECTS.values() and finding.status == "fail":
                return f"{finding.subject} failed: {finding.observed}"
        return None

    @property
    def stopped(self) -> list[StageResult]:
        """Rings whose failures stopped their rollout."""
        return [s for s in self.stages if s.stopped]

    @property
    def failed_hosts(self) -> list[str]:
        """Hosts where an approved update did not install, or whose post-checks failed."""
        return sorted({host for stage in self.stages for host in stage.failed})

    @property
    def install_run_ids(self) -> list[str]:
        """Every install run of this patch run, in order."""
        return [r.install.run_id for r in self.rounds]

    def as_dict(self) -> dict[str, Any]:
        """Machine-readable form (``--format json``)."""
        hosts = []
        for findings in self.scan.hosts:
            latest = self.latest[findings.host]
            entry: dict[str, Any] = {
                "host": findings.host,
                "unchecked": findings.unchecked,
                "window": _window_dict(self.window.get(findings.host)),
                "updates": [{**u.as_dict(), "decision": d} for u, d in decisions_of(findings)],
                "reboot": next(
                    (
                        {"status": str(f.status), "reason": f.reason}
                        for f in latest.findings
                        if f.subject == REBOOT_SUBJECT
                    ),
                    None,
                ),
                "checks_failed": self.check_failed(findings.host),
                "reboot_done": self.reboots.get(findings.host),
            }
            if findings.host in self.installed:
                entry["installed"] = [o.as_dict() for o in self.installed[findings.host]]
                entry["pending_after"] = [u.name for u, _ in decisions_of(latest)]
            hosts.append(entry)
        return {
            "client": self.client,
            "now": self.now.isoformat(),
            "dry_run": self.dry_run,
            "scan_run_id": self.scan.run_id,
            "install_run_ids": self.install_run_ids,
            "reboot_run_ids": [r.run_id for r in self.reboot_runs],
            "forced_window": self.forced,
            "stages": [s.as_dict() for s in self.stages],
            "waiting": self.waiting,
            "held_rollouts": self.held,
            "refused": self.refused,
            "unsupported": self.unsupported,
            "failed_hosts": self.failed_hosts,
            "hosts": hosts,
        }


def _window_dict(state: WindowState | None) -> dict[str, Any] | None:
    if state is None:
        return None
    return {
        "open": state.open,
        "reason": state.reason,
        "closes": state.closes.isoformat() if state.closes else None,
        "opens": state.opens.isoformat() if state.opens else None,
    }


def patched_hosts(project: Project, hosts: Sequence[Host]) -> list[Host]:
    """The hosts an enabled patch policy selects and mspauto has a package manager for
    (network gear is never "up to date", just not patched by mspauto)."""
    return [
        h
        for h in hosts
        if h.platform in MANAGER_OF_PLATFORM
        and any(
            isinstance(p.policy, PatchPolicy) and p.policy.enabled and p.policy.targets.matches(h)
            for p in project.policies
        )
    ]


def has_patch_policy(project: Project, hosts: Sequence[Host]) -> bool:
    """True when some enabled patch policy selects one of ``hosts``."""
    return any(
        p.policy.kind == "patch"
        and getattr(p.policy, "enabled", True)
        and p.policy.targets.matches(h)  # type: ignore[attr-defined]
        for p in project.policies
        for h in hosts
    )


def first_detections(
    store: EvidenceStore | None, client: str, hosts: Iterable[str]
) -> dict[str, dict[str, datetime]]:
    """Host -> package -> when it was first seen pending, carried forward from each
    host's latest patch scan: an update pending then keeps its first detection; one
    not pending then (installed meanwhile, or new) starts again now."""
    return _history(store, client, hosts)[0]


def _history(
    store: EvidenceStore | None, client: str, hosts: Iterable[str]
) -> tuple[dict[str, dict[str, datetime]], dict[str, dict[str, datetime]]]:
    """From each host's latest patch scan: per pending update, its first detection and
    the earliest release time seen for it (Windows moves an update's release time with
    every revision; the clock must not restart with it)."""
    wanted = set(hosts)
    detected: dict[str, dict[str, datetime]] = {}
    released: dict[str, dict[str, datetime]] = {}
    if store is None:
        return detected, released
    for record in store.records(chain=client, kind=RecordKind.FINDINGS):
        if record.host not in wanted or record.payload.get("check") != "patch":
            continue
        findings = read_host_findings(record.kind, record.payload)
        if findings.unchecked:
            continue  # a failed scan says nothing about what was pending
        seen: dict[str, datetime] = {}
        first_release: dict[str, datetime] = {}
        for update, decision in decisions_of(findings):
            first = parse_time(str(decision.get("first_detected") or "")) or parse_time(
                record.recorded_at
            )
            if first is not None:
                seen[update.name] = first
            if update.released is not None:
                first_release[update.name] = update.released
        detected[record.host] = seen
        released[record.host] = first_release
    return detected, released


def _check(
    scope: ClientScope,
    store: EvidenceStore | None,
    now: datetime,
    sources: SeveritySources | None,
    lock_timeout: int,
) -> PatchCheck:
    return patch_check(
        store,
        scope.client.name,
        [s.host.name for s in scope.hosts],
        contract=scope.contract,
        now=now,
        sources=sources,
        lock_timeout=lock_timeout,
    )


def patch_check(
    store: EvidenceStore | None,
    client: str,
    hosts: Iterable[str],
    *,
    contract: Contract | None,
    now: datetime,
    sources: SeveritySources | None,
    lock_timeout: int,
    phase: Literal["pre", "post"] = "pre",
) -> PatchCheck:
    """The patch check of ``client``'s ``hosts`` at ``now``, carrying forward what their
    earlier scans saw (a worker builds it the same way, from the same store)."""
    detected, released = _history(store, client, hosts)
    return PatchCheck(
        now=now,
        contract=contract,
        first_detected=detected,
        first_released=released,
        rate=sources.apply if sources else None,
        lock_timeout=lock_timeout,
        sources=[s.as_dict() for s in sources.snapshots] if sources else (),
        phase=phase,
    )


def scan_job(
    now: datetime,
    lock_timeout: int,
    sources: SeveritySources | None,
    phase: str = "pre",
    today: date | None = None,
) -> dict[str, Any]:
    """What a worker needs to scan as this node would (:func:`patch_check`): the time
    decisions are made at, and which severity sources rate the updates (their hashes:
    a worker whose copies differ refuses)."""
    return {
        "kind": "check",
        "check": "patch",
        "today": (today or now.date()).isoformat(),
        "now": now.isoformat(),
        "phase": phase,
        "lock_timeout": lock_timeout,
        "sources": [s.sha256 for s in sources.snapshots] if sources else [],
    }


def scan_client(
    project: Project,
    client_name: str,
    hosts: Sequence[Host],
    transport: Transport,
    store: EvidenceStore | None,
    *,
    options: RunOptions | None = None,
    now: datetime | None = None,
    sources: SeveritySources | None = None,
    lock_timeout: int = 120,
    dispatch: Dispatch | None = None,
) -> PatchReport:
    """Scan ``hosts`` of one client: every pending update and its decision, recorded.
    With ``dispatch``, workers scan (:func:`scan_job`)."""
    now = now or datetime.now(UTC)
    options = options or RunOptions()
    if dispatch is not None:
        options = replace(options, executor=dispatch(scan_job(now, lock_timeout, sources)))
    client = project.inventory.clients[client_name]
    scope = scope_client(project, client, hosts, "patch", now.date())
    check = _check(scope, store, now, sources, lock_timeout)
    scan = run_checks(check, scope, transport, store, options)
    report = PatchReport(client_name, now, scan)
    for name, plan in scan.plans.items():
        zone = client.timezone_of(client.hosts[name])
        report.window[name] = window_state(plan.policy.window, zone, now)
    return report


def patch_client(
    project: Project,
    client_name: str,
    hosts: Sequence[Host],
    transport: Transport,
    install_transport: Transport,
    store: EvidenceStore | None,
    *,
    options: RunOptions | None = None,
    now: datetime | None = None,
    force_window: str | None = None,
    sources: SeveritySources | None = None,
    lock_timeout: int = 120,
    resume: str | None = None,
    dispatch: Dispatch | None = None,
) -> PatchReport:
    """Scan, then install what each host's policy approves, ring by ring: hosts whose
    window is open (or all, with ``force_window``, the recorded reason), that passed
    their pre-checks. Each install is followed by a scan (with the post-checks); what
    failed is retried up to the policy's ``retries``; hosts reboot as the policy says.
    A ring whose failed share passes its threshold stops its policy's rollout
    (recorded), and stays stopped in later runs until ``resume`` (a person's recorded
    reason) lets it go on; a ring's ``wait`` holds the next ring back, and the report
    says until when. With ``dispatch``, workers carry out every run (scans, installs,
    reboots); the rollout's decisions stay here."""
    options = options or RunOptions()
    report = scan_client(
        project,
        client_name,
        hosts,
        transport,
        store,
        options=options,
        now=now,
        sources=sources,
        lock_timeout=lock_timeout,
        dispatch=dispatch,
    )
    report.dry_run = False
    report.forced = force_window
    if report.scan.status is not RunStatus.COMPLETED:
        return report  # a stopped scan installs nothing: a stop means stop
    if report.scan.evidence_error:
        report.refused = (
            "nothing installed: the scan could not be recorded as evidence, and a change "
            "that leaves no evidence is not made"
        )
        return report
    rollout = _Rollout(
        project,
        report,
        project.inventory.clients[client_name],
        transport,
        install_transport,
        store,
        options,
        sources,
        lock_timeout,
        dispatch,
    )
    by_policy: dict[str, tuple[PatchPolicy, list[Host]]] = {}
    for host in hosts:
        plan = report.scan.plans.get(host.name)
        if plan is not None and (force_window is not None or report.window[host.name].open):
            by_policy.setdefault(plan.policy.name, (plan.policy, []))[1].append(host)
    client = project.inventory.clients[client_name]
    for policy, policy_hosts in by_policy.values():
        # Rings and their waits are the policy's whole fleet's, whatever --hosts chose.
        everyone = [h for h in client.hosts.values() if policy.targets.matches(h)]
        if not rollout.policy(policy, policy_hosts, everyone, resume=resume):
            break  # stopped (Ctrl-C, SIGTERM): nothing more is installed
    return report


def _stages(
    policy: PatchPolicy, hosts: Sequence[Host]
) -> list[tuple[RolloutStage | None, list[Host]]]:
    """The policy's rings in order, each with its hosts; hosts in no listed ring go
    with the last ring. Without a rollout, every host is one stage."""
    if not policy.rollout:
        return [(None, list(hosts))]
    rings = {stage.ring: index for index, stage in enumerate(policy.rollout)}
    staged: list[list[Host]] = [[] for _ in policy.rollout]
    for host in hosts:
        staged[rings.get(host.ring or "", len(policy.rollout) - 1)].append(host)
    return list(zip(policy.rollout, staged, strict=True))


@dataclass
class _Rollout:
    """What every step of one patch run shares."""

    project: Project
    report: PatchReport
    client: Client
    transport: Transport
    install_transport: Transport
    store: EvidenceStore | None
    options: RunOptions
    sources: SeveritySources | None
    lock_timeout: int
    dispatch: Dispatch | None

    def policy(
        self,
        policy: PatchPolicy,
        hosts: Sequence[Host],
        everyone: Sequence[Host],
        *,
        resume: str | None,
    ) -> bool:
        """Every ring of one policy, in order, installing on ``hosts`` (rings and waits
        are judged over ``everyone`` the policy selects); False when a run was stopped."""
        stopped = self.stopped_rollout(policy)
        if stopped is not None and resume is None:
            self.report.held.append(
                f"{policy.name}: the rollout stopped earlier ({stopped}); nothing is installed "
                "until a person resumes it: mspauto patch --client "
                f"{self.client.name} --resume-rollout --reason '...'"
            )
            return True
        if stopped is not None and resume is not None:
            self.record({"policy": policy.name, "resumed": resume, "stopped_was": stopped})
        chosen = {h.name for h in hosts}
        previous: tuple[RolloutStage | None, list[Host]] | None = None
        for stage, members in _stages(policy, everyone):
            if previous is not None and previous[0] is not None and previous[0].wait:
                ended = self.last_install(previous[1])
                if ended is not None and datetime.now(UTC) < ended + previous[0].wait:
                    self.report.waiting.append(
                        f"{policy.name}: ring {stage.ring if stage else 'rest'} may go after "
                        f"{ended + previous[0].wait:%Y-%m-%d %H:%M} UTC (ring "
                        f"{previous[0].ring} waits {format_duration(previous[0].wait)})"
                    )
                    return True
            previous = (stage, members)
            selected = [h for h in members if h.name in chosen]
            if not selected:
                continue
            rounds_before = len(self.report.rounds)
            result = self.stage(policy, stage, selected)
            if result is None:
                return False
            self.report.stages.append(result)
            ran = self.report.rounds[rounds_before:]
            self.record(
                result.as_dict(),
                run_id=ran[-1].install.run_id if ran else self.report.scan.run_id,
                skip=not result.hosts,
            )
            if result.stopped or self.window_closed(policy, selected):
                return True
        return True

    def stopped_rollout(self, policy: PatchPolicy) -> str | None:
        """Why the policy's rollout stopped in an earlier run, if it did and nobody has
        resumed it since (read from the ``patch_rollout`` records)."""
        if self.store is None:
            return None
        stopped: str | None = None
        for record in self.store.records(chain=self.client.name, kind=RecordKind.PATCH_ROLLOUT):
            if record.payload.get("policy") != policy.name:
                continue
            if record.payload.get("resumed"):
                stopped = None
            elif record.payload.get("stopped"):
                stopped = f"{record.payload['stopped']}, {record.recorded_at[:16]} UTC"
        return stopped

    def window_closed(self, policy: PatchPolicy, hosts: Sequence[Host]) -> bool:
        """True when the window has closed since the scan (and the run is not forced):
        what is left waits for the next window."""
        if self.report.forced is not None or policy.window is None:
            return False
        now = datetime.now(UTC)
        closed = [
            h
            for h in hosts
            if not window_state(policy.window, self.client.timezone_of(h), now).open
        ]
        message = (
            f"{policy.name}: the maintenance window closed during the run; "
            f"{', '.join(sorted(h.name for h in closed))} and later rings wait for the next"
        )
        if closed and message not in self.report.waiting:
            self.report.waiting.append(message)
        return bool(closed)

    def stage(
        self, policy: PatchPolicy, stage: RolloutStage | None, hosts: Sequence[Host]
    ) -> StageResult | None:
        """One ring: install (and retry) on its hosts, reboot them as the policy says;
        None when a run was stopped."""
        report = self.report
        for host in hosts:
            plan = report.scan.plans.get(host.name)
            windows = plan is not None and plan.manager == "windows-update"
            if windows and report.approved(host.name) and not _has_ansible_windows():
                report.unsupported[host.name] = (
                    "installing Windows updates needs the ansible.windows collection: "
                    "pip install 'mspauto[windows]' (it comes with the ansible package)"
                )
        hosts = [h for h in hosts if h.name not in report.unsupported]
        failed = {h.name for h in hosts if report.latest[h.name].unchecked}
        failed |= {h.name for h in hosts if report.approved(h.name) and report.check_failed(h.name)}
        eligible = [h for h in hosts if h.name not in failed and report.approved(h.name)]
        touched = failed | {h.name for h in eligible}
        ring = stage.ring if stage else None
        for attempt in range(1, policy.retries + 2):
            # A host whose post-checks failed after a try is not tried again.
            todo = [
                h for h in eligible if report.approved(h.name) and not report.check_failed(h.name)
            ]
            if not todo or (attempt > 1 and self.window_closed(policy, todo)):
                break
            if not self.install(ring, attempt, todo):
                return None
        # Every answering host of the ring may be due a reboot, also one deferred earlier.
        if not self.reboot(policy, [h for h in hosts if h.name not in failed]):
            return None
        for host in eligible:
            outcomes = report.installed.get(host.name, [])
            if (
                any(o.status != "installed" for o in outcomes)
                or report.check_failed(host.name)
                or report.latest[host.name].unchecked
                or report.reboots.get(host.name, "").startswith("failed")
            ):
                failed.add(host.name)
        result = StageResult(
            policy.name,
            ring,
            tuple(sorted(touched)),
            tuple(sorted(failed)),
            stage.stop_if_failed_percent if stage else None,
        )
        if (
            stage is not None
            and result.hosts
            and result.failed_percent > stage.stop_if_failed_percent
        ):
            result = replace(
                result,
                stopped=f"ring {stage.ring}: {len(failed)} of {len(touched)} hosts failed "
                f"({result.failed_percent:.0f}% > {stage.stop_if_failed_percent:g}%): the "
                f"rollout of {policy.name} stops here",
            )
        return result

    def install(self, ring: str | None, attempt: int, hosts: Sequence[Host]) -> bool:
        """Install the approved updates on ``hosts``, then scan them again (post-checks
        included); False when a run was stopped."""
        report = self.report
        count = sum(len(report.approved(h.name)) for h in hosts)
        description = f"patch install: {count} updates"
        if ring is not None:
            description += f", ring {ring}"
        if attempt > 1:
            description += f", retry {attempt - 1} of what failed"
        if report.forced is not None:
            description += f" (outside the maintenance window, forced: {report.forced})"
        install = self.run(
            hosts,
            description,
            install_play(report, hosts, self.lock_timeout, one_by_one=attempt > 1),
            {
                "kind": "patch-install",
                "scans": {h.name: report.latest_run[h.name] for h in hosts},
                "one_by_one": attempt > 1,
                "lock_timeout": self.lock_timeout,
            },
        )
        round_ = InstallRound(ring, attempt, install)
        round_.outcomes = {r.host: task_outcomes(r.stdout) for r in install.results}
        report.rounds.append(round_)
        if install.status is not RunStatus.COMPLETED:
            return False
        approved = {h.name: report.approved(h.name) for h in hosts}

        def record(host: Host, after: HostFindings) -> list[Mapping[str, Any]]:
            outcomes = _installed(
                approved[host.name],
                round_.outcomes.get(host.name, []),
                after,
                by_identity=report.scan.plans[host.name].manager == "windows-update",
            )
            # What an earlier round of this run installed stays in the report.
            tried = {o.subject for o in outcomes}
            earlier = [o for o in report.installed.get(host.name, []) if o.subject not in tried]
            report.installed[host.name] = earlier + outcomes
            return [
                ChangeResult(
                    check="patch",
                    host=host.name,
                    before_run=report.scan.run_id or "",
                    change_run=install.run_id,
                    after_run=None,
                    changes=tuple(outcomes),
                ).payload()
            ]

        round_.after = self.scan_after(hosts, record)
        round_.ended = datetime.now(UTC)
        return round_.after.status is RunStatus.COMPLETED

    def reboot(self, policy: PatchPolicy, hosts: Sequence[Host]) -> bool:
        """Reboot the hosts the policy wants rebooted (``always``: any update installed;
        ``if-required``: the scan after says a reboot is pending), inside the reboot
        window (the patch window when none is given, unless forced); scan them again
        once they answer. False when a run was stopped."""
        report = self.report
        settings = policy.reboot
        wanted = []
        for host in hosts:
            installed = any(o.status == "installed" for o in report.installed.get(host.name, []))
            pending = report.reboot_state(host.name)
            if (settings.policy == "always" and installed) or (
                settings.policy == "if-required" and pending is True
            ):
                wanted.append(host)
            elif pending is True:
                report.reboots[host.name] = "pending: the policy says never"
            elif settings.policy == "if-required" and pending is None and installed:
                report.reboots[host.name] = "not done: the host gave no way to tell if needed"
        if report.forced is None:
            now = datetime.now(UTC)
            windows = {
                h.name: window_state(
                    settings.window or policy.window, self.client.timezone_of(h), now
                )
                for h in wanted
            }
            for host in wanted:
                if not windows[host.name].open:
                    report.reboots[host.name] = f"deferred: {windows[host.name].reason}"
            wanted = [h for h in wanted if windows[h.name].open]
        if not wanted:
            return True
        timeout = int(settings.reconnect_wait.total_seconds())
        run = self.run(
            wanted,
            f"patch reboot: {len(wanted)} hosts ({settings.policy}), waiting up to "
            f"{format_duration(settings.reconnect_wait)} for each to answer",
            reboot_play(report, wanted, timeout),
            {"kind": "patch-reboot", "reboot_timeout": timeout},
            timeout=timeout + 120,
        )
        report.reboot_runs.append(run)
        for result in run.results:
            outcome = next((o for o in task_outcomes(result.stdout) if o.status != "skipped"), None)
            if result.ok:
                report.reboots[result.host] = "rebooted"
            else:
                why = outcome.message if outcome else result.summary()
                report.reboots[result.host] = f"failed: {why}"
        if run.status is not RunStatus.COMPLETED:
            return False
        after = self.scan_after(wanted)
        report.reboot_scans.append(after)
        return after.status is RunStatus.COMPLETED

    def run(
        self,
        hosts: Sequence[Host],
        description: str,
        play: list[dict[str, Any]],
        job: Mapping[str, Any],
        *,
        timeout: float | None = None,
    ) -> RunOutcome:
        """One Ansible run through the engine, recorded, never retried: a connection
        lost mid-run may hide an install or a reboot that already happened. ``job`` says
        what the run is for workers, which build the same ``play`` (:func:`worker_play`)."""
        kind = "patch-reboot" if job["kind"] == "patch-reboot" else "patch-change"
        spec = RunSpec(
            client=self.client,
            hosts=list(hosts),
            command=description,
            play=play,
            sudo=True,
            retries=0,
            timeout=timeout or self.options.timeout,
            forks=self.options.forks,
            kind=kind,
        )
        if self.dispatch is None:
            return run_command(spec, self.install_transport, self.store, self.options.progress)
        execute = self.dispatch({**job, "command": description})
        return execute(spec, self.install_transport, self.store, self.options.progress, None)

    def scan_after(
        self,
        hosts: Sequence[Host],
        record: Callable[[Host, HostFindings], Sequence[Mapping[str, Any]]] | None = None,
    ) -> CheckRun[PatchPlan]:
        """Scan ``hosts`` again with their post-checks; it becomes their latest scan."""
        now = datetime.now(UTC)
        options = self.options
        if self.dispatch is not None:
            job = scan_job(now, self.lock_timeout, self.sources, "post", self.report.now.date())
            options = replace(options, executor=self.dispatch(job))
        scope = scope_client(self.project, self.client, hosts, "patch", self.report.now.date())
        check = _check(scope, self.store, now, self.sources, self.lock_timeout)
        check.phase = "post"
        after = run_checks(check, scope, self.transport, self.store, options, also_record=record)
        for findings in after.hosts:
            self.report.latest[findings.host] = findings
            self.report.latest_run[findings.host] = after.run_id or ""
        return after

    def last_install(self, hosts: Sequence[Host]) -> datetime | None:
        """When the last install on any of ``hosts`` ended: in this run, else as recorded."""
        names = {h.name for h in hosts}
        for round_ in reversed(self.report.rounds):
            if names & {r.host for r in round_.install.results}:
                return round_.ended
        if self.store is None:
            return None
        started: dict[str, set[str]] = {}
        ended: datetime | None = None
        for record in self.store.records(chain=self.client.name):
            if (
                record.kind == RecordKind.RUN_STARTED
                and record.payload.get("kind") == "patch-change"
            ):
                started[record.run_id] = set(record.payload.get("hosts", ()))
            elif record.kind == RecordKind.RUN_FINISHED and names & started.get(
                record.run_id, set()
            ):
                ended = parse_time(record.recorded_at)
        return ended

    def record(
        self, payload: Mapping[str, Any], *, run_id: str | None = None, skip: bool = False
    ) -> None:
        """A ``patch_rollout`` record (a ring's result, or a person resuming a stopped
        rollout), signed at once as every run's records are when it ends."""
        report = self.report
        if self.store is None or skip:
            return
        try:
            self.store.append(
                [
                    NewRecord(
                        chain=self.client.name,
                        kind=RecordKind.PATCH_ROLLOUT,
                        run_id=run_id or report.scan.run_id or "",
                        recorded_at=datetime.now(UTC),
                        payload=payload,
                    )
                ]
            )
            if self.store.notary is not None:
                self.store.checkpoint(self.client.name)
        except Exception as exc:  # the store failed: say so, keep the results (as the engine)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            report.scan.evidence_error = report.scan.evidence_error or (
                f"{type(exc).__name__}: {first}"
            )


def worker_play(
    project: Project,
    store: EvidenceStore,
    client: Client,
    hosts: Sequence[Host],
    job: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """The play of a ``patch-install`` or ``patch-reboot`` job, built on a worker as
    the control node built it: the updates each host installs are those its latest scan
    approved, read from that scan's recorded findings (the run ``job["scans"]`` names),
    never from the message. ValueError when the job or the record will not do."""
    today = datetime.now(UTC)
    scope = scope_client(project, client, hosts, "patch", today.date())
    planner = PatchCheck(now=today, contract=None, first_detected={})
    plans = {s.host.name: plan for s in scope.hosts if (plan := planner.plan(s)) is not None}
    unplanned = [h.name for h in hosts if h.name not in plans]
    if unplanned:
        raise ValueError(f"no patch policy selects {', '.join(unplanned)} here")
    if job.get("kind") == "patch-reboot":
        timeout = job.get("reboot_timeout")
        if isinstance(timeout, bool) or not isinstance(timeout, int) or not 0 < timeout <= 86400:
            raise ValueError(f"reboot_timeout {timeout!r}")
        report = PatchReport(
            client.name,
            today,
            CheckRun("patch", client.name, None, RunStatus.COMPLETED, plans=plans),
        )
        return reboot_play(report, hosts, timeout)
    scans, lock_timeout = job.get("scans"), job.get("lock_timeout")
    if not isinstance(scans, Mapping) or not all(isinstance(v, str) for v in scans.values()):
        raise ValueError("scans is not a mapping of hosts to runs")
    if (
        isinstance(lock_timeout, bool)
        or not isinstance(lock_timeout, int)
        or not 0 <= lock_timeout <= 3600
    ):
        raise ValueError(f"lock_timeout {lock_timeout!r}")
    found: dict[str, HostFindings] = {}
    for run_id in sorted({scans.get(h.name, "") for h in hosts}):
        for record in store.records(chain=client.name, run_id=run_id, kind=RecordKind.FINDINGS):
            if record.payload.get("check") == "patch" and scans.get(record.host or "") == run_id:
                found[record.host or ""] = read_host_findings(record.kind, record.payload)
    missing = [h.name for h in hosts if h.name not in found]
    if missing:
        raise ValueError(f"no recorded patch scan of {', '.join(missing)} in the run it names")
    scan = CheckRun("patch", client.name, None, RunStatus.COMPLETED, list(found.values()), plans)
    report = PatchReport(client.name, today, scan)
    return install_play(report, hosts, lock_timeout, one_by_one=job.get("one_by_one") is True)


def _has_ansible_windows() -> bool:
    """True when Ansible can load ansible.windows (the ``windows`` extra installs it)."""
    return importlib.util.find_spec("ansible_collections.ansible.windows") is not None


def reboot_play(report: PatchReport, hosts: Sequence[Host], timeout: int) -> list[dict[str, Any]]:
    """The reboot run's tasks: ``ansible.builtin.reboot`` for Linux hosts and
    ``ansible.windows.win_reboot`` for Windows hosts; each waits up to ``timeout``
    seconds for its host to answer again."""
    message = "mspauto patch: rebooting after updates"
    by_module: dict[str, list[str]] = {}
    for host in hosts:
        windows = report.scan.plans[host.name].manager == "windows-update"
        module = "ansible.windows.win_reboot" if windows else "ansible.builtin.reboot"
        by_module.setdefault(module, []).append(host.name)
    return [
        {
            "name": "reboot",
            module: {"msg": message, "reboot_timeout": timeout},
            "when": f"inventory_hostname in {sorted(names)!r}",
        }
        for module, names in by_module.items()
    ]


def install_play(
    report: PatchReport, hosts: Sequence[Host], lock_timeout: int = 120, *, one_by_one: bool = False
) -> list[dict[str, Any]]:
    """The install run's tasks. Hosts of one package manager that install the same
    updates and protect the same packages share tasks; each task runs only on its hosts
    (names are validated inventory names, so the condition stays data). Package names
    and versions come from the hosts: each is checked against its manager's syntax
    before it becomes an argument, and every value is marked ``!unsafe``.

    apt installs a host's approved updates in one command, all or nothing; a retry
    (``one_by_one``) installs each in a command of its own, so one update that cannot
    go in (a held dependency) no longer keeps the others out. Windows hosts run
    ``ansible.windows.win_updates`` with an accept list of exactly the approved updates
    (see :func:`_windows_selection`); Windows Update installs each on its own anyway."""
    groups: dict[tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]], list[str]] = {}
    run = uuid.uuid4().hex[:12]
    for host in hosts:
        findings = report.latest[host.name]
        plan = report.scan.plans[host.name]
        approved = report.approved(host.name)
        if plan.manager == "windows-update":
            selection = _windows_selection(approved)
            groups.setdefault((plan.manager, *selection, ()), []).append(host.name)
            continue
        others = tuple(
            sorted(u.name for u, d in decisions_of(findings) if d["action"] != "install")
        )
        if plan.manager == "apt":
            install = tuple(sorted(f"{u.name}={u.candidate}" for u in approved))
            # Not a package the upgrade adds: an approved update may need it.
            pins_text = _apt_pins(
                [
                    u
                    for u, d in decisions_of(findings)
                    if d["action"] not in ("install", "dependency")
                ]
            )
            for word in install + others:
                name, _, version = word.partition("=")
                if not APT_NAME.match(name) or (version and not APT_VERSION.match(version)):
                    raise ValueError(f"{host.name}: '{word}' is not an apt package or version")
        else:
            assert plan.manager == "dnf"
            # dnf: excluded for this one command.
            install = tuple(sorted(f"{u.name}-{u.candidate}" for u in approved))
            pins_text = ()
            for word in install:
                if not DNF_SPEC.match(word):
                    raise ValueError(f"{host.name}: '{word}' is not name-[epoch:]version-release")
        groups.setdefault((plan.manager, install, others, pins_text), []).append(host.name)
    tasks: list[dict[str, Any]] = []
    for number, ((manager, install, others, pins_text), names) in enumerate(
        groups.items(), start=1
    ):
        when = f"inventory_hostname in {sorted(names)!r}"
        if manager == "windows-update":
            tasks.append(
                {
                    "name": f"group {number}: install {len(install)} approved updates",
                    "ansible.windows.win_updates": {
                        "accept_list": list(install),
                        "category_names": list(others),
                        "state": "installed",
                        # Reboots are the policy's, in its reboot window: a run of their own.
                        "reboot": False,
                    },
                    "when": when,
                    "ignore_errors": True,
                }
            )
            continue
        if manager == "dnf":
            # The packaged task file (docs/patching-dnf.md), given this group's values.
            tasks.append(
                {
                    "name": f"group {number}: dnf install {len(install)} approved updates",
                    "ansible.builtin.include_tasks": {"file": str(DNF_TASKS)},
                    "vars": {
                        "mspauto_install": list(install),
                        "mspauto_holds": list(others),
                        "mspauto_lock_timeout": lock_timeout,
                    },
                    "when": when,
                }
            )
            continue
        # Every pending package that is not approved is pinned where it is, for these
        # commands only: apt reads the pins from a folder of this run's own (a copy of
        # the host's preferences.d plus ours), so a stopped run leaves no hold behind.
        pins = f"/var/tmp/mspauto-patch-{run}-{number}"
        pinned = ["-o", f"Dir::Etc::PreferencesParts={pins}"] if pins_text else []
        if pins_text:
            tasks.append(
                {
                    "name": f"group {number}: pin what is not approved ({len(others)})",
                    "ansible.builtin.command": {
                        "argv": ["sh", "-c", _PIN_SCRIPT, "mspauto-pins", pins],
                        "stdin": pins_text[0],
                    },
                    "when": when,
                }
            )
        batches = [[spec] for spec in install] if one_by_one else [list(install)]
        for batch in batches:
            what = batch[0] if one_by_one else f"{len(install)} approved updates"
            tasks.append(
                {
                    "name": f"group {number}: install {what}",
                    "ansible.builtin.command": {
                        "argv": [
                            "apt-get",
                            "install",
                            "--yes",
                            "--quiet",
                            "--no-remove",
                            "-o",
                            "Dpkg::Options::=--force-confold",
                            "-o",
                            f"DPkg::Lock::Timeout={lock_timeout}",
                            *pinned,
                            *batch,
                        ]
                    },
                    "environment": APT_ENVIRONMENT,
                    "when": when,
                    # Without it Ansible drops the host from the rest of the play.
                    "ignore_errors": True,
                }
            )
        if pins_text:
            tasks.append(
                {
                    "name": f"group {number}: remove the pins",
                    "ansible.builtin.command": {"argv": ["rm", "-rf", "--", pins]},
                    "when": when,
                    "ignore_errors": True,
                }
            )
    return tasks


_PIN_SCRIPT = (
    'set -e; rm -rf -- "$1"; mkdir -p -- "$1"; '
    'if [ -d /etc/apt/preferences.d ]; then cp -a /etc/apt/preferences.d/. "$1"/; fi; '
    'cat > "$1/zz-mspauto-not-approved.pref"'
)
"""Writes the pins (on stdin) beside a copy of the host's own preferences.d, into the
folder given as ``$1``; values never reach the script as code."""


def _windows_selection(
    approved: Sequence[PendingUpdate],
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """win_updates' ``accept_list`` and ``category_names`` for ``approved``.

    win_updates matches each accept entry as a case-insensitive regular expression
    against an update's title and its KB numbers. A KB number is not enough: one KB
    (KB2267602, Defender's definitions) names many updates at once. So each entry is
    the update's whole title, escaped and anchored (data, never a pattern), or its KB
    number for an update without a title. The categories are the approved updates'
    own, or ``*`` when one has none."""
    accept = []
    categories: set[str] = set()
    for update in approved:
        text = update.title or update.name
        accept.append(f"^{re.escape(text)}$")
        if not update.categories:
            categories.add("*")
        categories.update(update.categories)
    return tuple(sorted(accept)), ("*",) if "*" in categories else tuple(sorted(categories))


def _apt_pins(updates: Sequence[PendingUpdate]) -> tuple[str, ...]:
    """APT preferences keeping ``updates`` where they are: the installed version pinned
    above any candidate, a package not installed kept out. Empty when nothing is."""
    stanzas = []
    for update in updates:
        name = update.name.split(":", 1)[0]
        if update.installed:
            stanzas.append(
                f"Package: {name}\nPin: version {update.installed}\nPin-Priority: 1001\n"
            )
        else:
            stanzas.append(f"Package: {name}\nPin: version *\nPin-Priority: -1\n")
    return ("\n".join(stanzas),) if stanzas else ()


def _installed(
    approved: Sequence[PendingUpdate],
    outcomes: Sequence[TaskOutcome],
    after: HostFindings,
    *,
    by_identity: bool = False,
) -> list[ChangeOutcome]:
    """Per approved update: installed (no longer pending at that version) or not."""
    still = {u.name: u for u, _ in decisions_of(after)}
    installs = [o for o in outcomes if " install " in o.task]
    results = []
    for update in approved:
        # Its own task when each went alone (a retry), else the one install task.
        install_task = next(
            (o for o in installs if o.task.endswith(f" {update.name}={update.candidate}")),
            next((o for o in installs if o.status == "failed"), installs[0] if installs else None),
        )
        pending = still.get(update.name)
        # Windows: a KB still pending under another identity is a newer update (a new
        # definition revision), not this one failing.
        done = not after.unchecked and (
            pending is None
            or pending.installed == update.candidate
            or (by_identity and pending.candidate != update.candidate)
        )
        versions = f"{update.installed or 'not installed'} -> {update.candidate}"
        if done:
            status, message = "installed", versions
        else:
            status = "failed"
            why = after.unchecked or (install_task.message if install_task else "not run")
            message = f"{versions}: still pending ({why})"[:2000]
        results.append(
            ChangeOutcome(
                subject=update.name,
                task=install_task.task if install_task else "install",
                status=status,
                before=FindingStatus.FAIL,
                after=FindingStatus.PASS if done else FindingStatus.FAIL,
                message=message,
            )
        )
    return results
