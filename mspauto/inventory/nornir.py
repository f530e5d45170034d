"""Export a client as a nornir ``SimpleInventory`` (hosts.yaml, groups.yaml, defaults.yaml).

nornir looks a variable up in the host's data, then in its groups depth-first in list
order, then in the defaults. Groups are written with their own variables; where that
lookup would find a different value than mspauto resolves, the value is pinned on the
host, so ``nornir_host[key]`` always equals ``host.vars[key]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from mspauto.inventory.models import Inheritable
from mspauto.inventory.resolve import SITE_GROUP_PREFIX, Client

__all__ = ["export_nornir"]

_MISSING = object()


def export_nornir(client: Client, defaults: Inheritable) -> dict[str, str]:
    """File name -> YAML text of a nornir SimpleInventory for ``client``."""
    defaults_data = {**defaults.vars, **client.spec.vars}
    groups: dict[str, dict[str, Any]] = {}
    for name, group in client.groups.items():
        groups[name] = {"groups": list(group.parents), "data": dict(group.vars)}
    for name, site in client.sites.items():
        groups[SITE_GROUP_PREFIX + name] = {"groups": [], "data": dict(site.vars)}

    hosts: dict[str, dict[str, Any]] = {}
    for name, host in client.hosts.items():
        spec = client.host_specs[name]
        # nornir reads the first group first: list the highest-precedence groups first.
        direct = [g for g in reversed(host.groups) if g in spec.groups]
        if host.site:
            direct.append(SITE_GROUP_PREFIX + host.site)
        credential = client.credentials.get(host.credential) if host.credential else None
        data = dict(spec.vars)
        for key, value in host.vars.items():
            if _lookup(key, data, direct, groups, defaults_data) != value:
                data[key] = value
        entry: dict[str, Any] = {
            "hostname": host.address,
            "platform": host.platform,
            "groups": direct,
            "data": data,
        }
        if host.port is not None:
            entry["port"] = host.port
        if credential is not None:
            entry["username"] = credential.user
        hosts[name] = entry

    def dump(data: Any) -> str:
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)

    return {
        "hosts.yaml": dump(hosts),
        "groups.yaml": dump(groups),
        "defaults.yaml": dump({"data": defaults_data}),
    }


def _lookup(
    key: str,
    data: Mapping[str, Any],
    group_names: list[str],
    groups: Mapping[str, Mapping[str, Any]],
    defaults: Mapping[str, Any],
) -> Any:
    """The value nornir would find for ``key`` (host data, groups depth-first, defaults)."""
    if key in data:
        return data[key]

    def in_group(name: str) -> Any:
        group = groups[name]
        if key in group["data"]:
            return group["data"][key]
        for parent in group["groups"]:
            found = in_group(parent)
            if found is not _MISSING:
                return found
        return _MISSING

    for name in group_names:
        found = in_group(name)
        if found is not _MISSING:
            return found
    return defaults.get(key, _MISSING)
