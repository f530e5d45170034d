"""``mspauto exec``, ``mspauto runs`` and ``mspauto evidence``: run, review, verify."""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING

import click

from mspauto.cli.application import Application, format_option, pass_app

if TYPE_CHECKING:
    from mspauto.evidence.store import EvidenceStore

__all__ = ["evidence", "exec_command", "open_store", "runs"]


def open_store(app: Application, *, writable: bool = False) -> EvidenceStore:
    """The evidence store; readers of a store nothing was written to yet get an empty
    one in memory, so 'runs list' and 'evidence verify' simply find nothing."""
    from mspauto.evidence.store import EvidenceError, EvidenceStore, NoEvidenceYet

    try:
        return EvidenceStore(app.settings.evidence_url, writable=writable)
    except NoEvidenceYet:
        return EvidenceStore("sqlite://")
    except EvidenceError as exc:
        app.abort(str(exc))


@click.command("exec", context_settings={"ignore_unknown_options": True})
@click.option("--client", "client_name", required=True, help="The client whose hosts run it.")
@click.option(
    "--hosts",
    "patterns",
    multiple=True,
    metavar="PATTERN",
    help="Only hosts whose name matches (shell pattern; repeatable).",
)
@click.option("--tags", multiple=True, metavar="TAG", help="Only hosts with this tag (repeatable).")
@click.option(
    "--sudo",
    is_flag=True,
    help="Run through sudo (the credential's become password, if any, is sent on stdin).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1),
    default=60.0,
    show_default=True,
    help="Seconds the command may run on each host.",
)
@click.option(
    "--connect-timeout",
    type=click.FloatRange(0.1),
    default=10.0,
    show_default=True,
    help="Seconds to connect and authenticate.",
)
@click.option(
    "--retries",
    type=click.IntRange(0, 10),
    default=2,
    show_default=True,
    help="Retries for unreachable hosts only (with backoff).",
)
@click.option(
    "--forks",
    type=click.IntRange(1, 1000),
    default=50,
    show_default=True,
    help="Hosts worked on at once (the client's max_parallel caps it further).",
)
@click.option(
    "--via",
    type=click.Choice(["direct", "ansible"]),
    default="direct",
    show_default=True,
    help="direct: each host by its connection (SSH, WinRM, local); ansible: one "
    "ansible-runner run for all (SSH) hosts, through the shell module.",
)
@format_option("text", "json")
@click.argument("command", nargs=-1, required=True)
@pass_app
def exec_command(
    app: Application,
    client_name: str,
    patterns: tuple[str, ...],
    tags: tuple[str, ...],
    sudo: bool,
    timeout: float,
    connect_timeout: float,
    retries: int,
    forks: int,
    via: str,
    output: str,
    command: tuple[str, ...],
) -> None:
    """Run an ad-hoc COMMAND on a client's hosts and record it as evidence.

    Example: mspauto exec --client acme --hosts 'web*' -- uptime

    Exits 0 when every host succeeded, 2 when some did not, 1 on bad input."""
    from mspauto.engine import EngineError, RunSpec, run_command
    from mspauto.engine.progress import SilentProgress, progress_for
    from mspauto.transport import transport_for
    from mspauto.transport.ansible import AnsibleTransport

    project = app.usable_project()
    client, hosts = app.client_hosts(project, client_name, patterns, tags)
    spec = RunSpec(
        client=client,
        hosts=hosts,
        command=" ".join(command),
        sudo=sudo,
        timeout=timeout,
        retries=retries,
        forks=forks,
    )
    store = open_store(app, writable=True)
    started = time.monotonic()
    try:
        outcome = run_command(
            spec,
            AnsibleTransport(
                client, project.settings.root, forks=forks, connect_timeout=connect_timeout
            )
            if via == "ansible"
            else transport_for(client, project.settings.root, connect_timeout=connect_timeout),
            store,
            SilentProgress() if output == "json" else progress_for(),
        )
    except EngineError as exc:
        app.abort(str(exc))
    finally:
        store.close()
    elapsed = time.monotonic() - started
    if output == "json":
        app.print_json(
            {
                "run_id": outcome.run_id,
                "client": outcome.client,
                "status": outcome.status,
                "results": [
                    {
                        "host": r.host,
                        "ok": r.ok,
                        "rc": r.rc,
                        "error": str(r.error) if r.error else None,
                        "message": r.message,
                        "stdout": r.stdout,
                        "stderr": r.stderr,
                        "seconds": round(r.seconds, 3),
                        "attempts": r.attempts,
                    }
                    for r in outcome.results
                ],
            }
        )
    else:
        width = max(len(r.host) for r in outcome.results)
        for result in outcome.results:
            status = click.style(result.summary(), fg="green" if result.ok else "red")
            click.echo(f"{result.host:<{width}}  {status}")
            for line in result.stdout.rstrip("\n").splitlines()[:20]:
                click.echo(f"{'':<{width}}  | {line}")
        counts: dict[str, int] = {}
        for result in outcome.results:
            key = "ok" if result.ok else str(result.error)
            counts[key] = counts.get(key, 0) + 1
        summary = ", ".join(f"{n} {k}" for k, n in counts.items())
        click.echo(
            f"run {outcome.run_id[:8]} ({outcome.client}, {outcome.status}): {summary} "
            f"in {elapsed:.1f}s; details: mspauto runs show {outcome.run_id[:8]}",
            err=not outcome.ok,
        )
    if outcome.evidence_error:
        click.echo(
            f"error: the evidence store could not record this run completely "
            f"({outcome.evidence_error}); the results above are what happened",
            err=True,
        )
    if outcome.status == "aborted":
        # Commands still running in worker threads would keep the process alive.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    if outcome.evidence_error:
        sys.exit(1)
    if not outcome.ok:
        sys.exit(2)


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

    store = open_store(app)
    try:
        summaries = list_runs(store, client_name)
    finally:
        store.close()
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

    store = open_store(app)
    try:
        matches = store.run_ids(run_id)
        if len(matches) != 1:
            app.abort(
                f"no run '{run_id}'"
                if not matches
                else f"'{run_id}' matches {len(matches)} runs; give more characters"
            )
        detail = run_detail(store, matches[0])
        assert detail is not None
        outputs = (
            {
                r.host: (
                    store.output(r.payload["stdout"]["sha256"]) or b"",
                    store.output(r.payload["stderr"]["sha256"]) or b"",
                )
                for r in detail.results
            }
            if show_output or output == "json"
            else {}
        )
    finally:
        store.close()
    s = detail.summary
    if output == "json":
        app.print_json(
            {
                **s.as_dict(),
                "results": [
                    {
                        **r.payload,
                        "seq": r.seq,
                        "hash": r.hash,
                        "stdout_text": outputs[r.host][0].decode(errors="replace"),
                        "stderr_text": outputs[r.host][1].decode(errors="replace"),
                    }
                    for r in detail.results
                ],
            }
        )
        return
    click.echo(f"run {s.run_id}  client {s.client}  {s.kind}: {s.command}")
    click.echo(
        f"started {s.started}  finished {s.finished or '-'}  status {s.status}  by {s.requested_by}"
    )
    for record in detail.results:
        p = record.payload
        verdict = "ok" if p["rc"] == 0 and not p["error"] else (p["error"] or f"rc={p['rc']}")
        line = f"  {record.host:<24} {verdict}"
        if p.get("message"):
            line += f": {p['message']}"
        click.echo(line + f"   (#{record.seq})")
        if show_output:
            for text in outputs[record.host]:
                for out_line in text.decode(errors="replace").rstrip("\n").splitlines():
                    click.echo(f"      | {out_line}")


@click.group()
def evidence() -> None:
    """Check that recorded evidence is intact."""


@evidence.command("verify")
@click.option("--client", "client_name", metavar="CLIENT", help="Only this client's chain.")
@pass_app
def verify(app: Application, client_name: str | None) -> None:
    """Recompute every hash chain; name each edited, deleted or reordered record.

    Exits 0 when intact, 1 when anything was changed."""
    store = open_store(app)
    try:
        chains = store.chains()
        if not chains:
            app.abort(f"no evidence to verify in {app.settings.evidence_url}")
        if client_name is not None and client_name not in chains:
            app.abort(f"no evidence chain for client '{client_name}'")
        checked, problems = store.verify([client_name] if client_name else None)
        unguarded = store.guards_missing()
    finally:
        store.close()
    for problem in problems:
        click.echo(str(problem), err=True)
    if unguarded:
        click.echo(
            f"warning: the append-only guards {', '.join(unguarded)} are missing or "
            "disabled; the next run restores them",
            err=True,
        )
    if problems:
        app.abort(f"evidence is NOT intact: {len(problems)} problems in {checked} records")
    click.echo(f"evidence intact: {checked} records verified")
