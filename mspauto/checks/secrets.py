"""Secrets a host's script needs, delivered on its standard input and nowhere else.

A probe that needs a secret (a backup repository's password) must not carry it: the
script is recorded as evidence and is a command line on the host, which any user there
can read in ``ps``. Instead the script names shell variables (:func:`secret_variable`),
and the transport writes the values to the command's standard input. The prelude
:func:`secret_input` puts in front of the script first prints its marker (a line with a
random nonce) on stdout, then skips every input line before that marker, reads one
secret per line into those variables, and closes the input, so nothing the script runs
afterwards can read it. The variables are not exported: a command that needs one gets
it exported in a subshell of its own (mspauto.backup.probe.capture).

Under sudo with a password, the become password comes first on the same input. The SSH
transport sends the secrets only once the script has printed its marker, that is, once
sudo has let it run: a wrong become password makes sudo read its retries from the
input, and the secrets must never be what it reads (they would go to PAM as login
attempts). See :func:`mspauto.transport.ssh.SSHTransport.run`.
"""

from __future__ import annotations

import secrets as random
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["MARK", "SecretInput", "secret_input", "secret_variable"]

MARK = "@@mspauto secrets"
"""How the marker line starts (a random nonce follows)."""


def secret_variable(index: int) -> str:
    """The shell variable holding the ``index``-th secret (from 0) of a script."""
    return f"MSPAUTO_SECRET_{index + 1}"


@dataclass(frozen=True)
class SecretInput:
    """A script's prelude (sh) and the bytes to send on its standard input."""

    prelude: str
    stdin: bytes


def secret_input(values: Sequence[str]) -> SecretInput:
    """The prelude that reads ``values`` into :func:`secret_variable` 0..n-1, and the
    input that carries them (raises ValueError for a value that spans lines)."""
    for value in values:
        if any(c in value for c in "\r\n\0"):
            raise ValueError("a secret holding a line break cannot be passed on stdin")
    marker = f"{MARK} {random.token_hex(8)}"
    lines = [
        f"echo '{marker}'",
        f'while IFS= read -r mspauto_line; do [ "$mspauto_line" = "{marker}" ] && break; done',
        *(f"IFS= read -r {secret_variable(i)}" for i in range(len(values))),
        "unset mspauto_line",
        "exec </dev/null",
    ]
    stdin = "".join(f"{line}\n" for line in [marker, *values])
    return SecretInput("\n".join(lines) + "\n", stdin.encode())
