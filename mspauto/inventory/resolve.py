"""Build the resolved inventory from parsed client files (pure: no I/O).

Checks everything that needs more than one key to see: references to sites, groups
and credentials, group cycles, a client defined twice, the same host in two clients.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import PurePosixPath
from types import MappingProxyType
from typing import Any, Protocol, TypeVar

from mspauto.inventory.models import (
    PLATFORM_FAMILIES,
    ClientFile,
    ClientSpec,
    Connection,
    Credential,
    Defaults,
    Family,
    GroupSpec,
    HostSpec,
    Inheritable,
    Platform,
    SiteSpec,
)
from mspauto.problems import Location, Problem, format_key_path
from mspauto.validation import validate_document
from mspauto.yamlsource import KeyPath, YamlDocument

__all__ = [
    "SITE_GROUP_PREFIX",
    "Client",
    "GroupShape",
    "Host",
    "Inventory",
    "build_client",
    "build_inventory",
    "group_depths",
    "merge_order",
]

DEFAULT_PORTS: Mapping[Connection, int | None] = {"ssh": 22, "winrm": 5986, "local": None}
SITE_GROUP_PREFIX = "site_"
"""A site becomes this group (plus its name) in Ansible and nornir exports."""
_SETTINGS = ("platform", "connection", "port", "credential", "ring")


@dataclass(frozen=True)
class Host:
    """A host with every setting and variable resolved through inheritance."""

    name: str
    client: str
    address: str
    port: int | None
    platform: Platform
    connection: Connection
    site: str | None
    groups: tuple[str, ...]
    tags: frozenset[str]
    ring: str | None
    credential: str | None
    vars: Mapping[str, Any]
    origins: Mapping[str, str]
    """Which level set each setting and variable: ``defaults``, ``client``,
    ``site:NAME``, ``group:NAME`` or ``host``."""
    location: Location

    @property
    def family(self) -> Family | None:
        """``linux`` (shell scripts) or ``windows`` (PowerShell); None for network gear.
        The one place a platform's script family is decided."""
        return PLATFORM_FAMILIES[self.platform]


@dataclass(frozen=True)
class _Written:
    """A spec and where it was written."""

    doc: YamlDocument
    path: KeyPath

    @property
    def location(self) -> Location:
        return self.doc.location(self.path)


@dataclass(frozen=True)
class Client:
    """A client of the MSP: its settings and its resolved hosts."""

    spec: ClientSpec
    sites: Mapping[str, SiteSpec]
    groups: Mapping[str, GroupSpec]
    host_specs: Mapping[str, HostSpec]
    hosts: Mapping[str, Host]
    doc: YamlDocument
    """The document holding the ``client:`` section (for positions of its keys)."""
    known_hosts: PurePosixPath
    """The client's own known_hosts file, relative to the project root."""
    files: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        """The client's identifier (also its file or folder name)."""
        return self.spec.name

    @property
    def location(self) -> Location:
        """Where the ``client:`` section is written."""
        return self.doc.location(("client",))

    @property
    def credentials(self) -> Mapping[str, Credential]:
        """Credentials by name; each secret is a reference."""
        return self.spec.credentials

    def timezone_of(self, host: Host) -> str:
        """The IANA zone a host's windows are read in: its site's, else the client's."""
        site = self.sites.get(host.site) if host.site else None
        return (site.timezone if site is not None else None) or self.spec.timezone


@dataclass(frozen=True)
class Inventory:
    """Every client and host of the project."""

    defaults: Defaults
    clients: Mapping[str, Client]

    def hosts(self) -> Iterator[Host]:
        """All hosts, client by client, in file order."""
        for client in self.clients.values():
            yield from client.hosts.values()

    def host(self, name: str) -> Host | None:
        """The host called ``name`` in any client (host names are unique)."""
        for client in self.clients.values():
            if name in client.hosts:
                return client.hosts[name]
        return None


