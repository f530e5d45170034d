"""Import from and export to Ansible inventories (INI or YAML).

Import reads the inventory with Ansible's own parser (``ansible-inventory --list
--export``), so host ranges, ``:children``, ``:vars``, ``host_vars/`` and
``group_vars/`` mean exactly what they mean to Ansible. Secrets found in variables are
dropped (with a warning): they belong in a credential reference, not in our files.

An inventory can run code: Ansible executes an executable file as a *script inventory*
and loads whatever plugin a YAML file's ``plugin:`` key names. A client-supplied
inventory must not do that by surprise, so import refuses both unless allowed, and
``ansible-inventory`` gets only Ansible's static readers, a cut-down environment and a
neutral working directory either way.

Export writes an inventory in which every host gets exactly the variables mspauto
resolves for it: group structure and variables are kept; where Ansible's merge order
would give a different value (a site's variable against a group's), the value is
pinned on the host.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

from mspauto.fields import secret_variable
from mspauto.inventory.models import Inheritable
from mspauto.inventory.resolve import (
    SITE_GROUP_PREFIX,
    Client,
    Host,
    group_depths,
    merge_order,
)

__all__ = [
    "AnsibleImport",
    "AnsibleInventoryError",
    "ScriptInventoryError",
    "code_in_inventory",
    "export_ini",
    "export_yaml",
    "import_ansible",
    "read_ansible_inventory",
]

_RESERVED_GROUPS = ("ungrouped", "all")


class AnsibleInventoryError(Exception):
    """Ansible could not read the inventory; the message is Ansible's own, shortened."""


@dataclass
class AnsibleImport:
    """Result of an import: the client document to write and what was left out."""

    document: dict[str, Any]
    hosts: int
    groups: int
    warnings: list[str] = field(default_factory=list)

    def to_yaml(self) -> str:
        """The client file, ready to write under ``inventory/``."""
        header = "# Imported from an Ansible inventory by 'mspauto inventory import'.\n"
        return header + yaml.safe_dump(self.document, sort_keys=False, allow_unicode=True)


class ScriptInventoryError(AnsibleInventoryError):
    """The inventory would run code (a script or a plugin) and that was not allowed."""


# Ansible's readers of static files. Left out of its default list: "script" runs any
# executable file, "auto" loads the plugin a YAML file names (even ansible.builtin's
# "constructed" runs Jinja, whose lookups can run commands), "host_list" is never
# needed for a path that exists.
_STATIC_PLUGINS = "ini,yaml,toml"
_ALL_PLUGINS = "host_list,script,auto,yaml,ini,toml"
# All a script inventory may see of the control node: its environment holds the
# secrets that credentials reference as env:, and the client's script is not ours.
_PASSED_VARIABLES = frozenset({"PATH", "HOME", "LANG", "TMPDIR"})
# What Ansible skips when it reads a folder (manager.IGNORED_ALWAYS): hidden entries,
# and folders read by vars plugins as data, never run.
_SKIPPED_IN_FOLDERS = re.compile(r"^(\.|host_vars$|group_vars$|vars_plugins$)")


class _TagTolerantLoader(yaml.SafeLoader):
    """Safe YAML that reads Ansible's tags (``!vault``, ``!unsafe``) as nothing."""


_TagTolerantLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def code_in_inventory(path: Path) -> str | None:
    """Why Ansible would run code from ``path`` (a file or folder), or ``None``.

    Follows what ``ansible-inventory -i PATH`` reads: a folder's entries recursively
    (symbolic links followed, as Ansible does) except hidden ones, ``group_vars/``,
    ``host_vars/`` and ``vars_plugins/``.
    """
    seen_folders: set[Path] = set()

    def visit(entry: Path) -> str | None:
        if entry.is_dir():
            real = entry.resolve()
            if real in seen_folders:
                return None
            seen_folders.add(real)
            for child in sorted(entry.iterdir()):
                if not _SKIPPED_IN_FOLDERS.match(child.name):
                    reason = visit(child)
                    if reason is not None:
                        return reason
            return None
        try:
            mode = entry.stat().st_mode
        except OSError:
            return None  # a dangling link or unreadable file: Ansible reports it
        if stat.S_ISREG(mode) and mode & 0o111:
            return (
                f"{entry} is executable, so Ansible would run it as a script inventory "
                "(remove the execute bit if it is a plain INI or YAML file)"
            )
        plugin = _plugin_named_in(entry)
        if plugin is not None:
            return f"{entry} is an inventory plugin configuration (plugin: {plugin})"
        return None

    return visit(path)


