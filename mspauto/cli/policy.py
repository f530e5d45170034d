"""``mspauto policy``: list policies and export their JSON Schema for editors."""

from __future__ import annotations

from pathlib import Path

import click

from mspauto.cli.application import Application, format_option, pass_app

__all__ = ["policy"]


@click.group()
def policy() -> None:
    """List policies and print the policy file schema."""


@policy.command("list")
@click.option(
    "--client",
    "client_name",
    metavar="CLIENT",
    help="Only policies that select hosts of this client (and contracts it uses).",
)
@format_option("table", "json")
@pass_app
def list_policies(app: Application, client_name: str | None, output: str) -> None:
    """List every policy: kind, name, schedule, how many hosts it selects, and where
    it is defined."""
    from mspauto.policy.summary import summarize

    project = app.usable_project()
    if client_name is not None and client_name not in project.inventory.clients:
        app.abort(
            f"unknown client '{client_name}' "
            f"(clients: {', '.join(project.inventory.clients) or 'none'})"
        )
    rows = summarize(project, client_name)
    if output == "json":
        app.print_json(rows)
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("KIND", "NAME", "SCHEDULE", "HOSTS", "DETAIL", "DEFINED AT"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            row["kind"],
            row["name"],
            row["schedule"] or "-",
            "-" if row["hosts"] is None else str(row["hosts"]),
            row["detail"],
            row["defined_at"],
        )
    app.print_table(table)
    click.echo(f"{len(rows)} policies")


@policy.command("schema")
@click.option(
    "--kind",
    metavar="KIND",
    help="Schema of one kind only, e.g. patch, backup, baseline, contract, waiver, "
    "rulepack (default: any policy document).",
)
@click.option(
    "--inventory",
    "for_inventory",
    is_flag=True,
    help="Schema of an inventory client file instead of a policy.",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file (default: standard output).",
)
@pass_app
def schema(app: Application, kind: str | None, for_inventory: bool, output: Path | None) -> None:
    """Print the JSON Schema of policy (or inventory) files, for editor completion
    and validation (e.g. yaml-language-server)."""
    import json

    from mspauto.policy.registry import policy_kinds
    from mspauto.policy.schema import inventory_schema, policy_schema

    if kind is not None and kind not in policy_kinds():
        app.abort(f"unknown policy kind '{kind}' (kinds: {', '.join(policy_kinds())})")
    document = inventory_schema() if for_inventory else policy_schema(kind)
    text = json.dumps(document, indent=2) + "\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        app.write_file(output, text)
        click.echo(f"wrote {output}")
