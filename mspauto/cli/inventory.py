"""``mspauto inventory``: list, show, import and export clients' hosts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mspauto.cli.application import Application, format_option, pass_app

if TYPE_CHECKING:
    from mspauto.inventory.resolve import Client, Host
    from mspauto.project import Project

__all__ = ["inventory"]

# The same rule as inventory names (mspauto.fields.Name), without importing pydantic.
_CLIENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@click.group()
def inventory() -> None:
    """List and inspect hosts; import from and export to Ansible and nornir."""


def _client(app: Application, project: Project, name: str) -> Client:
    client = project.inventory.clients.get(name)
    if client is None:
        known = ", ".join(project.inventory.clients) or "none"
        app.abort(f"unknown client '{name}' (clients: {known})")
    return client


def host_as_dict(host: Host, project: Project) -> dict[str, Any]:
    """Everything known about a host, for JSON output."""
    client = project.inventory.clients[host.client]
    credential = client.credentials.get(host.credential) if host.credential else None
    return {
        "name": host.name,
        "client": host.client,
        "address": host.address,
        "port": host.port,
        "platform": host.platform,
        "connection": host.connection,
        "site": host.site,
        "groups": list(host.groups),
        "tags": sorted(host.tags),
        "ring": host.ring,
        "credential": host.credential,
        "user": credential.user if credential else None,
        "vars": dict(host.vars),
        "origins": dict(host.origins),
        "defined_at": str(host.location),
    }


@inventory.command("list")
@click.option("--client", "client_name", metavar="CLIENT", help="Only this client's hosts.")
@format_option("table", "json")
@pass_app
def list_hosts(app: Application, client_name: str | None, output: str) -> None:
    """List hosts with their client, site, platform, address and ring."""
    project = app.usable_project()
    if client_name is not None:
        hosts = list(_client(app, project, client_name).hosts.values())
    else:
        hosts = list(project.inventory.hosts())
    if output == "json":
        app.print_json([host_as_dict(h, project) for h in hosts])
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in (
        "HOST",
        "CLIENT",
        "SITE",
        "PLATFORM",
        "CONN",
        "ADDRESS",
        "RING",
        "GROUPS",
        "TAGS",
    ):
        table.add_column(column, overflow="fold")
    for host in hosts:
        endpoint = host.address + (f":{host.port}" if host.port else "")
        table.add_row(
            host.name,
            host.client,
            host.site or "-",
            host.platform,
            host.connection,
            endpoint,
            host.ring or "-",
            ",".join(host.groups) or "-",
            ",".join(sorted(host.tags)) or "-",
        )
    app.print_table(table)
    click.echo(f"{len(hosts)} hosts")


@inventory.command("show")
@click.argument("host_name", metavar="HOST")
@format_option("text", "json")
@pass_app
def show_host(app: Application, host_name: str, output: str) -> None:
    """Show one host: resolved settings, every variable and where it came from,
    and the policies that apply to it."""
    project = app.usable_project()
    host = project.inventory.host(host_name)
    if host is None:
        from difflib import get_close_matches

        names = [h.name for h in project.inventory.hosts()]
        close = get_close_matches(host_name, names, n=1)
        app.abort(
            f"no host named '{host_name}'" + (f" (did you mean '{close[0]}'?)" if close else "")
        )
    details = host_as_dict(host, project)
    policies = [
        {"name": p.policy.name, "kind": p.policy.kind, "defined_at": str(p.location)}
        for p in project.policies_for(host)
    ]
    if output == "json":
        app.print_json({**details, "policies": policies})
        return
    client = project.inventory.clients[host.client]
    credential = client.credentials.get(host.credential) if host.credential else None
    origin = host.origins
    rows = [
        ("client", f"{host.client} ({client.spec.display_name}, {client.spec.timezone})", ""),
        ("address", f"{host.address}" + (f":{host.port}" if host.port else ""), ""),
        ("platform", host.platform, origin.get("platform", "")),
        ("connection", host.connection, origin.get("connection", "default")),
        ("site", host.site or "-", ""),
        ("groups", ", ".join(host.groups) or "-", "merge order, lowest first"),
        ("tags", ", ".join(sorted(host.tags)) or "-", ""),
        ("ring", host.ring or "-", origin.get("ring", "")),
        (
            "credential",
            f"{host.credential} (user {credential.user})" if credential else "-",
            origin.get("credential", ""),
        ),
        ("defined at", str(host.location), ""),
    ]
    click.echo(click.style(host.name, bold=True))
    for label, value, source in rows:
        click.echo(f"  {label:<11} {value}" + (f"   [{source}]" if source else ""))
    click.echo("  vars:")
    for key, value in sorted(host.vars.items()):
        click.echo(f"    {key} = {value!r}   [{origin[key]}]")
    click.echo("  policies:")
    for policy in policies:
        click.echo(f"    {policy['kind']:<9} {policy['name']}   ({policy['defined_at']})")
    if not policies:
        click.echo("    none: no policy targets this host")


@inventory.command("import")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--client", "client_name", required=True, help="Name of the new client.")
@click.option("--timezone", required=True, help="The client's IANA time zone, e.g. Europe/Berlin.")
@click.option("--contract", required=True, help="Name of the client's SLA contract policy.")
@click.option("--display-name", help="Client's full name (default: the client name).")
@click.option(
    "--platform",
    type=click.Choice(["debian", "ubuntu", "rhel", "windows", "network"]),
    default="debian",
    show_default=True,
    help="Platform of hosts that Ansible's variables do not identify.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing client file.")
@click.option(
    "--allow-script",
    is_flag=True,
    help="Let Ansible run a script inventory or inventory plugin in SOURCE (with only "
    "PATH, HOME, TMPDIR and locale variables of the environment).",
)
@pass_app
def import_inventory(
    app: Application,
    source: Path,
    client_name: str,
    timezone: str,
    contract: str,
    display_name: str | None,
    platform: str,
    force: bool,
    allow_script: bool,
) -> None:
    """Create a client from an Ansible inventory (INI, YAML or a folder with
    group_vars/ and host_vars/), read with Ansible's own parser."""
    from mspauto.inventory.ansible import (
        AnsibleInventoryError,
        ScriptInventoryError,
        import_ansible,
    )
    from mspauto.problems import display_path
    from mspauto.project import load_project

    if not _CLIENT_NAME.match(client_name):
        app.abort(
            f"'{client_name}' is not a valid client name (letters, digits, '.', '_' and "
            "'-', starting with a letter or digit)"
        )
    target = app.settings.inventory_dir / f"{client_name}.yaml"
    if target.is_symlink():
        # Written through, a link (even one to nothing) would put the file anywhere.
        app.abort(f"{target} is a link; remove it, then import again")
    if (target.exists() or target.with_suffix("").is_dir()) and not force:
        app.abort(f"{target} already exists; choose another --client or pass --force")
    try:
        result = import_ansible(
            source,
            client_name,
            display_name=display_name or client_name,
            timezone=timezone,
            contract=contract,
            platform=platform,
            allow_script=allow_script,
        )
    except ScriptInventoryError as exc:
        app.abort(f"{exc}; pass --allow-script to run it")
    except AnsibleInventoryError as exc:
        app.abort(str(exc))
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    app.write_file(target, result.to_yaml())
    click.echo(f"wrote {target}: {result.hosts} hosts, {result.groups} groups")
    shown = str(display_path(app.settings.root, target))
    problems = [p for p in load_project(app.settings).errors if p.location.file == shown]
    for problem in problems:
        click.echo(str(problem), err=True)
    if problems:
        app.abort("the imported client needs the fixes above ('mspauto validate' rechecks)")


