"""``mspauto runs``: list and inspect recorded runs."""

from __future__ import annotations

import click

from mspauto.cli.application import Application, format_option, pass_app

__all__ = ["runs"]


@click.group()
def runs() -> None:
    """List and inspect recorded runs."""


@runs.command("list")
@click.option("--client", "client_name", metavar="CLIENT", help="Only this client's runs.")
@format_option("table", "json")
@pass_app
def list_runs_command(app: Application, client_name: str | None, output: str) -> None:
    """Every recorded run: when, what, how it ended, host counts."""
    from mspauto.evidence.runs import list_runs

    with app.evidence_store() as store:
        summaries = list_runs(store, client_name)
    if output == "json":
        app.print_json([s.as_dict() for s in summaries])
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in (
        "RUN",
        "CLIENT",
        "KIND",
        "STARTED (UTC)",
        "STATUS",
        "HOSTS",
        "RESULTS",
        "COMMAND",
    ):
        table.add_column(column, overflow="fold")
    for s in summaries:
        results = ", ".join(f"{n} {k}" for k, n in s.counts.items())
        table.add_row(
            s.run_id[:8],
            s.client,
            s.kind,
            s.started[:19].replace("T", " "),
            s.status,
            str(s.hosts),
            results,
            s.command,
        )
    app.print_table(table)
    click.echo(f"{len(summaries)} runs")


@runs.command("show")
@click.argument("run_id", metavar="RUN")
@click.option("--output", "show_output", is_flag=True, help="Also print each host's output.")
@format_option("text", "json")
@pass_app
def show_run(app: Application, run_id: str, show_output: bool, output: str) -> None:
    """One run, host by host (RUN may be the first characters of the id)."""
    from mspauto.evidence.runs import run_detail

    with app.evidence_store() as store:
        matches = store.run_ids(run_id)
        if len(matches) != 1:
            app.abort(
                f"no run '{run_id}'"
                if not matches
                else f"'{run_id}' matches {len(matches)} runs; give more characters"
            )
        detail = run_detail(store, matches[0], outputs=show_output or output == "json")
        assert detail is not None
    if output == "json":
        app.print_json(detail.as_dict())
        return
    s = detail.summary
    click.echo(f"run {s.run_id}  client {s.client}  {s.kind}: {s.command}")
    click.echo(
        f"started {s.started}  finished {s.finished or '-'}  status {s.status}  by {s.requested_by}"
    )
    for entry in detail.results:
        result = entry.result
        verdict = "ok" if result.ok else (result.error or f"rc={result.rc}")
        line = f"  {result.host:<24} {verdict}"
        if result.message:
            line += f": {result.message}"
        if result.attempts > 1:
            line += f" (after {result.attempts} attempts)"
        click.echo(line + f"   (#{entry.record.seq})")
        for text in (entry.stdout, entry.stderr) if show_output else ():
            for out_line in (text or "").rstrip("\n").splitlines():
                click.echo(f"      | {out_line}")
