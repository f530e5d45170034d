"""The Celery side: one app, one task (``mspauto.run_batch``), a queue per client and
per client site, and the worker process.

Delivery is at least once whatever the settings; these make it as tight as Celery
allows: a batch is acknowledged only when it ended (``acks_late``), given back when its
worker dies (``task_reject_on_worker_lost``), and a worker takes one at a time
(prefetch 1). Queues are RabbitMQ quorum queues with a delivery limit, so a batch that
kills every worker it reaches is dropped after ``DELIVERY_LIMIT`` tries instead of
circling for ever (the control node then records its hosts as not run, with why).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from amqp.exceptions import AMQPError, PreconditionFailed
from celery import Celery
from kombu.entity import Exchange, Queue
from kombu.exceptions import OperationalError

from mspauto.config import Settings
from mspauto.distributed.jobs import Batch, BatchRefused, client_digest, run_batch
from mspauto.engine import EngineError
from mspauto.evidence.store import EvidenceStore
from mspauto.inventory.resolve import Client, Host
from mspauto.project import Project, load_project
from mspauto.signing import PublicKey

__all__ = [
    "DELIVERY_LIMIT",
    "TASK",
    "LiveWorker",
    "WorkerScope",
    "celery_app",
    "dead_letter_queue",
    "declare_queues",
    "live_workers",
    "queue_for",
    "queue_named",
    "start_worker",
]

TASK = "mspauto.run_batch"
DELIVERY_LIMIT = 10
"""Deliveries of one batch before RabbitMQ drops it (its quorum queues' default is 20
on RabbitMQ 4 and unlimited before)."""
_EXCHANGE = Exchange("mspauto", type="direct", durable=True)
DEAD_LETTERS = Exchange("mspauto.dead", type="headers", durable=True)
"""Where RabbitMQ puts a batch it dropped after :data:`DELIVERY_LIMIT` deliveries; each
control node binds a queue of its own there for its run (:data:`RUN_HEADER`)."""
RUN_HEADER = "mspauto-run"
"""The message header naming a batch's run (a dropped batch keeps it)."""


def queue_for(host: Host) -> str:
    """The queue a host's batches go to: its site's, else its client's. ':' is in no
    client or site name, so names never collide."""
    return f"mspauto:{host.client}:{host.site}" if host.site else f"mspauto:{host.client}"


def queue_named(name: str) -> Queue:
    """The quorum queue ``name``, declared the same way by the control node and every
    worker (RabbitMQ refuses a queue declared twice with other arguments)."""
    return Queue(
        name,
        _EXCHANGE,
        routing_key=name,
        durable=True,
        queue_arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": DELIVERY_LIMIT,
            "x-dead-letter-exchange": DEAD_LETTERS.name,
        },
    )


def declare_queues(app: Celery, names: Sequence[str]) -> None:
    """Declare the queues ``names`` now; :class:`EngineError` in one line when the
    broker cannot be reached or holds one declared otherwise (by an earlier release)."""
    try:
        with app.connection_for_write() as connection:
            channel = connection.default_channel
            for name in names:
                try:
                    queue_named(name)(channel).declare()
                except PreconditionFailed:
                    raise EngineError(
                        f"the broker holds queue {name} declared by an earlier mspauto "
                        f"(other arguments): delete it once ('rabbitmqctl delete_queue "
                        f"{name}') and start again"
                    ) from None
    except (OSError, OperationalError, AMQPError) as exc:
        raise EngineError(f"cannot reach the broker: {exc}") from None


def dead_letter_queue(run_id: str) -> Queue:
    """A control node's queue of its run's dropped batches (gone with its connection)."""
    return Queue(
        f"mspauto:dropped:{run_id}",
        DEAD_LETTERS,
        exclusive=True,
        auto_delete=True,
        binding_arguments={"x-match": "all", RUN_HEADER: run_id},
    )


def celery_app(broker_url: str, queues: Sequence[str] = ()) -> Celery:
    """The app for ``broker_url``; a worker's consumes ``queues``."""
    app = Celery("mspauto", broker=broker_url, backend="rpc://", set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_queues=[queue_named(q) for q in queues],
        task_default_queue_type="quorum",
        worker_detect_quorum_queues=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        task_track_started=True,
        result_expires=24 * 3600,
        worker_send_task_events=True,
    )
    # A refusal is an answer (the control node records it), not an error to log loudly.
    app.task(name=TASK, throws=(BatchRefused,))(_run_batch_task)
    return app


