"""``mspauto report``: the monthly client report, and checking one offline."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import click

from mspauto.cli.application import Application, format_option
from mspauto.problems import one_line

if TYPE_CHECKING:
    from mspauto.evidence.store import EvidenceStore
    from mspauto.inventory.resolve import Client
    from mspauto.project import Project
    from mspauto.signing import SigningKey
    from mspauto.sla.model import MonthlyReport

__all__ = ["report"]


@click.group(invoke_without_command=True)
@click.option("--client", "client_names", multiple=True, help="The client (repeat for more).")
@click.option("--all", "every_client", is_flag=True, help="Every client in the inventory.")
@click.option(
    "--month",
    metavar="YYYY-MM",
    help="The month, in each client's time zone (default: the last full month there).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the reports (default: the state folder's reports/); each report "
    "goes to OUT/CLIENT/YYYY-MM.",
)
@click.option("--replace", is_flag=True, help="Make a report again when it exists already.")
@format_option("text", "json")
@click.pass_context
def report(
    ctx: click.Context,
    client_names: tuple[str, ...],
    every_client: bool,
    month: str | None,
    out: Path | None,
    replace: bool,
    output: str,
) -> None:
    """Make the monthly report of a client (or of --all): HTML and PDF for the client,
    CSV and JSON, OSCAL assessment results for auditors' tools, and a manifest of
    every file's SHA-256 and the evidence range used, signed with the MSP's key.

    Everything comes from recorded evidence; nothing is contacted. An auditor checks
    the folder offline with 'minisign -Vm manifest.json -p KEY.pub' and then
    'mspauto report verify'. Exits 0 when every report was written, 1 otherwise."""
    if ctx.invoked_subcommand is not None:
        return
    app: Application = ctx.ensure_object(Application)
    if every_client == bool(client_names):
        app.abort("give --client NAME (repeatable) or --all")
    from mspauto.evidence.checkpoints import Witness
    from mspauto.report.build import ReportError, check_witness, policy_set_hash, write_report
    from mspauto.report.manifest import ManifestError
    from mspauto.report.render import PdfRenderer, RenderError
    from mspauto.sla.period import MonthError, month_period

    if month is not None:
        try:
            month_period(month, "UTC")
        except MonthError as exc:
            app.abort(str(exc))
    project = app.usable_project()
    clients = _clients(app, project, client_names, every_client)
    key = _signing_key(app)
    witness = Witness(app.settings.witness_dir)
    now = datetime.now(UTC)
    base = out or app.settings.state_dir / "reports"
    written, failed = [], 0
    with _evidence(app) as store, PdfRenderer() as renderer:
        for client in clients:
            try:
                check_witness(store, client.name, key.public_key, witness)
                made = _one(project, store, client, month, now)
                folder = base / client.name / _folder_name(made)
                write_report(
                    made,
                    folder,
                    store,
                    key,
                    policy_hash=policy_set_hash(project, client),
                    replace=replace,
                    renderer=renderer,
                )
            except (ReportError, ManifestError, MonthError, RenderError) as exc:
                click.echo(f"error: {client.name}: {exc}", err=True)
                failed += 1
                continue
            except OSError as exc:
                click.echo(f"error: {client.name}: cannot write the report: {exc}", err=True)
                failed += 1
                continue
            written.append(
                {
                    "client": client.name,
                    "month": made.period.month,
                    "folder": str(folder),
                    "score": made.score,
                    "band": str(made.band),
                    "missing_data": made.missing_data,
                }
            )
            if output == "text":
                score = "no data" if made.score is None else f"{made.score:.1f}% ({made.band})"
                click.echo(f"{client.name} {made.period.month}: {score} -> {folder}")
                for gap in made.missing_data:
                    click.echo(f"  note: {gap}")
    if output == "json":
        app.print_json({"reports": written, "failed": failed})
    if failed:
        raise click.exceptions.Exit(1)


@contextmanager
def _evidence(app: Application) -> Iterator[EvidenceStore]:
    """The project's evidence store, read-only; a store that is not there is an error
    (a report of nothing would look like a month nobody checked)."""
    from mspauto.evidence.store import EvidenceError, EvidenceStore, NoEvidenceYet

    url = app.settings.evidence_url
    try:
        store = EvidenceStore(url, writable=False)
    except NoEvidenceYet:
        app.abort(
            f"no evidence recorded yet at {app.settings.state_dir}: a report is built "
            "from evidence (is MSPAUTO_STATE_DIR or MSPAUTO_EVIDENCE_URL right?)"
        )
    except EvidenceError as exc:
        app.abort(str(exc))
    try:
        yield store
    finally:
        store.close()


def _folder_name(report: MonthlyReport) -> str:
    """``YYYY-MM``; a month still running gets ``YYYY-MM-to-YYYY-MM-DD`` so that the
    month's real report, made when it is over, never collides with it."""
    if report.generated_at >= report.period.end:
        return report.period.month
    zone = ZoneInfo(report.period.timezone)
    return f"{report.period.month}-to-{report.generated_at.astimezone(zone):%Y-%m-%d}"


