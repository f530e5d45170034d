"""Selecting hosts: which hosts a policy, waiver or command is about.

Within one key the entries are alternatives (any may match); across keys all must
match. ``clients``, ``sites``, ``groups`` and ``hosts`` accept shell-style patterns
(``web*``); a host's groups include the groups its groups are nested in.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from fnmatch import fnmatchcase

from pydantic import Field, model_validator

from mspauto.fields import StrictModel
from mspauto.inventory.models import Platform
from mspauto.inventory.resolve import Host, Inventory

__all__ = ["Selector", "is_pattern"]


def is_pattern(text: str) -> bool:
    """True when ``text`` is a shell-style pattern rather than one exact name."""
    return any(char in text for char in "*?[")


def _any_match(patterns: Iterable[str], values: Iterable[str]) -> bool:
    values = list(values)
    return any(fnmatchcase(value, pattern) for pattern in patterns for value in values)


class Selector(StrictModel):
    """Which hosts something applies to."""

    clients: list[str] = Field(default_factory=list)
    sites: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)
    hosts: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    platforms: list[Platform] = Field(default_factory=list)
    rings: list[str] = Field(default_factory=list)
    exclude_hosts: list[str] = Field(default_factory=list)
    exclude_tags: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _says_something(self) -> Selector:
        if not (
            self.clients
            or self.sites
            or self.groups
            or self.hosts
            or self.tags
            or self.platforms
            or self.rings
        ):
            raise ValueError(
                "select at least one of clients, sites, groups, hosts, tags, platforms or "
                "rings (use clients: ['*'] for every client)"
            )
        return self

    def matches(self, host: Host) -> bool:
        """True when ``host`` is selected."""
        checks = (
            (self.clients, (host.client,)),
            (self.sites, (host.site,) if host.site else ()),
            (self.groups, host.groups),
            (self.hosts, (host.name,)),
            (self.tags, host.tags),
            (self.platforms, (host.platform,)),
            (self.rings, (host.ring,) if host.ring else ()),
        )
        if any(wanted and not _any_match(wanted, have) for wanted, have in checks):
            return False
        return not (
            _any_match(self.exclude_hosts, (host.name,)) or _any_match(self.exclude_tags, host.tags)
        )

    def select(self, inventory: Inventory) -> Iterator[Host]:
        """Every selected host, in inventory order."""
        return (host for host in inventory.hosts() if self.matches(host))
