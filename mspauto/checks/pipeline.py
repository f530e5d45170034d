"""The check pipeline every policy kind runs on: scope, probe, judge, and change.

A kind supplies only what is its own (see :class:`Check`): *plan* what concerns a host
(pure), the *probe* script for the host's platform family, *judge* the answer into
findings (pure), and optionally the *changes* (Ansible tasks) that fix what failed.
This module does the rest, the same way for every kind:

1. **scope**: the client, its contract, and per host the policies of the kind that
   select it and the waivers that cover it today;
2. **probe**: one script per host, through the run engine (retries, caps, progress,
   Ctrl-C), so the probe run is evidence like any other;
3. **judge**: as each host's answer arrives its findings are written through the
   engine's evidence writer, before the run is finished, so a store failure is
   handled like any other and a killed control node keeps what was judged;
4. **change** (on request): every change of every host in one Ansible play, run by the
   engine as a run of its own (``<kind>-change``) with run and host records, then a
   re-check whose run also records each host's before and after.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, Generic, Protocol, TypeVar

from mspauto.checks.secrets import secret_input
from mspauto.engine import Executor, RunOutcome, RunSpec, run_command
from mspauto.engine.progress import Progress
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
from mspauto.inventory.resolve import Client, Host
from mspauto.inventory.selectors import Selector
from mspauto.policy.loader import LoadedPolicy
from mspauto.policy.models import Contract, Waiver
from mspauto.project import Project
from mspauto.transport.ansible import TaskOutcome, task_outcomes
from mspauto.transport.base import CommandResult, ErrorKind, Transport, utcnow

__all__ = [
    "Change",
    "ChangeRun",
    "Check",
    "CheckRun",
    "ClientScope",
    "Dispatch",
    "HostScope",
    "Probe",
    "RunOptions",
    "apply_changes",
    "change_play",
    "change_spec",
    "plan_changes",
    "recorded_play",
    "run_checks",
    "scope_client",
]

Dispatch = Callable[[Mapping[str, Any]], Executor]
"""Who carries out a run that is part of a larger one (a change, a patch install),
given what the run is (a job of :mod:`mspauto.distributed.jobs`): workers."""

PlanT = TypeVar("PlanT")


@dataclass(frozen=True)
class HostScope:
    """What applies to one host today: the kind's policies selecting it, its waivers."""

    host: Host
    policies: tuple[LoadedPolicy, ...]
    """Enabled policies of the check's kind whose targets select the host, in file order."""
    waivers: tuple[Waiver, ...]
    """Waivers selecting the host that still apply today."""
    today: date


@dataclass(frozen=True)
class ClientScope:
    """One client, its contract, and the scope of each host to check."""

    project: Project
    client: Client
    contract: Contract | None
    today: date
    hosts: tuple[HostScope, ...]


def scope_client(
    project: Project, client: Client, hosts: Sequence[Host], kind: str, today: date
) -> ClientScope:
    """The scope of a check of ``kind`` over ``hosts`` (all of one client) on ``today``."""
    waivers = [
        p.policy
        for p in project.policies
        if isinstance(p.policy, Waiver) and today <= p.policy.expires
    ]
    of_kind = [
        p for p in project.policies if p.policy.kind == kind and getattr(p.policy, "enabled", True)
    ]
    scopes = tuple(
        HostScope(
            host,
            tuple(p for p in of_kind if _selects(p, host)),
            tuple(w for w in waivers if w.targets.matches(host)),
            today,
        )
        for host in hosts
    )
    contract = project.contracts().get(client.spec.contract)
    return ClientScope(project, client, contract, today, scopes)


def _selects(loaded: LoadedPolicy, host: Host) -> bool:
    targets = getattr(loaded.policy, "targets", None)
    return isinstance(targets, Selector) and targets.matches(host)


