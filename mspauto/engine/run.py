"""Fan one command out over a client's hosts (nornir's threaded runner) and record it.

Every host gets a :class:`CommandResult`; one bad host never stops the run. Only
unreachable hosts are retried (with backoff): a timeout or a failed command is not
something trying again fixes. A per-client cap bounds how many of a client's hosts are
worked on at once. Ctrl-C (or SIGTERM) stops starting hosts, lets running ones finish
within their timeouts, and records the run as interrupted; a second Ctrl-C stops at once.
Evidence is written as results arrive, so a killed control node keeps what finished.
"""

from __future__ import annotations

import getpass
import json
import os
import signal
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from enum import Enum
from types import FrameType
from typing import Any

from mspauto import __version__
from mspauto.engine.progress import Progress, SilentProgress
from mspauto.evidence.records import (
    Attempt,
    HostResult,
    OutputRef,
    RecordKind,
    RunFinished,
    RunStarted,
    RunStatus,
)
from mspauto.evidence.store import EvidenceStore, NewRecord, store_output
from mspauto.evidence.writer import EvidenceWriter
from mspauto.inventory.resolve import Client, Host
from mspauto.transport.base import (
    BatchTransport,
    CommandResult,
    ErrorKind,
    PlayTransport,
    Transport,
    utcnow,
)

__all__ = [
    "Claim",
    "ClaimHost",
    "EngineError",
    "Executor",
    "ResultHook",
    "RunOutcome",
    "RunSpec",
    "host_record",
    "run_command",
    "run_finished_record",
    "run_hosts",
    "run_started_record",
]

ResultHook = Callable[[str, Host, CommandResult], Sequence[NewRecord]]
"""Called with the run id and each host's result as it arrives (from worker threads);
the records it returns are written right after the host's own, before the run ends."""


class Claim(Enum):
    """What taking a host of a distributed run found (see :func:`run_hosts`)."""

    MINE = "mine"
    """Nobody had it: run it."""
    DONE = "done"
    """Its outcome is recorded already (a batch delivered again): nothing to do."""
    LOST = "lost"
    """A worker took it and was lost before recording its outcome: it may have run, so
    it is recorded as interrupted, never run a second time."""


ClaimHost = Callable[[Host], Claim]
"""Takes a host for this process before anything runs on it (a unique row in the
database): the idempotence of a batch Celery may deliver more than once."""

LOST_HOST = (
    "a worker took this host and was lost before recording its outcome; it is not run "
    "again (it may have run: the outcome is unknown)"
)

RETRY_BACKOFF = 0.5
"""Seconds before the first retry of an unreachable host; doubles each time (max 5 s)."""


class EngineError(Exception):
    """The run cannot start as asked (one line saying why)."""


@dataclass(frozen=True)
class RunSpec:
    """What to run where."""

    client: Client
    hosts: list[Host]
    command: str
    sudo: bool = False
    timeout: float = 60.0
    retries: int = 2
    forks: int = 50
    kind: str = "exec"
    commands: Mapping[str, str] | None = None
    """Per-host scripts by host name (e.g. each host's own audit script); ``command``
    then describes them, and each script is recorded as a stored output."""
    play: Sequence[Mapping[str, Any]] | None = None
    """Ansible tasks to run as one play on every host (a change run); ``command``
    describes them and the play itself is recorded as each host's script."""
    check_mode: bool = False
    """With ``play``: Ansible's check mode with diffs (a dry run that changes nothing)."""
    stdin: Mapping[str, bytes] | None = None
    """Per-host input by host name (secrets a host's script reads, see
    mspauto.checks.secrets): handed to the transport, never recorded."""

    def command_for(self, host: Host) -> str:
        """What ``host`` runs."""
        return self.commands.get(host.name, self.command) if self.commands else self.command

    def script_for(self, host: Host) -> str | None:
        """The host's own script or play (stored as an output), if it has one."""
        if self.play is not None:
            return _play_text(self.play)
        return self.commands.get(host.name) if self.commands else None


