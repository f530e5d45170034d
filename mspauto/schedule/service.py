"""The control node's daemon around :class:`~mspauto.schedule.daemon.Scheduler`: the
project re-read every pass (a policy edited is picked up without a restart; a project
that stops validating keeps the last good jobs), people told and breaches ticketed
(in a thread of their own), JSON-lines logs, SIGTERM, systemd."""

from __future__ import annotations

import logging
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

import structlog

from mspauto.config import Settings
from mspauto.evidence.records import RecordKind
from mspauto.evidence.store import EvidenceStore, NewRecord
from mspauto.policy.models import NotificationPolicy
from mspauto.project import Project, load_project
from mspauto.schedule.daemon import Clock, Launcher, ProcessLauncher, Scheduler, SystemClock
from mspauto.schedule.jobs import Job, job_client, jobs_of
from mspauto.schedule.notify import Notifier, tick_events, waiver_events
from mspauto.schedule.psa import PsaRoute, TicketDesk, psa_client
from mspauto.schedule.state import ScheduleState, TickRow, TickState, scheduled_run
from mspauto.schedule.ticks import next_tick
from mspauto.transport.local import keep_control_process_private

__all__ = ["ControlNode", "JobStatus", "job_status", "run_daemon", "systemd_unit"]


def json_logger(stream: Any = None) -> Callable[..., object]:
    """A structlog logger writing one JSON object per line (timestamp, level, event)."""
    logger = structlog.wrap_logger(
        structlog.PrintLogger(stream or sys.stderr),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(sort_keys=True),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    )
    return logger.info  # type: ignore[no-any-return]


