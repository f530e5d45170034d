"""``mspauto validate``: load everything, say what was understood or exactly what is wrong."""

from __future__ import annotations

import os
from datetime import datetime

import click

from mspauto.cli.application import Application, format_option, pass_app
from mspauto.config import Settings
from mspauto.problems import Location, Problem, one_line

__all__ = ["validate"]


@click.command()
@format_option("text", "json")
@click.option("--strict", is_flag=True, help="Treat warnings as errors (exit 1 on any).")
@click.option(
    "--as-of",
    "as_of",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Judge waiver expiry as of this day (e.g. to see what lapses next month).",
)
@pass_app
def validate(app: Application, output: str, strict: bool, as_of: datetime | None) -> None:
    """Check the inventory and policies; print one line per client.

    Every problem is one line naming the file, the line and the key path. Exits 1 when
    there are errors (or, with --strict, warnings), so it fits a pre-commit hook or CI.
    """
    project = app.load_project(today=as_of.date() if as_of else None)
    summaries = [project.client_summary(name) for name in project.inventory.clients]
    problems = [*_settings_problems(app.settings), *project.problems]
    errors = [p for p in problems if p.severity == "error"]
    warnings = [p for p in problems if p.severity == "warning"]
    failed = bool(errors) or (strict and bool(warnings))
    if output == "json":
        app.print_json(
            {
                "ok": not failed,
                "clients": summaries,
                "policies": len(project.policies),
                "problems": [p.as_dict() for p in problems],
            }
        )
    else:
        for summary in summaries:
            platforms = ", ".join(f"{n} {p}" for p, n in summary["platforms"].items())
            click.echo(
                f"{summary['client']:<12} {one_line(summary['display_name']):<28} "
                f"{summary['timezone']:<20} contract={summary['contract']:<10} "
                f"{summary['hosts']:>3} hosts ({platforms or 'none'}), "
                f"{summary['sites']} sites, {summary['policies']} policies"
            )
        for problem in problems:
            click.echo(str(problem), err=True)
        verdict = "FAILED" if failed else "OK"
        click.echo(
            f"{verdict}: {_count(len(summaries), 'client')}, "
            f"{_count(sum(s['hosts'] for s in summaries), 'host')}, "
            f"{_count(len(project.policies), 'policy', 'policies')}; "
            f"{_count(len(errors), 'error')}, {_count(len(warnings), 'warning')}",
            err=failed,
        )
    if failed:
        raise click.exceptions.Exit(1)


def _settings_problems(settings: Settings) -> list[Problem]:
    """What is wrong in the settings that come from the environment, checked now rather
    than by the first command that needs them."""
    from mspauto.evidence.copies import WitnessSettingError, witness_copies
    from mspauto.evidence.store import evidence_url_problem

    problems = []
    unusable = evidence_url_problem(settings.evidence_url)
    if unusable is not None:
        problems.append(Problem(Location("$MSPAUTO_EVIDENCE_URL"), "", unusable))
    try:
        witness_copies(
            settings.witness_webhook, settings.witness_webhook_token_file, settings.witness_syslog
        )
    except WitnessSettingError as exc:
        problems.append(Problem(Location(f"${exc.variable}"), "", exc.message))
    if settings.worker_key is not None:
        from mspauto.evidence.worker_keys import WorkerSigner
        from mspauto.signing import SigningError

        try:
            WorkerSigner.load(settings.worker_key)
        except SigningError as exc:
            problems.append(Problem(Location("$MSPAUTO_WORKER_KEY"), "", str(exc)))
    for variable, example in (("MSPAUTO_QUEUE_WAIT", 600), ("MSPAUTO_CLAIM_LEASE", 30)):
        value = os.environ.get(variable, "")
        if value and not _positive(value):
            problems.append(
                Problem(
                    Location(f"${variable}"),
                    "",
                    f"'{value}' is not a number of seconds over 0 (e.g. {example})",
                )
            )
    return problems


def _positive(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False


def _count(number: int, singular: str, plural: str | None = None) -> str:
    return f"{number} {singular if number == 1 else plural or singular + 's'}"
