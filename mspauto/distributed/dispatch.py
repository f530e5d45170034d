"""The control node's side of a distributed run (:class:`DistributedExecutor`).

It records the run's start, sends the hosts in batches to their queues, and follows
the workers through the evidence store: each host's record, as a worker writes it, is
the host's result (and shows in the progress). A batch a worker refused (another
project, another client) has its hosts taken back and recorded with the worker's
reason. Nothing waits for ever: hosts no worker took by the deadline (no worker serves
the queue, or the broker dropped the batch after its delivery limit) are taken back
and recorded as not run, with why. The first Ctrl-C takes back every host no worker
took yet (workers running a host finish it); the run's end is then recorded as on a
single node.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

from amqp.exceptions import AMQPError
from kombu.exceptions import OperationalError
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from mspauto.config import Settings
from mspauto.distributed.app import (
    DELIVERY_LIMIT,
    RUN_HEADER,
    TASK,
    celery_app,
    dead_letter_queue,
    declare_queues,
    queue_for,
    queue_named,
)
from mspauto.distributed.claims import CONTROL, HostClaims
from mspauto.distributed.jobs import Batch, client_digest
from mspauto.engine import EngineError, RunOutcome, RunSpec
from mspauto.engine.progress import Progress, SilentProgress
from mspauto.engine.run import (
    ResultHook,
    host_record,
    run_finished_record,
    run_started_record,
)
from mspauto.evidence.records import HostResult, RecordKind, RunStatus
from mspauto.evidence.schema import records
from mspauto.evidence.store import EvidenceStore, canonical_json
from mspauto.evidence.writer import EvidenceWriter
from mspauto.inventory.resolve import Host
from mspauto.project import Project
from mspauto.signing import SigningError, SigningKey
from mspauto.transport.base import CommandResult, ErrorKind, Transport

__all__ = ["BATCH_SIZE", "DistributedExecutor"]

BATCH_SIZE = 200
"""Most hosts per batch (one Celery task): enough to keep a worker's forks busy, few
enough that a lost worker costs little."""
SPREAD = 8
"""A queue's hosts go out in at least this many batches when there are enough of them,
so that the workers serving it share a run (200 hosts: 8 batches of 25)."""
POLL = 0.2
"""Seconds between looks at the store while workers run."""
STORE_TRIES = 30
"""Looks at a store that fails (2 s apart) before the control node gives up following."""


@dataclass
class _Sent:
    batch: Batch
    queue: str
    result: Any
    """Celery's AsyncResult."""
    message: Mapping[str, Any]
    """The message as sent (a dropped batch is recognised by it)."""
    failed: str | None = None


_SHARED_STORE = (
    "a distributed run needs an evidence store the workers share: set "
    "MSPAUTO_EVIDENCE_URL to PostgreSQL (postgresql+psycopg://...)"
)