def _plugin_named_in(path: Path) -> str | None:
    """The plugin a YAML file names, as Ansible's "auto" plugin would load it."""
    if path.suffix not in (".yml", ".yaml"):
        return None  # "auto" only considers these suffixes
    try:
        # A SafeLoader (no Python objects) that also tolerates Ansible's tags.
        data = yaml.load(path.read_text(errors="replace"), Loader=_TagTolerantLoader)
    except (OSError, yaml.YAMLError):
        return None  # not a plugin configuration Ansible could load either
    if isinstance(data, dict) and data.get("plugin"):
        return str(data["plugin"])
    return None


def _ansible_environment(*, allow_script: bool) -> dict[str, str]:
    """The whole environment of ``ansible-inventory`` (and of any script it runs)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name in _PASSED_VARIABLES or name.startswith("LC_")
    }
    env.update(
        {
            "ANSIBLE_INVENTORY_ENABLED": _ALL_PLUGINS if allow_script else _STATIC_PLUGINS,
            "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
            "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "True",
            "ANSIBLE_NOCOLOR": "True",
            "ANSIBLE_DEPRECATION_WARNINGS": "False",
            "ANSIBLE_LOCALHOST_WARNING": "False",
        }
    )
    return env


def read_ansible_inventory(
    path: Path, *, export: bool = True, allow_script: bool = False
) -> dict[str, Any]:
    """Ansible's JSON view of an inventory (``--export``: variables stay on their level).

    Unless ``allow_script``, an inventory that would run code raises
    :class:`ScriptInventoryError` before Ansible starts, and Ansible's script and
    plugin-loading readers stay disabled anyway.
    """
    if not allow_script:
        reason = code_in_inventory(path)
        if reason is not None:
            raise ScriptInventoryError(f"refused to import {path}: {reason}")
    binary = Path(sys.executable).with_name("ansible-inventory")
    command = str(binary) if binary.exists() else shutil.which("ansible-inventory")
    if command is None:
        raise AnsibleInventoryError("ansible-inventory not found; install ansible-core")
    args = [command, "-i", str(path.absolute()), "--list"] + (["--export"] if export else [])
    # Ansible reads ansible.cfg from its working directory, and one there can swap the
    # "ini" reader for its own code: the directory the user runs mspauto from may be
    # the client's unpacked inventory, so Ansible runs from an empty one.
    with tempfile.TemporaryDirectory(prefix="mspauto-ansible-") as neutral:
        result = subprocess.run(
            args,
            # Ansible refuses to start with a non-blocking stdin (which a parent
            # process may hand down); it reads nothing from it here anyway.
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=_ansible_environment(allow_script=allow_script),
            cwd=neutral,
            check=False,
        )
    if result.returncode != 0:
        lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        detail = next((line for line in lines if "ERROR" in line), lines[-1] if lines else "")
        raise AnsibleInventoryError(f"ansible could not read {path}: {detail}")
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def import_ansible(
    path: Path,
    client: str,
    *,
    display_name: str,
    timezone: str,
    contract: str,
    platform: str,
    allow_script: bool = False,
) -> AnsibleImport:
    """Turn an Ansible inventory into a client document (nothing is written here).

    ``allow_script`` lets Ansible run a script inventory or inventory plugin, with the
    cut-down environment of :func:`read_ansible_inventory`.
    """
    data = read_ansible_inventory(path, allow_script=allow_script)
    warnings: list[str] = []
    hostvars: dict[str, dict[str, Any]] = data.get("_meta", {}).get("hostvars", {})

    group_names = [g for g in data if g != "_meta" and g not in _RESERVED_GROUPS]
    parents: dict[str, list[str]] = {g: [] for g in group_names}
    members: dict[str, list[str]] = {}
    all_hosts = dict.fromkeys(hostvars)  # an ordered set: hosts without vars come later
    for group in [*group_names, *_RESERVED_GROUPS]:
        listing = data.get(group) or {}
        for host in listing.get("hosts", []):
            all_hosts[host] = None
            if group not in _RESERVED_GROUPS:
                members.setdefault(host, []).append(group)
        if group not in _RESERVED_GROUPS:
            for child in listing.get("children", []):
                if child in parents:
                    parents[child].append(group)

    client_section: dict[str, Any] = {
        "name": client,
        "display_name": display_name,
        "timezone": timezone,
        "contract": contract,
        "platform": platform,
    }
    client_section.update(
        _level_from_vars((data.get("all") or {}).get("vars", {}), "all", warnings)
    )
    groups: dict[str, Any] = {}
    for group in group_names:
        entry: dict[str, Any] = {}
        if parents[group]:
            entry["parents"] = parents[group]
        entry.update(
            _level_from_vars((data.get(group) or {}).get("vars", {}), f"group {group}", warnings)
        )
        groups[group] = entry
    hosts: dict[str, Any] = {}
    for host in all_hosts:
        variables = dict(hostvars.get(host, {}))
        entry = {}
        # ansible_ssh_host/_port: the older spellings the ssh plugin still reads.
        legacy_address = variables.pop("ansible_ssh_host", None)
        address = variables.pop("ansible_host", legacy_address)
        if address is not None:
            entry["address"] = str(address)
        if members.get(host):
            entry["groups"] = members[host]
        entry.update(_level_from_vars(variables, f"host {host}", warnings))
        hosts[host] = entry or None

    document: dict[str, Any] = {"client": client_section}
    if groups:
        document["groups"] = groups
    document["hosts"] = hosts
    return AnsibleImport(document, hosts=len(hosts), groups=len(groups), warnings=warnings)


def _level_from_vars(
    variables: Mapping[str, Any], where: str, warnings: list[str]
) -> dict[str, Any]:
    """Ansible variables of one level -> our settings plus the remaining ``vars``."""
    level: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    for name, value in variables.items():
        if (
            name in {"ansible_port", "ansible_ssh_port"}
            and type(value) is int
            and (1 <= value <= 65535)
        ):
            level["port"] = value
        elif name == "ansible_connection" and value in ("ssh", "winrm", "local"):
            level["connection"] = value
            if value == "winrm":
                level["platform"] = "windows"
        elif name == "ansible_group_priority" and type(value) is int and value >= 1:
            level["priority"] = value
        elif secret_variable(name, value):
            warnings.append(
                f"{where}: dropped {name} (a secret); reference it from a client "
                "credential instead (env:, file:, vault: or keyring:)"
            )
        else:
            rest[name] = value
    if "ansible_network_os" in rest:
        level["platform"] = "network"
    if rest:
        level["vars"] = rest
    return level


# --- export -------------------------------------------------------------------------


def _ansible_vars(level: Inheritable, address: str | None = None) -> dict[str, Any]:
    """One level's settings and variables, as Ansible variables."""
    result: dict[str, Any] = dict(level.vars)
    if level.connection is not None:
        result["ansible_connection"] = level.connection
    if level.port is not None:
        result["ansible_port"] = level.port
    if address is not None:
        result["ansible_host"] = address
    priority = getattr(level, "priority", 1)
    if priority != 1:
        result["ansible_group_priority"] = priority
    return result