@dataclass(frozen=True)
class WorkerScope:
    """What one worker serves: the clients (all of the project's when empty) and, for a
    worker inside a client's network, that client's site."""

    clients: tuple[str, ...] = ()
    site: str | None = None

    def queues(self, project: Project) -> list[str]:
        names: set[str] = set()
        for client in project.inventory.clients.values():
            if self.clients and client.name not in self.clients:
                continue
            for host in client.hosts.values():
                if self.site is None or host.site == self.site:
                    names.add(queue_for(host))
            if self.site is None:
                names.add(f"mspauto:{client.name}")
        return sorted(names)

    def allows(self, client: str, site: str | None) -> bool:
        """Whether a host of ``client`` at ``site`` is this worker's to run."""
        if self.clients and client not in self.clients:
            return False
        return self.site is None or site == self.site


class _Worker:
    """The worker process's own state (the task runs in its threads).

    The project is read again only when one of its files changed: each batch sees the
    project as it is now, without paying a parse of every file per batch."""

    def __init__(
        self,
        settings: Settings,
        scope: WorkerScope,
        store: EvidenceStore,
        msp_key: PublicKey | None,
    ) -> None:
        self.settings, self.scope, self.store = settings, scope, store
        self.msp_key = msp_key
        """Batches must be signed with this key (None: unsigned ones are run too)."""
        self._stamp: tuple[tuple[str, int, int], ...] | None = None
        self._project: Project | None = None
        self._digests: dict[str, str] = {}

    def project(self) -> Project:
        stamp = _files_stamp(self.settings)
        if self._project is None or stamp != self._stamp:
            self._project, self._stamp, self._digests = load_project(self.settings), stamp, {}
        return self._project

    def digest(self, project: Project, client: Client) -> str:
        if client.name not in self._digests:
            self._digests[client.name] = client_digest(project, client)
        return self._digests[client.name]


def _files_stamp(settings: Settings) -> tuple[tuple[str, int, int], ...]:
    """Every project file's path, modification time and size."""
    found = []
    for folder in (settings.inventory_dir, settings.policies_dir):
        for path in sorted(folder.rglob("*")):
            try:
                info = path.stat()
            except OSError:
                continue  # a dangling link: loading the project says what is wrong
            found.append((str(path), info.st_mtime_ns, info.st_size))
    return tuple(found)


_running: list[_Worker] = []
"""This process's worker (none in other processes): what its task runs with."""


def _run_batch_task(message: Mapping[str, Any]) -> dict[str, Any]:
    if not _running:
        raise RuntimeError("mspauto.run_batch runs only in 'mspauto worker'")
    worker = _running[0]
    lease = timedelta(seconds=worker.settings.claim_lease)
    return run_batch(
        Batch.read(message, worker.msp_key),
        worker.project(),
        worker.store,
        worker.scope.allows,
        worker.digest,
        lease,
    )


def start_worker(
    settings: Settings,
    store: EvidenceStore,
    scope: WorkerScope,
    queues: Iterable[str],
    msp_key: PublicKey | None,
) -> None:
    """Run a worker in this process until it is stopped (SIGTERM: it finishes its batch).
    With ``msp_key`` it runs only batches that key signed."""
    _running[:] = [_Worker(settings, scope, store, msp_key)]
    assert settings.broker_url is not None
    names = list(queues)
    app = celery_app(settings.broker_url, names)
    worker = app.Worker(
        queues=names,
        pool="threads",  # the broker's heartbeats go on while a batch runs
        concurrency=1,
        # Unique per process: two workers of one name cannot share the broker's pidbox.
        hostname=f"mspauto-{'-'.join(scope.clients) or 'all'}-{os.getpid()}@{socket.gethostname()}",
        loglevel="INFO",
        without_mingle=True,
    )
    worker.start()
    if worker.exitcode:  # e.g. the broker refused its login: not a clean stop
        raise SystemExit(worker.exitcode)


@dataclass(frozen=True)
class LiveWorker:
    """A worker that answered: its name, the queues it serves and the batches it runs."""

    name: str
    queues: tuple[str, ...]
    running: tuple[Mapping[str, Any], ...]
    """Per batch: run id, client, hosts, and when it started (Unix time)."""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "queues": list(self.queues), "running": list(self.running)}


def live_workers(broker_url: str, timeout: float = 2.0) -> list[LiveWorker]:
    """Every worker that answers the broker within ``timeout`` seconds."""
    inspect = celery_app(broker_url).control.inspect(timeout=timeout)
    queues = inspect.active_queues() or {}
    active = inspect.active() or {}
    workers = []
    for name in sorted(set(queues) | set(active)):
        running = []
        for task in active.get(name, []):
            message = (task.get("args") or [{}])[0]
            if not isinstance(message, Mapping):
                continue
            running.append(
                {
                    "run_id": message.get("run_id"),
                    "client": message.get("client"),
                    "hosts": len(message.get("hosts") or ()),
                    "started": task.get("time_start"),
                }
            )
        served = tuple(sorted(str(q.get("name")) for q in queues.get(name, [])))
        workers.append(LiveWorker(name, served, tuple(running)))
    return workers