class DistributedExecutor:
    """Carries out a run by workers (an :data:`~mspauto.engine.Executor`); ``job`` is
    what they run (see :class:`~mspauto.distributed.jobs.Batch`)."""

    def __init__(
        self,
        settings: Settings,
        project: Project,
        job: Mapping[str, Any],
        *,
        batch_size: int = BATCH_SIZE,
        check_broker: bool = True,
    ) -> None:
        """``check_broker``: reach the broker now (a run that cannot be sent is then
        one line before anything is recorded); a later run of the same command, whose
        first was checked, records hosts it cannot send as not run instead."""
        if not settings.broker_url:
            raise EngineError(
                "a distributed run needs the broker: set MSPAUTO_BROKER_URL (e.g. "
                "amqp://mspauto@127.0.0.1//), or run without --distributed"
            )
        if settings.evidence_url.startswith("sqlite"):
            raise EngineError(_SHARED_STORE)
        self.app = celery_app(settings.broker_url)
        if check_broker:
            connection = self.app.connection_for_write()
            try:  # now, in one line, rather than after the run's start is recorded
                with connection:
                    connection.ensure_connection(max_retries=1)
            except (OSError, OperationalError, *connection.connection_errors) as exc:
                raise EngineError(f"cannot reach the broker: {exc}") from None
        self.check_broker = check_broker
        self.key = _msp_key(settings)
        """Signs every batch message (workers that know the MSP's key refuse others)."""
        self.project = project
        self.job = dict(job)
        self.batch_size = batch_size
        self.queue_wait = settings.queue_wait
        self.lease = timedelta(seconds=settings.claim_lease)

    def __call__(
        self,
        spec: RunSpec,
        transport: Transport,
        store: EvidenceStore | None,
        progress: Progress | None,
        on_result: ResultHook | None,
    ) -> RunOutcome:
        transport.close()  # this node connects to no host
        if store is None:
            raise EngineError("a distributed run needs the evidence store: workers record there")
        if store.engine.dialect.name == "sqlite":
            raise EngineError(_SHARED_STORE)
        progress = progress or SilentProgress()
        if self.check_broker:  # a queue RabbitMQ will not take is one line, before records
            declare_queues(self.app, sorted({queue_for(h) for h in spec.hosts}))
        run_id = str(uuid.uuid4())
        digest = client_digest(self.project, spec.client)
        writer = EvidenceWriter(store)
        writer.submit(run_started_record(spec, run_id))
        # The workers judge each host; ``on_result`` here only judges the hosts this
        # node takes back (not run: unchecked), as an in-process run would.
        follow = _Follow(spec, run_id, store, writer, progress, on_result, self._consumers)
        follow.claims.lease = self.lease
        status, evidence_error = RunStatus.INTERRUPTED, None
        progress.started(len(spec.hosts))
        dropped = _Dropped(self.app, run_id)  # bound before any batch can be dropped
        try:
            sent, unsent, why = self._send(spec, run_id, digest)
            if unsent:  # the broker went away: what was not sent is not run
                follow.take_back(unsent, "no-broker", ErrorKind.NOT_STARTED, why)
            with _first_stop(follow.stop):
                follow.until_done(sent, self._deadline(spec, sent), self.queue_wait, dropped)
            status = RunStatus.INTERRUPTED if follow.stop.is_set() else RunStatus.COMPLETED
        except KeyboardInterrupt:  # the second Ctrl-C: stop waiting, take back the rest
            status = RunStatus.ABORTED
        finally:
            dropped.close()
            follow.take_back_the_rest(
                "stopped", ErrorKind.NOT_STARTED, "the run was stopped before this host's turn"
            )
            progress.finished()
            results = follow.results_in_order()
            writer.submit(run_finished_record(spec, run_id, status, results))
            try:
                writer.close()
                if store.notary is not None:
                    store.checkpoint(spec.client.name)  # takes in the workers' signed appends
            except Exception as exc:
                evidence_error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
        return RunOutcome(run_id, spec.client.name, status, results, evidence_error, remote=True)

    def _consumers(self, queue: str) -> int | None:
        """How many workers consume ``queue`` now, as the broker says (None: it cannot)."""
        try:
            with self.app.connection_for_write() as connection, connection.channel() as channel:
                declared = channel.queue_declare(queue=queue, passive=True)
            return int(declared.consumer_count)
        except Exception:  # the broker is away or the queue gone: nothing to tell
            return None

    def _send(self, spec: RunSpec, run_id: str, digest: str) -> tuple[list[_Sent], list[str], str]:
        """The batches sent, the hosts that could not be, and why."""
        # Every host one after another, as slow as its limits allow, plus the queue
        # wait: a bound no batch of this run can still be useful after.
        per_host = spec.timeout * (spec.retries + 1) + 5.0 * spec.retries
        expires = datetime.now(UTC) + timedelta(
            seconds=per_host * len(spec.hosts) + self.queue_wait
        )
        # The run's own limits: the caller's job may not know them (a reboot's time
        # limit is the policy's reconnect wait).
        job = {**self.job, "timeout": spec.timeout, "retries": spec.retries, "forks": spec.forks}
        by_queue: dict[str, list[Host]] = {}
        for host in spec.hosts:
            by_queue.setdefault(queue_for(host), []).append(host)
        sent: list[_Sent] = []
        for queue, hosts in sorted(by_queue.items()):
            size = min(self.batch_size, max(1, math.ceil(len(hosts) / SPREAD)))
            for start in range(0, len(hosts), size):
                names = tuple(h.name for h in hosts[start : start + size])
                batch = Batch(run_id, spec.client.name, names, job, digest)
                message = batch.message(self.key)
                try:
                    result = self.app.send_task(
                        TASK,
                        args=[message],
                        queue=queue_named(queue),
                        routing_key=queue,
                        headers={RUN_HEADER: run_id},  # kept by a batch RabbitMQ drops
                        expires=expires,  # a batch nobody took by then is not run late
                    )
                except (OSError, OperationalError, AMQPError) as exc:
                    done = {h for s in sent for h in s.batch.hosts}
                    unsent = [h.name for h in spec.hosts if h.name not in done]
                    return sent, unsent, f"the broker could not take this host's batch: {exc}"
                sent.append(_Sent(batch, queue, result, message))
        return sent, [], ""

    def _deadline(self, spec: RunSpec, sent: Sequence[_Sent]) -> float:
        """When hosts no worker took are given up: each queue's batches one after
        another, every host as slow as its time limit allows, plus the queue wait."""
        per_host = spec.timeout * (spec.retries + 1) + 5.0 * spec.retries  # and backoff
        parallel = max(1, min(spec.forks, spec.client.spec.max_parallel or spec.forks))
        longest = 0.0
        for queue in {s.queue for s in sent}:
            batches = [s.batch for s in sent if s.queue == queue]
            rounds = sum(math.ceil(len(b.hosts) / parallel) for b in batches)
            longest = max(longest, rounds * per_host)
        return time.monotonic() + longest + self.queue_wait


