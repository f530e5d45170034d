"""Patching on the check pipeline: the pieces that are patching's own.

- *plan*: the first enabled patch policy (in file order) that selects the host, the
  host's package manager, and today's package waivers;
- *probe*: the manager's facts script (apt, dnf, Windows Update), with the policy's
  pre- or post-checks on Linux hosts;
- *judge*: the facts parsed, rated by the MSP's severity sources, and each pending
  update decided by the policy (:mod:`mspauto.patching.planner`): one finding per
  pending update (``fail`` while it is missing, ``waived`` under a waiver) with the
  update and the decision in its detail, one ``reboot`` finding, and the checks'
  finding when the policy has checks. A host whose manager reports names or versions
  it could not print is not scanned (nothing it names is ever installed).

Installing is not a pipeline change (rings, windows and reboots are patching's own):
see :mod:`mspauto.patching.apply`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from mspauto.checks.pipeline import Change, HostScope
from mspauto.evidence.records import Finding, FindingStatus, HostFindings
from mspauto.inventory.resolve import Host
from mspauto.patching import apt, dnf, windows
from mspauto.patching.facts import HostPatchFacts, Manager, PendingUpdate
from mspauto.patching.health import checks_script, read_checks, windows_checks_script
from mspauto.patching.planner import Decision, decide_all
from mspauto.policy.models import Contract, HealthChecks, PatchPolicy, Waiver
from mspauto.transport.base import CommandResult

__all__ = ["MANAGER_OF_PLATFORM", "REBOOT_SUBJECT", "PatchCheck", "PatchPlan", "decisions_of"]

REBOOT_SUBJECT = "reboot"
"""The finding that says whether the host waits for a reboot."""
CHECK_SUBJECTS = {"pre": "pre-checks", "post": "post-checks"}
"""The finding of the policy's pre-checks (in the scan before installing) or
post-checks (in the scan after it)."""

MANAGER_OF_PLATFORM: Mapping[str, Manager] = {
    "debian": "apt",
    "ubuntu": "apt",
    "rhel": "dnf",
    "windows": "windows-update",
}

Rate = Callable[[Sequence[PendingUpdate], str | None], Sequence[PendingUpdate]]
"""Rates updates from the MSP's severity sources: the updates, and the Debian codename
of the host (None for other hosts)."""

# What a package name and version may look like (the managers' own syntax). A host
# reporting anything else is not trusted with an install: its names would become
# arguments of the install command.
APT_NAME = re.compile(r"^[a-z0-9][a-z0-9+.:~-]*$")
APT_VERSION = re.compile(r"^[A-Za-z0-9.+:~-]+$")
DNF_SPEC = re.compile(
    r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*-([0-9]+:)?[A-Za-z0-9_.+~^]+-[A-Za-z0-9_.+~^]+$"
)
"""``name-[epoch:]version-release``, as the dnf task file itself checks."""

_PARSERS: Mapping[Manager, Callable[[str, str, int | None], HostPatchFacts]] = {
    "apt": apt.parse,
    "dnf": dnf.parse,
    "windows-update": windows.parse,
}


@dataclass(frozen=True)
class PatchPlan:
    """What patching means for one host."""

    policy: PatchPolicy
    manager: Manager | None
    """None: the platform has no package manager mspauto drives (network gear)."""
    waivers: tuple[Waiver, ...]


class PatchCheck:
    """The patch kind's plan, probe and judge."""

    kind = "patch"

    def __init__(
        self,
        *,
        now: datetime,
        contract: Contract | None,
        first_detected: Mapping[str, Mapping[str, datetime]],
        rate: Rate | None = None,
        lock_timeout: int = 120,
        phase: Literal["pre", "post"] = "pre",
        sources: Sequence[Mapping[str, object]] = (),
        first_released: Mapping[str, Mapping[str, datetime]] | None = None,
    ) -> None:
        self.now = now
        self.phase = phase
        """Which of the policy's health checks the probe runs: before or after installing."""
        self.contract = contract
        self.first_detected = first_detected
        """Host -> package -> when it was first seen pending (from earlier scans)."""
        self.first_released = first_released or {}
        """Host -> package -> the earliest release time earlier scans saw for it."""
        self.rate = rate
        self.sources = sources
        """What each severity source read (path, date), recorded with every host."""
        self.lock_timeout = lock_timeout
        self.facts: dict[str, HostPatchFacts] = {}
        """Each judged host's facts (for the apply step and the output)."""

    def plan(self, scope: HostScope) -> PatchPlan | None:
        """The first patch policy selecting the host, or None when none does."""
        if not scope.policies:
            return None
        policy = scope.policies[0].policy
        assert isinstance(policy, PatchPolicy)
        return PatchPlan(
            policy,
            MANAGER_OF_PLATFORM.get(scope.host.platform),
            tuple(w for w in scope.waivers if w.package),
        )

    def probe(self, host: Host, plan: PatchPlan) -> str | None:
        """The manager's facts script; None where mspauto drives no package manager."""
        if plan.manager == "apt":
            return apt.probe_script(self.lock_timeout) + checks_script(self._checks(plan))
        if plan.manager == "dnf":
            # In a subshell: the dnf probe ends with its own exit.
            probe = dnf.probe_script(self.lock_timeout)
            return f"(\n{probe}\n)\n" + checks_script(self._checks(plan))
        if plan.manager == "windows-update":
            return windows.probe_script() + windows_checks_script(self._checks(plan))
        return None

    def _checks(self, plan: PatchPlan) -> HealthChecks:
        policy = plan.policy
        return policy.pre_checks if self.phase == "pre" else policy.post_checks

    def judge(self, host: Host, plan: PatchPlan, result: CommandResult | None) -> HostFindings:
        """One finding per pending update and one for the reboot state."""
        if result is None:
            why = (
                f"mspauto does not patch {host.platform} hosts"
                if plan.manager is None
                else f"{plan.manager} facts are not supported yet"
            )
            return HostFindings(
                self.kind,
                host.name,
                (
                    Finding(
                        REBOOT_SUBJECT,
                        plan.policy.name,
                        FindingStatus.NOT_APPLICABLE,
                        reason=why,
                    ),
                ),
            )
        if result.rc is None:
            return HostFindings(self.kind, host.name, (), f"{result.error}: {result.message}")
        assert plan.manager is not None  # a probe ran
        facts = _PARSERS[plan.manager](result.stdout, result.stderr, result.rc)
        if facts.problem is None and self.rate is not None and facts.updates:
            codename = None
            if plan.manager == "apt":
                distribution, codename = apt.release_of(result.stdout)
                codename = codename if distribution == "debian" else None
            facts = _with_updates(facts, tuple(self.rate(facts.updates, codename)))
        odd = next((u for u in facts.updates if not _well_formed(facts.manager, u)), None)
        if facts.problem is None and odd is not None:
            facts = _with_problem(
                facts,
                f"the host reported an update whose name or version is not valid "
                f"{facts.manager} syntax ({odd.name!r} {odd.candidate!r}); nothing is installed "
                "from a host whose package manager says such things",
            )
        self.facts[host.name] = facts
        if facts.problem is not None:
            return HostFindings(self.kind, host.name, (), facts.problem)
        facts = _with_updates(
            facts, _earliest_release(facts.updates, self.first_released.get(host.name, {}))
        )
        decisions = decide_all(
            plan.policy,
            facts.updates,
            host_holds=facts.held,
            waivers=plan.waivers,
            contract=self.contract,
            first_detected=self.first_detected.get(host.name, {}),
            now=self.now,
            adds_packages=facts.manager == "apt",
        )
        findings = [_finding(plan, decision, facts) for decision in decisions]
        findings.append(_reboot_finding(plan, facts, self.sources))
        checks = read_checks(result.stdout, self._checks(plan))
        if checks:
            failed = [c for c in checks if not c.ok]
            findings.append(
                Finding(
                    CHECK_SUBJECTS[self.phase],
                    plan.policy.name,
                    FindingStatus.FAIL if failed else FindingStatus.PASS,
                    observed="; ".join(f"{c.what}: {c.observed}" for c in failed or checks),
                    expected="every check passes",
                    reason=f"{len(failed)} of {len(checks)} failed" if failed else "",
                    detail={"checks": [vars(c) for c in checks]},
                )
            )
        return HostFindings(self.kind, host.name, tuple(findings))

    def changes(self, host: Host, plan: PatchPlan, findings: HostFindings) -> Sequence[Change]:
        """Patching installs through its own apply step, not pipeline changes."""
        return ()


