"""``mspauto workers``: the workers that answer the broker, what they serve and run."""

from __future__ import annotations

import click

from mspauto.cli.application import Application, format_option, pass_app

__all__ = ["workers"]


@click.command()
@click.option(
    "--wait",
    type=click.FloatRange(0.1, 60),
    default=2.0,
    show_default=True,
    help="Seconds to wait for workers to answer.",
)
@format_option("table", "json")
@pass_app
def workers(app: Application, wait: float, output: str) -> None:
    """List live workers: their queues and the batches they are running.

    A worker that does not answer within --wait seconds is not listed (it is down, or
    too busy to answer). Exits 1 when the broker cannot be reached."""
    from mspauto.distributed.app import live_workers

    broker = app.settings.broker_url
    if not broker:
        app.abort("no broker: set MSPAUTO_BROKER_URL (e.g. amqp://mspauto@HOST//)")
    from amqp.exceptions import AMQPError
    from kombu.exceptions import OperationalError

    try:
        found = live_workers(broker, wait)
    except (OSError, OperationalError, AMQPError) as exc:  # refused, login, vhost
        app.abort(f"cannot reach the broker: {exc}")
    if output == "json":
        app.print_json([w.as_dict() for w in found])
        return
    if not found:
        click.echo("no worker answered")
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("WORKER", "QUEUES", "RUNNING"):
        table.add_column(column)
    for worker in found:
        running = ", ".join(
            f"run {str(r['run_id'])[:8]} ({r['client']}, {r['hosts']} hosts)"
            for r in worker.running
        )
        cells = (worker.name, " ".join(worker.queues), running or "idle")
        table.add_row(*(Text(cell) for cell in cells))
    app.print_table(table)