class _Stalled:
    """Queues no worker has taken a host from for ``wait`` seconds, while hosts of
    theirs wait (a queue makes progress while some worker takes its hosts, however
    many batches are ahead of the last)."""

    def __init__(
        self, sent: Sequence[_Sent], wait: float, consumers: Callable[[str], int | None]
    ) -> None:
        self.wait = wait
        self.consumers = consumers
        """How many workers consume a queue now (None: the broker cannot say)."""
        self.hosts: dict[str, list[str]] = {}
        for item in sent:
            self.hosts.setdefault(item.queue, []).extend(item.batch.hosts)
        now = time.monotonic()
        self.progress = dict.fromkeys(self.hosts, (0, now))

    def queues(self, taken: Mapping[str, str], recorded: Mapping[str, object]) -> list[list[str]]:
        """For each queue that stalled, its hosts nobody took or recorded."""
        now, stalled = time.monotonic(), []
        for queue, hosts in self.hosts.items():
            count = sum(1 for h in hosts if h in taken)
            seen, since = self.progress[queue]
            if count > seen:
                self.progress[queue] = (count, now)
                continue
            waiting = [h for h in hosts if h not in taken and h not in recorded]
            if not waiting or now - since <= self.wait:
                continue
            if self.consumers(queue):  # a worker serves it, busy with batches ahead
                self.progress[queue] = (seen, now)
                continue
            stalled.append(waiting)
        return stalled