def expected_ansible_vars(host: Host, client: Client) -> dict[str, Any]:
    """What Ansible should see for ``host``: mspauto's resolved view in Ansible names."""
    expected = dict(host.vars)
    if "connection" in host.origins:
        expected["ansible_connection"] = host.connection
    if "port" in host.origins:
        expected["ansible_port"] = host.port
    spec = client.host_specs[host.name]
    if spec.address is not None:
        expected["ansible_host"] = spec.address
    return expected


@dataclass
class _Structure:
    """An inventory as Ansible groups: vars per group, members, children."""

    all_vars: dict[str, Any]
    group_vars: dict[str, dict[str, Any]]
    children: dict[str, list[str]]
    members: dict[str, list[str]]
    host_vars: dict[str, dict[str, Any]]


def _structure(client: Client, defaults: Inheritable) -> _Structure:
    all_vars = {**_ansible_vars(defaults), **_ansible_vars(client.spec)}
    group_vars: dict[str, dict[str, Any]] = {}
    children: dict[str, list[str]] = {}
    members: dict[str, list[str]] = {}
    for name, group in client.groups.items():
        group_vars[name] = _ansible_vars(group)
        children.setdefault(name, [])
        members.setdefault(name, [])
        for parent in group.parents:
            children.setdefault(parent, []).append(name)
    for name, site in client.sites.items():
        site_group = SITE_GROUP_PREFIX + name
        if site_group in client.groups:
            raise AnsibleInventoryError(
                f"cannot export site '{name}': a group is already named '{site_group}'"
            )
        group_vars[site_group] = _ansible_vars(site)
        children.setdefault(site_group, [])
        members.setdefault(site_group, [])
    host_vars: dict[str, dict[str, Any]] = {}
    for name, spec in client.host_specs.items():
        host_vars[name] = _ansible_vars(spec, spec.address)
        for group_name in spec.groups:
            members[group_name].append(name)
        if spec.site is not None:
            members[SITE_GROUP_PREFIX + spec.site].append(name)
    _pin_differences(client, all_vars, group_vars, children, host_vars)
    return _Structure(all_vars, group_vars, children, members, host_vars)


