"""Calendar months cut in a client's time zone."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from mspauto.patching.facts import parse_time
from mspauto.sla.model import Period

__all__ = ["MonthError", "month_period", "previous_month", "when"]

_MONTH = re.compile(r"(\d{4})-(\d{2})")


class MonthError(ValueError):
    """A month that is not ``YYYY-MM``."""


def _parse(month: str) -> tuple[int, int]:
    match = _MONTH.fullmatch(month)
    if not match or not 1 <= int(match[2]) <= 12 or not 1971 <= int(match[1]) <= 9998:
        raise MonthError(f"'{month}' is not a month: give it as YYYY-MM (e.g. 2026-11)")
    return int(match[1]), int(match[2])


def month_period(month: str, timezone: str) -> Period:
    """The month from its first local midnight to the next month's, in ``timezone``.

    Local midnights are converted with the zone's rules on each day, so a month with a
    DST change is an hour shorter or longer than its days times 24, as it should be.
    """
    year, number = _parse(month)
    zone = ZoneInfo(timezone)
    following = (year + 1, 1) if number == 12 else (year, number + 1)
    start = datetime(year, number, 1, tzinfo=zone).astimezone(UTC)
    end = datetime(*following, 1, tzinfo=zone).astimezone(UTC)
    return Period(f"{year:04d}-{number:02d}", timezone, start, end)


def previous_month(month: str) -> str:
    """The month before ``month`` (``2026-01`` -> ``2025-12``)."""
    year, number = _parse(month)
    return f"{year - 1:04d}-12" if number == 1 else f"{year:04d}-{number - 1:02d}"


def when(value: object) -> datetime | None:
    """An evidence time as UTC (:func:`~mspauto.patching.facts.parse_time`); None for
    anything that is not one (a record mspauto did not write: verify names it)."""
    return _parsed(value) if isinstance(value, str) else None


@lru_cache(maxsize=65536)
def _parsed(text: str) -> datetime | None:
    """Cached: a month's findings repeat the same release dates, deadlines and backup
    times across hosts and days, and parsing them again was a good part of the
    report's time."""
    try:
        return parse_time(text)
    except ValueError:
        return None