class _Follow:
    """The control node's view of a distributed run while workers carry it out."""

    def __init__(
        self,
        spec: RunSpec,
        run_id: str,
        store: EvidenceStore,
        writer: EvidenceWriter,
        progress: Progress,
        on_result: ResultHook | None,
        consumers: Callable[[str], int | None],
    ) -> None:
        self.spec, self.run_id, self.store = spec, run_id, store
        self.writer, self.progress, self.on_result = writer, progress, on_result
        self.consumers = consumers
        self.hosts = {h.name: h for h in spec.hosts}
        self.results: dict[str, CommandResult] = {}
        self.claims = HostClaims(store.engine, run_id, CONTROL)
        self.stop = threading.Event()
        self.per_host = spec.timeout * (spec.retries + 1)
        self._after = 0

    def until_done(
        self, sent: Sequence[_Sent], deadline: float, queue_wait: float, dropped: _Dropped
    ) -> None:
        last_call: float | None = None
        stalled = _Stalled(sent, queue_wait, self.consumers)
        lost: set[str] = set()
        while len(self.results) < len(self.hosts):
            self.read_recorded()
            for hosts, reason in dropped.batches(sent):
                why = (
                    f"after {DELIVERY_LIMIT} deliveries (every worker that took it was lost)"
                    if reason == "delivery_limit"
                    else f"({reason})"
                )
                self.take_back(
                    hosts,
                    "dropped",
                    ErrorKind.NOT_STARTED,
                    f"the broker dropped this host's batch {why}: not run",
                )
                lost.update(hosts)
            # Hosts a lost worker of a dropped batch took: no delivery comes again, so
            # once their lease ran out they are recorded here, never run again.
            for name in self.claims.take_lost(sorted(lost - set(self.results)), "lost"):
                self.record_here(
                    name,
                    ErrorKind.INTERRUPTED,
                    "the worker running this host was lost and the broker dropped its "
                    "batch: the outcome is unknown, so it is not run again",
                )
            for hosts in stalled.queues(self.claims.taken(), self.results):
                self.take_back(
                    hosts,
                    "no-worker",
                    ErrorKind.NOT_STARTED,
                    f"no worker serves this host's queue: none consumed it, and no host "
                    f"was taken from it for {queue_wait:g} s",
                )
            if self.stop.is_set():
                self.take_back_the_rest(
                    "stopped", ErrorKind.NOT_STARTED, "the run was stopped before this host's turn"
                )
            for item in sent:
                if item.failed is None and _failed(item.result):
                    item.failed = _why(item.result)
                    self.take_back(
                        item.batch.hosts,
                        "refused",
                        ErrorKind.CONFIG,
                        f"the worker refused its batch: {item.failed}",
                    )
            if time.monotonic() > deadline:
                if last_call is None:
                    self.take_back_the_rest(
                        "no-worker",
                        ErrorKind.NOT_STARTED,
                        "no worker ran this host's batch in time: no worker serves its "
                        "queue, or the broker dropped the batch after its delivery limit",
                    )
                    # Hosts a worker took may still end within their time limit.
                    last_call = time.monotonic() + self.per_host + POLL * 10
                elif time.monotonic() > last_call:
                    return  # their worker was lost with its batch: see results_in_order
            if len(self.results) < len(self.hosts):
                time.sleep(POLL)
        self.read_recorded()

    def read_recorded(self) -> None:
        """Take in the host records written since the last look; a store away for a
        while is waited for (the workers keep recording), then one line."""
        for attempt in range(STORE_TRIES):
            try:
                return self._read_recorded()
            except (OSError, SQLAlchemyError) as exc:
                if attempt == STORE_TRIES - 1:
                    raise EngineError(
                        f"lost the evidence store while following run {self.run_id[:8]}: "
                        f"{str(exc).strip().splitlines()[0]}; the workers record its hosts "
                        f"('mspauto runs show {self.run_id[:8]}' once it is back)"
                    ) from None
                time.sleep(2.0)

    def _read_recorded(self) -> None:
        with self.store.engine.connect() as conn:
            rows = conn.execute(
                select(records.c.seq, records.c.host, records.c.payload)
                .where(
                    records.c.chain == self.spec.client.name,
                    records.c.run_id == self.run_id,
                    records.c.kind == RecordKind.HOST_RESULT,
                    records.c.seq > self._after,
                )
                .order_by(records.c.seq)
            ).all()
        new = []
        for row in rows:
            self._after = max(self._after, row.seq)
            if row.host in self.hosts and row.host not in self.results:
                new.append((row.host, HostResult.read(_loads(row.payload))))
        texts = self.store.outputs(
            ref.sha256 for _, recorded in new for ref in (recorded.stdout, recorded.stderr)
        )
        for host, recorded in new:
            result = _result_of(recorded, texts)
            self.results[host] = result
            self.progress.host_done(result)

    def take_back(self, names: Sequence[str], why: str, error: ErrorKind, message: str) -> None:
        """Record the hosts among ``names`` no worker took, with ``message``."""
        for name in self.claims.take_the_rest([n for n in names if n in self.hosts], why):
            self.record_here(name, error, message)

    def record_here(self, name: str, error: ErrorKind, message: str) -> None:
        """Record a host this node took (it did not run) with ``message``."""
        host = self.hosts[name]
        result = CommandResult.failure(name, self.spec.command_for(host), error, message)
        self.results[name] = result
        self.writer.submit(host_record(self.spec, self.run_id, host, result))
        for record in self.on_result(self.run_id, host, result) if self.on_result else ():
            self.writer.submit(record)
        self.progress.host_done(result)

    def take_back_the_rest(self, why: str, error: ErrorKind, message: str) -> None:
        pending = [name for name in self.hosts if name not in self.results]
        taken = self.claims.taken()
        self.take_back([n for n in pending if n not in taken], why, error, message)

    def results_in_order(self) -> list[CommandResult]:
        self.read_recorded()
        return [
            self.results.get(name)
            or CommandResult.failure(
                name,
                self.spec.command_for(host),
                ErrorKind.INTERRUPTED,
                "a worker took this host and its outcome was not recorded before the run "
                "ended: it may still be running there",
            )
            for name, host in self.hosts.items()
        ]


