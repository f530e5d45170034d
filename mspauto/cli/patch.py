"""``mspauto patch``: scan a client's updates, decide each by policy, install the approved."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from mspauto.cli.application import (
    Application,
    distributed_option,
    exit_if_stopped,
    forks_option,
    format_option,
    hosts_option,
    say_evidence_errors,
    timeout_option,
)

if TYPE_CHECKING:
    from mspauto.patching.apply import PatchReport

__all__ = ["patch"]

SOURCE_MAX_AGE_DAYS = 2
"""Severity source copies older than this are warned about (the KEV catalogue changes
most weekdays)."""

# Listed first: what needs attention.
_ACTION_ORDER = {
    "install": 0,
    "manual": 1,
    "defer": 2,
    "dependency": 3,
    "hold": 4,
    "reject": 5,
    "waived": 6,
}


@click.group(invoke_without_command=True)
@click.option("--client", "client_name", help="The client to patch.")
@hosts_option()
@click.option(
    "--dry-run",
    is_flag=True,
    help="Scan and show what each host would get and why; install nothing.",
)
@click.option(
    "--force-window",
    is_flag=True,
    help="Install even outside the maintenance window (needs --reason, which is recorded).",
)
@click.option(
    "--resume-rollout",
    is_flag=True,
    help="Go on with a rollout that a failed ring stopped in an earlier run (needs "
    "--reason, which is recorded).",
)
@click.option("--reason", help="Why the window is overridden or the rollout resumed (recorded).")
@click.option(
    "--lock-timeout",
    type=click.IntRange(0, 3600),
    default=120,
    show_default=True,
    help="Seconds to wait for the host's package lock (held by unattended-upgrades, "
    "apt-daily or a person) before giving up on the host with that reason.",
)
@timeout_option(600.0, "the scan or the install")
@forks_option()
@distributed_option()
@format_option("table", "json")
@click.pass_context
def patch(
    ctx: click.Context,
    client_name: str | None,
    patterns: tuple[str, ...],
    dry_run: bool,
    force_window: bool,
    resume_rollout: bool,
    reason: str | None,
    lock_timeout: int,
    timeout: float,
    forks: int,
    distributed: bool,
    output: str,
) -> None:
    """Scan a client's hosts for pending updates, decide each by its patch policy
    (install, defer, hold, manual, reject), and install the approved ones inside the
    maintenance window; then scan again. Every update found, decided and installed is
    recorded as evidence.

    Exits 2 when a host could not be scanned or an approved update did not install, 1
    when the evidence store could not record everything, 130 when stopped, 0 otherwise.
    """
    if ctx.invoked_subcommand is not None:
        return
    app: Application = ctx.ensure_object(Application)
    if client_name is None:
        app.abort("give the client: mspauto patch --client NAME [--dry-run]")
    for flag, given in (("--force-window", force_window), ("--resume-rollout", resume_rollout)):
        if given and not (reason and reason.strip()):
            app.abort(f"{flag} needs --reason 'why' (it is recorded with the run)")
    if reason and not (force_window or resume_rollout):
        app.abort("--reason goes with --force-window or --resume-rollout")
    if dry_run and (force_window or resume_rollout):
        app.abort("a dry run installs nothing: leave out --force-window and --resume-rollout")
    from mspauto.checks import RunOptions
    from mspauto.engine.progress import SilentProgress, progress_for
    from mspauto.patching.apply import has_patch_policy, patch_client, scan_client
    from mspauto.patching.severity import SeveritySourceError, SeveritySources
    from mspauto.transport import transport_for

    project = app.usable_project()
    client, hosts = app.client_hosts(project, client_name, patterns)
    if not has_patch_policy(project, hosts):
        app.abort(
            f"no patch policy selects these hosts of {client_name}; add a 'kind: patch' "
            "policy (see policies/patch-linux.yaml)"
        )
    options = RunOptions(
        timeout=timeout,
        forks=forks,
        progress=SilentProgress() if output == "json" else progress_for(),
    )
    try:
        sources = SeveritySources.from_settings(project.settings)
    except SeveritySourceError as exc:
        app.abort(str(exc))
    for warning in sources.stale(datetime.now(UTC), timedelta(days=SOURCE_MAX_AGE_DAYS)):
        click.echo(f"warning: {warning}", err=True)
    root = project.settings.root
    dispatch = app.dispatcher(project, distributed)
    with app.evidence_store(writable=True) as store:
        if dry_run:
            report = scan_client(
                project,
                client_name,
                hosts,
                transport_for(client, root),
                store,
                options=options,
                lock_timeout=lock_timeout,
                sources=sources,
                dispatch=dispatch,
            )
        else:
            report = patch_client(
                project,
                client_name,
                hosts,
                transport_for(client, root),
                transport_for(client, root, via="ansible", forks=forks),
                store,
                options=options,
                force_window=reason.strip() if force_window and reason else None,
                lock_timeout=lock_timeout,
                sources=sources,
                resume=reason.strip() if resume_rollout and reason else None,
                dispatch=dispatch,
            )
    if output == "json":
        app.print_json(report.as_dict())
    else:
        _print(app, report)
    _exit(report)


def _exit(report: PatchReport) -> None:
    runs = [report.scan.status]
    errors = [report.scan.evidence_error]
    for round_ in report.rounds:
        runs.append(round_.install.status)
        errors.append(round_.install.evidence_error)
        if round_.after:
            runs.append(round_.after.status)
            errors.append(round_.after.evidence_error)
    for run in report.reboot_runs:
        runs.append(run.status)
        errors.append(run.evidence_error)
    for scan in report.reboot_scans:
        runs.append(scan.status)
        errors.append(scan.evidence_error)
    evidence_failed = say_evidence_errors(errors)
    exit_if_stopped(runs, "nothing more was installed")
    if evidence_failed:
        sys.exit(1)
    if (
        report.failed_hosts
        or report.stopped
        or report.held
        or report.unsupported
        or any(h.unchecked for h in report.scan.hosts)
    ):
        sys.exit(2)


def _print(app: Application, report: PatchReport) -> None:
    from rich.table import Table

    from mspauto.patching.check import decisions_of

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("HOST", "UPDATE", "VERSION", "CLASS", "SEVERITY", "DECISION", "DEADLINE"):
        table.add_column(column, overflow="fold")
    rows: list[tuple[Any, ...]] = []
    for findings in report.scan.hosts:
        for update, decision in decisions_of(findings):
            deadline = decision.get("deadline")
            late = bool(deadline) and datetime.fromisoformat(str(deadline)) < report.now
            rows.append(
                (
                    _ACTION_ORDER.get(str(decision["action"]), 9),
                    findings.host,
                    update.name,
                    f"{update.installed or '(new)'} -> {update.candidate}",
                    update.classification,
                    update.severity
                    + (" KEV" if update.known_exploited else "")
                    + (f" ({update.severity_source})" if update.severity_source else ""),
                    f"{str(decision['action']).upper()}: {decision['reason']}",
                    (str(deadline)[:10] + (" OVERDUE" if late else "")) if deadline else "-",
                )
            )
    rows.sort(key=lambda row: (row[0], row[1], row[2]))
    for row in rows:
        table.add_row(*row[1:])
    if rows:
        app.print_table(table)
    _print_hosts(report)
    for host, outcomes in sorted(report.installed.items()):
        for outcome in sorted(outcomes, key=lambda o: o.status != "failed"):
            click.echo(f"  {host}: {outcome.status.upper()} {outcome.subject} ({outcome.message})")
        if why := report.check_failed(host):
            click.echo(f"  {host}: {why}")
    for round_ in report.rounds:
        for result in round_.install.results:
            if not result.ok and not report.installed.get(result.host):
                click.echo(f"  {result.host}: NOT PATCHED: {result.summary()}")
    for findings in report.scan.hosts:
        why = report.check_failed(findings.host)
        if why and report.approved(findings.host) and findings.host not in report.installed:
            click.echo(f"  {findings.host}: NOT PATCHED: {why}")
    for host, state in sorted(report.reboots.items()):
        click.echo(f"  {host}: reboot {state}")
    for host, why in sorted(report.unsupported.items()):
        click.echo(f"  {host}: NOT PATCHED: {why}")
    for stage in report.stages:
        if stage.stopped:
            click.echo(f"ROLLOUT STOPPED: {stage.stopped}")
    for waiting in report.waiting:
        click.echo(f"waiting: {waiting}")
    for held in report.held:
        click.echo(f"ROLLOUT HELD: {held}")
    if report.refused:
        click.echo(f"{report.client}: {report.refused}")
    if report.dry_run:
        click.echo(f"{report.client}: dry run, nothing installed (scan {report.scan.run_id})")
    elif not report.rounds:
        closed = [h for h, w in report.window.items() if not w.open and report.approved(h)]
        why = (
            f"{len(closed)} host(s) outside the maintenance window (--force-window --reason "
            "to override)"
            if closed and not report.forced
            else "nothing approved could be installed"
        )
        click.echo(f"{report.client}: nothing installed: {why}")
    else:
        done = sum(o.status == "installed" for v in report.installed.values() for o in v)
        failed = sum(o.status != "installed" for v in report.installed.values() for o in v)
        click.echo(
            f"{report.client}: {done} updates installed, {failed} failed in "
            f"{len(report.rounds)} install run(s) (last {report.rounds[-1].install.run_id})"
        )


def _print_hosts(report: PatchReport) -> None:
    """One line per host: what its updates came to, its reboot state, its window."""
    from mspauto.patching.check import decisions_of

    for findings in sorted(report.scan.hosts, key=lambda h: (h.unchecked is None, h.host)):
        if findings.unchecked:
            click.echo(f"{findings.host}: NOT SCANNED ({findings.unchecked})")
            continue
        counts: dict[str, int] = {}
        for _, decision in decisions_of(findings):
            counts[str(decision["action"])] = counts.get(str(decision["action"]), 0) + 1
        reboot = next((f for f in findings.findings if f.subject == "reboot"), None)
        plan = report.scan.plans.get(findings.host)
        if plan is not None and plan.manager is None:
            click.echo(
                f"{findings.host}: not patched by mspauto ({reboot.reason if reboot else ''})"
            )
            continue
        window = report.window.get(findings.host)
        summary = ", ".join(f"{n} {a}" for a, n in sorted(counts.items())) or "up to date"
        click.echo(
            f"{findings.host}: {summary}; reboot {reboot.observed if reboot else '-'}"
            + (f"; {window.reason}" if window else "")
        )


@patch.command("status")
@click.option("--client", "client_name", required=True, help="The client to report on.")
@hosts_option()
@click.option("--overdue", "only_overdue", is_flag=True, help="Only updates past their deadline.")
@format_option("table", "json")
@click.pass_obj
def status(
    app: Application,
    client_name: str,
    patterns: tuple[str, ...],
    only_overdue: bool,
    output: str,
) -> None:
    """What each host still lacks at its latest recorded scan, how long each update has
    been pending, and its deadline under the client's contract. Reads the evidence
    only; no host is contacted. Exits 3 when an update is past its deadline or a host
    was never scanned or its last scan failed, 0 otherwise."""
    from rich.table import Table

    from mspauto.patching.apply import patched_hosts
    from mspauto.patching.status import patch_status

    project = app.usable_project()
    _, hosts = app.client_hosts(project, client_name, patterns)
    hosts = patched_hosts(project, hosts)
    if not hosts:
        app.abort(
            f"no patch policy selects these hosts of {client_name}, or none has a package "
            "manager mspauto drives"
        )
    now = datetime.now(UTC)
    with app.evidence_store() as store:
        statuses = patch_status(store, client_name, sorted(h.name for h in hosts))
    for host in statuses:
        if only_overdue:
            host.pending = [p for p in host.pending if p.overdue(now)]
    if output == "json":
        app.print_json(
            {
                "client": client_name,
                "now": now.isoformat(),
                "hosts": [s.as_dict(now) for s in statuses],
            }
        )
    else:
        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("HOST", "UPDATE", "SEVERITY", "DECISION", "PENDING", "DEADLINE"):
            table.add_column(column, overflow="fold")
        items = [(s.host, p) for s in statuses for p in s.pending]
        items.sort(key=lambda hp: (not hp[1].overdue(now), hp[1].deadline or now, hp[0]))
        for host_name, item in items:
            days = item.pending_days(now)
            table.add_row(
                host_name,
                f"{item.update.name} {item.update.candidate}",
                item.update.severity + (" KEV" if item.update.known_exploited else ""),
                item.action,
                "-" if days is None else f"{days:g}d since {item.clock}",
                "-"
                if item.deadline is None
                else f"{item.deadline:%Y-%m-%d}" + (" OVERDUE" if item.overdue(now) else ""),
            )
        if items:
            app.print_table(table)
        for host in statuses:
            if host.scanned_at is None:
                click.echo(f"{host.host}: never scanned")
            elif host.unchecked:
                click.echo(
                    f"{host.host}: last scan {host.scanned_at:%Y-%m-%d %H:%M} UTC failed: "
                    f"{host.unchecked}"
                )
            else:
                late = sum(p.overdue(now) for p in host.pending)
                click.echo(
                    f"{host.host}: {len(host.pending)} pending ({late} overdue), reboot "
                    f"{host.reboot or '-'}; scanned {host.scanned_at:%Y-%m-%d %H:%M} UTC"
                )
    if any(
        s.scanned_at is None or s.unchecked or any(p.overdue(now) for p in s.pending)
        for s in statuses
    ):
        sys.exit(3)