@dataclass
class RunOutcome:
    """What a run did, host by host, in the order the hosts were given."""

    run_id: str
    client: str
    status: RunStatus
    results: list[CommandResult] = field(default_factory=list)
    evidence_error: str | None = None
    """Why the evidence store could not record everything (the results are still here)."""
    remote: bool = False
    """Carried out by workers (whose records, findings included, are in the store)."""

    @property
    def ok(self) -> bool:
        """True when every host ran the command with exit code 0."""
        return self.status is RunStatus.COMPLETED and all(r.ok for r in self.results)

    def counts(self) -> dict[str, int]:
        """Hosts per outcome: ``ok`` or the error kind."""
        return _counts(self.results)

    def as_dict(self) -> dict[str, Any]:
        """Machine-readable form (``--format json``)."""
        return {
            "run_id": self.run_id,
            "client": self.client,
            "status": str(self.status),
            "evidence_error": self.evidence_error,
            "results": [r.as_dict() for r in self.results],
        }


class _Context:
    """Shared by the worker threads of one run."""

    def __init__(
        self,
        spec: RunSpec,
        transport: Transport,
        writer: EvidenceWriter | None,
        progress: Progress,
        run_id: str,
        on_result: ResultHook | None,
        claim: ClaimHost | None = None,
        cancel: threading.Event | None = None,
        keep_claim: Callable[[Host], bool] | None = None,
    ) -> None:
        self.spec = spec
        self.transport = transport
        self.writer = writer
        self.progress = progress
        self.run_id = run_id
        self.on_result = on_result
        self.claim = claim
        self.keep_claim = keep_claim
        """Asked before a host's record is written: whether its claim is still this
        process's (False: another took it over meanwhile and records it)."""
        self.tries: dict[str, list[Attempt]] = {}
        self.cancel = cancel or threading.Event()
        self.done_elsewhere: set[str] = set()
        """Hosts whose outcome another delivery of this batch recorded already."""
        cap = spec.client.spec.max_parallel or spec.forks
        self.slots = threading.BoundedSemaphore(max(1, min(cap, spec.forks)))
        self.hosts = {host.name: host for host in spec.hosts}
        self.results: dict[str, CommandResult] = {}
        self.working: set[str] = set()
        self.aborted = False
        self._lock = threading.Lock()
        # Held while a host's records are handed to the writer, so that once a hard stop
        # has set ``aborted`` no late record can follow the run's last one.
        self._recording = threading.RLock()

    def run_one(self, host: Host) -> CommandResult:
        try:
            result = self._attempts(host)
        except Exception as exc:  # a bug must not pass for a host that was never tried
            result = CommandResult.failure(
                host.name,
                self.spec.command_for(host),
                ErrorKind.INTERNAL,
                f"{type(exc).__name__}: {exc}",
            )
        if host.name not in self.done_elsewhere:
            self.record(host, result)
        return result

    def taken(self, host: Host) -> CommandResult | None:
        """None when this process may run ``host`` (no claims, or it took it); else the
        host's result here: recorded elsewhere already, or lost by another worker."""
        if self.claim is None:
            return None
        claim = self.claim(host)
        if claim is Claim.MINE:
            return None
        command = self.spec.command_for(host)
        if claim is Claim.DONE:
            with self._lock:
                self.done_elsewhere.add(host.name)
            return CommandResult.failure(host.name, command, ErrorKind.INTERRUPTED, "")
        return CommandResult.failure(host.name, command, ErrorKind.INTERRUPTED, LOST_HOST)

    def _attempts(self, host: Host) -> CommandResult:
        if self.cancel.is_set():
            return _not_started(host, self.spec.command_for(host))
        with self.slots:
            # Asked again: a host that waited here for one of its client's max_parallel
            # slots while a stop came must not start once it gets one.
            if self.cancel.is_set():
                return _not_started(host, self.spec.command_for(host))
            elsewhere = self.taken(host)
            if elsewhere is not None:
                return elsewhere
            with self._lock:
                self.working.add(host.name)
            attempt = 1
            while True:
                result = self.transport.run(
                    host,
                    self.spec.command_for(host),
                    sudo=self.spec.sudo,
                    timeout=self.spec.timeout,
                    stdin=(self.spec.stdin or {}).get(host.name, b""),
                )
                self.tried(host, result)
                retry = result.error is ErrorKind.UNREACHABLE and attempt <= self.spec.retries
                delay = min(RETRY_BACKOFF * 2 ** (attempt - 1), 5.0)
                # A stop request ends the wait at once and keeps the last result.
                if not retry or self.cancel.wait(delay):
                    return _with_attempts(result, attempt)
                attempt += 1

    def record(self, host: Host, result: CommandResult, *, final: bool = False) -> None:
        """Keep (and write) a host's result, once; after a hard stop, late ones are dropped:
        the host was already recorded as interrupted (``final`` records the hosts that
        never started, after the stop)."""
        with self._recording:
            if self.keep_claim is not None and not self.keep_claim(host):
                with self._lock:  # recorded by whoever holds its claim now
                    self.done_elsewhere.add(host.name)
                return
            with self._lock:
                if (self.aborted and not final) or host.name in self.results:
                    return
                self.results[host.name] = result
                tries = tuple(self.tries.get(host.name, ()))
            if self.writer is not None:
                self.writer.submit(_host_record(self.spec, self.run_id, host, result, tries))
            for record in self._more_records(host, result):
                if self.writer is not None:
                    self.writer.submit(record)
            self.progress.host_done(result)

    def _more_records(self, host: Host, result: CommandResult) -> Sequence[NewRecord]:
        if self.on_result is None:
            return ()
        try:
            return self.on_result(self.run_id, host, result)
        except Exception as exc:  # the host's own result is kept; say what was lost
            self.progress.note(
                f"{host.name}: its result is recorded, but not what it means "
                f"({type(exc).__name__}: {exc}; this is a bug)"
            )
            return ()

    def working_on(self, hosts: Sequence[Host]) -> None:
        """Hosts a batch transport is now working on (a hard stop leaves them unknown)."""
        with self._lock:
            self.working.update(h.name for h in hosts)

    def tried(self, host: Host, result: CommandResult) -> None:
        """Remember one attempt at ``host`` (every attempt is evidence, not just the last)."""
        attempt = Attempt(
            result.started.isoformat(),
            result.finished.isoformat(),
            str(result.error) if result.error else None,
            result.message,
        )
        with self._lock:
            self.tries.setdefault(host.name, []).append(attempt)

    def abort(self) -> None:
        """A hard stop: hosts still being worked on are recorded as interrupted."""
        with self._recording:
            for name in sorted(self.working - set(self.results)):
                host = self.hosts[name]
                self.record(
                    host,
                    CommandResult.failure(
                        name,
                        self.spec.command_for(host),
                        ErrorKind.INTERRUPTED,
                        "stopped while running (second Ctrl-C): the outcome is unknown",
                    ),
                )
            with self._lock:
                self.aborted = True


