"""The month's scheduled runs, from the control node's ``scheduled_run`` records: how
many ticks were due, how each ended, and which were skipped, interrupted or failed."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from mspauto.evidence.records import ScheduledRun
from mspauto.patching.facts import parse_time
from mspauto.sla.model import ScheduledItem, ScheduledRuns

__all__ = ["ScheduleMonth"]


class ScheduleMonth:
    """Fed every ``scheduled_run`` record of the month, in record order. Ticks are
    counted in the month they were due; one recorded in this month but due earlier
    (the control node found it missed when it came back) is listed apart."""

    def __init__(self, start: datetime) -> None:
        self.start = start
        self._ticks: dict[str, tuple[datetime, ScheduledRun]] = {}

    def tick(self, run: ScheduledRun) -> None:
        """One tick's outcome. A tick recorded twice (the control node crashed between
        appending it and noting that it had) is one tick; the later record wins."""
        due = parse_time(run.due)
        if due is None:
            raise ValueError("a scheduled run without its due time")
        self._ticks[run.key] = (due, run)

    def result(self) -> ScheduledRuns:
        everything = sorted(self._ticks.values(), key=lambda tick: (tick[0], tick[1].key))
        ticks = [(due, run) for due, run in everything if due >= self.start]
        states = Counter(run.state for _, run in ticks)
        return ScheduledRuns(
            total=len(ticks),
            ok=states["ok"],
            failed=states["failed"],
            interrupted=states["interrupted"],
            skipped=states["skipped"],
            problems=[
                ScheduledItem(due, run.policy, run.action, run.state, run.reason, run.exit_code)
                for due, run in ticks
                if run.state != "ok"
            ],
            earlier=[
                ScheduledItem(due, run.policy, run.action, run.state, run.reason, run.exit_code)
                for due, run in everything
                if due < self.start
            ],
        )
