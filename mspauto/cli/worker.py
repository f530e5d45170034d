"""``mspauto worker``: take batches of distributed runs from the broker and run them."""

from __future__ import annotations

import os
import signal
import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import click

from mspauto.cli.application import Application, pass_app

if TYPE_CHECKING:
    from mspauto.evidence.worker_keys import WorkerSigner
    from mspauto.signing import PublicKey

__all__ = ["worker"]


@click.command()
@click.option(
    "--client",
    "clients",
    multiple=True,
    metavar="CLIENT",
    help="Serve only this client (repeat for more); default: every client of the project.",
)
@click.option(
    "--site",
    metavar="SITE",
    help="With one --client: serve only that client's hosts at this site (a worker "
    "inside the client's network).",
)
@click.option(
    "--unsigned",
    is_flag=True,
    help="Run without a signing key (neither the MSP's nor a worker key of its own): the "
    "records this worker writes are then signed by no one, and each client chain it "
    "writes to stays unsigned until a person reviews them ('mspauto evidence checkpoint').",
)
@pass_app
def worker(app: Application, clients: tuple[str, ...], site: str | None, unsigned: bool) -> None:
    """Run batches of distributed runs ('--distributed') until SIGTERM.

    The worker takes batches from the queues of the clients (and site) it serves, from
    the broker MSPAUTO_BROKER_URL names, and records each host into the shared evidence
    store (MSPAUTO_EVIDENCE_URL, PostgreSQL). It rebuilds each batch from its own copy
    of the project, resolving credentials here: no secret is ever in a message. On
    SIGTERM it finishes the batch it is running.

    It signs what it records with its own key when MSPAUTO_WORKER_KEY names one ('mspauto
    keys worker'; it then serves only the clients its certificate names), else with the
    MSP's key (MSPAUTO_SIGNING_KEY)."""
    from mspauto.distributed.app import WorkerScope, celery_app, declare_queues, start_worker
    from mspauto.engine import EngineError

    settings = app.settings
    if not settings.broker_url:
        app.abort("a worker needs the broker: set MSPAUTO_BROKER_URL (e.g. amqp://mspauto@HOST//)")
    if settings.evidence_url.startswith("sqlite"):
        app.abort(
            "a worker records into the evidence store the control node reads: set "
            "MSPAUTO_EVIDENCE_URL to the shared PostgreSQL (postgresql+psycopg://...)"
        )
    signer = _worker_signer(app)
    if signer is not None:
        allowed = signer.certificate.clients
        outside = [c for c in clients if c not in allowed]
        if outside:
            app.abort(
                f"the certificate of worker {signer.certificate.name} allows "
                f"{', '.join(allowed)} only, not {', '.join(outside)}"
            )
        clients = clients or allowed  # it serves no one else's queues
        left = signer.certificate.not_after - datetime.now(UTC)
        if left < timedelta(days=7):
            click.echo(
                f"warning: the certificate of worker {signer.certificate.name} expires in "
                f"{left.days} days, {left.seconds // 3600} hours: issue a new one "
                "('mspauto keys worker')",
                err=True,
            )
    elif not settings.signing_key.exists() and not unsigned:
        app.abort(
            f"no signing key at {settings.signing_key}: records this worker wrote would "
            "stop every later checkpoint of their client's chain; give the worker a key "
            "of its own ('mspauto keys worker', then MSPAUTO_WORKER_KEY), or start it "
            "with --unsigned knowingly"
        )
    if site is not None and len(clients) != 1:
        app.abort("--site needs exactly one --client (the client whose site it is)")
    project = app.usable_project()
    unknown = [c for c in clients if c not in project.inventory.clients]
    if unknown:
        app.abort(f"no client named {', '.join(unknown)} in {project.settings.inventory_dir}")
    scope = WorkerScope(clients, site)
    queues = scope.queues(project)
    if not queues:
        app.abort(f"client {clients[0]} has no host at site {site!r}: nothing to serve")
    msp_key = signer.msp_key if signer is not None else _msp_public_key(app)
    try:  # a queue an earlier release declared otherwise is one line, not a traceback
        declare_queues(celery_app(settings.broker_url), queues)
    except EngineError as exc:
        app.abort(str(exc))
    if signer is not None:
        _stop_before_expiry(signer)
    with app.evidence_store(writable=True, batch_signer=signer) as store:
        start_worker(settings, store, scope, queues, msp_key)


def _stop_before_expiry(signer: WorkerSigner) -> None:
    """Stop this worker (as SIGTERM does: its batch finishes) before its certificate
    expires, leaving the batches to workers whose certificates hold."""
    from mspauto.distributed.jobs import EXPIRY_MARGIN

    left = signer.certificate.not_after - EXPIRY_MARGIN - datetime.now(UTC)
    timer = threading.Timer(max(0.0, left.total_seconds()), os.kill, (os.getpid(), signal.SIGTERM))
    timer.daemon = True
    timer.start()


def _msp_public_key(app: Application) -> PublicKey | None:
    """The MSP's public key, beside its secret key, if this worker has either: batches
    must then be signed with it."""
    from mspauto.signing import PublicKey, SigningError, SigningKey

    settings = app.settings
    try:
        if settings.public_key.exists():
            return PublicKey.load(settings.public_key)
        if settings.signing_key.exists():
            return SigningKey.load(settings.signing_key).public_key
    except SigningError as exc:
        app.abort(str(exc))
    return None


def _worker_signer(app: Application) -> WorkerSigner | None:
    """This worker's own key and certificate (``MSPAUTO_WORKER_KEY``), if it has one."""
    from mspauto.evidence.worker_keys import WorkerSigner
    from mspauto.signing import SigningError

    if app.settings.worker_key is None:
        return None
    try:
        return WorkerSigner.load(app.settings.worker_key)
    except SigningError as exc:
        app.abort(str(exc))
