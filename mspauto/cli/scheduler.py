"""``mspauto scheduler``: the control node's daemon, its status, its systemd unit."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from mspauto.cli.application import Application, format_option, pass_app

__all__ = ["scheduler"]


@click.group()
def scheduler() -> None:
    """Run every client's policies on their schedules (the control node)."""


@scheduler.command("run")
@click.option(
    "--every",
    type=click.FloatRange(1, 300),
    default=15.0,
    show_default=True,
    help="Seconds between looks at the clock.",
)
@click.option(
    "--max-parallel",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="Runs at once (each is one client's policy); more wait for a free slot.",
)
@pass_app
def run(app: Application, every: float, max_parallel: int) -> None:
    """Run in the foreground until SIGTERM (for systemd): each policy on its cron in
    its client's zone, each client's report on its contract's report_schedule. Logs
    are JSON lines on stderr. On SIGTERM the runs finish the hosts they are on and are
    recorded as interrupted."""
    from mspauto.evidence.store import EvidenceError
    from mspauto.schedule.service import run_daemon

    app.usable_project()  # one clear line now, not a daemon that never runs anything
    with app.evidence_store(writable=True) as store:
        try:
            run_daemon(app.settings, store, every=every, max_parallel=max_parallel)
        except EvidenceError as exc:
            app.abort(str(exc))


@scheduler.command("status")
@format_option("table", "json")
@pass_app
def status(app: Application, output: str) -> None:
    """Per client and job: the last run (how it went) and the next."""
    from sqlalchemy import inspect

    from mspauto.schedule.jobs import jobs_of
    from mspauto.schedule.service import job_status
    from mspauto.schedule.state import ScheduleState

    project = app.usable_project()
    jobs = jobs_of(project)
    now = datetime.now(UTC)
    with app.evidence_store() as store:
        with store.engine.connect() as conn:
            ready = inspect(conn).has_table("schedule_runs")
        rows = job_status(jobs, ScheduleState(store.engine) if ready else None, now)
    if output == "json":
        app.print_json([row.as_dict() for row in rows])
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("CLIENT", "POLICY", "ACTION", "LAST DUE (UTC)", "RESULT", "NEXT (UTC)"):
        table.add_column(column)
    for row in rows:
        last = row.last
        result = "never run" if last is None else last.state.value
        if last is not None and last.reason:
            result += f": {last.reason}"
        cells = (
            row.job.client,
            row.job.policy,
            row.job.action,
            "" if last is None else f"{last.due:%Y-%m-%d %H:%M}",
            result,
            f"{row.next_due:%Y-%m-%d %H:%M}",
        )
        table.add_row(*(Text(cell) for cell in cells))  # a reason is text, never markup
    app.print_table(table)


@scheduler.command("install-systemd")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the unit (default /etc/systemd/system/mspauto-scheduler.service).",
)
@click.option("--user", help="The user the scheduler runs as (User=).")
@pass_app
def install_systemd(app: Application, output: Path | None, user: str | None) -> None:
    """Write a systemd service for the scheduler; then `systemctl daemon-reload` and
    `systemctl enable --now mspauto-scheduler`."""
    from mspauto.schedule.service import systemd_unit, unit_path

    app.usable_project()
    target = output or unit_path()
    try:
        target.write_text(systemd_unit(app.settings, user))
    except OSError as exc:
        app.abort(f"cannot write {target}: {exc.strerror or exc}")
    click.echo(f"wrote {target}")
