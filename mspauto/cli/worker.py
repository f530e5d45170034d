"""``mspauto worker``: take batches of distributed runs from the broker and run them."""

from __future__ import annotations

import click

from mspauto.cli.application import Application, pass_app

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
    help="Run without the MSP's signing key: the records this worker writes are then "
    "signed by no one, and each client chain it writes to stays unsigned until a person "
    "reviews them ('mspauto evidence checkpoint').",
)
@pass_app
def worker(app: Application, clients: tuple[str, ...], site: str | None, unsigned: bool) -> None:
    """Run batches of distributed runs ('--distributed') until SIGTERM.

    The worker takes batches from the queues of the clients (and site) it serves, from
    the broker MSPAUTO_BROKER_URL names, and records each host into the shared evidence
    store (MSPAUTO_EVIDENCE_URL, PostgreSQL). It rebuilds each batch from its own copy
    of the project, resolving credentials here: no secret is ever in a message. On
    SIGTERM it finishes the batch it is running."""
    from mspauto.distributed.app import WorkerScope, start_worker

    settings = app.settings
    if not settings.broker_url:
        app.abort("a worker needs the broker: set MSPAUTO_BROKER_URL (e.g. amqp://mspauto@HOST//)")
    if settings.evidence_url.startswith("sqlite"):
        app.abort(
            "a worker records into the evidence store the control node reads: set "
            "MSPAUTO_EVIDENCE_URL to the shared PostgreSQL (postgresql+psycopg://...)"
        )
    if not settings.signing_key.exists() and not unsigned:
        app.abort(
            f"no signing key at {settings.signing_key}: records this worker wrote would "
            "stop every later checkpoint of their client's chain; give the worker the key "
            "(MSPAUTO_SIGNING_KEY), or start it with --unsigned knowingly"
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
    with app.evidence_store(writable=True) as store:
        start_worker(settings, store, scope, queues)