def _with_attempts(result: CommandResult, attempts: int) -> CommandResult:
    return result if attempts == result.attempts else replace(result, attempts=attempts)


def _not_started(host: Host, command: str) -> CommandResult:
    return CommandResult.failure(
        host.name, command, ErrorKind.NOT_STARTED, "the run was stopped before this host's turn"
    )


def _run_batches(ctx: _Context, transport: BatchTransport) -> None:
    """All hosts in one call; unreachable ones again, in one call per retry. A failure
    of the transport itself fails every host it had, as a bug, not as not started."""
    try:
        _batches(ctx, transport)
    except Exception as exc:
        for host in ctx.spec.hosts:
            ctx.record(
                host,
                CommandResult.failure(
                    host.name,
                    ctx.spec.command_for(host),
                    ErrorKind.INTERNAL,
                    f"the {type(transport).__name__} failed: {type(exc).__name__}: {exc}",
                ),
            )


def _batches(ctx: _Context, transport: BatchTransport) -> None:
    spec = ctx.spec
    pending, attempt = [], 1
    for host in spec.hosts:
        elsewhere = ctx.taken(host)
        if elsewhere is None:
            pending.append(host)
        elif host.name not in ctx.done_elsewhere:
            ctx.record(host, elsewhere)
    while pending and not ctx.cancel.is_set():
        ctx.working_on(pending)
        if spec.play is not None:
            assert isinstance(transport, PlayTransport)
            results = transport.run_play(
                pending,
                spec.play,
                check=spec.check_mode,
                timeout=spec.timeout,
                cancelled=ctx.cancel.is_set,
            )
        else:
            results = transport.run_many(
                pending,
                spec.command,
                sudo=spec.sudo,
                timeout=spec.timeout,
                cancelled=ctx.cancel.is_set,
            )
        retry = []
        for host, result in zip(pending, results, strict=True):
            ctx.tried(host, result)
            if result.error is ErrorKind.UNREACHABLE and attempt <= spec.retries:
                retry.append(host)
            else:
                ctx.record(host, _with_attempts(result, attempt))
        if retry and ctx.cancel.wait(min(RETRY_BACKOFF * 2 ** (attempt - 1), 5.0)):
            for host, result in zip(pending, results, strict=True):
                if host in retry:
                    ctx.record(host, _with_attempts(result, attempt))
            return
        pending, attempt = retry, attempt + 1


