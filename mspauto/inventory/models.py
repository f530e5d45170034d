"""What an inventory file may contain: clients > sites > groups > hosts.

These models describe the YAML as written (one file, or a folder of files, per
client). :mod:`mspauto.inventory.resolve` turns them into resolved :class:`Host`
objects with inherited settings and variables.

Settings and variables inherit in this order, later wins:
project defaults < client < site < groups < host. Groups merge the way Ansible merges
them, so imported inventories mean what they meant: by depth (parents before
children), then by ``priority``, then by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from mspauto.fields import (
    Address,
    Name,
    Port,
    SecretRef,
    StrictModel,
    TimeZoneName,
    Vars,
    WholeNumber,
    item_error,
)

__all__ = [
    "CONNECTIONS",
    "PLATFORMS",
    "PLATFORM_FAMILIES",
    "ClientFile",
    "ClientSpec",
    "Connection",
    "Credential",
    "Defaults",
    "Family",
    "GroupSpec",
    "HostSpec",
    "Platform",
    "SiteSpec",
]

Platform = Literal["debian", "ubuntu", "rhel", "windows", "network"]
PLATFORMS: tuple[Platform, ...] = ("debian", "ubuntu", "rhel", "windows", "network")
Family = Literal["linux", "windows"]
PLATFORM_FAMILIES: dict[str, Family | None] = {
    "debian": "linux",
    "ubuntu": "linux",
    "rhel": "linux",
    "windows": "windows",
    "network": None,
}
"""Which family of scripts (shell or PowerShell) a platform runs; None: no scripts."""
Connection = Literal["ssh", "winrm", "local"]
RESERVED_GROUPS = ("all", "ungrouped")
CONNECTIONS: tuple[Connection, ...] = ("ssh", "winrm", "local")


class Credential(StrictModel):
    """A login, with every secret referenced rather than written."""

    user: str = Field(min_length=1)
    password: SecretRef | None = None
    private_key: SecretRef | None = None
    key_passphrase: SecretRef | None = None
    become_password: SecretRef | None = None
    winrm_transport: Literal["ntlm", "kerberos", "credssp", "certificate", "basic"] | None = None


class Inheritable(StrictModel):
    """Settings any level may set for the hosts below it."""

    platform: Platform | None = None
    connection: Connection | None = None
    port: Port | None = None
    credential: Name | None = None
    ring: Name | None = None
    vars: Vars = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _allow_empty(cls, data: Any) -> Any:
        # `web01:` with nothing under it takes everything from the levels above.
        return {} if data is None else data


class Defaults(Inheritable):
    """``inventory/defaults.yaml``: project-wide defaults under every client."""


class ClientSpec(Inheritable):
    """The ``client:`` section: who the client is and how we reach its hosts."""

    name: Name
    display_name: str = Field(min_length=1)
    timezone: TimeZoneName
    contract: Name
    known_hosts: Path | None = None
    credentials: dict[Name, Credential] = Field(default_factory=dict)
    max_parallel: WholeNumber | None = Field(
        default=None,
        ge=1,
        description="most of this client's hosts worked on at once (protects its network)",
    )


class SiteSpec(Inheritable):
    """A physical or cloud location of a client."""

    display_name: str | None = None
    timezone: TimeZoneName | None = None


class GroupSpec(Inheritable):
    """A set of hosts sharing settings; groups may nest through ``parents``."""

    description: str | None = None
    parents: list[Name] = Field(default_factory=list)
    priority: WholeNumber = Field(
        default=1,
        ge=1,
        description="among groups of the same depth, higher priority wins (Ansible's "
        "ansible_group_priority); ties go by name",
    )


class HostSpec(Inheritable):
    """One managed machine; ``address`` defaults to the host's name."""

    address: Address | None = None
    site: Name | None = None
    groups: list[Name] = Field(default_factory=list)
    tags: list[Name] = Field(default_factory=list)
    description: str | None = None


class ClientFile(StrictModel):
    """One file of a client's inventory. A folder-form client may split these keys
    over several files; exactly one of them holds ``client:``."""

    client: ClientSpec | None = None
    sites: dict[Name, SiteSpec] = Field(default_factory=dict)
    groups: dict[Name, GroupSpec] = Field(default_factory=dict)
    hosts: dict[Name, HostSpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _reserved_group_names(self) -> ClientFile:
        for name in self.groups:
            if name in RESERVED_GROUPS:
                raise item_error(
                    f"'{name}' is reserved (Ansible's group of "
                    f"{'every host' if name == 'all' else 'hosts in no group'}); "
                    "rename the group",
                    at=("groups", name),
                )
        return self

    @model_validator(mode="before")
    @classmethod
    def _allow_empty_sections(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: ({} if v is None and k != "client" else v) for k, v in data.items()}
        return data
