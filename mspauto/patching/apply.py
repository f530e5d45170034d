"""Scan and patch a client: facts, decisions, the install run, and the scan after it.

``scan_client`` is the read-only half (``mspauto patch --dry-run``, ``patch status``):
one probe per host through the check pipeline, each update decided and recorded.

``patch_client`` then installs what the policy approved, in one Ansible run through the
engine (recorded as a ``patch-change`` run, never retried: a lost connection may hide
an install that already ran), and scans again. Each host's ``change_result`` record
in that second scan says, per approved update, whether it is now installed, with the
versions before and after. Outside the maintenance window nothing is installed unless
the caller forces it with a reason, which is recorded in the run.

While the approved packages install, every other pending package of the host (held,
deferred, waiting for a person, rejected, waived) is held with ``apt-mark hold``, so a
dependency cannot pull it up; holds the host had before stay, the others are released
afterwards.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mspauto.checks.pipeline import (
    CheckRun,
    ClientScope,
    RunOptions,
    run_checks,
    scope_client,
)
from mspauto.engine import RunOutcome, RunSpec, run_command
from mspauto.evidence.records import (
    ChangeOutcome,
    ChangeResult,
    FindingStatus,
    HostFindings,
    RecordKind,
    RunStatus,
    read_host_findings,
)
from mspauto.evidence.store import EvidenceStore
from mspauto.inventory.resolve import Host
from mspauto.patching.check import REBOOT_SUBJECT, PatchCheck, PatchPlan, Rate, decisions_of
from mspauto.patching.facts import PendingUpdate, parse_time
from mspauto.patching.planner import WindowState, window_state
from mspauto.project import Project
from mspauto.transport.ansible import TaskOutcome, task_outcomes
from mspauto.transport.base import Transport

__all__ = [
    "PatchReport",
    "first_detections",
    "has_patch_policy",
    "install_play",
    "patch_client",
    "scan_client",
]

APT_ENVIRONMENT = {
    "DEBIAN_FRONTEND": "noninteractive",
    # needrestart (Ubuntu 22.04+) asks which services to restart unless told: list only.
    "NEEDRESTART_MODE": "l",
    "NEEDRESTART_SUSPEND": "1",
    "LC_ALL": "C",
}
_APT_NAME = re.compile(r"^[a-z0-9][a-z0-9+.:~-]*$")
_APT_VERSION = re.compile(r"^[A-Za-z0-9.+:~-]+$")


@dataclass
class PatchReport:
    """A client's patch scan, and the install and the scan after it if one ran."""

    client: str
    now: datetime
    scan: CheckRun[PatchPlan]
    window: dict[str, WindowState] = field(default_factory=dict)
    """Per host: its policy's maintenance window at ``now``."""
    forced: str | None = None
    """Why the window was overridden (``--force-window --reason``)."""
    install: RunOutcome | None = None
    outcomes: dict[str, list[TaskOutcome]] = field(default_factory=dict)
    after: CheckRun[PatchPlan] | None = None
    installed: dict[str, list[ChangeOutcome]] = field(default_factory=dict)
    """Per host: each approved update and whether it is installed now."""
    dry_run: bool = True

    def approved(self, host: str) -> list[PendingUpdate]:
        """The updates the policy approves on ``host`` now."""
        findings = self.scan.findings_of(host)
        if findings is None or findings.unchecked:
            return []
        return [u for u, d in decisions_of(findings) if d["action"] == "install"]

    @property
    def failed_hosts(self) -> list[str]:
        """Hosts where an approved update did not install."""
        return sorted(
            host
            for host, outcomes in self.installed.items()
            if any(o.status != "installed" for o in outcomes)
        )

    def as_dict(self) -> dict[str, Any]:
        """Machine-readable form (``--format json``)."""
        after = {h.host: h for h in self.after.hosts} if self.after else {}
        hosts = []
        for findings in self.scan.hosts:
            entry: dict[str, Any] = {
                "host": findings.host,
                "unchecked": findings.unchecked,
                "window": _window_dict(self.window.get(findings.host)),
                "updates": [{**u.as_dict(), "decision": d} for u, d in decisions_of(findings)],
                "reboot": next(
                    (
                        {"status": str(f.status), "reason": f.reason}
                        for f in findings.findings
                        if f.subject == REBOOT_SUBJECT
                    ),
                    None,
                ),
            }
            if findings.host in self.installed:
                entry["installed"] = [o.as_dict() for o in self.installed[findings.host]]
            if findings.host in after:
                entry["pending_after"] = [u.name for u, _ in decisions_of(after[findings.host])]
            hosts.append(entry)
        return {
            "client": self.client,
            "now": self.now.isoformat(),
            "dry_run": self.dry_run,
            "scan_run_id": self.scan.run_id,
            "install_run_id": self.install.run_id if self.install else None,
            "after_run_id": self.after.run_id if self.after else None,
            "forced_window": self.forced,
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
    wanted = set(hosts)
    latest: dict[str, dict[str, datetime]] = {}
    if store is None:
        return latest
    for record in store.records(chain=client, kind=RecordKind.FINDINGS):
        if record.host not in wanted or record.payload.get("check") != "patch":
            continue
        findings = read_host_findings(record.kind, record.payload)
        if findings.unchecked:
            continue  # a failed scan says nothing about what was pending
        seen: dict[str, datetime] = {}
        for update, decision in decisions_of(findings):
            first = parse_time(str(decision.get("first_detected") or "")) or parse_time(
                record.recorded_at
            )
            if first is not None:
                seen[update.name] = first
        latest[record.host] = seen
    return latest


def _check(
    scope: ClientScope,
    store: EvidenceStore | None,
    now: datetime,
    rate: Rate | None,
    lock_timeout: int,
) -> PatchCheck:
    return PatchCheck(
        now=now,
        contract=scope.contract,
        first_detected=first_detections(
            store, scope.client.name, (s.host.name for s in scope.hosts)
        ),
        rate=rate,
        lock_timeout=lock_timeout,
    )


def scan_client(
    project: Project,
    client_name: str,
    hosts: Sequence[Host],
    transport: Transport,
    store: EvidenceStore | None,
    *,
    options: RunOptions | None = None,
    now: datetime | None = None,
    rate: Rate | None = None,
    lock_timeout: int = 120,
) -> PatchReport:
    """Scan ``hosts`` of one client: every pending update and its decision, recorded."""
    now = now or datetime.now(UTC)
    client = project.inventory.clients[client_name]
    scope = scope_client(project, client, hosts, "patch", now.date())
    check = _check(scope, store, now, rate, lock_timeout)
    scan = run_checks(check, scope, transport, store, options or RunOptions())
    report = PatchReport(client_name, now, scan)
    for name, plan in scan.plans.items():
        report.window[name] = window_state(plan.policy.window, client.spec.timezone, now)
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
    rate: Rate | None = None,
    lock_timeout: int = 120,
) -> PatchReport:
    """Scan, install what the policy approves on hosts whose window is open (or on all
    with ``force_window``, the recorded reason), then scan again."""
    options = options or RunOptions()
    report = scan_client(
        project,
        client_name,
        hosts,
        transport,
        store,
        options=options,
        now=now,
        rate=rate,
        lock_timeout=lock_timeout,
    )
    report.dry_run = False
    report.forced = force_window
    if report.scan.status is not RunStatus.COMPLETED:
        return report  # a stopped scan installs nothing: a stop means stop
    targets = [
        h
        for h in hosts
        if report.approved(h.name) and (force_window is not None or report.window[h.name].open)
    ]
    if not targets:
        return report
    play = install_play(report, targets, lock_timeout)
    description = f"patch install: {sum(len(report.approved(h.name)) for h in targets)} updates"
    if force_window is not None:
        description += f" (outside the maintenance window, forced: {force_window})"
    report.install = run_command(
        RunSpec(
            client=project.inventory.clients[client_name],
            hosts=targets,
            command=description,
            play=play,
            sudo=True,
            retries=0,  # never twice: a lost connection may hide an install that ran
            timeout=options.timeout,
            forks=options.forks,
            kind="patch-change",
        ),
        install_transport,
        store,
        options.progress,
    )
    report.outcomes = {r.host: task_outcomes(r.stdout) for r in report.install.results}
    if report.install.status is not RunStatus.COMPLETED:
        return report
    client = project.inventory.clients[client_name]
    scope = scope_client(project, client, targets, "patch", report.now.date())
    check = _check(scope, store, datetime.now(UTC), rate, lock_timeout)

    def record(host: Host, after: HostFindings) -> list[Mapping[str, Any]]:
        outcomes = _installed(report, host.name, after)
        report.installed[host.name] = outcomes
        assert report.install is not None
        return [
            ChangeResult(
                check="patch",
                host=host.name,
                before_run=report.scan.run_id or "",
                change_run=report.install.run_id,
                after_run=None,
                changes=tuple(outcomes),
            ).payload()
        ]

    report.after = run_checks(check, scope, transport, store, options, also_record=record)
    return report


