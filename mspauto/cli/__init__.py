"""The ``mspauto`` command line: a thin layer over the Python API.

Subcommand modules are imported only when their command runs (or when ``--help``
lists them), and they import the heavy libraries inside the command bodies, so
``mspauto --help`` starts instantly.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import click

from mspauto import __version__
from mspauto.cli.application import Application

__all__ = ["cli", "main"]

# command name -> "module:attribute", imported on first use.
_COMMANDS = {
    "validate": "mspauto.cli.validate:validate",
    "inventory": "mspauto.cli.inventory:inventory",
    "policy": "mspauto.cli.policy:policy",
    "lab": "mspauto.cli.lab:lab",
    "exec": "mspauto.cli.exec:exec_command",
    "runs": "mspauto.cli.runs:runs",
    "evidence": "mspauto.cli.evidence:evidence",
    "hosts": "mspauto.cli.hosts:hosts",
    "baseline": "mspauto.cli.baseline:baseline",
    "patch": "mspauto.cli.patch:patch",
    "backups": "mspauto.cli.backups:backups",
    "keys": "mspauto.cli.keys:keys",
    "report": "mspauto.cli.report:report",
    "scheduler": "mspauto.cli.scheduler:scheduler",
    "worker": "mspauto.cli.worker:worker",
    "workers": "mspauto.cli.workers:workers",
}


class LazyGroup(click.Group):
    """A click group whose subcommands live in modules imported on demand."""

    def __init__(self, *args: object, lazy: dict[str, str], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self._lazy:
            module_name, attribute = self._lazy[cmd_name].split(":")
            command = getattr(importlib.import_module(module_name), attribute)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, cmd_name)


@click.group(
    cls=LazyGroup, lazy=_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.version_option(__version__, prog_name="mspauto")
@click.option(
    "--project",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="MSPAUTO_PROJECT",
    help="Project folder holding inventory/ and policies/ (default: current folder).",
)
@click.pass_context
def cli(ctx: click.Context, project: Path | None) -> None:
    """Maintenance automation for managed service providers.

    Describe clients and their hosts under inventory/, what must be maintained under
    policies/, and mspauto checks, plans and runs it, leaving evidence for each
    client's monthly report. Start with 'mspauto validate'.
    """
    ctx.obj = Application(project)


def main() -> None:
    """Console-script entry point: user errors exit with one line, never a traceback."""
    try:
        cli.main(prog_name="mspauto", standalone_mode=True)
    except KeyboardInterrupt:  # pragma: no cover - interactive
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("MSPAUTO_DEBUG"):
            raise
        from mspauto.engine.run import EngineError

        if isinstance(exc, EngineError):  # what the user can fix, said in one line
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        click.echo(
            f"internal error: {type(exc).__name__}: {exc} "
            "(this is a bug; rerun with MSPAUTO_DEBUG=1 for the traceback and report it)",
            err=True,
        )
        sys.exit(70)
