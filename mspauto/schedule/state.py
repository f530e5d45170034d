"""The schedule's state in the evidence database: what ran, what was skipped and why.

A tick's row is stamped (its key is unique) before its run starts: two schedulers
seeing the same tick run it once, and a scheduler that crashes mid-run finds the row on
restart and marks it interrupted instead of running the tick again. A running row's
owner beats its heart every pass; a row whose owner stopped beating is taken over as
interrupted, so a crash never holds a job's lock for good.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

from sqlalchemy import ColumnElement, Engine, Table, func, select, update
from sqlalchemy.exc import IntegrityError

from mspauto.evidence.records import ScheduledRun
from mspauto.evidence.schema import schedule_jobs, schedule_runs
from mspauto.schedule.jobs import Job, job_parts

__all__ = [
    "ATTEMPTS",
    "CLAIM",
    "ScheduleState",
    "TickRow",
    "TickState",
    "claim",
    "failure_text",
    "retry_at",
    "scheduled_run",
    "stamp",
    "this_owner",
]


class TickState(StrEnum):
    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"
    """The run ended with an error or found problems (its exit code says which)."""
    INTERRUPTED = "interrupted"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class TickRow:
    """One tick as recorded."""

    key: str
    job: str
    due: datetime
    state: TickState
    reason: str
    owner: str
    started_at: datetime
    heartbeat_at: datetime
    finished_at: datetime | None
    exit_code: int | None
    run_pid: int | None = None


def scheduled_run(row: TickRow) -> ScheduledRun:
    """The evidence record of an ended tick."""
    _client, policy, action = job_parts(row.job)
    return ScheduledRun(
        key=row.key,
        policy=policy,
        action=action,
        due=row.due.isoformat(),
        state=row.state.value,
        reason=row.reason,
        exit_code=row.exit_code,
    )


def this_owner() -> str:
    """Who holds a running tick: this host, process and a token of this start (a later
    process may get the same number)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class ScheduleState:
    """Reads and stamps ticks in the database behind ``engine``."""

    def __init__(self, engine: Engine, owner: str | None = None) -> None:
        self.engine = engine
        self.owner = owner or this_owner()

    # --- jobs -----------------------------------------------------------------------

    def seen_until(self, job: Job) -> datetime | None:
        """Up to when the job's ticks were handled (None: a job never seen)."""
        with self.engine.connect() as conn:
            value = conn.execute(
                select(schedule_jobs.c.seen_until).where(schedule_jobs.c.job == job.name)
            ).scalar()
        return None if value is None else _time(value)

    def mark_seen(self, job: Job, until: datetime) -> None:
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(schedule_jobs)
                .where(schedule_jobs.c.job == job.name, schedule_jobs.c.seen_until < stamp(until))
                .values(seen_until=stamp(until))
            ).rowcount
            if not changed:
                try:
                    with conn.begin_nested():
                        conn.execute(
                            schedule_jobs.insert().values(job=job.name, seen_until=stamp(until))
                        )
                except IntegrityError:
                    pass  # seen later already (by another scheduler)

    # --- ticks ----------------------------------------------------------------------

    def claim(self, job: Job, due: datetime, now: datetime) -> bool:
        """Stamp the tick as running here; False when someone stamped it first."""
        return self._insert(job, due, now, TickState.RUNNING, "")

    def skip(self, job: Job, due: datetime, now: datetime, reason: str) -> bool:
        """Record that the tick was not run, and why."""
        return self._insert(job, due, now, TickState.SKIPPED, reason, finished=now)

    def finish(
        self, key: str, state: TickState, now: datetime, reason: str, exit_code: int | None
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(schedule_runs)
                .where(schedule_runs.c.key == key, schedule_runs.c.state == TickState.RUNNING)
                .values(
                    state=state.value,
                    reason=reason,
                    finished_at=stamp(now),
                    heartbeat_at=stamp(now),
                    exit_code=exit_code,
                )
            )

    def started(self, key: str, pid: int) -> None:
        """The tick's run is process ``pid`` (of this host)."""
        with self.engine.begin() as conn:
            conn.execute(
                update(schedule_runs).where(schedule_runs.c.key == key).values(run_pid=pid)
            )

    def beat(self, now: datetime) -> None:
        """Say this owner's running ticks are still running."""
        with self.engine.begin() as conn:
            conn.execute(
                update(schedule_runs)
                .where(
                    schedule_runs.c.owner == self.owner,
                    schedule_runs.c.state == TickState.RUNNING,
                )
                .values(heartbeat_at=stamp(now))
            )

    def running(self, job: Job) -> TickRow | None:
        """The job's tick running now, if any."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(schedule_runs).where(
                    schedule_runs.c.job == job.name,
                    schedule_runs.c.state == TickState.RUNNING,
                )
            ).first()
        return None if row is None else _row(row)

    def running_of(self, owner: str) -> list[TickRow]:
        """The ticks ``owner`` holds as running."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(schedule_runs).where(
                    schedule_runs.c.owner == owner, schedule_runs.c.state == TickState.RUNNING
                )
            )
            return [_row(r) for r in rows]

    def reap(self, now: datetime, lease: timedelta) -> list[TickRow]:
        """Mark running ticks interrupted whose owner is gone: a process of this host
        that no longer exists, or any owner silent for longer than ``lease``."""
        reaped = []
        with self.engine.connect() as conn:
            rows = [
                _row(r)
                for r in conn.execute(
                    select(schedule_runs).where(schedule_runs.c.state == TickState.RUNNING)
                )
            ]
        for row in rows:
            if row.owner == self.owner:
                continue
            if _dead_here(row.owner):
                if row.run_pid is not None and _run_alive(row.run_pid):
                    continue  # its run finishes the hosts it is on (it got SIGTERM)
                why = (
                    f"the scheduler running it ({row.owner}) stopped before it ended"
                    if row.run_pid is not None
                    else f"the scheduler ({row.owner}) stopped before the run started"
                )
            elif now - row.heartbeat_at > lease:
                why = f"the scheduler running it ({row.owner}) was silent for over {lease}"
            else:
                continue
            self.finish(row.key, TickState.INTERRUPTED, now, why, None)
            reaped.append(replace(row, state=TickState.INTERRUPTED, reason=why))
        return reaped

    def failing_since(self, job: Job, due: datetime) -> datetime:
        """When the job's run of ``due`` began failing: the due of its first failed tick
        after its last ok one (``due`` itself when it is the first)."""
        with self.engine.connect() as conn:
            last_ok = conn.execute(
                select(func.max(schedule_runs.c.due)).where(
                    schedule_runs.c.job == job.name,
                    schedule_runs.c.state == TickState.OK,
                    schedule_runs.c.due < stamp(due),
                )
            ).scalar()
            first = conn.execute(
                select(func.min(schedule_runs.c.due)).where(
                    schedule_runs.c.job == job.name,
                    schedule_runs.c.state == TickState.FAILED,
                    schedule_runs.c.due > (last_ok or ""),
                    schedule_runs.c.due <= stamp(due),
                )
            ).scalar()
        return due if first is None else _time(first)

    def last(self, job: Job) -> TickRow | None:
        """The job's latest tick, whatever became of it."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(schedule_runs)
                .where(schedule_runs.c.job == job.name)
                .order_by(schedule_runs.c.due.desc())
                .limit(1)
            ).first()
        return None if row is None else _row(row)

    def ticks(self, job: Job) -> list[TickRow]:
        """Every recorded tick of the job, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(schedule_runs)
                .where(schedule_runs.c.job == job.name)
                .order_by(schedule_runs.c.due)
            )
            return [_row(r) for r in rows]

    def not_in_evidence(self, limit: int = 1000) -> list[TickRow]:
        """Ended ticks whose ``scheduled_run`` record is not in the evidence yet, oldest
        first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(schedule_runs)
                .where(
                    schedule_runs.c.state != TickState.RUNNING,
                    schedule_runs.c.in_evidence_at.is_(None),
                )
                .order_by(schedule_runs.c.due)
                .limit(limit)
            )
            return [_row(r) for r in rows]

    def in_evidence(self, keys: Sequence[str], now: datetime) -> None:
        """The ticks' records were appended to the evidence."""
        with self.engine.begin() as conn:
            for chunk in range(0, len(keys), 500):
                conn.execute(
                    update(schedule_runs)
                    .where(schedule_runs.c.key.in_(keys[chunk : chunk + 500]))
                    .values(in_evidence_at=stamp(now))
                )

    def unrecordable(self, key: str) -> None:
        """A row that cannot become a record (its job is not one mspauto names): set
        aside, so it never holds up the ticks behind it."""
        with self.engine.begin() as conn:
            conn.execute(
                update(schedule_runs)
                .where(schedule_runs.c.key == key)
                .values(in_evidence_at="unrecordable")
            )

    def _insert(
        self,
        job: Job,
        due: datetime,
        now: datetime,
        state: TickState,
        reason: str,
        finished: datetime | None = None,
    ) -> bool:
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    schedule_runs.insert().values(
                        key=job.run_key(due),
                        job=job.name,
                        due=stamp(due),
                        state=state.value,
                        reason=reason,
                        owner=self.owner,
                        started_at=stamp(now),
                        heartbeat_at=stamp(now),
                        finished_at=None if finished is None else stamp(finished),
                    )
                )
        except IntegrityError:
            return False
        return True