def build_inventory(
    defaults: Defaults,
    clients: Mapping[str, list[YamlDocument]],
    inventory_dir: PurePosixPath,
) -> tuple[Inventory, list[Problem], set[str]]:
    """Resolve every client. Returns the inventory, the problems found, and the names
    of clients that could not be loaded (so other checks need not repeat their errors)."""
    problems: list[Problem] = []
    built: dict[str, Client] = {}
    broken: set[str] = set()
    for name, docs in clients.items():
        client, client_problems = build_client(name, docs, defaults, inventory_dir)
        problems.extend(client_problems)
        if client is None:
            broken.add(name)
        else:
            built[name] = client
    problems.extend(_cross_client_problems(built))
    return Inventory(defaults, MappingProxyType(built)), problems, broken


def build_client(
    name: str,
    docs: list[YamlDocument],
    defaults: Defaults,
    inventory_dir: PurePosixPath,
) -> tuple[Client | None, list[Problem]]:
    """Validate, merge and resolve one client's documents (one, or one per folder file)."""
    problems: list[Problem] = []
    parsed: list[tuple[ClientFile, YamlDocument]] = []
    for doc in docs:
        if doc.data is None:
            continue
        model, errors = validate_document(ClientFile, doc.data, doc)
        problems.extend(errors)
        if model is not None:
            parsed.append((model, doc))

    spec: ClientSpec | None = None
    spec_at: _Written | None = None
    sites: dict[str, tuple[SiteSpec, _Written]] = {}
    groups: dict[str, tuple[GroupSpec, _Written]] = {}
    host_specs: dict[str, tuple[HostSpec, _Written]] = {}
    for model, doc in parsed:
        if model.client is not None:
            if spec_at is not None:
                problems.append(
                    Problem(
                        doc.location(("client",)),
                        "client",
                        f"defined twice for '{name}' (first at {spec_at.location})",
                    )
                )
            else:
                spec, spec_at = model.client, _Written(doc, ("client",))
        problems += _merge_section("sites", sites, model.sites, doc)
        problems += _merge_section("groups", groups, model.groups, doc)
        problems += _merge_section("hosts", host_specs, model.hosts, doc)

    if problems:
        return None, problems
    if spec is None or spec_at is None:
        where = (
            Location(docs[0].file, docs[0].start_line)
            if len(docs) == 1
            else Location(str(inventory_dir / name))
        )
        if docs and all(doc.data is None for doc in docs):
            return None, [
                Problem(
                    where,
                    "",
                    "file is empty; a client file starts with "
                    "a 'client:' section (name, display_name, timezone, contract)",
                )
            ]
        return None, [
            Problem(
                where,
                "client",
                "required key is missing (the client's name, display_name, timezone and contract)",
            )
        ]
    if spec.name != name:
        return None, [
            Problem(
                spec_at.doc.location(("client", "name")),
                "client.name",
                f"'{spec.name}' must match its file or folder name '{name}'",
            )
        ]

    problems.extend(_reference_problems(spec, spec_at, sites, groups, host_specs))
    problems.extend(_group_cycle_problems(groups))
    if problems:
        return None, problems

    hosts: dict[str, Host] = {}
    group_specs = {group_name: group for group_name, (group, _) in groups.items()}
    depths = group_depths(group_specs)
    for host_name, (host_spec, written) in host_specs.items():
        group_names = merge_order(host_spec.groups, group_specs, depths)
        host, host_problems = _resolve_host(
            host_name, host_spec, written, spec, sites, group_names, group_specs, defaults
        )
        problems.extend(host_problems)
        if host is not None:
            hosts[host_name] = host
    if problems:
        return None, problems

    known_hosts = (
        PurePosixPath(PurePosixPath(spec_at.doc.file).parent, spec.known_hosts)
        if spec.known_hosts is not None
        else inventory_dir / "known_hosts" / name
    )
    client = Client(
        spec=spec,
        sites=MappingProxyType({k: v for k, (v, _) in sites.items()}),
        groups=MappingProxyType({k: v for k, (v, _) in groups.items()}),
        host_specs=MappingProxyType({k: v for k, (v, _) in host_specs.items()}),
        hosts=MappingProxyType(hosts),
        doc=spec_at.doc,
        known_hosts=known_hosts,
        files=tuple(doc.file for doc in docs),
    )
    return client, []


