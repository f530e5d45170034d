"""``mspauto lab``: a fleet of real Linux hosts on this machine, to try policies on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from mspauto.cli.application import Application, format_option, pass_app

if TYPE_CHECKING:
    from mspauto.lab.fleet import Lab

__all__ = ["lab"]

T = TypeVar("T")

_DIR = click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Lab folder (default: <project>/.state/lab). Holds its inventory, keys and state.",
)


def _lab(app: Application, directory: Path | None) -> Lab:
    from mspauto.lab.fleet import Lab

    return Lab(directory or app.settings.state_dir / "lab")


def _act(app: Application, action: Callable[[], T]) -> T:
    """Run a lab action on a machine that can run the lab; a LabError is one line."""
    from mspauto.lab.system import LabError, check_can_run

    try:
        check_can_run()
        return action()
    except LabError as exc:
        app.abort(str(exc))


@click.group()
def lab() -> None:
    """Real Linux hosts on this machine (namespaces, overlay root, sshd on 127.0.0.N),
    with planted baseline drift, backup states and faults. Needs root."""


@lab.command("up")
@click.option(
    "--hosts",
    "count",
    type=click.IntRange(0, 1000),
    default=12,
    show_default=True,
    help="How many hosts with planted state (compliant and drifted, backups, faults).",
)
@click.option(
    "--stock",
    type=click.IntRange(0, 1000),
    default=0,
    show_default=True,
    help="How many stock hosts to add: Debian minbase with openssh-server, sudo and "
    "python3, nothing planted.",
)
@click.option(
    "--dnf",
    type=click.IntRange(0, 1000),
    default=0,
    show_default=True,
    help="How many dnf hosts to add (named <client>-dnfNN, platform rhel in the "
    "inventory): Debian with dnf 4 and rpm managing a few lab packages, updates "
    "pending in dnf repositories with advisories. Not RHEL.",
)
@click.option(
    "--clients",
    default="acme,globex",
    show_default=True,
    help="Comma-separated client names; hosts are spread over them.",
)
@click.option(
    "--faults/--no-faults",
    default=None,
    help="Make the last three hosts unreachable (sshd down, changed host key, "
    "lab key rejected). Default: on from 6 hosts.",
)
@click.option(
    "--first-address",
    default="127.0.0.10",
    show_default=True,
    help="Address of the first host (the rest follow; all inside 127.0.0.0/8).",
)
@_DIR
@pass_app
def up(
    app: Application,
    count: int,
    stock: int,
    dnf: int,
    clients: str,
    faults: bool | None,
    first_address: str,
    directory: Path | None,
) -> None:
    """Start a lab fleet and write a ready project for it (inventory, key, known_hosts).

    A second run reuses what is there and restarts hosts that stopped."""
    fleet = _lab(app, directory)
    names = [c.strip() for c in clients.split(",") if c.strip()]
    plans = _act(
        app,
        lambda: fleet.up(
            count,
            names,
            faults=count >= 6 if faults is None else faults,
            first_address=first_address,
            stock=stock,
            dnf=dnf,
            say=click.echo,
        ),
    )
    for plan in plans:
        extra = f"  FAULT {plan.fault}" if plan.fault else ""
        kind = "dnf" if plan.platform == "rhel" else plan.baseline
        click.echo(
            f"  {plan.name:<16} {plan.address:<15} {kind:<10} backup {plan.backup or '-'}{extra}"
        )
    click.echo(f"inventory: {fleet.inventory_dir}/   key: {fleet.key}")
    click.echo(
        f"try: ssh -i {fleet.key} -o UserKnownHostsFile="
        f"{fleet.inventory_dir}/known_hosts/{plans[0].client} "
        f"-o StrictHostKeyChecking=yes mspauto@{plans[0].address}"
    )
    click.echo(f"     mspauto --project {fleet.directory} inventory list")


@lab.command("down")
@_DIR
@pass_app
def down(app: Application, directory: Path | None) -> None:
    """Stop every lab process, unmount every lab mount and delete the lab's files."""
    fleet = _lab(app, directory)
    _act(app, lambda: fleet.down(say=click.echo))


@lab.command("status")
@_DIR
@format_option("table", "json")
@pass_app
def status(app: Application, directory: Path | None, output: str) -> None:
    """Show each lab host, what was planted in it, and whether it answers."""
    fleet = _lab(app, directory)
    statuses = fleet.status()
    if output == "json":
        app.print_json([s.as_dict() for s in statuses])
        return
    if not statuses:
        click.echo(f"no lab in {fleet.directory}")
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("HOST", "CLIENT", "ADDRESS", "BASELINE", "BACKUP", "FAULT", "SSHD", "ANSWERS"):
        table.add_column(column)
    for s in statuses:
        table.add_row(
            s.plan.name,
            s.plan.client,
            s.plan.address,
            "dnf" if s.plan.platform == "rhel" else s.plan.baseline,
            s.plan.backup or "-",
            s.plan.fault or "-",
            "running" if s.running else "stopped",
            "yes" if s.answers else "NO",
        )
    app.print_table(table)
    answering = sum(s.answers for s in statuses)
    click.echo(f"{answering}/{len(statuses)} hosts answer")


_FAULTS = {
    "stop": ("stop_host", "stopped sshd on {host}"),
    "start": ("start_host", "started sshd on {host}"),
    "freeze": ("freeze_host", "froze {host}: connections hang until 'mspauto lab fault thaw'"),
    "thaw": ("thaw_host", "thawed {host}"),
    "fill-disk": ("fill_disk", "filled the disk of {host}"),
    "free-disk": ("free_disk", "freed the disk of {host}"),
}


@lab.command("fault")
@click.argument("action", type=click.Choice(list(_FAULTS)))
@click.argument("host")
@_DIR
@pass_app
def fault(app: Application, action: str, host: str, directory: Path | None) -> None:
    """Break (or mend) one lab host: stop/start its sshd, freeze/thaw all its processes,
    fill-disk/free-disk."""
    method, done = _FAULTS[action]
    fleet = _lab(app, directory)
    _act(app, lambda: getattr(fleet, method)(host))
    click.echo(done.format(host=host))