@dataclass(frozen=True)
class Change:
    """One fix for one failed subject on one host: an Ansible task (module and
    arguments), or no task when a person must decide (``description`` says why)."""

    subject: str
    description: str
    """What the host will have afterwards (``<= 4``, ``mode 0640``), or why not."""
    task: Mapping[str, Any] | None
    """The task without ``name`` or ``when`` (the pipeline adds both)."""


@dataclass(frozen=True)
class Probe:
    """A probe script that needs secrets: ``script`` reads them from the shell
    variables :func:`mspauto.checks.secrets.secret_variable` names, in order; the
    pipeline sends the values on the command's stdin, never in the script or the
    evidence."""

    script: str
    secrets: tuple[str, ...] = ()


class Check(Protocol[PlanT]):
    """What a policy kind supplies to run on the pipeline."""

    kind: str
    """The policy kind (``baseline``): findings and runs are recorded under it."""

    def plan(self, scope: HostScope) -> PlanT | None:
        """What concerns this host (pure); None when nothing does."""
        ...

    def probe(self, host: Host, plan: PlanT) -> str | Probe | None:
        """The one script this host runs for its platform family (a :class:`Probe`
        when it needs secrets); None if none is needed (every finding is then decided
        by the plan alone)."""
        ...

    def judge(self, host: Host, plan: PlanT, result: CommandResult | None) -> HostFindings:
        """The host's findings from its probe's result (pure). ``result`` is None when
        no probe was needed; a failed result makes the host unchecked."""
        ...

    def changes(self, host: Host, plan: PlanT, findings: HostFindings) -> Sequence[Change]:
        """The changes that would fix what failed and may be fixed automatically."""
        ...


@dataclass(frozen=True)
class RunOptions:
    """How a check or change run goes: per-host time limit, parallel hosts, progress,
    and who runs the probes (in this process, or workers: :mod:`mspauto.distributed`)."""

    timeout: float = 120.0
    forks: int = 50
    progress: Progress | None = None
    executor: Executor | None = None
    """None: :func:`~mspauto.engine.run_command`, here."""


@dataclass
class CheckRun(Generic[PlanT]):
    """The result of one check run over a client's hosts."""

    check: str
    client: str
    run_id: str | None
    status: RunStatus
    hosts: list[HostFindings] = field(default_factory=list)
    plans: dict[str, PlanT] = field(default_factory=dict)
    evidence_error: str | None = None

    def findings_of(self, host: str) -> HostFindings | None:
        """One host's findings."""
        return next((h for h in self.hosts if h.host == host), None)


ExtraRecords = Callable[[Host, HostFindings], Sequence[Mapping[str, Any]]]
"""Payloads of ``change_result`` records to write with a host's findings."""


