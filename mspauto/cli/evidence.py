"""``mspauto evidence``: check that recorded evidence is intact."""

from __future__ import annotations

import click

from mspauto.cli.application import Application, pass_app

__all__ = ["evidence"]


@click.group()
def evidence() -> None:
    """Check that recorded evidence is intact."""


@evidence.command("verify")
@click.option("--client", "client_name", metavar="CLIENT", help="Only this client's chain.")
@pass_app
def verify(app: Application, client_name: str | None) -> None:
    """Recompute every hash chain; name each edited, deleted or reordered record.

    Exits 0 when intact, 1 when anything was changed."""
    with app.evidence_store() as store:
        chains = store.chains()
        if not chains:
            app.abort(f"no evidence to verify in {app.settings.evidence_url}")
        if client_name is not None and client_name not in chains:
            app.abort(f"no evidence chain for client '{client_name}'")
        checked, problems = store.verify([client_name] if client_name else None)
        unguarded = store.guards_missing()
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