class _Dropped:
    """The run's batches RabbitMQ dropped (after their delivery limit), as they arrive
    in this node's own dead-letter queue; a dropped batch counts only if it is one this
    node sent, word for word. Without the broker they are found at the run's deadline."""

    RECONNECT = 10.0
    """Seconds between tries to bind the queue again while the broker is away."""

    def __init__(self, app: Any, run_id: str) -> None:
        self.app, self.run_id = app, run_id
        self.connection: Any = None
        self.queue: Any = None
        self._tried = 0.0
        self._connect()

    def _connect(self) -> None:
        self._tried = time.monotonic()
        try:
            self.connection = self.app.connection_for_write()
            self.connection.ensure_connection(max_retries=1)  # one try, not kombu's many
            self.queue = dead_letter_queue(self.run_id)(self.connection.default_channel)
            self.queue.declare()
        except Exception:  # the broker is away: tried again a while later
            self.close()

    def batches(self, sent: Sequence[_Sent]) -> list[tuple[list[str], str]]:
        """The hosts of each batch of ``sent`` dropped since the last look, and why."""
        if self.queue is None and time.monotonic() - self._tried > self.RECONNECT:
            self._connect()  # a lost connection took the queue with it
        found: list[tuple[list[str], str]] = []
        ours = {canonical_json(s.message): s for s in sent}
        try:
            while self.queue is not None and (message := self.queue.get(no_ack=True)):
                args = message.decode()[0]  # Celery's body: args, kwargs, options
                item = ours.get(canonical_json(args[0])) if args else None
                if item is not None:
                    reason = str(message.headers.get("x-first-death-reason", "dropped"))
                    found.append((list(item.batch.hosts), reason))
        except Exception:  # the broker went away: reconnect at the next look
            self.close()
        return found

    def close(self) -> None:
        with suppress(Exception):
            if self.connection is not None:
                self.connection.release()
        self.connection = self.queue = None


def _msp_key(settings: Settings) -> SigningKey | None:
    """The MSP's key, if this node has one (a key it cannot use is one line)."""
    if not settings.signing_key.exists():
        return None
    try:
        return SigningKey.load(settings.signing_key)
    except SigningError as exc:
        raise EngineError(str(exc)) from None


def _result_of(recorded: HostResult, texts: Mapping[str, bytes]) -> CommandResult:
    """A host's result as a worker recorded it, with its outputs (``texts`` by hash)."""

    def text(sha256: str) -> str:
        return texts.get(sha256, b"").decode("utf-8", "replace")

    return CommandResult(
        recorded.host,
        recorded.command,
        recorded.rc,
        text(recorded.stdout.sha256),
        text(recorded.stderr.sha256),
        _time(recorded.started),
        _time(recorded.finished),
        ErrorKind(recorded.error) if recorded.error else None,
        recorded.message,
        recorded.attempts,
        recorded.stdout.bytes,
        recorded.stderr.bytes,
    )


def _time(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:  # not in the form mspauto writes: the record itself says so
        return datetime.now(UTC)


def _loads(payload: Any) -> Mapping[str, Any]:
    return json.loads(payload) if isinstance(payload, str) else dict(payload)


def _failed(result: Any) -> bool:
    """Whether a batch's task failed (a worker refused it). The run is followed through
    the store, so a broker that went away only hides refusals: never an error here."""
    try:
        return bool(result.failed())
    except Exception:
        return False


def _why(result: Any) -> str:
    """A failed batch's reason in one line (the worker's exception message)."""
    raised = result.result
    text = str(raised) if raised is not None else "the task failed"
    return text.strip().splitlines()[0] if text.strip() else type(raised).__name__


@contextmanager
def _first_stop(stop: threading.Event) -> Iterator[None]:
    """First Ctrl-C/SIGTERM: set ``stop`` (no more hosts start); a second Ctrl-C raises
    KeyboardInterrupt (stop waiting)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