def _pin_differences(
    client: Client,
    all_vars: dict[str, Any],
    group_vars: dict[str, dict[str, Any]],
    children: dict[str, list[str]],
    host_vars: dict[str, dict[str, Any]],
) -> None:
    """Where Ansible's merge order would change a host's value, set it on the host."""
    parents: dict[str, list[str]] = {g: [] for g in group_vars}
    for parent, kids in children.items():
        for kid in kids:
            parents[kid].append(parent)
    priorities = {g: int(v.get("ansible_group_priority", 1)) for g, v in group_vars.items()}
    shape = {g: _GroupShape(parents[g], priorities[g]) for g in group_vars}
    depths = group_depths(shape)
    for name, host in client.hosts.items():
        spec = client.host_specs[name]
        direct = list(spec.groups) + ([SITE_GROUP_PREFIX + spec.site] if spec.site else [])
        seen = dict(all_vars)
        for group in merge_order(direct, shape, depths):
            seen.update(group_vars[group])
        seen.update(host_vars[name])
        for key, value in expected_ansible_vars(host, client).items():
            if seen.get(key, _MISSING) != value:
                host_vars[name][key] = value


_MISSING = object()


@dataclass(frozen=True)
class _GroupShape:
    """The part of a group that fixes Ansible's merge order."""

    parents: list[str]
    priority: int


def export_yaml(client: Client, defaults: Inheritable) -> str:
    """The client as an Ansible YAML inventory."""
    structure = _structure(client, defaults)
    tree: dict[str, Any] = {}
    if structure.all_vars:
        tree["vars"] = structure.all_vars
    tree["hosts"] = {name: (v or None) for name, v in structure.host_vars.items()}
    top = [
        g
        for g in structure.group_vars
        if not any(g in kids for kids in structure.children.values())
    ]

    def group_tree(name: str) -> dict[str, Any]:
        node: dict[str, Any] = {}
        if structure.members.get(name):
            node["hosts"] = dict.fromkeys(structure.members[name])
        if structure.group_vars.get(name):
            node["vars"] = structure.group_vars[name]
        if structure.children.get(name):
            node["children"] = {child: group_tree(child) for child in structure.children[name]}
        return node

    if top:
        tree["children"] = {name: group_tree(name) for name in top}
    return yaml.safe_dump(
        {"all": tree}, sort_keys=False, allow_unicode=True, default_flow_style=False
    )


def export_ini(client: Client, defaults: Inheritable) -> str:
    """The client as an Ansible INI inventory.

    INI reads host-line values as Python literals after shell-style splitting, and
    ``:vars`` values as Python literals; values are written so both read back exactly.
    """
    structure = _structure(client, defaults)
    lines = [f"# Exported by mspauto from client '{client.name}'."]
    for name, variables in structure.host_vars.items():
        assignments = " ".join(
            f"{key}={_host_line_value(value)}" for key, value in variables.items()
        )
        lines.append(f"{name} {assignments}".rstrip())
    if structure.all_vars:
        lines += ["", "[all:vars]"]
        lines += [f"{key}={_literal(value)}" for key, value in structure.all_vars.items()]
    for group, variables in structure.group_vars.items():
        lines += ["", f"[{group}]", *structure.members.get(group, [])]
        if variables:
            lines += ["", f"[{group}:vars]"]
            lines += [f"{key}={_literal(value)}" for key, value in variables.items()]
        if structure.children.get(group):
            lines += ["", f"[{group}:children]", *structure.children[group]]
    return "\n".join(lines) + "\n"


_BARE = re.compile(r"^[A-Za-z0-9_./:@%+,-]+$")


def _host_line_value(value: Any) -> str:
    """A host-line value: shell-style token whose content is read as a Python literal."""
    if isinstance(value, str) and _BARE.match(value):
        try:
            ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value  # not a literal, so Ansible keeps the plain string
    literal = _literal(value)
    if '"' not in literal and "\\" not in literal:
        return f'"{literal}"'
    return shlex.quote(literal)


def _literal(value: Any) -> str:
    """A Python literal Ansible's INI parser reads back as ``value``."""
    if isinstance(value, datetime | date):
        value = value.isoformat()
    return repr(value)
