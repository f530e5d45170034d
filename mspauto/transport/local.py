"""The control node itself (``connection: local``): commands run in a local shell.

A local command runs as mspauto's own user, beside the control process whose memory and
``/proc/<pid>/environ`` hold the ``env:`` secrets of every client. Cutting the command's
environment does not keep it from reading its parent's; so before the first local
command the control process makes itself non-dumpable (Linux), which leaves its environ
and memory readable by root (CAP_SYS_PTRACE) only. What that does not protect is said in
docs/engine.md ("Local commands").
"""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
import sys
import threading

from mspauto.inventory.resolve import Host
from mspauto.transport.base import CommandResult, ErrorKind, utcnow

__all__ = ["LocalTransport", "control_process_dumpable", "keep_control_process_private"]


class LocalTransport:
    """Runs commands with ``/bin/sh -c`` on this machine."""

    def run(
        self, host: Host, command: str, *, sudo: bool, timeout: float, stdin: bytes = b""
    ) -> CommandResult:
        """Run ``command`` locally (through ``sudo -n`` if asked and not already root)."""
        started = utcnow()
        try:
            keep_control_process_private()
        except OSError as exc:
            return CommandResult.failure(
                host.name,
                command,
                ErrorKind.CONFIG,
                f"refused to run: the control process cannot hide its secrets from local "
                f"commands (prctl: {exc.strerror})",
                started=started,
            )
        args = ["/bin/sh", "-c", command]
        if sudo and _euid() != 0:
            args = ["sudo", "-n", "--", *args]
        try:
            done = subprocess.run(
                args,
                capture_output=True,
                timeout=timeout,
                check=False,
                input=stdin,
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


_PR_GET_DUMPABLE = 3
_PR_SET_DUMPABLE = 4
_privacy_lock = threading.Lock()


def keep_control_process_private() -> None:
    """Make this process non-dumpable, for the rest of its life (Linux; elsewhere a no-op).

    Its ``/proc/<pid>/environ``, ``mem`` and ``maps`` then belong to root: a process of
    the same user (a local command, or anything it starts) can no longer read them.
    It is never undone: a command's background child may outlive the run, waiting.
    Raises :class:`OSError` when the kernel refuses.
    """
    if not sys.platform.startswith("linux"):
        return
    with _privacy_lock:
        if control_process_dumpable() is False:
            return
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))


def control_process_dumpable() -> bool | None:
    """Whether other processes of this user may read this one's environ and memory
    (None: not Linux, not known)."""
    if not sys.platform.startswith("linux"):
        return None
    state: int = ctypes.CDLL(None, use_errno=True).prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0)
    return None if state < 0 else state != 0


_PASSED = re.compile(r"^(PATH|HOME|USER|LOGNAME|LANG|LC_\w+|TZ|TMPDIR|TERM)$")


def _environment() -> dict[str, str]:
    """The control node's environment minus everything else: ``env:`` secrets of every
    client live there, and a local command must never see them."""
    return {name: value for name, value in os.environ.items() if _PASSED.match(name)}


def _euid() -> int:
    return os.geteuid()
