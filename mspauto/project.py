"""A whole project: inventory and policies loaded together and checked against each other."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from difflib import get_close_matches
from typing import Any

from mspauto.config import Settings
from mspauto.inventory.loader import load_inventory
from mspauto.inventory.paths import client_path_problems
from mspauto.inventory.resolve import Host, Inventory
from mspauto.inventory.selectors import Selector, is_pattern
from mspauto.policy.kinds import WAIVER_WARNING_DAYS
from mspauto.policy.loader import LoadedPolicies, LoadedPolicy, load_policies
from mspauto.policy.models import Contract
from mspauto.policy.registry import CheckContext, policy_kinds
from mspauto.problems import Problem
from mspauto.projectfiles import ProjectTree

__all__ = ["WAIVER_WARNING_DAYS", "Project", "load_project"]


@dataclass(frozen=True)
class Project:
    """Everything ``validate`` understood, and everything wrong with it."""

    settings: Settings
    inventory: Inventory
    policies: list[LoadedPolicy]
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        """Problems that make the project unusable as written."""
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        """Problems worth a look that do not stop anything."""
        return [p for p in self.problems if p.severity == "warning"]

    def contracts(self) -> dict[str, Contract]:
        """Contracts by name."""
        return {p.policy.name: p.policy for p in self.policies if isinstance(p.policy, Contract)}

    def client_summary(self, name: str) -> dict[str, Any]:
        """One client at a glance: who, where, how many hosts of which platform."""
        client = self.inventory.clients[name]
        hosts = list(client.hosts.values())
        policies = {loaded.policy.name for host in hosts for loaded in self.policies_for(host)}
        return {
            "client": name,
            "display_name": client.spec.display_name,
            "timezone": client.spec.timezone,
            "contract": client.spec.contract,
            "hosts": len(hosts),
            "platforms": dict(Counter(h.platform for h in hosts).most_common()),
            "sites": len(client.sites),
            "policies": len(policies),
        }

    def policies_for(self, host: Host) -> list[LoadedPolicy]:
        """Policies and waivers whose targets select ``host``."""
        selected = []
        for loaded in self.policies:
            targets = getattr(loaded.policy, "targets", None)
            if isinstance(targets, Selector) and targets.matches(host):
                selected.append(loaded)
        return selected


def load_project(settings: Settings, today: date | None = None) -> Project:
    """Load and cross-check the project; never raises for mistakes in the user's files."""
    today = today or datetime.now(UTC).date()
    tree = ProjectTree.of(settings.root, settings.inventory_dir, settings.policies_dir)
    inventory, problems, broken_clients = load_inventory(tree, settings.inventory_dir)
    loaded = load_policies(tree, settings.policies_dir)
    policies = loaded.policies
    problems += loaded.problems
    problems += _duplicate_policy_names(policies)
    problems += _contract_references(inventory, loaded)
    problems += _target_problems(inventory, policies, broken_clients)
    context = CheckContext(policies, inventory, today, frozenset(broken_clients), loaded.may_define)
    for kind in policy_kinds().values():
        problems += kind.cross_checks(context)
    problems += client_path_problems(tree, settings.inventory_dir, inventory, broken_clients)
    problems += _local_host_warnings(inventory, broken_clients)
    problems.sort(key=lambda p: (p.location.file, p.location.line or 0))
    return Project(settings, inventory, policies, problems)


def _duplicate_policy_names(policies: list[LoadedPolicy]) -> Iterator[Problem]:
    first: dict[tuple[str, str], LoadedPolicy] = {}
    for loaded in policies:
        key = (loaded.policy.kind, loaded.policy.name)
        if key in first:
            yield Problem(
                loaded.doc.location(("name",)),
                "name",
                f"another {key[0]} policy is already named '{key[1]}' "
                f"({first[key].doc.location(('name',))})",
            )
        else:
            first[key] = loaded


