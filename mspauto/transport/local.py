"""The control node itself (``connection: local``): commands run in a local shell."""

from __future__ import annotations

import os
import re
import subprocess

from mspauto.inventory.resolve import Host
from mspauto.transport.base import CommandResult, ErrorKind, utcnow

__all__ = ["LocalTransport"]


class LocalTransport:
    """Runs commands with ``/bin/sh -c`` on this machine."""

    def run(self, host: Host, command: str, *, sudo: bool, timeout: float) -> CommandResult:
        """Run ``command`` locally (through ``sudo -n`` if asked and not already root)."""
        started = utcnow()
        args = ["/bin/sh", "-c", command]
        if sudo and _euid() != 0:
            args = ["sudo", "-n", "--", *args]
        try:
            done = subprocess.run(
                args,
                capture_output=True,
                timeout=timeout,
                check=False,
                stdin=subprocess.DEVNULL,
                env=_environment(),
            )
        except subprocess.TimeoutExpired:
            return CommandResult.failure(
                host.name,
                command,
                ErrorKind.TIMEOUT,
                f"command did not finish within {timeout:g}s",
                started=started,
            )
        stdout = done.stdout.decode("utf-8", errors="replace")
        stderr = done.stderr.decode("utf-8", errors="replace")
        failed = done.returncode != 0
        last = stderr.strip().splitlines()[-1:] if failed else []
        return CommandResult(
            host.name,
            command,
            done.returncode,
            stdout,
            stderr,
            started,
            utcnow(),
            ErrorKind.COMMAND_FAILED if failed else None,
            (last[0][:200] if last else f"exit code {done.returncode}") if failed else "",
            stdout_bytes=len(done.stdout),
            stderr_bytes=len(done.stderr),
        )

    def close(self) -> None:
        """Nothing to release."""


_PASSED = re.compile(r"^(PATH|HOME|USER|LOGNAME|LANG|LC_\w+|TZ|TMPDIR|TERM)$")


def _environment() -> dict[str, str]:
    """The control node's environment minus everything else: ``env:`` secrets of every
    client live there, and a local command must never see them."""
    return {name: value for name, value in os.environ.items() if _PASSED.match(name)}


def _euid() -> int:
    return os.geteuid()