SpecT = TypeVar("SpecT")


def _merge_section(
    section: str,
    merged: dict[str, tuple[SpecT, _Written]],
    entries: Mapping[str, SpecT],
    doc: YamlDocument,
) -> list[Problem]:
    """Add one file's ``sites``/``groups``/``hosts`` to the client's; report repeats."""
    problems = []
    for key, value in entries.items():
        written = _Written(doc, (section, key))
        if key in merged:
            problems.append(
                Problem(
                    written.location,
                    f"{section}.{key}",
                    f"defined twice (first at {merged[key][1].location})",
                )
            )
        else:
            merged[key] = (value, written)
    return problems


def _reference_problems(
    spec: ClientSpec,
    spec_at: _Written,
    sites: Mapping[str, tuple[SiteSpec, _Written]],
    groups: Mapping[str, tuple[GroupSpec, _Written]],
    hosts: Mapping[str, tuple[HostSpec, _Written]],
) -> Iterator[Problem]:
    """Unknown sites, groups and credentials, each reported where it is written."""

    def unknown(
        kind: str, value: str, known: Mapping[str, object], at: _Written, key: KeyPath
    ) -> Problem:
        close = get_close_matches(value, list(known), n=1)
        hint = (
            f" (did you mean '{close[0]}'?)"
            if close
            else (
                f"; known: {', '.join(sorted(known))}" if known else f"; this client has no {kind}s"
            )
        )
        path = (*at.path, *key)
        return Problem(
            at.doc.location(path), format_key_path(path), f"unknown {kind} '{value}'{hint}"
        )

    levels: list[tuple[Inheritable, _Written]] = [(spec, spec_at)]
    levels += list(sites.values())
    levels += list(groups.values())
    levels += list(hosts.values())
    for level, at in levels:
        if level.credential is not None and level.credential not in spec.credentials:
            yield unknown("credential", level.credential, spec.credentials, at, ("credential",))
    for group, at in groups.values():
        for index, parent in enumerate(group.parents):
            if parent not in groups:
                yield unknown("group", parent, groups, at, ("parents", index))
    for host, at in hosts.values():
        if host.site is not None and host.site not in sites:
            yield unknown("site", host.site, sites, at, ("site",))
        for index, group_name in enumerate(host.groups):
            if group_name not in groups:
                yield unknown("group", group_name, groups, at, ("groups", index))


def _group_cycle_problems(groups: Mapping[str, tuple[GroupSpec, _Written]]) -> Iterator[Problem]:
    reported: set[str] = set()
    for start in groups:
        path = [start]
        stack = [(start, iter(groups[start][0].parents))]
        while stack:
            _, parents = stack[-1]
            parent = next(parents, None)
            if parent is None:
                stack.pop()
                path.pop()
                continue
            if parent not in groups:
                continue
            if parent in path:
                cycle = [*path[path.index(parent) :], parent]
                if not reported.intersection(cycle):
                    reported.update(cycle)
                    at = groups[start][1]
                    yield Problem(
                        at.doc.location((*at.path, "parents")),
                        f"groups.{start}.parents",
                        "groups form a cycle: " + " -> ".join(cycle),
                    )
                continue
            path.append(parent)
            stack.append((parent, iter(groups[parent][0].parents)))


class GroupShape(Protocol):
    """What fixes a group's place in the merge order."""

    @property
    def parents(self) -> list[str]: ...

    @property
    def priority(self) -> int: ...