def decisions_of(findings: HostFindings) -> list[tuple[PendingUpdate, dict[str, object]]]:
    """Each pending update of a patch findings record and its decision (evidence form)."""
    return [
        (PendingUpdate.from_dict(f.detail["update"]), dict(f.detail["decision"]))
        for f in findings.findings
        if "update" in f.detail
    ]


def _well_formed(manager: Manager, update: PendingUpdate) -> bool:
    if manager == "apt":
        return bool(APT_NAME.match(update.name) and APT_VERSION.match(update.candidate))
    if manager == "dnf":
        return bool(DNF_SPEC.match(f"{update.name}-{update.candidate}"))
    return True  # Windows updates are installed by their identity, never by a name


def _with_problem(facts: HostPatchFacts, problem: str) -> HostPatchFacts:
    return HostPatchFacts(facts.manager, problem=problem)


def _earliest_release(
    updates: Sequence[PendingUpdate], seen: Mapping[str, datetime]
) -> tuple[PendingUpdate, ...]:
    """Each update with the earliest release time any scan saw for it."""
    return tuple(
        replace(u, released=seen[u.name])
        if u.name in seen and (u.released is None or seen[u.name] < u.released)
        else u
        for u in updates
    )


def _with_updates(facts: HostPatchFacts, updates: tuple[PendingUpdate, ...]) -> HostPatchFacts:
    return HostPatchFacts(
        facts.manager,
        updates,
        facts.reboot_pending,
        facts.reboot_reason,
        facts.held,
        facts.problem,
        facts.warnings,
    )


def _finding(plan: PatchPlan, decision: Decision, facts: HostPatchFacts) -> Finding:
    update = decision.update
    stale = "; ".join(facts.warnings)
    return Finding(
        subject=update.name,
        policy=plan.policy.name,
        status=FindingStatus.WAIVED if decision.action == "waived" else FindingStatus.FAIL,
        observed=update.installed or "not installed",
        expected=update.candidate,
        reason=decision.reason + (f" (facts may be stale: {stale})" if stale else ""),
        waiver=decision.waiver,
        detail={
            "manager": facts.manager,
            "update": update.as_dict(),
            "decision": decision.as_dict(),
        },
    )


def _reboot_finding(
    plan: PatchPlan, facts: HostPatchFacts, sources: Sequence[Mapping[str, object]]
) -> Finding:
    if facts.reboot_pending is None:
        status = FindingStatus.NOT_APPLICABLE
    else:
        status = FindingStatus.FAIL if facts.reboot_pending else FindingStatus.PASS
    return Finding(
        REBOOT_SUBJECT,
        plan.policy.name,
        status,
        observed={True: "pending", False: "not pending", None: "unknown"}[facts.reboot_pending],
        expected="not pending",
        reason=facts.reboot_reason,
        detail={
            "manager": facts.manager,
            "held": list(facts.held),
            "severity_sources": [dict(s) for s in sources],
        },
    )
