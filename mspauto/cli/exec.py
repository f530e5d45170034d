"""``mspauto exec``: run an ad-hoc command on a client's hosts, recorded as evidence."""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Sequence

import click

from mspauto.cli.application import (
    Application,
    distributed_option,
    forks_option,
    format_option,
    hosts_option,
    pass_app,
    timeout_option,
)

__all__ = ["exec_command"]


class _ExecCommand(click.Command):
    """``exec`` with bad input reported as one ``error:`` line and exit code 1.

    click reports usage errors with exit code 2, which ``exec`` already uses for "some
    hosts failed"; a script must be able to tell a typo from a failed fleet."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            app = ctx.find_object(Application) or Application(None)
            app.abort(f"{exc.format_message()} Try 'mspauto exec --help'.")


def _command_line(argv: Sequence[str], shell: str | None) -> str:
    """The exact string the hosts' shell runs (and the evidence records), or ValueError.

    An argv is quoted word by word, so each word reaches the host as one argument and
    nothing in it is shell syntax; ``--shell`` is the only way to write shell syntax."""
    if shell is not None and argv:
        raise ValueError(
            "give the command either as words after the options or as --shell 'STRING', "
            f"not both (words: {shlex.join(argv)})"
        )
    if shell is not None:
        if not shell.strip():
            raise ValueError("--shell needs a non-empty command")
        return shell
    if not any(word.strip() for word in argv):
        raise ValueError("no command given (e.g. '-- uptime', or --shell 'STRING')")
    if argv[0].startswith("-"):
        # No program is named like this: it is one of our options put after "--" by
        # mistake (say --hosts), and running it would reach every host only to fail there.
        raise ValueError(
            f"the command starts with {argv[0]!r}, which looks like an option: "
            "put mspauto's options before the command (and before --)"
        )
    return shlex.join(argv)


# Options end at the first word that is not one (or at "--"): everything after it is the
# command's, however much it looks like ours. Unknown options before it are errors, so a
# misspelled filter (--host for --hosts) can never widen the run to every host.
@click.command("exec", cls=_ExecCommand, context_settings={"allow_interspersed_args": False})
@click.option("--client", "client_name", required=True, help="The client whose hosts run it.")
@hosts_option()
@click.option("--tags", multiple=True, metavar="TAG", help="Only hosts with this tag (repeatable).")
@click.option(
    "--sudo",
    is_flag=True,
    help="Run through sudo (the credential's become password, if any, is sent on stdin).",
)
@timeout_option(60.0)
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
@forks_option()
@click.option(
    "--via",
    type=click.Choice(["direct", "ansible"]),
    default="direct",
    show_default=True,
    help="direct: each host by its connection (SSH, WinRM, local); ansible: one "
    "ansible-runner run for all (SSH) hosts, through the shell module.",
)
@click.option(
    "--shell",
    "shell",
    metavar="STRING",
    help="Run STRING as written by the host's shell (pipes, ;, &&, globs), instead of "
    "a COMMAND given as words.",
)
@distributed_option()
@format_option("text", "json")
@click.argument("command", nargs=-1, metavar="[--] [COMMAND [ARG]...]")
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
    shell: str | None,
    distributed: bool,
    output: str,
    command: tuple[str, ...],
) -> None:
    """Run an ad-hoc COMMAND on a client's hosts and record it as evidence.

    Options end at the first word that is not an option (or at --): the rest is the
    command, each word passed to the host as exactly one argument (no shell syntax).
    For pipes, ; or && give one string to --shell instead.

    \b
    Examples:
      mspauto exec --client acme --hosts 'web*' -- uptime
      mspauto exec --client acme -- ls -l '/srv/shared files'
      mspauto exec --client acme --sudo --shell 'apt-get -qq update && apt-get -qy upgrade'

    Exits 0 when every host succeeded, 2 when some did not, 1 on bad input."""
    from mspauto.engine import EngineError, RunSpec, run_command
    from mspauto.engine.progress import SilentProgress, progress_for
    from mspauto.transport import transport_for

    try:
        line = _command_line(command, shell)
    except ValueError as exc:
        app.abort(str(exc))
    project = app.usable_project()
    client, hosts = app.client_hosts(project, client_name, patterns, tags)
    spec = RunSpec(
        client=client,
        hosts=hosts,
        command=line,
        sudo=sudo,
        timeout=timeout,
        retries=retries,
        forks=forks,
    )
    job = {
        "kind": "exec",
        "command": line,
        "sudo": sudo,
        "timeout": timeout,
        "retries": retries,
        "forks": forks,
        "via": via,
        "connect_timeout": connect_timeout,
    }
    execute = app.executor(project, job, distributed) or run_command
    started = time.monotonic()
    with app.evidence_store(writable=True) as store:
        try:
            outcome = execute(
                spec,
                transport_for(
                    client,
                    project.settings.root,
                    via="ansible" if via == "ansible" else "direct",
                    connect_timeout=connect_timeout,
                    forks=forks,
                ),
                store,
                SilentProgress() if output == "json" else progress_for(),
                None,
            )
        except EngineError as exc:
            app.abort(str(exc))
    elapsed = time.monotonic() - started
    if output == "json":
        app.print_json(outcome.as_dict())
    else:
        width = max(len(r.host) for r in outcome.results)
        for result in outcome.results:
            status = click.style(result.summary(), fg="green" if result.ok else "red")
            click.echo(f"{result.host:<{width}}  {status}")
            for line in result.stdout.rstrip("\n").splitlines()[:20]:
                click.echo(f"{'':<{width}}  | {line}")
        summary = ", ".join(f"{n} {k}" for k, n in outcome.counts().items())
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