def group_depths(groups: Mapping[str, GroupShape]) -> dict[str, int]:
    """Depth of each group below Ansible's ``all`` (top-level groups are 1)."""
    depths: dict[str, int] = {}

    def depth(name: str) -> int:
        if name not in depths:
            depths[name] = 1 + max((depth(p) for p in groups[name].parents), default=0)
        return depths[name]

    for name in groups:
        depth(name)
    return depths


def merge_order(
    names: Iterable[str], groups: Mapping[str, GroupShape], depths: Mapping[str, int]
) -> list[str]:
    """``names`` and all their ancestors, lowest precedence first (Ansible's order)."""
    seen: set[str] = set()
    pending = list(names)
    while pending:
        name = pending.pop()
        if name not in seen:
            seen.add(name)
            pending.extend(groups[name].parents)
    return sorted(seen, key=lambda g: (depths[g], groups[g].priority, g))


def _resolve_host(
    name: str,
    spec: HostSpec,
    written: _Written,
    client: ClientSpec,
    sites: Mapping[str, tuple[SiteSpec, _Written]],
    group_names: list[str],
    groups: Mapping[str, GroupSpec],
    defaults: Defaults,
) -> tuple[Host | None, list[Problem]]:
    chain: list[tuple[str, Inheritable]] = [("defaults", defaults), ("client", client)]
    if spec.site is not None:
        chain.append((f"site:{spec.site}", sites[spec.site][0]))
    chain += [(f"group:{g}", groups[g]) for g in group_names]
    chain.append(("host", spec))

    settings: dict[str, Any] = {}
    variables: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for origin, level in chain:
        for setting in _SETTINGS:
            value = getattr(level, setting)
            if value is not None:
                settings[setting] = value
                origins[setting] = origin
        for key, value in level.vars.items():
            variables[key] = value
            origins[key] = origin

    platform = settings.get("platform")
    if platform is None:
        return None, [
            Problem(
                written.location,
                format_key_path(written.path),
                "no platform: set platform (debian, ubuntu, rhel, windows or "
                "network) on the host or on its group, site or client",
            )
        ]
    connection: Connection = settings.get("connection") or (
        "winrm" if platform == "windows" else "ssh"
    )
    port = settings.get("port") if connection != "local" else None
    return Host(
        name=name,
        client=client.name,
        address=spec.address or name,
        port=port if port is not None else DEFAULT_PORTS[connection],
        platform=platform,
        connection=connection,
        site=spec.site,
        groups=tuple(group_names),
        tags=frozenset(spec.tags),
        ring=settings.get("ring"),
        credential=settings.get("credential"),
        vars=MappingProxyType(variables),
        origins=MappingProxyType(origins),
        location=written.location,
    ), []


def _cross_client_problems(clients: Mapping[str, Client]) -> Iterator[Problem]:
    """The same host name in two clients; the same address and port twice."""
    names: dict[str, Host] = {}
    endpoints: dict[tuple[str, int | None], Host] = {}
    for client in clients.values():
        for host in client.hosts.values():
            first = names.get(host.name)
            if first is not None and first.client != host.client:
                yield Problem(
                    host.location,
                    f"hosts.{host.name}",
                    f"host name already used by client '{first.client}' "
                    f"({first.location}); host names are unique across clients",
                )
            names.setdefault(host.name, host)
            if host.connection == "local":
                continue
            endpoint = (host.address.lower(), host.port)
            other = endpoints.get(endpoint)
            if other is not None and other.client != host.client:
                yield Problem(
                    host.location,
                    f"hosts.{host.name}",
                    f"address {host.address}:{host.port} is already host "
                    f"'{other.name}' of client '{other.client}' ({other.location});"
                    " a host belongs to one client only",
                )
            elif other is not None:
                # One machine under two names would be patched, audited and counted twice.
                yield Problem(
                    host.location,
                    f"hosts.{host.name}",
                    f"address {host.address}:{host.port} is already host '{other.name}' "
                    f"({other.location}); one machine is one host entry (give the other "
                    "name as a tag or a variable)",
                )
            endpoints.setdefault(endpoint, host)