def run_checks(
    check: Check[PlanT],
    scope: ClientScope,
    transport: Transport,
    store: EvidenceStore | None,
    options: RunOptions,
    *,
    also_record: ExtraRecords | None = None,
) -> CheckRun[PlanT]:
    """Plan, probe, judge and record every host of ``scope`` that the check concerns."""
    plans: dict[str, PlanT] = {}
    scripts: dict[str, str] = {}
    inputs: dict[str, bytes] = {}
    for host_scope in scope.hosts:
        plan = check.plan(host_scope)
        if plan is None:
            continue
        name = host_scope.host.name
        plans[name] = plan
        probe = check.probe(host_scope.host, plan)
        if isinstance(probe, Probe) and probe.secrets:
            given = secret_input(probe.secrets)
            scripts[name], inputs[name] = given.prelude + probe.script, given.stdin
        elif probe is not None:
            scripts[name] = probe.script if isinstance(probe, Probe) else probe
    probed = [s.host for s in scope.hosts if s.host.name in scripts]
    judged: dict[str, HostFindings] = {}
    lock = threading.Lock()
    chain = scope.client.name

    def on_result(run_id: str, host: Host, result: CommandResult) -> list[NewRecord]:
        findings = _judge_safely(check, host, plans[host.name], result)
        with lock:
            judged[host.name] = findings
        return _records(chain, run_id, host, findings, also_record)

    run = CheckRun[PlanT](check.kind, chain, None, RunStatus.COMPLETED, plans=plans)
    if probed:
        spec = RunSpec(
            client=scope.client,
            hosts=probed,
            command=f"{check.kind} probe: each host runs its own script (stored with it)",
            commands=scripts,
            stdin=inputs,
            sudo=True,
            timeout=options.timeout,
            forks=options.forks,
            kind=check.kind,
        )
        execute = options.executor or run_command
        outcome = execute(spec, transport, store, options.progress, on_result)
        run.run_id, run.status, run.evidence_error = (
            outcome.run_id,
            outcome.status,
            outcome.evidence_error,
        )
        if outcome.remote and store is not None:
            # Workers judged each host and recorded its findings: those are the truth.
            # (Hosts this node took back were judged here, their records written.)
            here = set(judged)
            for record in store.records(run_id=outcome.run_id, kind=RecordKind.FINDINGS):
                judged[record.host] = read_host_findings(record.kind, record.payload)
            remote = {name: f for name, f in judged.items() if name not in here}
            # A host no one recorded findings for (its worker was lost with them) is
            # judged from its result here, unchecked: never as a host needing no probe.
            for result in outcome.results:
                if result.host in scripts and result.host not in judged:
                    host = next(s.host for s in scope.hosts if s.host.name == result.host)
                    judged[result.host] = _judge_safely(check, host, plans[host.name], result)
            if also_record is not None:
                problem = _record_also(store, scope, outcome.run_id, remote, also_record)
                run.evidence_error = run.evidence_error or problem
    for host_scope in scope.hosts:
        name = host_scope.host.name
        if name in judged:
            run.hosts.append(judged[name])
        elif name in plans:
            run.hosts.append(_judge_safely(check, host_scope.host, plans[name], None))
    return run


def _judge_safely(
    check: Check[PlanT], host: Host, plan: PlanT, result: CommandResult | None
) -> HostFindings:
    try:
        return check.judge(host, plan, result)
    except Exception as exc:  # a bug in a judge must not lose the host or pass it
        why = f"judging the answer failed ({type(exc).__name__}: {exc}); this is a bug"
    try:
        # Judged as a host that could not be checked, so it still counts as failed.
        failed = CommandResult.failure(host.name, "", ErrorKind.INTERNAL, why)
        return replace(check.judge(host, plan, failed), unchecked=f"internal_error: {why}")
    except Exception:
        return HostFindings(check.kind, host.name, (), f"internal_error: {why}")


def _record_also(
    store: EvidenceStore,
    scope: ClientScope,
    run_id: str,
    judged: Mapping[str, HostFindings],
    also_record: ExtraRecords,
) -> str | None:
    """Write what this node adds to the findings workers recorded (``also_record``,
    called for every host even when the store fails, as in-process), signed at once;
    the store's error in one line, or None."""
    by_name = {s.host.name: s.host for s in scope.hosts}
    added = [
        record
        for name, findings in judged.items()
        if name in by_name
        for record in _records(scope.client.name, run_id, by_name[name], findings, also_record)
        if record.kind == RecordKind.CHANGE_RESULT
    ]
    if not added:
        return None
    try:
        store.append(added)
        if store.notary is not None:
            store.checkpoint(scope.client.name)
    except Exception as exc:  # the store failed: say so, keep the results (as the engine)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"{type(exc).__name__}: {first}"
    return None


def _records(
    chain: str,
    run_id: str,
    host: Host,
    findings: HostFindings,
    also_record: ExtraRecords | None,
) -> list[NewRecord]:
    records = [
        NewRecord(
            chain=chain,
            kind=RecordKind.FINDINGS,
            run_id=run_id,
            host=host.name,
            recorded_at=utcnow(),
            payload=findings.payload(),
        )
    ]
    for payload in also_record(host, findings) if also_record else ():
        records.append(
            NewRecord(
                chain=chain,
                kind=RecordKind.CHANGE_RESULT,
                run_id=run_id,
                host=host.name,
                recorded_at=utcnow(),
                payload=payload,
            )
        )
    return records


