"""An in-process transport for tests and benchmarks of the engine itself.

No host is contacted: each "command" takes ``delay`` seconds and returns whatever the
``outcome`` function decides. It is what the engine's own overhead is measured against,
and how tests reach states (a bug, a slow host) that real hosts make hard to time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from mspauto.inventory.resolve import Host
from mspauto.transport.base import CommandResult, ErrorKind, utcnow

__all__ = ["FakeTransport"]


def _succeed(host: Host, command: str) -> tuple[int, str, ErrorKind | None]:
    return 0, f"{host.name}\n", None


class FakeTransport:
    """Answers every command without I/O; records how many ran at once."""

    def __init__(
        self,
        outcome: Callable[[Host, str], tuple[int, str, ErrorKind | None]] = _succeed,
        delay: float = 0.0,
    ) -> None:
        self._outcome = outcome
        self._delay = delay
        self._lock = threading.Lock()
        self._running = 0
        self.peak_parallel = 0
        self.calls: list[str] = []
        self.stdin: dict[str, bytes] = {}
        """What each host's last command was given on stdin."""

    def run(
        self, host: Host, command: str, *, sudo: bool, timeout: float, stdin: bytes = b""
    ) -> CommandResult:
        """Pretend to run ``command`` on ``host`` (``stdin`` is kept in :attr:`stdin`)."""
        started = utcnow()
        with self._lock:
            self.stdin[host.name] = stdin
            self._running += 1
            self.peak_parallel = max(self.peak_parallel, self._running)
            self.calls.append(host.name)
        try:
            if self._delay:
                time.sleep(self._delay)
            rc, stdout, error = self._outcome(host, command)
        finally:
            with self._lock:
                self._running -= 1
        return CommandResult(
            host.name,
            command,
            rc,
            stdout,
            "",
            started,
            utcnow(),
            error,
            "" if error is None else str(error),
        )

    def close(self) -> None:
        """Nothing to release."""
