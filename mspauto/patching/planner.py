"""What a patch policy decides for each pending update on a host (pure: no I/O).

Per update, in this order:

1. **held** when the policy's ``holds`` name it (shell-style patterns: ``linux-image-*``)
   or the host itself holds it (``apt-mark hold``): it stays at its version;
2. **waived** when an unexpired package waiver covers it on the host;
   a package the apt upgrade would *add* (a new kernel ABI package pulled in by its
   metapackage) is a **dependency**: installed only when an approved update needs it,
   so holding ``linux-image-amd64`` also keeps the new kernel out;
3. the **first approval rule** that matches (severity, classification, name regex,
   known-exploited) decides: ``auto`` installs, ``manual`` waits for a person,
   ``reject`` never installs, ``defer`` installs once the delay has passed since the
   release (or since first detection when the release time is unknown);
4. no rule matching needs a person (a policy without a catch-all rule installs nothing
   it did not name).

Every decision carries its reason in words, and the contract's deadline: the clock
starts at the vendor's release where known and the contract counts from release, else
at first detection, and a known-exploited update is due by its KEV date when that is
sooner. The maintenance window is decided here too, in the client's time zone.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from mspauto.fields import format_duration
from mspauto.patching.facts import PendingUpdate
from mspauto.policy.models import (
    WEEKDAYS,
    ApprovalMatch,
    Contract,
    MaintenanceWindow,
    PatchPolicy,
    Waiver,
)

__all__ = [
    "Action",
    "Decision",
    "WindowState",
    "decide",
    "decide_all",
    "window_state",
]

Action = Literal["install", "defer", "manual", "reject", "hold", "waived", "dependency"]
Clock = Literal["release", "detection"]


@dataclass(frozen=True)
class Decision:
    """What happens to one pending update on one host, and why."""

    update: PendingUpdate
    action: Action
    reason: str
    first_detected: datetime
    clock: Clock
    """What the deadline counts from: the vendor's release, or first detection."""
    deadline: datetime | None
    """When the contract wants it installed (None without a contract)."""
    until: datetime | None = None
    """For ``defer``: when the deferral ends."""
    rule: int | None = None
    """Index of the approval rule that decided, if one did."""
    waiver: str | None = None

    @property
    def approved(self) -> bool:
        """Installed by this run (when the window is open)."""
        return self.action == "install"

    def overdue(self, now: datetime) -> bool:
        """Past the contract's deadline at ``now``."""
        return self.deadline is not None and now > self.deadline

    def as_dict(self) -> dict[str, Any]:
        """Evidence form."""
        return {
            "action": self.action,
            "reason": self.reason,
            "first_detected": self.first_detected.isoformat(),
            "clock": self.clock,
            "deadline": self.deadline.isoformat() if self.deadline else None,
            "until": self.until.isoformat() if self.until else None,
            "rule": self.rule,
            "waiver": self.waiver,
        }


def decide_all(
    policy: PatchPolicy,
    updates: Sequence[PendingUpdate],
    *,
    host_holds: Sequence[str],
    waivers: Sequence[Waiver],
    contract: Contract | None,
    first_detected: Mapping[str, datetime],
    now: datetime,
    adds_packages: bool = False,
) -> list[Decision]:
    """Every update's decision (``first_detected``: package -> when first seen pending;
    updates not in it are first detected ``now``)."""
    return [
        decide(
            policy,
            update,
            host_holds=host_holds,
            waivers=waivers,
            contract=contract,
            first_detected=first_detected.get(update.name, now),
            now=now,
            adds_packages=adds_packages,
        )
        for update in updates
    ]