@inventory.command("export")
@click.option("--client", "client_name", required=True, help="Client to export.")
@click.option(
    "--to",
    "target",
    type=click.Choice(["ansible-yaml", "ansible-ini", "nornir"]),
    default="ansible-yaml",
    show_default=True,
    help="Inventory format to write.",
)
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    help="File to write (a folder for nornir; Ansible reads YAML inventories only "
    "from .yaml/.yml files); default: standard output.",
)
@pass_app
def export_inventory(app: Application, client_name: str, target: str, output: Path | None) -> None:
    """Write a client as an Ansible (YAML or INI) or nornir inventory. Every host gets
    exactly the variables mspauto resolves for it; no secret is written."""
    from mspauto.inventory.ansible import AnsibleInventoryError, export_ini, export_yaml
    from mspauto.inventory.nornir import export_nornir

    project = app.usable_project()
    client = _client(app, project, client_name)
    if target == "nornir":
        if output is None:
            app.abort(
                "--to nornir writes hosts.yaml, groups.yaml and defaults.yaml: give --output FOLDER"
            )
        try:
            output.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            app.abort(f"cannot create {output}/: {exc.strerror or exc}")
        for name, text in export_nornir(client, project.inventory.defaults).items():
            app.write_file(output / name, text)
        click.echo(f"wrote nornir inventory for {client_name} to {output}/")
        return
    try:
        text = (export_ini if target == "ansible-ini" else export_yaml)(
            client, project.inventory.defaults
        )
    except AnsibleInventoryError as exc:
        app.abort(str(exc))
    if output is None:
        click.echo(text, nl=False)
    else:
        app.write_file(output, text)
        click.echo(f"wrote {output}")
