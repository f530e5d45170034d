"""``mspauto backups``: is every protected asset's last good backup within its RPO?"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

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
    from mspauto.backup.verify import BackupReport

__all__ = ["backups"]


@click.group(invoke_without_command=True)
@click.option("--client", "client_name", help="The client whose backups to check.")
@hosts_option()
@click.option(
    "--check-integrity",
    is_flag=True,
    help="Check every repository's integrity now, whether or not its check is due.",
)
@timeout_option(600.0, "each host's checks (an integrity check reads the repository)")
@forks_option()
@distributed_option()
@format_option("table", "json")
@click.pass_context
def backups(
    ctx: click.Context,
    client_name: str | None,
    patterns: tuple[str, ...],
    check_integrity: bool,
    timeout: float,
    forks: int,
    distributed: bool,
    output: str,
) -> None:
    """Check every backup job of a client's hosts: the last good backup against the
    RPO, the repository's integrity (when its check is due), the size and file count.
    Each job's verdict is recorded as evidence: ok, stale (older than the RPO), failed,
    missing (no repository or no backup), or unchecked (could not tell, and why).

    Exits 2 when a job is not proven within its RPO (stale, failed, missing or
    unchecked, unless waived), 1 when the evidence store could not record everything,
    130 when stopped, 0 otherwise.
    """
    if ctx.invoked_subcommand is not None:
        return
    app: Application = ctx.ensure_object(Application)
    if client_name is None:
        app.abort("give the client: mspauto backups --client NAME")
    from mspauto.backup.verify import check_backups
    from mspauto.checks import RunOptions
    from mspauto.engine.progress import SilentProgress, progress_for
    from mspauto.transport import transport_for

    project = app.usable_project()
    client, hosts = app.client_hosts(project, client_name, patterns)
    now = datetime.now(UTC)  # one "now" for every host, on workers too
    job = {
        "kind": "check",
        "check": "backup",
        "timeout": timeout,
        "forks": forks,
        "today": now.date().isoformat(),
        "now": now.isoformat(),
        "check_integrity": check_integrity,
    }
    options = RunOptions(
        timeout=timeout,
        forks=forks,
        progress=SilentProgress() if output == "json" else progress_for(),
        executor=app.executor(project, job, distributed),
    )
    with app.evidence_store(writable=True) as store:
        report = check_backups(
            project,
            client_name,
            hosts,
            transport_for(client, project.settings.root),
            store,
            options=options,
            now=now,
            check_integrity=check_integrity,
        )
    if not report.run.plans:
        app.abort(
            f"no backup policy selects these hosts of {client_name}; add a 'kind: backup' "
            "policy (see docs/backups.md)"
        )
    if output == "json":
        app.print_json(report.as_dict())
    else:
        _print(app, report)
    failed = say_evidence_errors([report.run.evidence_error])
    exit_if_stopped([report.run.status], "hosts not reached count as unchecked")
    if failed:
        sys.exit(1)
    if report.breached:
        sys.exit(2)


def _print(app: Application, report: BackupReport) -> None:
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    columns = ("HOST", "JOB", "PROVIDER", "STATE", "LAST GOOD (UTC)", "INTEGRITY", "DRILL", "WHY")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in report.rows:
        last = row.detail.get("last_success")
        integrity = row.detail.get("integrity")
        checked = "-"
        if isinstance(integrity, dict):
            when = datetime.fromisoformat(str(integrity["at"]))
            checked = f"{'ok' if integrity.get('ok') else 'FAILED'} {when:%Y-%m-%d}"
        drill = row.detail.get("restore_drill")
        drilled = "-"
        if isinstance(drill, dict):
            drilled = f"{'ok' if drill['status'] == 'pass' else 'FAILED'} {str(drill['at'])[:10]}"
        if row.detail.get("restore_drill_due"):
            drilled += " (due)"
        table.add_row(
            row.host,
            f"{row.policy}/{row.job}",
            str(row.detail.get("provider", "")),
            row.state.upper() + (" (waived)" if str(row.status) == "waived" else ""),
            str(last)[:16].replace("T", " ") if last else "-",
            checked,
            drilled,
            row.reason,
        )
    app.print_table(table)
    ok = sum(1 for r in report.rows if r.state == "ok")
    click.echo(f"{ok} of {len(report.rows)} jobs within their RPO")


@backups.command("restore-test")
@click.option("--client", "client_name", required=True, help="The client whose backups to drill.")
@hosts_option()
@click.option(
    "--due",
    "due_only",
    is_flag=True,
    help="Only jobs whose drill is due: no passing drill within the policy's "
    "restore_test.every (what the control node runs every day).",
)
@timeout_option(1800.0, "each host's drills")
@forks_option()
@distributed_option()
@format_option("table", "json")
@click.pass_obj
def restore_test(
    app: Application,
    client_name: str,
    patterns: tuple[str, ...],
    due_only: bool,
    timeout: float,
    forks: int,
    distributed: bool,
    output: str,
) -> None:
    """Prove backups restore: for every job whose policy has ``restore_test:``, restore
    its sample paths from the newest backup into a scratch folder on the host (never
    over live data), compare hashes with the live files, time it, remove the folder.
    Each drill (files, bytes, hashes, duration) is recorded as evidence.

    Exits 2 when a drill failed or could not run, 1 when the evidence store could not
    record everything, 130 when stopped, 0 otherwise.
    """
    from mspauto.backup.verify import restore_drills
    from mspauto.checks import RunOptions
    from mspauto.engine.progress import SilentProgress, progress_for
    from mspauto.transport import transport_for

    project = app.usable_project()
    client, hosts = app.client_hosts(project, client_name, patterns)
    now = datetime.now(UTC)  # one "now" for every host, on workers too
    job = {
        "kind": "check",
        "check": "backup-drill",
        "policies": "backup",
        "timeout": timeout,
        "forks": forks,
        "today": now.date().isoformat(),
        "now": now.isoformat(),
        "due_only": due_only,
    }
    options = RunOptions(
        timeout=timeout,
        forks=forks,
        progress=SilentProgress() if output == "json" else progress_for(),
        executor=app.executor(project, job, distributed),
    )
    with app.evidence_store(writable=True) as store:
        report = restore_drills(
            project,
            client_name,
            hosts,
            transport_for(client, project.settings.root),
            store,
            options=options,
            now=now,
            due_only=due_only,
        )
    if not report.run.plans and due_only:
        if output == "json":
            app.print_json(report.as_dict())
        else:
            click.echo(f"no restore drill of {client_name} is due")
        return
    if not report.run.plans:
        app.abort(
            f"no backup policy with 'restore_test:' selects these hosts of {client_name} "
            "(see docs/backups.md)"
        )
    if output == "json":
        app.print_json(report.as_dict())
    else:
        for host in sorted(report.run.hosts, key=lambda h: h.host):
            if host.unchecked:
                click.echo(f"{host.host}: NOT DRILLED ({host.unchecked})")
            for finding in host.findings:
                verdict = {"pass": "RESTORED", "fail": "FAILED", "error": "NOT DRILLED"}.get(
                    str(finding.status), str(finding.status).upper()
                )
                click.echo(
                    f"{host.host} {finding.policy}/{finding.subject}: {verdict}: {finding.reason}"
                )
    failed = say_evidence_errors([report.run.evidence_error])
    exit_if_stopped([report.run.status], "hosts not reached were not drilled")
    if failed:
        sys.exit(1)
    if report.failed:
        sys.exit(2)