def _clients(
    app: Application, project: Project, names: tuple[str, ...], every: bool
) -> list[Client]:
    clients = project.inventory.clients
    if every:
        if not clients:
            app.abort("the inventory has no client")
        return [clients[name] for name in sorted(clients)]
    unknown = [n for n in names if n not in clients]
    if unknown:
        app.abort(f"unknown client '{unknown[0]}' (clients: {', '.join(clients) or 'none'})")
    return [clients[n] for n in dict.fromkeys(names)]


def _signing_key(app: Application) -> SigningKey:
    from mspauto.signing import SigningError, SigningKey

    path = app.settings.signing_key
    if not path.exists():
        app.abort(f"no signing key at {path}: a report is signed; run 'mspauto keys init'")
    try:
        return SigningKey.load(path)
    except SigningError as exc:
        app.abort(str(exc))


def _one(
    project: Project, store: EvidenceStore, client: Client, month: str | None, now: datetime
) -> MonthlyReport:
    """The client's report for ``month``, by default the last full month in its zone."""
    from zoneinfo import ZoneInfo

    from mspauto.report.build import make_report
    from mspauto.sla.period import previous_month

    if month is None:
        month = previous_month(now.astimezone(ZoneInfo(client.spec.timezone)).strftime("%Y-%m"))
    return make_report(project, store, client, month, now=now)


@report.command("verify")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--public-key",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The MSP's public key file (minisign format).",
)
@click.option(
    "--previous",
    type=click.Path(path_type=Path),
    help="Last month's report folder: this month's evidence must extend the log it signed.",
)
@click.option(
    "--evidence",
    "with_evidence",
    is_flag=True,
    help="Also check every counted record against the project's evidence store.",
)
@click.option(
    "--evidence-url",
    metavar="URL",
    help="Check against this evidence store (a SQLAlchemy URL) instead of the project's.",
)
@format_option("text", "json")
@click.pass_context
def verify(
    ctx: click.Context,
    folder: Path,
    public_key: Path,
    previous: Path | None,
    with_evidence: bool,
    evidence_url: str | None,
    output: str,
) -> None:
    """Check a report folder offline: the manifest's signature, every file's SHA-256,
    the signed checkpoints and the consistency proof between month start and end;
    with --previous, that the log extends last month's; with --evidence, that every
    record the report counted is in the signed log unchanged.

    Exits 0 when everything holds, 1 when anything does not (each problem one line)."""
    app: Application = ctx.ensure_object(Application)
    from mspauto.report.manifest import verify_report
    from mspauto.signing import PublicKey, SigningError

    try:
        key = PublicKey.load(public_key)
    except SigningError as exc:
        app.abort(str(exc))
    if not folder.is_dir():
        app.abort(f"{folder} is not a report folder")
    if evidence_url or with_evidence:
        from mspauto.evidence.store import EvidenceError, EvidenceStore

        try:
            # Read-only: an auditor's check never migrates or records anything.
            store = EvidenceStore(evidence_url or app.settings.evidence_url, writable=False)
        except EvidenceError as exc:
            app.abort(str(exc))
        try:
            result = verify_report(folder, key, previous=previous, store=store)
        finally:
            store.close()
    else:
        result = verify_report(folder, key, previous=previous)
    if result.client is not None and (
        folder.resolve().parent.name != result.client
        or not folder.resolve().name.startswith(str(result.month))
    ):
        # A folder renamed to pass for another client's or month's report.
        result.warnings.append(
            f"the signed manifest says this is {result.client}'s report for {result.month}, "
            f"but the folder is named {folder.resolve().parent.name}/{folder.resolve().name}"
        )
    if output == "json":
        app.print_json(
            {
                "client": result.client,
                "month": result.month,
                "ok": result.ok,
                "checked": result.checked,
                "warnings": result.warnings,
                "problems": result.problems,
            }
        )
    else:
        # Lines can hold names from the folder or the manifest: attacker text, printed
        # escaped so it can neither forge a line nor hide one on a terminal.
        for line in result.checked:
            click.echo(f"ok: {one_line(line)}")
        for warning in result.warnings:
            click.echo(f"warning: {one_line(warning)}")
        for problem in result.problems:
            click.echo(f"FAILED: {one_line(problem)}")
        if result.client is not None:
            click.echo(f"signed as: {one_line(result.client)}'s report for {result.month}")
        click.echo("report verified" if result.ok else "report NOT verified")
    if not result.ok:
        raise click.exceptions.Exit(1)
