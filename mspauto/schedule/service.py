"""The control node's daemon around :class:`~mspauto.schedule.daemon.Scheduler`: the
project re-read every pass (a policy edited is picked up without a restart; a project
that stops validating keeps the last good jobs), JSON-lines logs, SIGTERM, systemd."""

from __future__ import annotations

import logging
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

import structlog

from mspauto.config import Settings
from mspauto.policy.models import NotificationPolicy
from mspauto.project import Project, load_project
from mspauto.schedule.daemon import ProcessLauncher, Scheduler, SystemClock
from mspauto.schedule.jobs import Job, jobs_of
from mspauto.schedule.notify import Notifier, tick_events, waiver_events
from mspauto.schedule.psa import PsaRoute, TicketDesk, psa_client
from mspauto.schedule.state import ScheduleState, TickRow, TickState
from mspauto.schedule.ticks import next_tick

__all__ = ["JobStatus", "job_status", "run_daemon", "systemd_unit"]


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


def run_daemon(settings: Settings, *, every: float = 15.0, max_parallel: int = 4) -> None:
    """Run the schedule until SIGTERM or SIGINT; then stop the runs cleanly."""
    from mspauto.evidence.store import EvidenceStore

    log = json_logger()
    store = EvidenceStore(settings.evidence_url, writable=True)
    state = ScheduleState(store.engine)
    notifier = Notifier(store.engine, settings.root, log=log)
    desk = TicketDesk(store.engine, lambda client: _psa_route(notifier, client, settings), log=log)

    def after_tick(*ended: Any) -> None:
        job, due, tick_state, code, reason, output = ended
        since = state.failing_since(job, due) if tick_state is TickState.FAILED else None
        now = datetime.now(UTC)
        for event in tick_events(job, due, tick_state, code, reason, since, output):
            notifier.notify(event, now)
            if event.kind == "sla-breached":
                desk.breach(event.key, job.client, event.subject, event.text, job.run_key(due), now)

    scheduler = Scheduler(
        [],
        state,
        ProcessLauncher(settings.root, settings.state_dir / "schedule" / "logs"),
        SystemClock(),
        max_parallel=max_parallel,
        log=log,
        after_tick=_safely(after_tick, log),
    )
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log("scheduler.stopping", signal=signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    log("scheduler.started", owner=state.owner, project=str(settings.root))
    try:
        while not stop.is_set():
            project = _project(settings, log)
            if project is not None:
                scheduler.jobs = _jobs(project, scheduler.jobs, log)
                notifier.policies = [
                    p.policy for p in project.policies if isinstance(p.policy, NotificationPolicy)
                ]
            _safely(scheduler.run_pass, log)()
            now = datetime.now(UTC)
            if project is not None:
                _safely(_waivers, log)(notifier, project, now)
            _safely(notifier.deliver, log)(now)
            _safely(desk.work, log)(now)
            stop.wait(every)
        scheduler.stop()
    finally:
        store.close()
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


def _psa_route(notifier: Notifier, client: str, settings: Settings) -> PsaRoute | None:
    """Where the client's breach tickets go: the first notification policy with a PSA
    that covers the client, wants SLA breaches and names the client's company."""
    for policy in notifier.policies:
        psa = policy.psa
        if psa is None or not policy.covers(client) or "sla-breached" not in policy.events:
            continue
        if client in psa.companies:
            return PsaRoute(
                psa.system, psa.companies[client], partial(psa_client, psa, settings.root)
            )
    return None


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
