"""The scheduler's promises, with a clock the test moves (issue 13): one run per tick,
no overlap, missed ticks caught up once or recorded as skipped, DST edges, a crash
mid-run, two schedulers, and a clean stop. The runs are stand-ins; the state is a real
evidence database (SQLite), as the control node keeps it."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mspauto.evidence.store import EvidenceStore
from mspauto.policy.models import MaintenanceWindow
from mspauto.schedule.daemon import EXIT_STOPPED, Scheduler
from mspauto.schedule.jobs import Job
from mspauto.schedule.state import ScheduleState, TickState


@dataclass
class FakeClock:
    at: datetime

    def now(self) -> datetime:
        return self.at

    def wait(self, seconds: float, stop: threading.Event) -> None:
        self.at += timedelta(seconds=seconds)


@dataclass
class FakeLaunch:
    code: int | None = None
    pid: int = 999_999_998  # no such process
    stopped: bool = False
    words: str = ""

    def poll(self) -> int | None:
        return self.code

    def stop(self) -> None:
        self.stopped = True
        self.code = EXIT_STOPPED

    def last_words(self) -> str:
        return self.words

    def output(self) -> str:
        return ""


@dataclass
class FakeLauncher:
    started: list[tuple[str, datetime]] = field(default_factory=list)
    launches: list[FakeLaunch] = field(default_factory=list)

    def start(self, job: Job, due: datetime) -> FakeLaunch:
        self.started.append((job.name, due))
        self.launches.append(FakeLaunch())
        return self.launches[-1]

    def finish_all(self, code: int = 0) -> None:
        for launch in self.launches:
            if launch.code is None:
                launch.code = code


@pytest.fixture
def engine(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = EvidenceStore(f"sqlite:///{tmp_path / 'evidence.db'}")
    yield store.engine
    store.close()


def job(cron: str = "0 * * * *", zone: str = "UTC", catch_up: bool = True) -> Job:
    return Job("acme", "linux", "backup", cron, zone, catch_up)


def scheduler(engine, jobs, clock, launcher=None, owner=None) -> Scheduler:  # type: ignore[no-untyped-def]
    return Scheduler(jobs, ScheduleState(engine, owner), launcher or FakeLauncher(), clock)


def states(engine, j: Job) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    return [
        (row.due.strftime("%H:%M"), row.state.value, row.reason)
        for row in ScheduleState(engine).ticks(j)
    ]


T0 = datetime(2026, 12, 3, 9, 59, 30, tzinfo=UTC)


def test_each_tick_runs_once_on_time(engine) -> None:  # type: ignore[no-untyped-def]
    clock, launcher, hourly = FakeClock(T0), FakeLauncher(), job()
    s = scheduler(engine, [hourly], clock, launcher)
    for _ in range(3 * 60 * 2):  # three hours of passes every 30 s
        s.run_pass()
        launcher.finish_all()
        clock.at += timedelta(seconds=30)
    assert [due.strftime("%H:%M") for _, due in launcher.started] == ["10:00", "11:00", "12:00"]
    s.run_pass()
    assert [row[:2] for row in states(engine, hourly)] == [
        ("10:00", "ok"),
        ("11:00", "ok"),
        ("12:00", "ok"),
    ]


def test_a_tick_that_comes_while_the_last_run_goes_is_skipped_with_the_reason(engine) -> None:  # type: ignore[no-untyped-def]
    clock, launcher, hourly = FakeClock(T0), FakeLauncher(), job()
    s = scheduler(engine, [hourly], clock, launcher)
    s.run_pass()
    clock.at = T0 + timedelta(minutes=1)
    s.run_pass()  # 10:00 starts, and runs for over an hour
    clock.at = T0 + timedelta(hours=1, minutes=1)
    s.run_pass()
    assert len(launcher.started) == 1
    assert states(engine, hourly)[1] == (
        "11:00",
        "skipped",
        "the run of acme/linux/backup@2026-12-03T10:00Z was still going",
    )


def test_a_three_hour_outage_catches_up_once_and_records_the_rest(engine) -> None:  # type: ignore[no-untyped-def]
    clock, launcher, hourly = FakeClock(T0), FakeLauncher(), job()
    scheduler(engine, [hourly], clock, launcher).run_pass()  # seen at 09:59:30; then down
    clock.at = T0 + timedelta(hours=3, minutes=20)  # back at 13:19:30
    scheduler(engine, [hourly], clock, launcher).run_pass()
    assert [due.strftime("%H:%M") for _, due in launcher.started] == ["13:00"]
    replaced = "missed while the control node was down or busy; a later time replaced it"
    assert states(engine, hourly) == [
        ("10:00", "skipped", replaced),
        ("11:00", "skipped", replaced),
        ("12:00", "skipped", replaced),
        ("13:00", "running", ""),
    ]


def test_without_catch_up_a_missed_tick_is_skipped_not_run_late(engine) -> None:  # type: ignore[no-untyped-def]
    clock, launcher, hourly = FakeClock(T0), FakeLauncher(), job(catch_up=False)
    scheduler(engine, [hourly], clock, launcher).run_pass()
    clock.at = T0 + timedelta(minutes=40)  # 10:39:30: 10:00 is 39 minutes late
    scheduler(engine, [hourly], clock, launcher).run_pass()
    assert launcher.started == []
    assert states(engine, hourly) == [
        (
            "10:00",
            "skipped",
            "missed while the control node was down; "
            "the schedule does not catch up (catch_up: false)",
        )
    ]


def test_a_missed_patch_install_runs_late_only_inside_its_window(engine) -> None:  # type: ignore[no-untyped-def]
    window = MaintenanceWindow(start=time(10, 0), duration=timedelta(hours=2))
    patch = Job("acme", "linux", "patch", "0 10 * * *", "UTC", True, window=window)
    clock, launcher = FakeClock(T0), FakeLauncher()
    scheduler(engine, [patch], clock, launcher).run_pass()
    clock.at = T0 + timedelta(hours=1, minutes=30)  # 11:29:30: the window is open
    scheduler(engine, [patch], clock, launcher).run_pass()
    assert [due.strftime("%d %H:%M") for _, due in launcher.started] == ["03 10:00"]
    launcher.finish_all()
    clock.at += timedelta(days=1, hours=3)  # 14:29:30 the next day: the window closed
    scheduler(engine, [patch], clock, launcher).run_pass()
    assert len(launcher.started) == 1
    assert states(engine, patch)[-1] == (
        "10:00",
        "skipped",
        "missed while the control node was down; its maintenance window has closed",
    )


def test_a_crash_mid_run_is_marked_interrupted_and_not_run_again(engine) -> None:  # type: ignore[no-untyped-def]
    clock, hourly = FakeClock(T0), job()
    gone = f"{__import__('socket').gethostname()}:999999999:deadbeef"  # no such process
    crashed = scheduler(engine, [hourly], clock, owner=gone)
    crashed.run_pass()
    clock.at = T0 + timedelta(minutes=1)
    crashed.run_pass()  # 10:00 starts; then the scheduler is killed
    clock.at = T0 + timedelta(minutes=5)
    launcher = FakeLauncher()
    restarted = scheduler(engine, [hourly], clock, launcher)
    ended: list[tuple[str, TickState, str]] = []
    restarted.after_tick = lambda job, due, state, code, why, out: ended.append(
        (job.run_key(due), state, why)
    )
    restarted.run_pass()
    assert launcher.started == []  # 10:00 is not run a second time
    assert ended == [
        (
            "acme/linux/backup@2026-12-03T10:00Z",
            TickState.INTERRUPTED,
            f"the scheduler running it ({gone}) stopped before it ended",
        )
    ]  # and people hear of it
    [row] = ScheduleState(engine).ticks(hourly)
    assert row.state is TickState.INTERRUPTED
    assert row.reason == f"the scheduler running it ({gone}) stopped before it ended"
    clock.at = T0 + timedelta(hours=1, minutes=1)
    restarted.run_pass()  # and the job is free again
    assert [due.strftime("%H:%M") for _, due in launcher.started] == ["11:00"]


def test_a_silent_scheduler_elsewhere_loses_its_lock_after_the_lease(engine) -> None:  # type: ignore[no-untyped-def]
    clock, hourly = FakeClock(T0), job()
    elsewhere = scheduler(engine, [hourly], clock, owner="other-node:4242:cafe")
    elsewhere.run_pass()
    clock.at = T0 + timedelta(minutes=1)
    elsewhere.run_pass()
    here = scheduler(engine, [hourly], clock)
    clock.at = T0 + timedelta(minutes=5)
    here.run_pass()
    assert ScheduleState(engine).ticks(hourly)[0].state is TickState.RUNNING  # within lease
    clock.at = T0 + timedelta(minutes=12)
    here.run_pass()
    [row] = ScheduleState(engine).ticks(hourly)
    assert row.state is TickState.INTERRUPTED
    assert "silent for over 0:10:00" in row.reason


def test_two_schedulers_on_one_job_run_each_tick_once(engine) -> None:  # type: ignore[no-untyped-def]
    clock, hourly = FakeClock(T0), job()
    one, two = FakeLauncher(), FakeLauncher()
    first = scheduler(engine, [hourly], clock, one)
    second = scheduler(engine, [hourly], clock, two)
    for _ in range(4 * 60):  # four hours, both passing every minute
        first.run_pass()
        second.run_pass()
        one.finish_all()
        two.finish_all()
        clock.at += timedelta(minutes=1)
    ticks = sorted(due for _, due in one.started + two.started)
    assert [t.strftime("%H:%M") for t in ticks] == ["10:00", "11:00", "12:00", "13:00"]


@pytest.mark.parametrize(
    ("zone", "day", "expected"),
    [
        ("America/New_York", (2026, 3, 8), ["01:30 EST", "03:30 EDT"]),
        ("America/New_York", (2026, 11, 1), ["01:30 EDT", "02:30 EST"]),
        ("Europe/Berlin", (2026, 3, 29), ["01:30 CET", "03:30 CEST"]),
        ("Europe/Berlin", (2026, 10, 25), ["01:30 CEST", "02:30 CEST"]),
    ],
)
def test_a_dst_change_day_runs_each_local_time_once(engine, zone, day, expected) -> None:  # type: ignore[no-untyped-def]
    """Two runs a night (01:30 and 02:30), passes every five minutes for eight hours:
    in spring 02:30 does not exist (it runs at 03:30, once); in autumn the repeated
    hour runs nothing twice."""
    tz = ZoneInfo(zone)
    nightly = job("30 1,2 * * *", zone)
    year, month, date_ = day
    midnight = datetime(year, month, date_, tzinfo=tz).astimezone(UTC)
    clock, launcher = FakeClock(midnight - timedelta(hours=2)), FakeLauncher()
    s = scheduler(engine, [nightly], clock, launcher)
    for _ in range(12 * 8):
        s.run_pass()
        launcher.finish_all()
        clock.at += timedelta(minutes=5)
    assert [due.astimezone(tz).strftime("%H:%M %Z") for _, due in launcher.started] == expected


def test_stopping_interrupts_runs_and_skips_what_waited(engine) -> None:  # type: ignore[no-untyped-def]
    clock, launcher = FakeClock(T0), FakeLauncher()
    jobs = [Job("acme", f"p{n}", "backup", "0 * * * *", "UTC", True) for n in range(6)]
    s = scheduler(engine, jobs, clock, launcher)
    s.run_pass()
    clock.at = T0 + timedelta(minutes=1)
    s.run_pass()  # six ticks: four run (max_parallel), two wait
    assert len(launcher.started) == 4
    s.stop(patience=5)
    assert all(launch.stopped for launch in launcher.launches)
    outcomes = sorted(
        (row.state.value, row.reason) for j in jobs for row in ScheduleState(engine).ticks(j)
    )
    assert (
        outcomes
        == [
            (
                "interrupted",
                "the scheduler was stopped (SIGTERM): the run finished the hosts it was on",
            )
        ]
        * 4
        + [("skipped", "the scheduler was stopped before a slot was free")] * 2
    )


def test_a_failed_run_keeps_its_exit_code_and_last_words(engine) -> None:  # type: ignore[no-untyped-def]
    clock, launcher, hourly = FakeClock(T0), FakeLauncher(), job()
    s = scheduler(engine, [hourly], clock, launcher)
    s.run_pass()
    clock.at = T0 + timedelta(minutes=1)
    s.run_pass()
    launcher.launches[0].code, launcher.launches[0].words = 2, "error: web1: unreachable"
    s.run_pass()
    [row] = ScheduleState(engine).ticks(hourly)
    assert (row.state, row.exit_code, row.reason) == (
        TickState.FAILED,
        2,
        "error: web1: unreachable",
    )


def test_a_run_that_cannot_be_started_fails_its_tick_and_frees_the_job(engine) -> None:  # type: ignore[no-untyped-def]
    class NoProcesses(FakeLauncher):
        def start(self, job: Job, due: datetime) -> FakeLaunch:
            raise OSError(11, "Resource temporarily unavailable")

    clock, hourly = FakeClock(T0), job()
    s = scheduler(engine, [hourly], clock, NoProcesses())
    s.run_pass()
    clock.at = T0 + timedelta(minutes=1)
    s.run_pass()
    [row] = ScheduleState(engine).ticks(hourly)
    assert (row.state, row.reason) == (
        TickState.FAILED,
        "the run could not be started: [Errno 11] Resource temporarily unavailable",
    )
    launcher = FakeLauncher()
    s.launcher = launcher
    clock.at = T0 + timedelta(hours=1, minutes=1)
    s.run_pass()  # the job is not left busy
    assert [due.strftime("%H:%M") for _, due in launcher.started] == ["11:00"]


def test_a_run_that_failed_before_the_stop_keeps_its_outcome(engine) -> None:  # type: ignore[no-untyped-def]
    clock, launcher, hourly = FakeClock(T0), FakeLauncher(), job()
    s = scheduler(engine, [hourly], clock, launcher)
    s.run_pass()
    clock.at = T0 + timedelta(minutes=1)
    s.run_pass()
    launcher.launches[0].code = 2  # a breach found, between two passes; then SIGTERM
    s.stop(patience=5)
    [row] = ScheduleState(engine).ticks(hourly)
    assert (row.state, row.exit_code) == (TickState.FAILED, 2)
    assert not launcher.launches[0].stopped


def test_a_database_hiccup_while_recording_never_leaves_the_job_busy(engine) -> None:  # type: ignore[no-untyped-def]
    clock, launcher, hourly = FakeClock(T0), FakeLauncher(), job()
    s = scheduler(engine, [hourly], clock, launcher)
    s.run_pass()
    clock.at = T0 + timedelta(minutes=1)
    s.run_pass()
    launcher.finish_all()
    real_finish = s.state.finish
    s.state.finish = lambda *a: (_ for _ in ()).throw(OSError("database is locked"))  # type: ignore[method-assign]
    with pytest.raises(OSError):
        s.run_pass()  # the daemon logs this and goes on
    s.state.finish = real_finish  # type: ignore[method-assign]
    s.run_pass()
    assert ScheduleState(engine).ticks(hourly)[0].state is TickState.OK
    clock.at = T0 + timedelta(hours=1, minutes=1)
    s.run_pass()
    assert [due.strftime("%H:%M") for _, due in launcher.started] == ["10:00", "11:00"]


def test_a_run_left_by_a_crashed_scheduler_holds_its_job_until_it_ends(engine) -> None:  # type: ignore[no-untyped-def]
    """The run got SIGTERM when its scheduler died and finishes the hosts it is on (a
    patch, a reboot): the next tick must not start beside it."""
    import socket
    import subprocess
    import sys

    clock, hourly = FakeClock(T0), job()
    gone = f"{socket.gethostname()}:999999999:deadbeef"
    crashed = scheduler(engine, [hourly], clock, owner=gone)
    crashed.run_pass()
    clock.at = T0 + timedelta(minutes=1)
    crashed.run_pass()
    run = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "mspauto"])
    try:
        # Popen returns as the child's exec begins: its command line shows a moment later.
        cmdline = Path(f"/proc/{run.pid}/cmdline")
        for _ in range(200):
            if b"mspauto" in cmdline.read_bytes():
                break
            threading.Event().wait(0.05)
        crashed.state.started(hourly.run_key(T0 + timedelta(seconds=30)), run.pid)
        launcher = FakeLauncher()
        restarted = scheduler(engine, [hourly], clock, launcher)
        clock.at = T0 + timedelta(hours=1, minutes=1)
        restarted.run_pass()
        first, second = ScheduleState(engine).ticks(hourly)
        assert first.state is TickState.RUNNING
        assert (second.state, second.reason) == (
            TickState.SKIPPED,
            "the run of acme/linux/backup@2026-12-03T10:00Z was still going",
        )
    finally:
        run.kill()
        run.wait()
    clock.at += timedelta(minutes=1)
    restarted.run_pass()
    assert ScheduleState(engine).ticks(hourly)[0].state is TickState.INTERRUPTED
    assert launcher.started == []
