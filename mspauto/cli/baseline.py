"""``mspauto baseline``: audit (and on request fix) a client's hardening baseline."""

from __future__ import annotations

import sys
from datetime import date, datetime
from typing import TYPE_CHECKING

import click

from mspauto.cli.application import Application, format_option, pass_app

if TYPE_CHECKING:
    from mspauto.baseline.audit import BaselineReport
    from mspauto.baseline.remediate import RemediationReport
    from mspauto.inventory.resolve import Host
    from mspauto.project import Project

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
@click.option(
    "--remediate",
    is_flag=True,
    help="Fix failed controls that have a remediation (one Ansible run), then "
    "audit again; before and after are recorded as evidence.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="With --remediate: show exactly what would change (Ansible check mode "
    "with diffs); change nothing.",
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
    remediate: bool,
    dry_run: bool,
    output: str,
) -> None:
    """Audit a client's hosts against the rule packs of its baseline policies.

    All of a host's rules run in one script; every result is recorded as evidence.
    Failed controls are listed first, with what was observed and what was expected.
    Exits 3 when the client's score is under its contract's baseline floor, 0 otherwise."""
    from mspauto.baseline.audit import audit_client, checks_for
    from mspauto.cli.run import open_store
    from mspauto.engine.progress import SilentProgress, progress_for
    from mspauto.transport import transport_for

    if dry_run and not remediate:
        app.abort("--dry-run goes with --remediate (an audit alone changes nothing)")
    project = app.usable_project()
    client, hosts = app.client_hosts(project, client_name, patterns)
    today = as_of.date() if as_of else datetime.now().date()
    if not any(checks_for(project, h, today) for h in hosts):
        app.abort(
            f"no baseline policy selects these hosts of {client_name}; add a "
            "'kind: baseline' policy naming a rule pack (e.g. debian-cis)"
        )
    if remediate:
        _remediate(app, project, client_name, hosts, today, dry_run)
        return
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
        _print_report(app, report, show_all)
    if report.below_floor:
        sys.exit(3)


def _print_report(app: Application, report: BaselineReport, show_all: bool) -> None:
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("HOST", "STATUS", "SEVERITY", "RULE", "OBSERVED", "EXPECTED"):
        table.add_column(column, overflow="fold")
    rows = [
        (h, r)
        for h in report.hosts
        if not h.unaudited
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
            continue
        score = "-" if host.score is None else f"{host.score:g}"
        click.echo(
            f"{host.host}: score {score}  ({host.count('pass')} pass, "
            f"{host.count('fail')} fail, {host.count('error')} error, "
            f"{host.count('waived')} waived)"
        )
    floor = "no contract floor" if report.floor is None else f"floor {report.floor:g}"
    score = "-" if report.score is None else f"{report.score:g}"
    verdict = "BELOW FLOOR" if report.below_floor else "ok"
    click.echo(f"{report.client}: baseline score {score} ({floor}): {verdict}")


def _remediate(
    app: Application,
    project: Project,
    client_name: str,
    hosts: list[Host],
    today: date,
    dry_run: bool,
) -> None:
    from mspauto.baseline.remediate import remediate_client
    from mspauto.cli.run import open_store
    from mspauto.transport import transport_for

    client = project.inventory.clients[client_name]
    store = open_store(app, writable=True)
    try:
        report = remediate_client(
            project,
            client_name,
            hosts,
            transport_for(client, project.settings.root),
            store,
            dry_run=dry_run,
            today=today,
        )
    finally:
        store.close()
    _print_remediation(report)


def _print_remediation(report: RemediationReport) -> None:
    if report.dry_run:
        for fix in report.fixes:
            click.echo(f"would fix {fix.rule_id} ({fix.expected}) on {', '.join(fix.hosts)}")
    for host, outcomes in sorted(report.tasks.items()):
        changed = [o for o in outcomes if o.status == "changed"]
        for outcome in changed if report.dry_run else []:
            click.echo(f"  {host}: would change: {outcome.task}")
            for line in outcome.diff.strip().splitlines():
                click.echo(f"      {line}")
        if not report.dry_run:
            click.echo(f"  {host}: {len(changed)} controls changed")
        for outcome in outcomes:
            if outcome.status in ("failed", "unreachable"):
                click.echo(f"  {host}: {outcome.status.upper()}: {outcome.task}: {outcome.message}")
    for host, rules in sorted(report.manual.items()):
        click.echo(f"  {host}: needs a person (no automatic remediation): {', '.join(rules)}")
    if not report.fixes:
        click.echo("nothing to fix automatically")
    if report.after is not None:
        before = {h.host: h for h in report.before.hosts}
        for now in report.after.hosts:
            was = before[now.host]
            click.echo(
                f"{now.host}: score {was.score} -> {now.score}  "
                f"({was.count('fail')} -> {now.count('fail')} failed)"
            )
        click.echo(
            f"{report.before.client}: baseline score {report.before.score} -> {report.after.score}"
        )