def _contract_references(inventory: Inventory, loaded: LoadedPolicies) -> Iterator[Problem]:
    """Every client's contract is defined. One that may be in a file that was unreadable
    or invalid is not called unknown: that file's own problems say what to fix."""
    contracts = [p.policy.name for p in loaded.policies if isinstance(p.policy, Contract)]
    for client in inventory.clients.values():
        if client.spec.contract not in contracts and not loaded.may_define(
            "contract", client.spec.contract
        ):
            close = get_close_matches(client.spec.contract, contracts, n=1)
            hint = (
                f" (did you mean '{close[0]}'?)"
                if close
                else ("; define it in policies/ with 'kind: contract'")
            )
            yield Problem(
                client.doc.location(("client", "contract")),
                "client.contract",
                f"unknown contract '{client.spec.contract}'{hint}",
            )


def _target_problems(
    inventory: Inventory, policies: list[LoadedPolicy], broken_clients: set[str]
) -> Iterator[Problem]:
    """Selectors naming things that do not exist, and selectors that select nothing."""
    known = {
        "clients": set(inventory.clients) | broken_clients,
        "sites": {s for c in inventory.clients.values() for s in c.sites},
        "groups": {g for c in inventory.clients.values() for g in c.groups},
        "hosts": {h.name for h in inventory.hosts()},
        "rings": {h.ring for h in inventory.hosts() if h.ring},
    }
    for loaded in policies:
        targets = getattr(loaded.policy, "targets", None)
        if not isinstance(targets, Selector):
            continue
        unknown_found = False
        for key, names in known.items():
            # With a client that did not load, only client names can be checked: the
            # missing client may hold the site, group, host or ring named here.
            if broken_clients and key != "clients":
                continue
            for index, value in enumerate(getattr(targets, key)):
                if is_pattern(value) or value in names:
                    continue
                unknown_found = True
                close = get_close_matches(value, sorted(names), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                yield Problem(
                    loaded.doc.location(("targets", key, index)),
                    f"targets.{key}[{index}]",
                    f"no {key[:-1]} is named '{value}'{hint}",
                )
        if unknown_found or broken_clients:
            continue
        selected = list(targets.select(inventory))
        what = "waiver" if loaded.policy.kind == "waiver" else "policy"
        if not selected:
            yield Problem(
                loaded.doc.location(("targets",)),
                "targets",
                f"this {what} {'applies to' if what == 'waiver' else 'targets'} no host; "
                "check the selectors against 'mspauto inventory list'",
            )
        yield from _shared_names(loaded, targets, selected, what)


def _shared_names(
    loaded: LoadedPolicy, targets: Selector, selected: list[Host], what: str
) -> Iterator[Problem]:
    """Group and site names are each client's own: a selector that names them without
    saying whose must not reach several clients (one client's manager approving a waiver
    for 'web' would excuse another client's web servers)."""
    if targets.clients:
        return
    for key in ("groups", "sites"):
        names = getattr(targets, key)
        clients = sorted({h.client for h in selected})
        if names and len(clients) > 1:
            yield Problem(
                loaded.doc.location(("targets", key)),
                f"targets.{key}",
                f"this {what} names {key} ({', '.join(names)}) but no client, and so reaches "
                f"the hosts of {len(clients)} clients ({', '.join(clients)}); say whose "
                f"with 'clients: [...]' (clients: ['*'] if every client's {key} are meant)",
            )
            return


def _local_host_warnings(inventory: Inventory, broken_clients: set[str]) -> Iterator[Problem]:
    """``connection: local`` in a project of several clients: the command runs on the
    control node as mspauto's own user, with no boundary between tenants."""
    clients = set(inventory.clients) | broken_clients
    if len(clients) < 2:
        return
    for host in inventory.hosts():
        if host.connection == "local":
            yield Problem(
                host.location,
                f"hosts.{host.name}",
                "connection: local runs this client's commands on the control node as "
                "mspauto's own user, who can read every client's key and secret files and "
                "the evidence store; for a separate client use an ssh host "
                "(docs/engine.md, 'Local commands')",
                severity="warning",
            )