def decide(
    policy: PatchPolicy,
    update: PendingUpdate,
    *,
    host_holds: Sequence[str],
    waivers: Sequence[Waiver],
    contract: Contract | None,
    first_detected: datetime,
    now: datetime,
    adds_packages: bool = False,
) -> Decision:
    """One update's decision under ``policy`` at ``now``. With ``adds_packages`` (apt),
    an update with no installed version is a package the upgrade would add."""
    clock: Clock = "release"
    start = update.released
    if start is None or (contract is not None and contract.patch_clock_starts == "detection"):
        clock, start = "detection", first_detected
    deadline = _deadline(update, contract, start)

    def made(action: Action, reason: str, **extra: Any) -> Decision:
        return Decision(update, action, reason, first_detected, clock, deadline, **extra)

    base = update.name.split(":", 1)[0]
    pattern = next((p for p in policy.holds if fnmatch.fnmatchcase(base, p)), None)
    if pattern is not None:
        return made("hold", f"held by policy '{policy.name}' (holds: {pattern})")
    if any(fnmatch.fnmatchcase(base, held) for held in host_holds):
        return made("hold", "held on the host itself (apt-mark hold / versionlock)")
    waiver = next((w for w in waivers if w.package and fnmatch.fnmatchcase(base, w.package)), None)
    if waiver is not None:
        return made(
            "waived",
            f"waiver '{waiver.name}' until {waiver.expires} (approved by {waiver.approved_by})",
            waiver=waiver.name,
        )
    if adds_packages and update.installed is None:
        return made(
            "dependency",
            "a package the upgrade would add: installed only when an approved update needs it",
        )
    for index, rule in enumerate(policy.approvals):
        if not _matches(rule.match, update):
            continue
        what = f"approval rule {index + 1} ({_describe(rule.match)})"
        if rule.action == "auto":
            return made("install", f"approved by {what}", rule=index)
        if rule.action == "manual":
            return made("manual", f"needs a person: {what} says manual", rule=index)
        if rule.action == "reject":
            return made("reject", f"rejected by {what}", rule=index)
        assert rule.defer is not None  # validated: defer always has its delay
        since = update.released or first_detected
        until = since + rule.defer
        named = "release" if update.released else "first detection"
        if now >= until:
            return made(
                "install",
                f"deferral of {format_duration(rule.defer)} after {named} ended "
                f"{until:%Y-%m-%d %H:%M} UTC ({what})",
                rule=index,
                until=until,
            )
        return made(
            "defer",
            f"deferred until {until:%Y-%m-%d %H:%M} UTC: {format_duration(rule.defer)} after "
            f"{named} ({what})",
            rule=index,
            until=until,
        )
    return made("manual", "needs a person: no approval rule matches it")


def _deadline(update: PendingUpdate, contract: Contract | None, start: datetime) -> datetime | None:
    if contract is None:
        return None
    deadline = start + contract.patch_deadlines[update.severity]
    if update.known_exploited and update.exploited_due is not None:
        due = datetime.combine(update.exploited_due, time.max, tzinfo=UTC)
        deadline = min(deadline, due)
    return deadline


def _matches(match: ApprovalMatch, update: PendingUpdate) -> bool:
    if match.severities and update.severity not in match.severities:
        return False
    if match.classifications and update.classification not in match.classifications:
        return False
    if match.names and not any(re.search(p, update.name) for p in match.names):
        return False
    return match.known_exploited is None or match.known_exploited == update.known_exploited


def _describe(match: ApprovalMatch) -> str:
    parts = []
    if match.severities:
        parts.append("severity " + "/".join(match.severities))
    if match.classifications:
        parts.append("classification " + "/".join(match.classifications))
    if match.names:
        parts.append("name " + " or ".join(match.names))
    if match.known_exploited is not None:
        parts.append("known exploited" if match.known_exploited else "not known exploited")
    return ", ".join(parts) or "every update"


@dataclass(frozen=True)
class WindowState:
    """Whether changes may be made now, and when that changes."""

    open: bool
    reason: str
    closes: datetime | None = None
    """When the open window closes (UTC)."""
    opens: datetime | None = None
    """When the next window opens (UTC), while closed."""


def window_state(window: MaintenanceWindow | None, zone: str, now: datetime) -> WindowState:
    """Is ``now`` inside ``window`` (read in the IANA zone ``zone``)? A policy without a
    window may change hosts at any time."""
    if window is None:
        return WindowState(True, "the policy has no maintenance window")
    tz = ZoneInfo(zone)
    local_now = now.astimezone(tz)
    # A window may have started up to its duration ago (it can span midnight or days).
    first_day = local_now.date() - timedelta(days=window.duration.days + 1)
    for offset in range(window.duration.days + 9):
        day = first_day + timedelta(days=offset)
        if WEEKDAYS[day.weekday()] not in window.days:
            continue
        start = _local(day, window.start, tz)
        end = start + window.duration
        if start <= now < end:
            return WindowState(
                True,
                f"inside the window ({_when(start, tz)} for {format_duration(window.duration)})",
                closes=end,
            )
        if start > now:
            return WindowState(
                False,
                f"outside the maintenance window; the next opens {_when(start, tz)}",
                opens=start,
            )
    return WindowState(False, "outside the maintenance window")


def _local(day: date, at: time, tz: ZoneInfo) -> datetime:
    """``day`` at ``at`` in ``tz``, as UTC. A time skipped by a DST change is read as
    the moment after the gap (fold=0 with zoneinfo normalises forward)."""
    local = datetime.combine(day, at, tzinfo=tz)
    return local.astimezone(UTC)


def _when(moment: datetime, tz: ZoneInfo) -> str:
    local = moment.astimezone(tz)
    return f"{WEEKDAYS[local.weekday()]} {local:%Y-%m-%d %H:%M} {local.tzname()}"
