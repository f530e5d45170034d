"""``mspauto baseline``: audit (and on request fix) a client's hardening baseline."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import TYPE_CHECKING

import click

from mspauto.cli.application import (
    Application,
    distributed_option,
    exit_if_stopped,
    forks_option,
    format_option,
    hosts_option,
    pass_app,
    say_evidence_errors,
    timeout_option,
)
from mspauto.evidence.records import RunStatus

if TYPE_CHECKING:
    from mspauto.baseline.report import BaselineReport, RemediationReport

__all__ = ["baseline"]

_ORDER = {"fail": 0, "error": 1, "waived": 2, "pass": 3, "not_applicable": 4}


@click.command()
@click.option("--client", "client_name", required=True, help="The client to audit.")
@hosts_option()
@click.option("--all", "show_all", is_flag=True, help="List passed controls too.")
@timeout_option(120.0, "the audit (and each change run)")
@forks_option()
@click.option(
    "--as-of",
    "as_of",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Judge waivers as of this day.",
)
@click.option(
    "--remediate",
    is_flag=True,
    help="Fix failed controls that have a remediation and whose policy allows it (one "
    "Ansible run, recorded as a run of its own), then audit again; before and after "
    "are recorded as evidence.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="With --remediate: show exactly what would change (Ansible check mode "
    "with diffs); change nothing.",
)
@distributed_option()
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
    distributed: bool,
    output: str,
) -> None:
    """Audit a client's hosts against the rule packs of its baseline policies.

    All of a host's rules run in one script; every result is recorded as evidence.
    Failed controls are listed first, with what was observed and what was expected.
    Exits 3 when the client's score is under its contract's baseline floor, 2 when a
    change failed on some host (with --remediate), 1 when the evidence store could not
    record everything, 130 when stopped with Ctrl-C, 0 otherwise."""
    from mspauto.baseline.report import audit_client, has_baseline, remediate_client
    from mspauto.checks import RunOptions
    from mspauto.engine.progress import SilentProgress, progress_for
    from mspauto.transport import transport_for

    if dry_run and not remediate:
        app.abort("--dry-run goes with --remediate (an audit alone changes nothing)")
    project = app.usable_project()
    client, hosts = app.client_hosts(project, client_name, patterns)
    today = as_of.date() if as_of else datetime.now().date()
    if not has_baseline(project, hosts, today):
        app.abort(
            f"no baseline policy selects these hosts of {client_name}; add a "
            "'kind: baseline' policy naming a rule pack (e.g. debian-cis)"
        )
    job = {
        "kind": "check",
        "check": "baseline",
        "timeout": timeout,
        "forks": forks,
        "today": today.isoformat(),
    }
    options = RunOptions(
        timeout=timeout,
        forks=forks,
        progress=SilentProgress() if output == "json" else progress_for(),
        executor=app.executor(project, job, distributed),
    )
    root = project.settings.root
    remediation: RemediationReport | None = None
    with app.evidence_store(writable=True) as store:
        if remediate:
            remediation = remediate_client(
                project,
                client_name,
                hosts,
                transport_for(client, root),
                transport_for(client, root, via="ansible", forks=forks),
                store,
                dry_run=dry_run,
                options=options,
                today=today,
                dispatch=app.dispatcher(project, distributed),
            )
            report = remediation.final
        else:
            report = audit_client(
                project,
                client_name,
                hosts,
                transport_for(client, root),
                store,
                options=options,
                today=today,
            )
    if output == "json":
        app.print_json(remediation.as_dict() if remediation else report.as_dict())
    elif remediation is not None:
        _print_remediation(app, remediation, show_all)
    else:
        _print_report(app, report, show_all)
    evidence_errors = [a.run.evidence_error for a in _audits(remediation or report)]
    if remediation is not None and remediation.change.change is not None:
        evidence_errors.append(remediation.change.change.evidence_error)
    evidence_failed = say_evidence_errors(evidence_errors)
    exit_if_stopped(_statuses(remediation or report), _STOPPED)
    if evidence_failed:
        sys.exit(1)
    if remediation is not None and remediation.change.failed_hosts:
        sys.exit(2)
    if report.below_floor:
        sys.exit(3)


_STOPPED = "hosts not reached count as not audited; nothing more was changed"


def _statuses(report: BaselineReport | RemediationReport) -> list[RunStatus]:
    """How each run of the command ended."""
    from mspauto.baseline.report import BaselineReport

    statuses = [a.run.status for a in _audits(report)]
    if not isinstance(report, BaselineReport) and report.change.change is not None:
        statuses.append(report.change.change.status)
    return statuses


def _audits(report: BaselineReport | RemediationReport) -> list[BaselineReport]:
    from mspauto.baseline.report import BaselineReport

    if isinstance(report, BaselineReport):
        return [report]
    return [report.before] + ([report.after] if report.after is not None else [])


def _print_report(app: Application, report: BaselineReport, show_all: bool) -> None:
    from rich.table import Table

    from mspauto.baseline.report import host_score

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("HOST", "STATUS", "SEVERITY", "RULE", "OBSERVED", "EXPECTED"):
        table.add_column(column, overflow="fold")
    rows = [
        (h, f)
        for h in report.hosts
        if not h.unchecked
        for f in h.findings
        if show_all or f.status in ("fail", "error", "waived")
    ]
    rows.sort(key=lambda hf: (_ORDER[hf[1].status], -hf[1].weight, hf[0].host))
    for host, finding in rows:
        observed = finding.observed
        if finding.status == "error":
            observed = finding.reason
        elif finding.status == "waived":
            observed = f"{finding.observed} (waiver {finding.waiver})"
        elif finding.reason:
            observed = (
                f"{finding.observed} ({finding.reason})" if finding.observed else finding.reason
            )
        table.add_row(
            host.host,
            finding.status.upper(),
            str(finding.detail.get("severity", "")),
            f"{finding.subject}: {finding.detail.get('title', '')}",
            observed or "-",
            finding.expected,
        )
    app.print_table(table)
    for host in report.hosts:
        if host.unchecked:
            click.echo(f"{host.host}: NOT AUDITED ({host.unchecked})")
            continue
        host_points = host_score(host)
        click.echo(
            f"{host.host}: score {'-' if host_points is None else f'{host_points:g}'}  "
            f"({host.count('pass')} pass, {host.count('fail')} fail, "
            f"{host.count('error')} error, {host.count('waived')} waived)"
        )
    floor = "no contract floor" if report.floor is None else f"floor {report.floor:g}"
    score = "-" if report.score is None else f"{report.score:g}"
    verdict = "BELOW FLOOR" if report.below_floor else "ok"
    click.echo(f"{report.client}: baseline score {score} ({floor}): {verdict}")


def _print_remediation(app: Application, report: RemediationReport, show_all: bool) -> None:
    from mspauto.baseline.report import host_score

    change = report.change
    if change.dry_run:
        for task in change.tasks:
            click.echo(f"would fix {task.subject} ({task.description}) on {', '.join(task.hosts)}")
    for host, outcomes in sorted(change.outcomes.items()):
        changed = [o for o in outcomes if o.status == "changed"]
        for outcome in changed if change.dry_run else []:
            click.echo(f"  {host}: would change: {outcome.task}")
            for line in outcome.diff.strip().splitlines():
                click.echo(f"      {line}")
        if not change.dry_run:
            click.echo(f"  {host}: {len(changed)} controls changed")
        for outcome in outcomes:
            if outcome.status in ("failed", "unreachable"):
                click.echo(f"  {host}: {outcome.status.upper()}: {outcome.task}: {outcome.message}")
    if change.change is not None:
        for result in change.change.results:
            if not result.ok and not change.outcomes.get(result.host):
                click.echo(f"  {result.host}: NOT CHANGED: {result.summary()}")
    for host, items in sorted(change.manual.items()):
        listed = ", ".join(f"{subject} ({why})" for subject, why in items)
        click.echo(f"  {host}: needs a person: {listed}")
    if not change.tasks:
        click.echo("nothing to fix automatically")
    if show_all or report.after is None:
        _print_report(app, report.final, show_all)
    if report.after is not None and change.after is not None:
        before = {h.host: h for h in report.before.hosts}
        for now in change.after.hosts:  # the hosts that were changed and re-audited
            was = before[now.host]
            click.echo(
                f"{now.host}: score {host_score(was)} -> {host_score(now)}  "
                f"({was.count('fail')} -> {now.count('fail')} failed)"
            )
        floor = "" if report.floor is None else f" (floor {report.floor:g})"
        click.echo(
            f"{report.before.client}: baseline score {report.before.score} -> "
            f"{report.after.score}{floor}" + (": BELOW FLOOR" if report.after.below_floor else "")
        )