def _nornir_task(task: Any, ctx: _Context) -> Any:
    from nornir.core.task import Result

    result = ctx.run_one(ctx.hosts[task.host.name])
    return Result(host=task.host, result=result, failed=not result.ok)


def _nornir(hosts: list[Host], workers: int) -> Any:
    from nornir.core import Nornir
    from nornir.core.inventory import Defaults, Groups, Hosts, Inventory
    from nornir.core.inventory import Host as NornirHost
    from nornir.plugins.runners import ThreadedRunner

    defaults = Defaults()  # one shared object: nornir copies nothing per host then
    inventory = Inventory(
        hosts=Hosts(
            {
                h.name: NornirHost(
                    name=h.name,
                    hostname=h.address,
                    port=h.port,
                    platform=h.platform,
                    defaults=defaults,
                )
                for h in hosts
            }
        ),
        groups=Groups(),
        defaults=defaults,
    )
    return Nornir(inventory=inventory, runner=ThreadedRunner(num_workers=workers))


def run_command(
    spec: RunSpec,
    transport: Transport,
    store: EvidenceStore | None,
    progress: Progress | None = None,
    on_result: ResultHook | None = None,
) -> RunOutcome:
    """Run ``spec`` on every host and record the run as evidence.

    ``on_result`` turns each host's result into more records (a check's findings),
    written through the same writer before the run's last record, so a store failure
    is handled like any other and a killed control node keeps what was judged."""
    strangers = [h.name for h in spec.hosts if h.client != spec.client.name]
    if strangers:
        raise EngineError(
            f"hosts of another client cannot be in a run for "
            f"{spec.client.name}: {', '.join(strangers)}"
        )
    if not spec.hosts:
        raise EngineError(f"no hosts selected in client {spec.client.name}")
    if (spec.commands or spec.stdin) and isinstance(transport, BatchTransport):
        raise EngineError("a batch transport runs one command for every host, with no input")
    if spec.play is not None and not isinstance(transport, PlayTransport):
        raise EngineError("only the ansible transport runs plays")
    progress = progress or SilentProgress()
    run_id = str(uuid.uuid4())
    writer = EvidenceWriter(store) if store is not None else None
    ctx = _Context(spec, transport, writer, progress, run_id, on_result)
    if writer is not None:
        writer.submit(_run_started(spec, run_id))
    status = RunStatus.INTERRUPTED
    progress.started(len(spec.hosts))
    evidence_error = None
    try:
        with _stop_on_signals(ctx):
            _fan_out(ctx, transport)
        status = RunStatus.INTERRUPTED if ctx.cancel.is_set() else RunStatus.COMPLETED
    except KeyboardInterrupt:
        status = RunStatus.ABORTED
        ctx.abort()
    finally:
        for host in spec.hosts:
            if host.name not in ctx.results:
                ctx.record(host, _not_started(host, spec.command_for(host)), final=True)
        progress.finished()
        results = [ctx.results[host.name] for host in spec.hosts]
        if writer is not None:
            writer.submit(_run_finished(spec, run_id, status, results))
            try:
                writer.close()
                if store is not None and store.notary is not None:
                    store.checkpoint(spec.client.name)  # sign what this run recorded
            except Exception as exc:  # the store failed: say so, but keep the results
                evidence_error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
        transport.close()
    return RunOutcome(run_id, spec.client.name, status, results, evidence_error)


