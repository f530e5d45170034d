"""Recording a host's SSH key on purpose (trust on first use, with the fingerprint shown).

Connections never accept an unknown or changed key; this is the one deliberate way in.
"""

from __future__ import annotations

import socket
from pathlib import Path

import paramiko

__all__ = ["HostKeyError", "fetch_host_key", "known_key", "lookup_name", "record_host_key"]


class HostKeyError(Exception):
    """The key could not be fetched or recorded (one line saying why)."""


def lookup_name(address: str, port: int) -> str:
    """How OpenSSH and paramiko name a host in known_hosts."""
    return address if port == 22 else f"[{address}]:{port}"


def fetch_host_key(address: str, port: int, timeout: float = 10.0) -> paramiko.PKey:
    """The key a host presents (an SSH handshake without logging in)."""
    try:
        sock = socket.create_connection((address, port), timeout=timeout)
    except OSError as exc:
        raise HostKeyError(f"cannot connect to {address}:{port}: {exc.strerror or exc}") from None
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=timeout)
        return transport.get_remote_server_key()
    except (paramiko.SSHException, EOFError, OSError) as exc:
        raise HostKeyError(f"no SSH handshake with {address}:{port}: {exc}") from None
    finally:
        transport.close()


def known_key(known_hosts: Path, lookup: str, key_type: str) -> paramiko.PKey | None:
    """The key recorded for ``lookup`` of ``key_type``, if any."""
    if not known_hosts.is_file():
        return None
    entry = paramiko.HostKeys(str(known_hosts)).lookup(lookup)
    return entry.get(key_type) if entry else None


def record_host_key(known_hosts: Path, lookup: str, key: paramiko.PKey, *, replace: bool) -> str:
    """Record ``key``; returns ``added``, ``unchanged`` or ``replaced``.

    A different key already recorded is only replaced when asked to.
    """
    current = known_key(known_hosts, lookup, key.get_name())
    if current is not None and current == key:
        return "unchanged"
    line = f"{lookup} {key.get_name()} {key.get_base64()}\n"
    if current is None:
        known_hosts.parent.mkdir(parents=True, exist_ok=True)
        with known_hosts.open("a") as handle:
            handle.write(line)
        return "added"
    if not replace:
        raise HostKeyError(
            f"{lookup} already has a different {key.get_name()} key "
            f"({current.fingerprint}); pass --replace if the change is expected"
        )
    kept = [
        existing
        for existing in known_hosts.read_text().splitlines(keepends=True)
        if not _names(existing, lookup, key.get_name())
    ]
    known_hosts.write_text("".join(kept) + line)
    return "replaced"


def _names(line: str, lookup: str, key_type: str) -> bool:
    """True for a plain known_hosts line recording ``lookup``'s ``key_type`` key."""
    fields = line.split()
    return (
        len(fields) >= 3
        and not line.startswith("#")
        and fields[1] == key_type
        and lookup in fields[0].split(",")
    )
