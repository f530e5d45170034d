"""When a schedule fires: the UTC instants of a 5-field cron read in an IANA zone.

croniter is asked only about wall-clock times, never about a zone (its zone handling
has known DST bugs: taichino/croniter #90, #91, #116). Each local time it gives is then
placed on the UTC line by :mod:`zoneinfo` (``fold=0``), so on a change day:

- a local time that does not exist (skipped when clocks go forward) fires as far after
  the change as it was into the skipped hour: 02:30 on a spring-forward night fires at
  03:30 the new time, once;
- a local time that exists twice (repeated when clocks go back) fires at its first
  occurrence only.

A tick *is* its instant: local times that land on one instant, or on one already
fired (02:30 skipped and 03:30 real, for an every-half-hour cron), fire once.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

__all__ = ["next_tick", "ticks_between"]

_SHIFT = timedelta(hours=3)
"""More than any DST change moves a clock: a skipped local time fires at most this long
after the local times that follow it, so the walk starts and ends this far out."""


def ticks_between(cron: str, zone: str, after: datetime, until: datetime) -> Iterator[datetime]:
    """Each instant (UTC) at which the schedule fires, ``after < t <= until``, in order."""
    tz = ZoneInfo(zone)
    walk = croniter(cron, (after - _SHIFT).astimezone(tz).replace(tzinfo=None))
    # Around a change, later local times can land before earlier ones (by less than
    # _SHIFT): an instant is given out once nothing still to come can land before it.
    waiting: list[datetime] = []
    given: set[datetime] = set()
    while True:
        wall: datetime = walk.get_next(datetime)
        instant = wall.replace(tzinfo=tz).astimezone(UTC)
        while waiting and waiting[0] + _SHIFT < instant:
            yield heapq.heappop(waiting)
        if instant > until + _SHIFT:
            return
        if after < instant <= until and instant not in given:
            given.add(instant)
            heapq.heappush(waiting, instant)


def next_tick(cron: str, zone: str, after: datetime) -> datetime:
    """The first instant (UTC) after ``after`` at which the schedule fires (a valid
    cron fires within any four years: 29 February is its rarest day)."""
    for instant in ticks_between(cron, zone, after, after + timedelta(days=4 * 366 + 1)):
        return instant
    raise ValueError(f"'{cron}' never fires")