def run_hosts(
    spec: RunSpec,
    transport: Transport,
    store: EvidenceStore | None,
    run_id: str,
    *,
    on_result: ResultHook | None = None,
    claim: ClaimHost | None = None,
    cancel: threading.Event | None = None,
    keep_claim: Callable[[Host], bool] | None = None,
) -> dict[str, CommandResult]:
    """Run ``spec.hosts`` as part of run ``run_id``, whose start and end another process
    records (a batch of a distributed run, on a worker): each host's records are written
    as it ends. ``claim`` takes each host before anything runs on it; ``keep_claim``
    says, before a host's record is written, whether this process still holds it (a
    process cut off longer than its lease may have lost it); ``cancel`` set means start
    no more hosts. The results of the hosts recorded here, by name (a host another
    delivery of the batch recorded already is left out)."""
    writer = EvidenceWriter(store) if store is not None else None
    ctx = _Context(
        spec, transport, writer, SilentProgress(), run_id, on_result, claim, cancel, keep_claim
    )
    try:
        _fan_out(ctx, transport)
    finally:
        for host in spec.hosts:
            if host.name not in ctx.results and host.name not in ctx.done_elsewhere:
                ctx.record(host, _not_started(host, spec.command_for(host)), final=True)
        try:
            if writer is not None:
                writer.close()
        finally:
            transport.close()
    return dict(ctx.results)


def run_started_record(spec: RunSpec, run_id: str) -> NewRecord:
    """The record that opens run ``run_id`` (a distributed run's control node writes it)."""
    return _run_started(spec, run_id)


def host_record(spec: RunSpec, run_id: str, host: Host, result: CommandResult) -> NewRecord:
    """A host's record, written by whoever decided its outcome."""
    return _host_record(spec, run_id, host, result, ())


def run_finished_record(
    spec: RunSpec, run_id: str, status: RunStatus, results: list[CommandResult]
) -> NewRecord:
    """The record that closes run ``run_id``."""
    return _run_finished(spec, run_id, status, results)


Executor = Callable[
    [RunSpec, Transport, EvidenceStore | None, Progress | None, ResultHook | None], RunOutcome
]
"""How a run is carried out: :func:`run_command` (here), or by workers
(:mod:`mspauto.distributed`); both record the same evidence."""


def _fan_out(ctx: _Context, transport: Transport) -> None:
    """Run every host; the main thread only waits, so a second Ctrl-C lands at once."""
    if isinstance(transport, BatchTransport):
        work = threading.Thread(target=_run_batches, args=(ctx, transport), daemon=True)
    else:
        runner = _nornir(ctx.spec.hosts, ctx.spec.forks)
        work = threading.Thread(
            target=runner.run,
            daemon=True,
            kwargs={"task": _nornir_task, "ctx": ctx, "name": ctx.spec.kind, "on_failed": True},
        )
    work.start()
    while work.is_alive():
        work.join(0.2)