# --- changes ----------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedTask:
    """One task of the change play and the hosts it runs on."""

    subject: str
    description: str
    hosts: tuple[str, ...]
    task: Mapping[str, Any]

    @property
    def name(self) -> str:
        """The task's name in the play (and in its outcomes)."""
        return f"{self.subject} ({self.description})"


@dataclass
class ChangeRun(Generic[PlanT]):
    """A change: the check before, the planned tasks, the change run, the check after."""

    before: CheckRun[PlanT]
    dry_run: bool
    tasks: list[PlannedTask] = field(default_factory=list)
    manual: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    """Host -> (failed subject, why) that no automatic change covers."""
    change: RunOutcome | None = None
    outcomes: dict[str, list[TaskOutcome]] = field(default_factory=dict)
    after: CheckRun[PlanT] | None = None

    @property
    def failed_hosts(self) -> list[str]:
        """Hosts where the change run failed (a task failed, or unreachable)."""
        if self.change is None:
            return []
        return [r.host for r in self.change.results if not r.ok]


def plan_changes(
    check: Check[PlanT], scope: ClientScope, before: CheckRun[PlanT]
) -> tuple[list[PlannedTask], dict[str, list[tuple[str, str]]]]:
    """Identical changes on several hosts become one task run on exactly those hosts;
    failed findings that no task covers need a person."""
    hosts = {s.host.name: s.host for s in scope.hosts}
    grouped: dict[str, tuple[Change, list[str]]] = {}
    manual: dict[str, list[tuple[str, str]]] = {}
    for findings in before.hosts:
        if findings.unchecked or findings.host not in before.plans:
            continue
        changes = check.changes(hosts[findings.host], before.plans[findings.host], findings)
        offered = {c.subject for c in changes}
        for change in changes:
            if change.task is None:
                manual.setdefault(findings.host, []).append((change.subject, change.description))
                continue
            key = json.dumps([change.subject, change.task], sort_keys=True, default=str)
            grouped.setdefault(key, (change, []))[1].append(findings.host)
        for finding in findings.findings:
            if finding.status is FindingStatus.FAIL and finding.subject not in offered:
                manual.setdefault(findings.host, []).append((finding.subject, "no change offered"))
    tasks = [
        PlannedTask(change.subject, change.description, tuple(sorted(names)), change.task or {})
        for change, names in grouped.values()
    ]
    return tasks, manual


def change_play(tasks: Sequence[PlannedTask]) -> list[dict[str, Any]]:
    """The tasks of a change run: each named after its subject, each limited to its
    hosts (host names are validated inventory names, so the condition stays data). A
    failed task is recorded and the host's other fixes still run: without
    ``ignore_errors`` Ansible would drop the host from the rest of the play."""
    return [
        {
            "name": task.name,
            **task.task,
            "when": f"inventory_hostname in {list(task.hosts)!r}",
            "ignore_errors": True,
        }
        for task in tasks
    ]