def install_play(
    report: PatchReport, hosts: Sequence[Host], lock_timeout: int = 120
) -> list[dict[str, Any]]:
    """The install run's tasks. Hosts that install the same updates and protect the same
    packages share tasks; each task runs only on its hosts (names are validated inventory
    names, so the condition stays data). Package names and versions come from the
    hosts and are checked against apt's own syntax before they become arguments."""
    groups: dict[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]], list[str]] = {}
    for host in hosts:
        findings = report.scan.findings_of(host.name)
        assert findings is not None
        install = tuple(sorted(f"{u.name}={u.candidate}" for u in report.approved(host.name)))
        others = tuple(
            sorted(u.name for u, d in decisions_of(findings) if d["action"] != "install")
        )
        held_before = _host_holds(findings)
        release = tuple(name for name in others if name.split(":", 1)[0] not in held_before)
        for word in install + others:
            name, _, version = word.partition("=")
            if not _APT_NAME.match(name) or (version and not _APT_VERSION.match(version)):
                raise ValueError(f"{host.name}: '{word}' is not an apt package name or version")
        groups.setdefault((install, others, release), []).append(host.name)
    tasks: list[dict[str, Any]] = []
    for number, ((install, others, release), names) in enumerate(groups.items(), start=1):
        when = f"inventory_hostname in {sorted(names)!r}"
        if others:
            tasks.append(
                {
                    "name": f"group {number}: hold what is not approved ({len(others)})",
                    "ansible.builtin.command": {"argv": ["apt-mark", "hold", *others]},
                    "when": when,
                }
            )
        tasks.append(
            {
                "name": f"group {number}: install {len(install)} approved updates",
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
                        *install,
                    ]
                },
                "environment": APT_ENVIRONMENT,
                "when": when,
            }
        )
        if release:
            tasks.append(
                {
                    "name": f"group {number}: release the temporary holds ({len(release)})",
                    "ansible.builtin.command": {"argv": ["apt-mark", "unhold", *release]},
                    "when": when,
                }
            )
    # A failed install must still release the holds: without ignore_errors Ansible
    # would drop the host from the rest of the play.
    return [{**task, "ignore_errors": True} for task in tasks]


def _host_holds(findings: HostFindings) -> set[str]:
    reboot = next((f for f in findings.findings if f.subject == REBOOT_SUBJECT), None)
    return set(reboot.detail.get("held", [])) if reboot else set()


def _installed(report: PatchReport, host: str, after: HostFindings) -> list[ChangeOutcome]:
    """Per approved update: installed (no longer pending at that version) or not."""
    still = {u.name: u for u, _ in decisions_of(after)}
    install_task = next((o for o in report.outcomes.get(host, []) if " install " in o.task), None)
    outcomes = []
    for update in report.approved(host):
        pending = still.get(update.name)
        done = not after.unchecked and (pending is None or pending.installed == update.candidate)
        versions = f"{update.installed or 'not installed'} -> {update.candidate}"
        if done:
            status, message = "installed", versions
        else:
            status = "failed"
            why = after.unchecked or (install_task.message if install_task else "not run")
            message = f"{versions}: still pending ({why})"[:2000]
        outcomes.append(
            ChangeOutcome(
                subject=update.name,
                task=install_task.task if install_task else "install",
                status=status,
                before=FindingStatus.FAIL,
                after=FindingStatus.PASS if done else FindingStatus.FAIL,
                message=message,
            )
        )
    return outcomes
