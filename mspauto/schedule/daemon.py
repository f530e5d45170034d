"""The scheduler: each pass finds the ticks that came due, decides each, starts runs.

Every tick that comes due is either run or recorded as skipped with the reason; none is
lost silently, none runs twice:

- A tick is stamped in the database (its key is unique) before its run starts.
- A job runs once at a time: a tick that comes while the job's last run is still going
  is skipped, saying which run it waited for.
- Ticks missed while the control node was down: all but the newest are skipped; the
  newest runs once if its job catches up (``catch_up: true``, the default) and, for a
  patch install, its maintenance window is still open; otherwise it is skipped too.
- A run whose scheduler died is marked interrupted by the next pass of any scheduler
  (a process of this host that is gone, or one silent for longer than the lease).

Each run is a child process running the same command a tech would type, so a crash of
a run cannot take the scheduler with it, and SIGTERM reaches the run as it would at a
terminal: it starts no more hosts, lets the running ones finish and records itself as
interrupted.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from mspauto.patching.planner import window_state
from mspauto.schedule.jobs import Job
from mspauto.schedule.state import ScheduleState, TickState
from mspauto.schedule.ticks import ticks_between

__all__ = ["Clock", "Launch", "Launcher", "ProcessLauncher", "Scheduler", "SystemClock"]


class Clock(Protocol):
    def now(self) -> datetime: ...

    def wait(self, seconds: float, stop: threading.Event) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def wait(self, seconds: float, stop: threading.Event) -> None:
        stop.wait(seconds)


class Launch(Protocol):
    """A run started for a tick."""

    def poll(self) -> int | None:
        """Its exit code, or None while it runs."""
        ...

    def stop(self) -> None:
        """Ask it to stop (it finishes the hosts it is on and records itself)."""
        ...

    def last_words(self) -> str:
        """The last line it wrote to stderr (why it failed)."""
        ...

    def output(self) -> str:
        """What it wrote to stdout (its JSON result), once it ended."""
        ...


class Launcher(Protocol):
    def start(self, job: Job, due: datetime) -> Launch: ...


EXIT_STOPPED = 130
"""What an mspauto command exits with when stopped by a signal."""


@dataclass
class Scheduler:
    """Runs ``jobs`` on their schedules; :meth:`run_pass` is one look at the clock."""

    jobs: Sequence[Job]
    state: ScheduleState
    launcher: Launcher
    clock: Clock
    grace: timedelta = timedelta(minutes=2)
    """A tick found due this late is on time (a pass, a slow start); later, missed."""
    lease: timedelta = timedelta(minutes=10)
    """A running tick whose scheduler was silent this long is taken as interrupted."""
    max_parallel: int = 4
    """Runs at once; ticks beyond wait for a free slot, in order."""
    log: Callable[..., object] = field(default=lambda event, **fields: None)
    """Called with an event name and its fields for every decision (the daemon's
    structured log); nothing secret is ever among them."""
    after_tick: Callable[[Job, datetime, TickState, int | None, str, str], None] | None = None
    """Called when a run ends: job, due, state, exit code, reason, its stdout."""
    running: dict[str, tuple[Job, datetime, Launch]] = field(default_factory=dict)
    waiting: deque[tuple[Job, datetime]] = field(default_factory=deque)

    def run_pass(self) -> None:
        now = self.clock.now()
        for row in self.state.reap(now, self.lease):
            self.log("tick.interrupted", key=row.key, owner=row.owner, reason=row.reason)
            job = next((j for j in self.jobs if j.name == row.job), None)
            if job is not None and self.after_tick is not None:
                self.after_tick(job, row.due, row.state, None, row.reason, "")
        self._collect(now)
        self._forget_lost(now)
        for job in self.jobs:
            try:
                seen = self.state.seen_until(job)
                if seen is not None:
                    due = list(ticks_between(job.cron, job.zone, seen, now))
                    if due:
                        self._decide(job, due, now)
                # A job seen for the first time owes nothing from before.
                self.state.mark_seen(job, now)
            except Exception as exc:  # one job's trouble (the database) is not all jobs'
                self.log("scheduler.error", job=job.name, error=f"{type(exc).__name__}: {exc}")
        self._start_waiting()
        self.state.beat(now)

    def _forget_lost(self, now: datetime) -> None:
        """Rows this scheduler stamped as running but no longer tracks (an error came
        between stamping and starting, or between ending and recording) would hold
        their job busy for good: they are marked interrupted."""
        tracked = set(self.running) | {job.run_key(due) for job, due in self.waiting}
        for row in self.state.running_of(self.state.owner):
            if row.key not in tracked:
                why = (
                    "the scheduler lost track of the run (an error while starting or recording it)"
                )
                self.state.finish(row.key, TickState.INTERRUPTED, now, why, None)
                self.log("tick.interrupted", key=row.key, reason=why)

    def stop(self, patience: float = 600.0) -> None:
        """Stop every run (each finishes the hosts it is on) and record how each ended;
        ticks still waiting are skipped."""
        now = self.clock.now()
        while self.waiting:
            job, due = self.waiting.popleft()
            why = "the scheduler was stopped before a slot was free"
            self.state.finish(job.run_key(due), TickState.SKIPPED, now, why, None)
            self.log("tick.skipped", key=job.run_key(due), reason=why)
        self._collect(now)  # runs that ended before the stop keep their own outcome
        for _, _, launch in self.running.values():
            launch.stop()
        deadline = now + timedelta(seconds=patience)
        while self.running and self.clock.now() < deadline:
            self._collect(self.clock.now())
            if self.running:
                self.clock.wait(0.2, threading.Event())

    # --- inside a pass --------------------------------------------------------------

    def _decide(self, job: Job, due: list[datetime], now: datetime) -> None:
        newest = due[-1]
        for tick in due[:-1]:
            self._skip(
                job,
                tick,
                now,
                "missed while the control node was down or busy; a later time replaced it",
            )
        busy = self._busy(job)
        if busy is not None:
            self._skip(job, newest, now, f"the run of {busy} was still going")
            return
        if now - newest > self.grace:
            why_not = self._no_catch_up(job, now)
            if why_not:
                self._skip(job, newest, now, f"missed while the control node was down; {why_not}")
                return
        if self.state.claim(job, newest, now):
            self.waiting.append((job, newest))

    def _skip(self, job: Job, due: datetime, now: datetime, reason: str) -> None:
        if self.state.skip(job, due, now, reason):
            self.log("tick.skipped", key=job.run_key(due), reason=reason)

    def _no_catch_up(self, job: Job, now: datetime) -> str:
        """Why a missed tick is not run late ('' when it is)."""
        if not job.catch_up:
            return "the schedule does not catch up (catch_up: false)"
        if job.window is not None:
            window = window_state(job.window, job.window_zone, now)
            if not window.open:
                return "its maintenance window has closed"
        return ""

    def _busy(self, job: Job) -> str | None:
        """The tick this job is still running (or waiting to run), if any."""
        for key, (running_job, _, _) in self.running.items():
            if running_job.name == job.name:
                return key
        for waiting_job, due in self.waiting:
            if waiting_job.name == job.name:
                return waiting_job.run_key(due)
        row = self.state.running(job)
        return None if row is None else row.key

    def _start_waiting(self) -> None:
        while self.waiting and len(self.running) < self.max_parallel:
            job, due = self.waiting.popleft()
            key = job.run_key(due)
            try:
                launch = self.launcher.start(job, due)
            except OSError as exc:  # no process (fork, a full disk): the tick failed
                why = f"the run could not be started: {exc}"
                self.state.finish(key, TickState.FAILED, self.clock.now(), why, None)
                self.log("tick.finished", key=key, state="failed", exit_code=None, reason=why)
                if self.after_tick is not None:
                    self.after_tick(job, due, TickState.FAILED, None, why, "")
                continue
            self.running[key] = (job, due, launch)
            pid = getattr(launch, "pid", None)
            if pid is not None:
                self.state.started(key, pid)
            self.log("tick.started", key=key, command=job.command(due)[0])

    def _collect(self, now: datetime) -> None:
        for key, (job, due, launch) in list(self.running.items()):
            code = launch.poll()
            if code is None:
                continue
            if code == 0:
                state, why = TickState.OK, ""
            elif code in (EXIT_STOPPED, -signal.SIGTERM):
                state = TickState.INTERRUPTED
                why = "the scheduler was stopped (SIGTERM): the run finished the hosts it was on"
            else:
                state, why = TickState.FAILED, launch.last_words()
            # Recorded before it is forgotten: if the database fails now, the next
            # pass tries again rather than leaving the job looking busy for good.
            self.state.finish(key, state, now, why, code)
            del self.running[key]
            self.log("tick.finished", key=key, state=state.value, exit_code=code, reason=why)
            if self.after_tick is not None:
                self.after_tick(job, due, state, code, why, launch.output())


class ProcessLauncher:
    """Starts each run as ``python -m mspauto --project ROOT ...``, its output kept in
    ``logs/`` (one file per tick) for a person to read."""

    def __init__(self, project: Path, logs: Path) -> None:
        self.project = project
        self.logs = logs

    def start(self, job: Job, due: datetime) -> Launch:
        # One folder per client, and a separator names cannot hold: no two jobs share
        # a file, so one client's output never reaches another's notifications.
        folder = self.logs / job.client
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        name = f"{job.policy}+{job.action}+{due:%Y%m%dT%H%MZ}"
        out_path, err_path = folder / f"{name}.out", folder / f"{name}.err"
        argv = [sys.executable, "-m", "mspauto", "--project", str(self.project)]
        with out_path.open("wb") as out, err_path.open("wb") as err:
            process = subprocess.Popen(
                [*argv, *job.command(due)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                process_group=0,  # a Ctrl-C at the scheduler's terminal is not the run's
                preexec_fn=_stop_with(os.getpid()),  # noqa: PLW1509  (see _stop_with)
            )
        return _ProcessLaunch(process, out_path, err_path)


@dataclass
class _ProcessLaunch:
    process: subprocess.Popen[bytes]
    out: Path
    err: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def poll(self) -> int | None:
        return self.process.poll()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def last_words(self) -> str:
        lines = _read(self.err).splitlines()
        return next((line.strip() for line in reversed(lines) if line.strip()), "")[:500]

    def output(self) -> str:
        return _read(self.out)


def _read(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            return handle.read(1 << 20).decode(errors="replace")
    except OSError:
        return ""


_LIBC = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _stop_with(parent: int) -> Callable[[], None]:
    """What a run's child does between fork and exec: ask Linux for SIGTERM when the
    scheduler dies (even by SIGKILL), so no run goes on unwatched, and stop at once if
    it died already. Only a call into libc, loaded beforehand: the scheduler has other
    threads, and a child must take no lock they might hold."""

    def in_the_child() -> None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            os._exit(1)

    return in_the_child
