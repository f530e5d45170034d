"""The baseline the benchmarks measure against: plain paramiko, as a script would use it."""

from __future__ import annotations

import socket

import paramiko


def connect(address: str, key: paramiko.PKey, known: paramiko.HostKeys) -> paramiko.SSHClient:
    """A strict-host-key SSH connection as user mspauto, with TCP_NODELAY."""
    sock = socket.create_connection((address, 22), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client = paramiko.SSHClient()
    for key_type, host_key in (known.lookup(address) or {}).items():
        client.get_host_keys().add(address, key_type, host_key)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        address, username="mspauto", pkey=key, sock=sock, allow_agent=False, look_for_keys=False
    )
    return client