class ControlNode:
    """The scheduler with what surrounds it: the project re-read each pass, people told
    (notifications), breaches ticketed (PSA). :meth:`run_pass` is one pass."""

    def __init__(
        self,
        settings: Settings,
        store: EvidenceStore,
        launcher: Launcher,
        clock: Clock,
        log: Callable[..., object],
        max_parallel: int = 4,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.log = log
        engine = store.engine
        self.state = ScheduleState(engine)
        self.notifier = Notifier(engine, settings.root, log=log)
        self.desk = TicketDesk(engine, self._psa_route, log=log)
        self.scheduler = Scheduler(
            [],
            self.state,
            launcher,
            clock,
            max_parallel=max_parallel,
            log=log,
            after_tick=_safely(self._after_tick, log),
        )

    def run_pass(self) -> None:
        project = _project(self.settings, self.log)
        if project is not None:
            self.scheduler.jobs = _jobs(project, self.scheduler.jobs, self.log)
            self.notifier.policies = [
                p.policy for p in project.policies if isinstance(p.policy, NotificationPolicy)
            ]
        _safely(self.scheduler.run_pass, self.log)()
        _safely(self.record_ticks, self.log)()
        if project is not None:
            _safely(_waivers, self.log)(self.notifier, project, self.clock.now())

    def record_ticks(self) -> None:
        """Append each ended tick to its client's evidence chain (``scheduled_run``) and
        sign it, so a skipped window is in the signed record and the monthly report, not
        only in the scheduler's own table. A tick whose append failed (the store, a
        crash) is appended on a later pass; one appended twice (a crash between the
        append and its mark) is one tick to readers, who go by its key."""
        by_client: dict[str, list[TickRow]] = {}
        for row in self.state.not_in_evidence():
            try:
                by_client.setdefault(job_client(row.job), []).append(row)
            except ValueError:  # a row mspauto did not write: set aside, never blocking
                self.state.unrecordable(row.key)
                self.log("tick.unrecordable", key=row.key, job=row.job)
        for client, rows in by_client.items():
            _safely(self._record_client_ticks, self.log)(client, rows)

    def _record_client_ticks(self, client: str, rows: Sequence[TickRow]) -> None:
        now = self.clock.now()
        self.store.append(
            [
                NewRecord(
                    chain=client,
                    kind=RecordKind.SCHEDULED_RUN,
                    run_id="",
                    recorded_at=now,
                    payload=scheduled_run(row).payload(),
                )
                for row in rows
            ]
        )
        self.state.in_evidence([row.key for row in rows], now)
        self.log("ticks.recorded", client=client, ticks=len(rows))
        if self.store.notary is not None:
            outcome = self.store.checkpoint(client)
            self.store.checkpoint_outcomes.clear()  # a daemon's would grow for ever
            problem = outcome.warning or (None if outcome.nothing_new else outcome.skipped)
            if problem:
                self.log("evidence.warning", client=client, reason=problem)

    def deliver(self) -> None:
        """Send what is due to people and the PSA (slow servers can take minutes, so
        the daemon does this in a thread of its own, never holding up a pass)."""
        now = self.clock.now()
        _safely(self.notifier.deliver, self.log)(now)
        _safely(self.desk.work, self.log)(now)

    def deliver_until(self, stop: threading.Event, every: float) -> None:
        while not stop.is_set():
            self.deliver()
            stop.wait(every)

    def _after_tick(
        self,
        job: Job,
        due: datetime,
        state: TickState,
        code: int | None,
        reason: str,
        output: str,
    ) -> None:
        since = self.state.failing_since(job, due) if state is TickState.FAILED else None
        now = self.clock.now()
        for event in tick_events(job, due, state, code, reason, since, output):
            self.notifier.notify(event, now)
            if event.kind == "sla-breached":
                self.desk.breach(
                    event.key, job.client, event.subject, event.text, job.run_key(due), now
                )

    def _psa_route(self, client: str) -> PsaRoute | None:
        """Where the client's breach tickets go: the first notification policy with a
        PSA that covers the client, wants SLA breaches and names the client's company."""
        for policy in self.notifier.policies:
            psa = policy.psa
            if psa is None or not policy.covers(client) or "sla-breached" not in policy.events:
                continue
            if client in psa.companies:
                return PsaRoute(
                    psa.system, psa.companies[client], partial(psa_client, psa, self.settings.root)
                )
        return None


def run_daemon(
    settings: Settings, store: EvidenceStore, *, every: float = 15.0, max_parallel: int = 4
) -> None:
    """Run the schedule until SIGTERM or SIGINT; then stop the runs cleanly. ``store``
    is open for writing (with the MSP's key, if it has one, to sign what it records)."""
    log = json_logger()
    node = ControlNode(
        settings,
        store,
        ProcessLauncher(settings.root, settings.state_dir / "schedule" / "logs"),
        SystemClock(),
        log,
        max_parallel,
    )
    stop = threading.Event()

    received: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        # Nothing else here: the handler may run while this thread holds the log's
        # lock, and logging from it would wait for that lock for ever.
        received.append(signum)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    # Its environment holds every client's env: secrets for as long as it runs (its runs
    # inherit them): no other process of its user may read it (docs/engine.md). Should
    # the kernel refuse, its runs refuse local commands for the same reason.
    try:
        keep_control_process_private()
    except OSError as exc:
        log("scheduler.not_private", error=exc.strerror)
    log("scheduler.started", owner=node.state.owner, project=str(settings.root))
    deliveries = threading.Thread(target=node.deliver_until, args=(stop, every), daemon=True)
    deliveries.start()
    try:
        while not stop.is_set():
            node.run_pass()
            stop.wait(every)
        log("scheduler.stopping", signal=signal.Signals(received[0]).name if received else "")
        node.scheduler.stop()
        _safely(node.record_ticks, log)()
    finally:
        deliveries.join(timeout=60)  # one delivery may be under way; the rest wait in the database
    log("scheduler.stopped")


def _project(settings: Settings, log: Callable[..., object]) -> Project | None:
    """The project as it is now; None (and a log line) when it does not validate."""
    project = load_project(settings)
    if project.errors:
        log("project.invalid", problems=len(project.errors), first=str(project.errors[0]))
        return None
    return project


def _jobs(project: Project, current: Sequence[Job], log: Callable[..., object]) -> list[Job]:
    jobs = jobs_of(project)
    if [j.name for j in jobs] != [j.name for j in current]:
        log("jobs.loaded", jobs=len(jobs))
    return jobs


def _waivers(notifier: Notifier, project: Project, now: datetime) -> None:
    for event in waiver_events(project, now.date()):
        notifier.notify(event, now)


def _safely(action: Callable[..., None], log: Callable[..., object]) -> Callable[..., None]:
    """``action``, its failure logged instead of stopping the scheduler (a database or
    mail server hiccup must not take the schedule down)."""

    def guarded(*args: Any) -> None:
        try:
            action(*args)
        except Exception as exc:
            log("scheduler.error", action=action.__name__, error=f"{type(exc).__name__}: {exc}")

    return guarded


@dataclass(frozen=True)
class JobStatus:
    """One job as ``scheduler status`` shows it."""

    job: Job
    last: TickRow | None
    next_due: datetime

    def as_dict(self) -> dict[str, Any]:
        last = self.last
        return {
            "client": self.job.client,
            "policy": self.job.policy,
            "action": self.job.action,
            "cron": self.job.cron,
            "timezone": self.job.zone,
            "next": self.next_due.isoformat(),
            "last": None
            if last is None
            else {
                "due": last.due.isoformat(),
                "state": last.state.value,
                "reason": last.reason,
                "exit_code": last.exit_code,
                "finished": None if last.finished_at is None else last.finished_at.isoformat(),
            },
        }


def job_status(jobs: Sequence[Job], state: ScheduleState | None, now: datetime) -> list[JobStatus]:
    """Each job's last tick (None when never run, or no schedule state yet) and next."""
    return [
        JobStatus(job, state.last(job) if state else None, next_tick(job.cron, job.zone, now))
        for job in jobs
    ]


def systemd_unit(settings: Settings, user: str | None = None) -> str:
    """A systemd service running the scheduler for this project.

    ``KillMode=mixed``: systemd's SIGTERM goes to the scheduler alone, which hands it
    to each run and waits for them to finish the hosts they are on."""
    # systemd reads % as a specifier: a path holding one is written as %%.
    command = shlex.join(
        [sys.executable, "-m", "mspauto", "--project", str(settings.root), "scheduler", "run"]
    ).replace("%", "%%")
    lines = [
        "[Unit]",
        "Description=mspauto control node: policies on their schedules",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"ExecStart={command}",
        f"WorkingDirectory={str(settings.root).replace('%', '%%')}",
        *([f"User={user}"] if user else []),
        "Restart=on-failure",
        "RestartSec=10",
        "KillMode=mixed",
        "TimeoutStopSec=15min",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)


def unit_path(name: str = "mspauto-scheduler.service") -> Path:
    return Path("/etc/systemd/system") / name
