"""Cron ticks across DST changes: every tick fires exactly once, in order, on the right
instant (issue 13; croniter's own zone handling has known DST bugs, so it is never
asked about a zone)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from mspauto.schedule.ticks import next_tick, ticks_between


def local(zone: str, year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=ZoneInfo(zone)).astimezone(UTC)


def fired(cron: str, zone: str, first_day: tuple[int, int, int], days: int = 3) -> list[str]:
    """The ticks after local midnight of ``first_day``, for ``days`` local days."""
    start = local(zone, *first_day)
    last_day = datetime(*first_day) + timedelta(days=days)
    end = local(zone, last_day.year, last_day.month, last_day.day) - timedelta(seconds=1)
    tz = ZoneInfo(zone)
    return [
        t.astimezone(tz).strftime("%m-%d %H:%M %Z") for t in ticks_between(cron, zone, start, end)
    ]


# Clocks go forward: New York 2026-03-08 02:00 EST -> 03:00 EDT; Berlin 2026-03-29
# 02:00 CET -> 03:00 CEST. Clocks go back: New York 2026-11-01 02:00 EDT -> 01:00 EST;
# Berlin 2026-10-25 03:00 CEST -> 02:00 CET.


@pytest.mark.parametrize(
    ("zone", "day", "expected"),
    [
        (
            "America/New_York",
            (2026, 3, 7),
            ["03-07 02:30 EST", "03-08 03:30 EDT", "03-09 02:30 EDT"],
        ),
        (
            "Europe/Berlin",
            (2026, 3, 28),
            ["03-28 02:30 CET", "03-29 03:30 CEST", "03-30 02:30 CEST"],
        ),
    ],
)
def test_a_time_the_clock_skips_fires_once_just_after_the_change(
    zone: str, day: tuple[int, int, int], expected: list[str]
) -> None:
    assert fired("30 2 * * *", zone, day) == expected


@pytest.mark.parametrize(
    ("zone", "day", "cron", "expected"),
    [
        (
            "America/New_York",
            (2026, 10, 31),
            "30 1 * * *",
            ["10-31 01:30 EDT", "11-01 01:30 EDT", "11-02 01:30 EST"],
        ),
        (
            "Europe/Berlin",
            (2026, 10, 24),
            "30 2 * * *",
            ["10-24 02:30 CEST", "10-25 02:30 CEST", "10-26 02:30 CET"],
        ),
    ],
)
def test_a_time_the_clock_repeats_fires_once_at_its_first_occurrence(
    zone: str, day: tuple[int, int, int], cron: str, expected: list[str]
) -> None:
    assert fired(cron, zone, day) == expected


def test_frequent_ticks_across_both_changes_never_repeat_an_instant() -> None:
    zone = "America/New_York"
    spring = fired("*/30 1-4 * * *", zone, (2026, 3, 8), days=1)
    assert spring == [
        "03-08 01:00 EST",
        "03-08 01:30 EST",
        # 02:00 and 02:30 do not exist: they land on 03:00 and 03:30, which fire once
        "03-08 03:00 EDT",
        "03-08 03:30 EDT",
        "03-08 04:00 EDT",
        "03-08 04:30 EDT",
    ]
    autumn = fired("*/30 0-3 * * *", zone, (2026, 11, 1), days=1)
    # 01:00 and 01:30 happen twice: the second hour fires nothing; 00:00 is the start
    assert autumn == [
        "11-01 00:30 EDT",
        "11-01 01:00 EDT",
        "11-01 01:30 EDT",
        "11-01 02:00 EST",
        "11-01 02:30 EST",
        "11-01 03:00 EST",
        "11-01 03:30 EST",
    ]
    for ticks in (spring, autumn):
        assert len(ticks) == len(set(ticks))


def test_a_half_hour_change_keeps_every_tick_in_order() -> None:
    """Lord Howe Island moves its clocks by 30 minutes (02:00 -> 02:30 on 2026-10-04):
    02:10 is skipped and lands at 02:40, after the real 02:35; both fire, in order."""
    zone = "Australia/Lord_Howe"
    start = local(zone, 2026, 10, 4)
    ticks = list(ticks_between("10,35 2 * * *", zone, start, start + timedelta(days=1)))
    assert [t.astimezone(ZoneInfo(zone)).strftime("%H:%M") for t in ticks] == ["02:35", "02:40"]


def test_the_window_is_open_at_the_start_and_closed_at_the_end() -> None:
    start = datetime(2026, 12, 1, 6, tzinfo=UTC)
    ticks = list(ticks_between("0 6 * * *", "UTC", start, start + timedelta(days=2)))
    assert ticks == [start + timedelta(days=1), start + timedelta(days=2)]


def test_next_tick_finds_a_rare_day() -> None:
    after = datetime(2026, 12, 3, tzinfo=UTC)
    assert next_tick("0 0 29 2 *", "UTC", after) == datetime(2028, 2, 29, tzinfo=UTC)
    assert next_tick("0 9 * * mon", "Asia/Tokyo", after) == local("Asia/Tokyo", 2026, 12, 7, 9)
