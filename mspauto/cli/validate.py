"""``mspauto validate``: load everything, say what was understood or exactly what is wrong."""

from __future__ import annotations

from datetime import datetime

import click

from mspauto.cli.application import Application, format_option, pass_app

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
    failed = bool(project.errors) or (strict and bool(project.warnings))
    if output == "json":
        app.print_json(
            {
                "ok": not failed,
                "clients": summaries,
                "policies": len(project.policies),
                "problems": [p.as_dict() for p in project.problems],
            }
        )
    else:
        for summary in summaries:
            platforms = ", ".join(f"{n} {p}" for p, n in summary["platforms"].items())
            click.echo(
                f"{summary['client']:<12} {summary['display_name']:<28} "
                f"{summary['timezone']:<20} contract={summary['contract']:<10} "
                f"{summary['hosts']:>3} hosts ({platforms or 'none'}), "
                f"{summary['sites']} sites, {summary['policies']} policies"
            )
        for problem in project.problems:
            click.echo(str(problem), err=True)
        errors, warnings = len(project.errors), len(project.warnings)
        verdict = "FAILED" if failed else "OK"
        click.echo(
            f"{verdict}: {_count(len(summaries), 'client')}, "
            f"{_count(sum(s['hosts'] for s in summaries), 'host')}, "
            f"{_count(len(project.policies), 'policy', 'policies')}; "
            f"{_count(errors, 'error')}, {_count(warnings, 'warning')}",
            err=failed,
        )
    if failed:
        raise click.exceptions.Exit(1)


def _count(number: int, singular: str, plural: str | None = None) -> str:
    return f"{number} {singular if number == 1 else plural or singular + 's'}"
