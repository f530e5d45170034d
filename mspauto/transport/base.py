"""What every transport returns: one :class:`CommandResult` per host and command.

Transport errors are classified so that a run can say, per host and in one line, why
a host did not do what was asked, and so retries apply only where they can help.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from mspauto.inventory.resolve import Host

__all__ = [
    "BatchTransport",
    "CommandResult",
    "CredentialCache",
    "ErrorKind",
    "PlayTransport",
    "Transport",
    "TransportFailure",
    "utcnow",
]


class ErrorKind(StrEnum):
    """Why a host did not run a command to a zero exit code."""

    UNREACHABLE = "unreachable"
    """Nothing accepted the connection (refused, no route, connect timed out)."""
    TIMEOUT = "timeout"
    """Connected, but the SSH handshake or the command did not finish in time."""
    AUTH_FAILED = "auth_failed"
    """The host refused our credentials."""
    HOST_KEY_MISMATCH = "host_key_mismatch"
    """The host presented a different key than the client's known_hosts records."""
    HOST_KEY_UNKNOWN = "host_key_unknown"
    """The client's known_hosts has no key for this host (never accepted automatically)."""
    TLS_UNTRUSTED = "tls_untrusted"
    """The host's TLS certificate is not trusted: unknown CA, self-signed, expired or wrong name."""
    CONNECTION_LOST = "connection_lost"
    """The connection broke after the command was started: it may have run (not retried)."""
    COMMAND_FAILED = "command_failed"
    """The command ran and exited non-zero."""
    CONFIG = "config"
    """The host cannot be reached as configured (a missing secret, a bad key file)."""
    NOT_STARTED = "not_started"
    """The run was stopped before this host's turn."""
    INTERRUPTED = "interrupted"
    """The run was stopped while this host was being worked on: its outcome is unknown."""
    INTERNAL = "internal_error"
    """A bug in mspauto while handling this host (the message names the exception)."""


def utcnow() -> datetime:
    """Timezone-aware now, in UTC (all stored times are UTC)."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class CommandResult:
    """One command on one host: exit code, output, timing, and why it failed if it did."""

    host: str
    command: str
    rc: int | None
    stdout: str
    stderr: str
    started: datetime
    finished: datetime
    error: ErrorKind | None = None
    message: str = ""
    attempts: int = 1
    stdout_bytes: int = field(default=-1)
    """Full size of stdout (it may have been cut to the transport's cap)."""
    stderr_bytes: int = field(default=-1)

    @classmethod
    def failure(
        cls,
        host: str,
        command: str,
        error: ErrorKind,
        message: str,
        started: datetime | None = None,
    ) -> CommandResult:
        """A result for a host where the command did not run (or did not finish)."""
        finished = utcnow()
        return cls(host, command, None, "", "", started or finished, finished, error, message)

    @property
    def ok(self) -> bool:
        """True when the command ran and exited 0."""
        return self.error is None and self.rc == 0

    @property
    def seconds(self) -> float:
        """Wall time, connection included."""
        return (self.finished - self.started).total_seconds()

    def as_dict(self) -> dict[str, Any]:
        """Machine-readable form (``--format json``)."""
        return {
            "host": self.host,
            "ok": self.ok,
            "rc": self.rc,
            "error": str(self.error) if self.error else None,
            "message": self.message,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "seconds": round(self.seconds, 3),
            "attempts": self.attempts,
        }

    def summary(self) -> str:
        """One line for a person: ``ok``, or the error kind and its reason."""
        if self.ok:
            return f"ok rc=0 {self.seconds:.2f}s"
        if self.error is ErrorKind.COMMAND_FAILED:
            return f"command_failed rc={self.rc} {self.seconds:.2f}s"
        return f"{self.error}: {self.message}" if self.error else f"rc={self.rc}"


class TransportFailure(Exception):
    """Raised inside transports for a classified failure; becomes a failed result."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


LoginT = TypeVar("LoginT")


class CredentialCache(Generic[LoginT]):
    """Fetched credentials by name, each fetched once per transport (thread-safe)."""

    def __init__(self, fetch: Callable[[str], LoginT]) -> None:
        self._fetch = fetch
        self._cache: dict[str, LoginT] = {}
        self._lock = threading.Lock()

    def get(self, name: str | None) -> LoginT:
        """The fetched credential ``name`` (a host without one is a config failure)."""
        if name is None:
            raise TransportFailure(
                ErrorKind.CONFIG,
                "no credential: set 'credential' on the host, its group, site or client",
            )
        with self._lock:
            if name not in self._cache:
                self._cache[name] = self._fetch(name)
            return self._cache[name]

    def clear(self) -> None:
        """Forget every fetched secret."""
        with self._lock:
            self._cache.clear()


class Transport(Protocol):
    """Runs commands on hosts of one client. Implementations are thread-safe: the engine
    calls :meth:`run` from many threads, one host per thread at a time."""

    def run(
        self, host: Host, command: str, *, sudo: bool, timeout: float, stdin: bytes = b""
    ) -> CommandResult:
        """Run ``command`` on ``host`` and return what happened (never raises for host
        or network problems: they become :class:`ErrorKind` results). ``stdin`` is what
        the command reads on its standard input (secrets travel there, never in the
        command: see :mod:`mspauto.checks.secrets`); a transport that cannot deliver it
        says so as a ``config`` failure instead of running the command without it."""
        ...

    def close(self) -> None:
        """Release every connection."""
        ...


@runtime_checkable
class BatchTransport(Protocol):
    """A transport that is cheaper run once for many hosts (Ansible): the engine hands it
    every host at once instead of one host per thread."""

    def run(
        self, host: Host, command: str, *, sudo: bool, timeout: float, stdin: bytes = b""
    ) -> CommandResult:
        """One host (as :class:`Transport`)."""
        ...

    def run_many(
        self,
        hosts: list[Host],
        command: str,
        *,
        sudo: bool,
        timeout: float,
        cancelled: Callable[[], bool] = ...,
    ) -> list[CommandResult]:
        """Every host at once; results in the order of ``hosts``."""
        ...

    def close(self) -> None:
        """Release what it holds."""
        ...


@runtime_checkable
class PlayTransport(Protocol):
    """A batch transport that can also run a play of tasks (changes) on many hosts."""

    def run_play(
        self,
        hosts: list[Host],
        tasks: Sequence[Mapping[str, Any]],
        *,
        check: bool,
        timeout: float,
        cancelled: Callable[[], bool] = ...,
    ) -> list[CommandResult]:
        """Every host at once, results in the order of ``hosts``: ``rc`` 0 when no task
        failed, each task's outcome as one JSON line of ``stdout`` (see
        :func:`mspauto.transport.ansible.task_outcomes`)."""
        ...
