"""``mspauto hosts``: record a host's SSH key on purpose."""

from __future__ import annotations

import click

from mspauto.cli.application import Application, pass_app

__all__ = ["hosts"]


@click.group()
def hosts() -> None:
    """Manage what the control node knows about hosts (SSH host keys)."""


@hosts.command("trust")
@click.argument("host_name", metavar="HOST")
@click.option(
    "--fingerprint",
    metavar="SHA256:...",
    help="Only trust the key if it has this fingerprint (checked out of band).",
)
@click.option("--replace", is_flag=True, help="Replace a different key already recorded.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def trust(
    app: Application, host_name: str, fingerprint: str | None, replace: bool, yes: bool
) -> None:
    """Fetch HOST's SSH key, show its fingerprint, and record it in its client's
    known_hosts once confirmed. Connections never accept unknown keys by themselves."""
    from mspauto.transport.hostkeys import (
        HostKeyError,
        fetch_host_key,
        lookup_name,
        record_host_key,
    )

    project = app.usable_project()
    host = project.inventory.host(host_name)
    if host is None:
        app.abort(f"no host named '{host_name}'")
    if host.connection != "ssh":
        app.abort(f"{host_name} is reached over {host.connection}, not SSH")
    client = project.inventory.clients[host.client]
    known_hosts = project.settings.root / client.known_hosts
    port = host.port or 22
    try:
        key = fetch_host_key(host.address, port)
    except HostKeyError as exc:
        app.abort(str(exc))
    click.echo(f"{host_name} ({host.address}:{port}) presents {key.get_name()} {key.fingerprint}")
    if fingerprint is not None and fingerprint != key.fingerprint:
        app.abort(f"fingerprint mismatch: expected {fingerprint}; not recorded")
    if (
        fingerprint is None
        and not yes
        and not click.confirm(f"Record this key in {client.known_hosts}?", default=False)
    ):
        app.abort("not recorded")
    try:
        outcome = record_host_key(
            known_hosts, lookup_name(host.address, port), key, replace=replace
        )
    except HostKeyError as exc:
        app.abort(str(exc))
    click.echo(f"{outcome}: {client.known_hosts}")
