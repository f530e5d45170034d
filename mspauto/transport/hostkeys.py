"""Recording a host's SSH key on purpose (trust on first use, with the fingerprint shown).

Connections never accept an unknown or changed key; this is the one deliberate way in.
"""

from __future__ import annotations

import socket
from pathlib import Path

import paramiko

__all__ = ["HostKeyError", "fetch_host_key", "known_keys", "lookup_name", "record_host_key"]


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


def known_keys(known_hosts: Path, lookup: str) -> dict[str, paramiko.PKey]:
    """Every key recorded for ``lookup``, by type."""
    if not known_hosts.is_file():
        return {}
    try:
        entry = paramiko.HostKeys(str(known_hosts)).lookup(lookup)
    except (ValueError, paramiko.SSHException) as exc:
        raise HostKeyError(f"{known_hosts} cannot be read ({exc}); fix the broken line") from None
    return dict(entry) if entry else {}


def record_host_key(known_hosts: Path, lookup: str, key: paramiko.PKey, *, replace: bool) -> str:
    """Record ``key``; returns ``added``, ``unchanged`` or ``replaced``.

    A host that already has any key recorded (of this type or another) keeps it unless
    replacing is asked for: a new key type is as much a change of identity as a new key.
    """
    recorded = known_keys(known_hosts, lookup)
    if recorded.get(key.get_name()) == key:
        return "unchanged"
    line = f"{lookup} {key.get_name()} {key.get_base64()}\n"
    if not recorded:
        known_hosts.parent.mkdir(parents=True, exist_ok=True)
        with known_hosts.open("a") as handle:
            handle.write(line)
        return "added"
    if not replace:
        shown = ", ".join(f"{t} {k.fingerprint}" for t, k in recorded.items())
        raise HostKeyError(
            f"{lookup} already has a recorded key ({shown}); pass --replace "
            "if the change is expected"
        )
    kept = [
        existing
        for existing in known_hosts.read_text().splitlines(keepends=True)
        if not _names(existing, lookup)
    ]
    known_hosts.write_text("".join(kept) + line)
    return "replaced"


def _names(line: str, lookup: str) -> bool:
    """True for a plain known_hosts line recording a key of ``lookup``."""
    fields = line.split()
    return len(fields) >= 3 and not line.startswith("#") and lookup in fields[0].split(",")
