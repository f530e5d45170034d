"""The application object every command receives through ``ctx.obj``."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

if TYPE_CHECKING:
    from rich.table import Table

    from mspauto.config import Settings
    from mspauto.engine import Executor
    from mspauto.evidence.checkpoints import Notary
    from mspauto.evidence.records import RunStatus
    from mspauto.evidence.store import EvidenceStore
    from mspauto.evidence.worker_keys import WorkerSigner
    from mspauto.inventory.resolve import Client, Host
    from mspauto.project import Project

__all__ = [
    "Application",
    "distributed_option",
    "exit_if_stopped",
    "forks_option",
    "format_option",
    "hosts_option",
    "pass_app",
    "say_evidence_errors",
    "timeout_option",
]

FC = TypeVar("FC", bound=Callable[..., Any])


class Application:
    """Shared state of one CLI invocation: settings, the loaded project, output helpers."""

    def __init__(self, project_dir: Path | None) -> None:
        self._project_dir = project_dir

    @cached_property
    def settings(self) -> Settings:
        """Project locations (from ``--project``, ``$MSPAUTO_PROJECT`` or the cwd)."""
        from mspauto.config import Settings

        return Settings.load(self._project_dir)

    def load_project(self, today: date | None = None) -> Project:
        """The loaded project, problems included (see :meth:`usable_project`)."""
        from mspauto.project import load_project

        return load_project(self.settings, today=today)

    def usable_project(self) -> Project:
        """The project, or abort listing its errors: commands never act on broken files."""
        project = self.load_project()
        if project.errors:
            for problem in project.errors:
                click.echo(str(problem), err=True)
            count = len(project.errors)
            self.abort(
                f"{count} error{'s' if count != 1 else ''} in the project files; "
                "fix them first ('mspauto validate' lists them)"
            )
        return project

    def client_hosts(
        self,
        project: Project,
        client_name: str,
        patterns: Sequence[str] = (),
        tags: Sequence[str] = (),
    ) -> tuple[Client, list[Host]]:
        """A client and its hosts matching name patterns and tags, or abort in one line."""
        from fnmatch import fnmatchcase

        client = project.inventory.clients.get(client_name)
        if client is None:
            known = ", ".join(project.inventory.clients) or "none"
            self.abort(f"unknown client '{client_name}' (clients: {known})")
        hosts = [
            host
            for host in client.hosts.values()
            if (not patterns or any(fnmatchcase(host.name, p) for p in patterns))
            and (not tags or host.tags.intersection(tags))
        ]
        if not hosts:
            self.abort(f"no host of {client_name} matches the selection")
        return client, hosts

    @contextmanager
    def evidence_store(
        self,
        *,
        writable: bool = False,
        upgrade_legacy: bool = False,
        batch_signer: WorkerSigner | None = None,
    ) -> Iterator[EvidenceStore]:
        """The project's evidence store, closed afterwards. Readers of a store nothing
        was written to yet get an empty one in memory, so they simply find nothing; a
        store that cannot be opened is one line.

        A writer signs with the MSP's key when there is one (each run then checkpoints
        the chains it wrote); it says in one line what it upgraded or found amiss, and
        afterwards what it left unsigned and why. Only ``upgrade_legacy`` (``evidence
        upgrade``) takes in a store of release 0.1. A worker with a key of its own
        (``batch_signer``) signs with that instead."""
        from mspauto.evidence.store import EvidenceError, EvidenceStore, NoEvidenceYet

        notary = self._notary() if writable and batch_signer is None else None
        try:
            store = EvidenceStore(
                self.settings.evidence_url,
                writable=writable,
                notary=notary,
                upgrade_legacy=upgrade_legacy,
                batch_signer=batch_signer,
            )
        except NoEvidenceYet:
            store = EvidenceStore("sqlite://")
        except EvidenceError as exc:
            self.abort(str(exc))
        try:
            if writable:
                self._after_opening(store)
            yield store
            if writable:
                self._report_signing(store)
        finally:
            store.close()

    def _notary(self) -> Notary | None:
        """The signer of checkpoints, if the MSP has made its key (``keys init``), with
        the witness and the copies of it the settings name (a wrong one is one line)."""
        from mspauto.evidence.checkpoints import Notary, Witness
        from mspauto.evidence.copies import WitnessSettingError, witness_copies
        from mspauto.signing import SigningError, SigningKey

        settings = self.settings
        try:
            copies = witness_copies(
                settings.witness_webhook,
                settings.witness_webhook_token_file,
                settings.witness_syslog,
            )
        except WitnessSettingError as exc:
            self.abort(str(exc))
        if not settings.signing_key.exists():
            return None
        try:
            key = SigningKey.load(settings.signing_key)
        except SigningError as exc:
            self.abort(str(exc))
        return Notary(key, Witness(settings.witness_dir, copies))

    def _after_opening(self, store: EvidenceStore) -> None:
        """Say in one line what opening for writing changed or found amiss; make the
        witness log if nothing was ever signed (else a missing log is an error)."""
        from mspauto.evidence.schema import STORE_CHAIN

        witness = store.notary.witness if store.notary is not None else None
        if witness is not None and not witness.exists():
            if store.anything_signed():
                self.abort(
                    f"no witness log at {witness.path}, but the store holds signed evidence: "
                    "is the witness folder mounted? (set MSPAUTO_WITNESS_DIR to it)"
                )
            try:
                witness.create()
            except OSError as exc:
                self.abort(f"cannot create the witness log {witness.path}: {exc.strerror or exc}")

        if store.guards_restored:
            click.echo(
                f"warning: the evidence guards {', '.join(store.guards_restored)} were "
                "missing; that is now recorded as evidence and they are restored",
                err=True,
            )
            if store.notary is not None:
                store.checkpoint(STORE_CHAIN)  # signs only the record this process wrote
        upgrade = store.upgrade
        if upgrade is not None and upgrade.existing:
            click.echo(
                f"note: upgraded the evidence store from schema {upgrade.before} to "
                f"{upgrade.after}; every record and hash is kept",
                err=True,
            )

    def _report_signing(self, store: EvidenceStore) -> None:
        """One line per chain a writer left unsigned or unwitnessed, and why."""
        if store.notary is None:
            if store.wrote_records:
                click.echo(
                    "warning: evidence is not signed: no signing key at "
                    f"{self.settings.signing_key} (run 'mspauto keys init')",
                    err=True,
                )
            return
        for outcome in store.checkpoint_outcomes:
            problem = outcome.warning or (None if outcome.nothing_new else outcome.skipped)
            if problem:
                click.echo(f"warning: {outcome.chain}: {problem}", err=True)

    def executor(
        self,
        project: Project,
        job: Mapping[str, Any],
        distributed: bool,
        *,
        check_broker: bool = True,
    ) -> Executor | None:
        """Who carries out a run: workers when asked (``--distributed`` or the setting),
        else None (this process). A missing broker or shared store is one line."""
        if not (distributed or self.settings.distributed):
            return None
        from mspauto.distributed.dispatch import DistributedExecutor
        from mspauto.engine import EngineError

        try:
            return DistributedExecutor(self.settings, project, job, check_broker=check_broker)
        except EngineError as exc:
            self.abort(str(exc))

    def dispatcher(
        self, project: Project, distributed: bool
    ) -> Callable[[Mapping[str, Any]], Executor] | None:
        """For commands made of several runs (``patch``): who carries out each, given
        its job; None: this process. Checked at once (a missing broker is one line)."""
        if not (distributed or self.settings.distributed):
            return None
        self.executor(project, {}, distributed)

        def dispatch(job: Mapping[str, Any]) -> Executor:
            # Checked above: a broker lost later must not stop a rollout half-way (its
            # hosts are recorded as not run, and the rollout goes on from there).
            executor = self.executor(project, job, distributed, check_broker=False)
            assert executor is not None
            return executor

        return dispatch

    def abort(self, message: str, code: int = 1) -> NoReturn:
        """Stop with one clear line on stderr."""
        click.echo(f"error: {message}", err=True)
        raise click.exceptions.Exit(code)

    def write_file(self, path: Path, text: str) -> None:
        """Write a file the user asked for; a failure is one line, not a traceback."""
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            self.abort(f"cannot write {path}: {exc.strerror or exc}")

    def print_table(self, table: Table) -> None:
        """A rich table on a terminal; wide unwrapped lines when piped (for grep/awk)."""
        import sys

        from rich.console import Console

        width = None if sys.stdout.isatty() else 250
        Console(width=width, soft_wrap=False).print(table)

    def print_json(self, data: Any) -> None:
        """Machine-readable output for ``--format json``."""
        click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


pass_app = click.make_pass_decorator(Application)


def say_evidence_errors(errors: Iterable[str | None]) -> bool:
    """Say each error of the evidence store on stderr; True when there was one."""
    said = False
    for error in filter(None, errors):
        click.echo(
            f"error: the evidence store could not record this run completely ({error}); "
            "the results above are what happened",
            err=True,
        )
        said = True
    return said


def exit_if_stopped(statuses: Iterable[RunStatus], consequence: str) -> None:
    """Exit 130 when one of the command's runs was stopped: at once (a second Ctrl-C),
    or on request, saying ``consequence`` (what the stop means for this command)."""
    from mspauto.evidence.records import RunStatus

    ended = set(statuses)
    if RunStatus.ABORTED in ended:
        click.echo("stopped at once: hosts that were running have an unknown outcome", err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)  # commands still running in worker threads would keep us alive
    if RunStatus.INTERRUPTED in ended:
        click.echo(f"stopped: {consequence}", err=True)
        sys.exit(130)


def hosts_option() -> Callable[[FC], FC]:
    """``--hosts PATTERN`` (repeatable): only hosts whose name matches."""
    return click.option(
        "--hosts",
        "patterns",
        multiple=True,
        metavar="PATTERN",
        help="Only hosts whose name matches (shell pattern; repeatable).",
    )


def timeout_option(default: float, what: str = "the command") -> Callable[[FC], FC]:
    """``--timeout SECONDS`` per host."""
    return click.option(
        "--timeout",
        type=click.FloatRange(0.1),
        default=default,
        show_default=True,
        help=f"Seconds {what} may take on each host.",
    )


def forks_option() -> Callable[[FC], FC]:
    """``--forks N``: hosts worked on at once."""
    return click.option(
        "--forks",
        type=click.IntRange(1, 1000),
        default=50,
        show_default=True,
        help="Hosts worked on at once (the client's max_parallel caps it further).",
    )


def distributed_option() -> Callable[[FC], FC]:
    """``--distributed``: the run's hosts go in batches to the workers."""
    return click.option(
        "--distributed",
        is_flag=True,
        help="Send the hosts in batches to the workers ('mspauto worker') through the "
        "broker (MSPAUTO_BROKER_URL); MSPAUTO_DISTRIBUTED=1 makes it the default.",
    )


def format_option(*choices: str) -> Callable[[FC], FC]:
    """``--format`` for commands that show results; the first choice is the default."""
    return click.option(
        "--format",
        "output",
        type=click.Choice(choices),
        default=choices[0],
        show_default=True,
        help="Output format (json is for scripts).",
    )