@contextmanager
def _stop_on_signals(ctx: _Context) -> Iterator[None]:
    """First Ctrl-C/SIGTERM: start no more hosts. Second Ctrl-C: stop now."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        if ctx.cancel.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt  # caught by run_command: a hard stop
        ctx.cancel.set()
        ctx.progress.note(
            "stopping: no new hosts; waiting for the running ones (Ctrl-C again to stop now)"
        )

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _run_started(spec: RunSpec, run_id: str) -> NewRecord:
    scripts = dict.fromkeys(
        store_output(script.encode())[1]["sha256"]
        for host in spec.hosts
        if (script := spec.script_for(host)) is not None
    )
    started = RunStarted(
        kind=spec.kind,
        client=spec.client.name,
        command=spec.command,
        sudo=spec.sudo,
        hosts=tuple(h.name for h in spec.hosts),
        timeout=spec.timeout,
        retries=spec.retries,
        forks=spec.forks,
        requested_by=f"{getpass.getuser()}@{socket.gethostname()}",
        node=socket.gethostname(),
        pid=os.getpid(),
        mspauto=__version__,
        scripts=tuple(scripts),
        check_mode=spec.check_mode,
    )
    return NewRecord(
        chain=spec.client.name,
        kind=RecordKind.RUN_STARTED,
        run_id=run_id,
        recorded_at=utcnow(),
        payload=started.payload(),
    )


def _output(data: str, full_size: int = -1) -> tuple[bytes, OutputRef]:
    kept, described = store_output(data.encode())
    size = full_size if full_size >= 0 else described["bytes"]
    return kept, OutputRef(described["sha256"], size, described["stored"])


def _host_record(
    spec: RunSpec, run_id: str, host: Host, result: CommandResult, tries: tuple[Attempt, ...]
) -> NewRecord:
    stdout, stdout_ref = _output(result.stdout, result.stdout_bytes)
    stderr, stderr_ref = _output(result.stderr, result.stderr_bytes)
    outputs = [stdout, stderr]
    script_text = spec.script_for(host)
    script_ref = None
    if script_text is not None:
        script, script_ref = _output(script_text)
        outputs.append(script)
    payload = HostResult(
        host=host.name,
        address=host.address,
        port=host.port,
        connection=host.connection,
        command=spec.command if script_ref is not None else result.command,
        sudo=spec.sudo,
        rc=result.rc,
        error=str(result.error) if result.error else None,
        message=result.message,
        started=result.started.isoformat(),
        finished=result.finished.isoformat(),
        stdout=stdout_ref,
        stderr=stderr_ref,
        attempts=max(result.attempts, len(tries)),
        tries=tries,
        script=script_ref,
    ).payload()
    return NewRecord(
        chain=spec.client.name,
        kind=RecordKind.HOST_RESULT,
        run_id=run_id,
        host=host.name,
        recorded_at=utcnow(),
        outputs=tuple(outputs),
        payload=payload,
    )


def _counts(results: Sequence[CommandResult]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for result in results:
        key = "ok" if result.ok else str(result.error)
        counts[key] = counts.get(key, 0) + 1
    return counts


def _run_finished(
    spec: RunSpec, run_id: str, status: RunStatus, results: list[CommandResult]
) -> NewRecord:
    return NewRecord(
        chain=spec.client.name,
        kind=RecordKind.RUN_FINISHED,
        run_id=run_id,
        recorded_at=utcnow(),
        payload=RunFinished(status, _counts(results)).payload(),
    )


def _play_text(play: Sequence[Mapping[str, Any]]) -> str:
    """The play as recorded: canonical JSON, so the same tasks hash the same."""
    return json.dumps(list(play), sort_keys=True, indent=1)
