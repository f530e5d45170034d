"""Transports: how commands reach hosts. All return the same :class:`CommandResult`.

:func:`transport_for` picks the implementation per host from its ``connection`` in one
place, so callers never branch on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from mspauto.inventory.resolve import Client, Host
from mspauto.transport.base import CommandResult, ErrorKind, Transport

__all__ = ["VIAS", "CommandResult", "ErrorKind", "Transport", "Via", "transport_for"]

Via = Literal["direct", "ansible"]
VIAS: tuple[Via, ...] = ("direct", "ansible")
"""``direct``: each host by its connection; ``ansible``: one ansible-runner run for all."""


class _ByConnection:
    """Routes each host to the transport for its ``connection``."""

    def __init__(self, client: Client, project_root: Path, connect_timeout: float) -> None:
        from mspauto.transport.local import LocalTransport
        from mspauto.transport.ssh import SSHTransport
        from mspauto.transport.winrm import WinRMTransport

        self._routes: dict[str, Transport] = {
            "ssh": SSHTransport(client, project_root, connect_timeout=connect_timeout),
            "winrm": WinRMTransport(client, project_root, connect_timeout=connect_timeout),
            "local": LocalTransport(),
        }

    def run(
        self, host: Host, command: str, *, sudo: bool, timeout: float, stdin: bytes = b""
    ) -> CommandResult:
        return self._routes[host.connection].run(
            host, command, sudo=sudo, timeout=timeout, stdin=stdin
        )

    def close(self) -> None:
        for transport in self._routes.values():
            transport.close()


def transport_for(
    client: Client,
    project_root: Path,
    *,
    via: Via = "direct",
    connect_timeout: float = 10.0,
    forks: int = 50,
) -> Transport:
    """The transport for a client's hosts: each host by its ``connection``, or (``via``
    ansible) one Ansible run for all of them, which is also what runs changes."""
    if via == "ansible":
        from mspauto.transport.ansible import AnsibleTransport

        return AnsibleTransport(client, project_root, forks=forks, connect_timeout=connect_timeout)
    return _ByConnection(client, project_root, connect_timeout)