def apply_changes(
    check: Check[PlanT],
    scope: ClientScope,
    before: CheckRun[PlanT],
    probe_transport: Transport,
    change_transport: Transport,
    store: EvidenceStore | None,
    options: RunOptions,
    *,
    dry_run: bool,
    dispatch: Dispatch | None = None,
) -> ChangeRun[PlanT]:
    """Run the changes ``before`` calls for (a dry run: Ansible check mode with diffs),
    then check again and record each host's before and after. With ``dispatch``,
    workers make the change, each building its play from ``before`` as recorded
    (:func:`recorded_play`); the check after goes as ``options`` says."""
    tasks, manual = plan_changes(check, scope, before)
    result = ChangeRun(before, dry_run, tasks=tasks, manual=manual)
    if not tasks or before.status is not RunStatus.COMPLETED:
        return result  # a stopped check changes nothing: a stop means stop
    changing = sorted({name for task in tasks for name in task.hosts})
    hosts = [s.host for s in scope.hosts if s.host.name in changing]
    command = f"{check.kind} change: {len(tasks)} tasks" + (
        " (check mode: nothing changed)" if dry_run else ""
    )
    spec = change_spec(scope.client, hosts, check.kind, command, change_play(tasks), dry_run)
    spec = replace(spec, timeout=options.timeout, forks=options.forks)
    if dispatch is None:
        result.change = run_command(spec, change_transport, store, options.progress)
    else:
        execute = dispatch(
            {
                "kind": "change",
                "check": check.kind,
                "today": scope.today.isoformat(),
                "before": before.run_id,
                "dry_run": dry_run,
                "command": spec.command,
            }
        )
        result.change = execute(spec, change_transport, store, options.progress, None)
    result.outcomes = {r.host: task_outcomes(r.stdout) for r in result.change.results}
    if dry_run or result.change.status is not RunStatus.COMPLETED:
        return result
    result.after = run_checks(
        check,
        ClientScope(
            scope.project,
            scope.client,
            scope.contract,
            scope.today,
            tuple(s for s in scope.hosts if s.host.name in changing),
        ),
        probe_transport,
        store,
        options,
        also_record=lambda host, after: [_before_after(result, host.name, after).payload()],
    )
    return result


def change_spec(
    client: Client,
    hosts: list[Host],
    kind: str,
    command: str,
    play: list[dict[str, Any]],
    dry_run: bool,
) -> RunSpec:
    """The change run of ``play`` by a check of ``kind`` (here or on a worker)."""
    return RunSpec(
        client=client,
        hosts=hosts,
        command=command,
        play=play,
        check_mode=dry_run,
        sudo=True,
        # Never again: a connection lost mid-play may look unreachable while a task
        # already ran, and a change must not run twice.
        retries=0,
        kind=f"{kind}-change",
    )


def recorded_play(
    check: Check[PlanT], scope: ClientScope, store: EvidenceStore, before_run: str
) -> list[dict[str, Any]]:
    """The change play for ``scope``'s hosts, planned from their findings as check run
    ``before_run`` recorded them (a worker builds a change this way: what it fixes
    comes from the evidence, never from a message). ValueError when a host has none."""
    plans = {s.host.name: plan for s in scope.hosts if (plan := check.plan(s)) is not None}
    found = {
        record.host: read_host_findings(record.kind, record.payload)
        for record in store.records(
            chain=scope.client.name, run_id=before_run, kind=RecordKind.FINDINGS
        )
        if record.host in plans
    }
    missing = sorted(s.host.name for s in scope.hosts if s.host.name not in found)
    if missing:
        raise ValueError(
            f"no recorded {check.kind} findings of {', '.join(missing)} in run {before_run}"
        )
    before = CheckRun[PlanT](
        check.kind, scope.client.name, before_run, RunStatus.COMPLETED, list(found.values()), plans
    )
    tasks, _ = plan_changes(check, scope, before)
    return change_play(tasks)


def _before_after(change: ChangeRun[Any], host: str, after: HostFindings) -> ChangeResult:
    before = change.before.findings_of(host)
    before_status = {f.subject: f.status for f in before.findings} if before else {}
    after_status = {f.subject: f.status for f in after.findings}
    outcomes = {o.task: o for o in change.outcomes.get(host, [])}
    assert change.change is not None
    return ChangeResult(
        check=change.before.check,
        host=host,
        before_run=change.before.run_id or "",
        change_run=change.change.run_id,
        after_run=None,  # this record belongs to the after run itself
        changes=tuple(
            ChangeOutcome(
                subject=task.subject,
                task=task.name,
                status=outcomes[task.name].status if task.name in outcomes else "not_run",
                before=before_status.get(task.subject),
                after=after_status.get(task.subject),
                message=outcomes[task.name].message if task.name in outcomes else "",
            )
            for task in change.tasks
            if host in task.hosts
        ),
    )