ATTEMPTS = 5
"""Tries of a delivery (a notification, a PSA call) before it is kept as given up."""
CLAIM = timedelta(minutes=10)
"""How long a delivery taken by one scheduler is left to it (after a crash mid-way it
is due again then)."""


def retry_at(attempts: int, now: datetime) -> datetime | None:
    """When to try again after ``attempts`` failed tries: 1, 2, 4 and 8 minutes later;
    None once :data:`ATTEMPTS` have failed."""
    if attempts >= ATTEMPTS:
        return None
    return now + timedelta(minutes=2 ** (attempts - 1))


def claim(engine: Engine, table: Table, *unchanged: ColumnElement[bool], now: datetime) -> bool:
    """Take a row of pending work (a notification, a PSA call) for this process: its
    ``next_try`` moves on by :data:`CLAIM` only if the row is still as this process read
    it (``unchanged``), so a second scheduler that read it too finds it taken."""
    with engine.begin() as conn:
        taken = conn.execute(
            update(table).where(*unchanged).values(next_try=stamp(now + CLAIM))
        ).rowcount
    return bool(taken == 1)


def failure_text(exc: Exception, expected: type[Exception]) -> str:
    """One line for a failed delivery: the message of an expected failure, else the
    exception's type and message."""
    return str(exc) if isinstance(exc, expected) else f"{type(exc).__name__}: {exc}"


def stamp(at: datetime) -> str:
    """A UTC time as stored: fixed width, so text order is time order."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _row(row: object) -> TickRow:
    r = row._mapping  # type: ignore[attr-defined]
    return TickRow(
        key=r["key"],
        job=r["job"],
        due=_time(r["due"]),
        state=TickState(r["state"]),
        reason=r["reason"],
        owner=r["owner"],
        started_at=_time(r["started_at"]),
        heartbeat_at=_time(r["heartbeat_at"]),
        finished_at=None if r["finished_at"] is None else _time(r["finished_at"]),
        exit_code=r["exit_code"],
        run_pid=r["run_pid"],
    )


def _dead_here(owner: str) -> bool:
    """Whether ``owner`` (not this scheduler) was a process of this host that is gone."""
    host, pid, _token = [*owner.rsplit(":", 2), "", ""][:3]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return True  # an earlier process that had this number
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _run_alive(pid: int) -> bool:
    """Whether an mspauto run with this process number still exists here."""
    try:
        return b"mspauto" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
