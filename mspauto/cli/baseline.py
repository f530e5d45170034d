"""``mspauto baseline``: audit a client's hosts against its hardening baseline."""

from __future__ import annotations

import sys
from datetime import datetime

import click

from mspauto.cli.application import Application, format_option, pass_app

__all__ = ["baseline"]

_ORDER = {"fail": 0, "error": 1, "waived": 2, "pass": 3, "not_applicable": 4}


@click.command()
@click.option("--client", "client_name", required=True, help="The client to audit.")
@click.option(
    "--hosts",
    "patterns",
    multiple=True,
    metavar="PATTERN",
    help="Only hosts whose name matches (shell pattern; repeatable).",
)
@click.option("--all", "show_all", is_flag=True, help="List passed controls too.")
@click.option(
    "--timeout",
    type=click.FloatRange(1),
    default=120.0,
    show_default=True,
    help="Seconds the audit may take on each host.",
)
@click.option(
    "--forks",
    type=click.IntRange(1, 1000),
    default=50,
    show_default=True,
    help="Hosts audited at once.",
)
@click.option(
    "--as-of",
    "as_of",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Judge waivers as of this day.",
)
@format_option("table", "json")
@pass_app
def baseline(
    app: Application,
    client_name: str,
    patterns: tuple[str, ...],
    show_all: bool,
    timeout: float,
    forks: int,
    as_of: datetime | None,
    output: str,
) -> None:
    """Audit a client's hosts against the rule packs of its baseline policies.

    All of a host's rules run in one script; every result is recorded as evidence.
    Failed controls are listed first, with what was observed and what was expected.
    Exits 3 when the client's score is under its contract's baseline floor, 0 otherwise."""
    from fnmatch import fnmatchcase

    from mspauto.baseline.audit import audit_client
    from mspauto.cli.run import open_store
    from mspauto.engine.progress import SilentProgress, progress_for
    from mspauto.transport import transport_for

    project = app.usable_project()
    client = project.inventory.clients.get(client_name)
    if client is None:
        app.abort(
            f"unknown client '{client_name}' "
            f"(clients: {', '.join(project.inventory.clients) or 'none'})"
        )
    hosts = [
        h
        for h in client.hosts.values()
        if not patterns or any(fnmatchcase(h.name, p) for p in patterns)
    ]
    if not hosts:
        app.abort(f"no host of {client_name} matches the selection")
    from mspauto.baseline.audit import checks_for

    today = as_of.date() if as_of else datetime.now().date()
    if not any(checks_for(project, h, today) for h in hosts):
        app.abort(
            f"no baseline policy selects these hosts of {client_name}; add a "
            "'kind: baseline' policy naming a rule pack (e.g. debian-cis)"
        )
    store = open_store(app, writable=True)
    try:
        report = audit_client(
            project,
            client_name,
            hosts,
            transport_for(client, project.settings.root),
            store,
            progress=SilentProgress() if output == "json" else progress_for(),
            today=today,
            timeout=timeout,
            forks=forks,
        )
    finally:
        store.close()
    if output == "json":
        app.print_json(report.as_dict())
    else:
        from rich.table import Table

        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("HOST", "STATUS", "SEVERITY", "RULE", "OBSERVED", "EXPECTED"):
            table.add_column(column, overflow="fold")
        rows = [
            (h, r)
            for h in report.hosts
            for r in h.results
            if show_all or r.status in ("fail", "error", "waived")
        ]
        rows.sort(key=lambda hr: (_ORDER[hr[1].status], -hr[1].weight, hr[0].host))
        for host, result in rows:
            observed = result.reason if result.status == "error" else result.observed
            if result.status == "waived":
                observed = f"{result.observed} (waiver {result.waiver})"
            table.add_row(
                host.host,
                result.status.upper(),
                result.severity,
                f"{result.rule_id}: {result.title}",
                observed or "-",
                result.expected,
            )
        app.print_table(table)
        for host in report.hosts:
            if host.unaudited:
                click.echo(f"{host.host}: NOT AUDITED ({host.unaudited})")
            else:
                score = "-" if host.score is None else f"{host.score:g}"
                click.echo(
                    f"{host.host}: score {score}  ({host.count('pass')} pass, "
                    f"{host.count('fail')} fail, {host.count('error')} error, "
                    f"{host.count('waived')} waived)"
                )
        floor = "no contract floor" if report.floor is None else f"floor {report.floor:g}"
        score = "-" if report.score is None else f"{report.score:g}"
        verdict = "BELOW FLOOR" if report.below_floor else "ok"
        click.echo(f"{client_name}: baseline score {score} ({floor}): {verdict}")
    if report.below_floor:
        sys.exit(3)
