"""``mspauto evidence``: prove recorded evidence intact, sign it, upgrade its store."""

from __future__ import annotations

from pathlib import Path

import click

from mspauto.cli.application import Application, format_option, pass_app

__all__ = ["evidence"]


@click.group()
def evidence() -> None:
    """Prove recorded evidence intact, sign it, upgrade its store."""


@evidence.command("verify")
@click.option("--client", "client_name", metavar="CLIENT", help="Only this client's chain.")
@click.option(
    "--public-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The MSP's public key (default: the project's, beside its signing key).",
)
@click.option(
    "--witness",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of the witness log (default: the project's witness folder).",
)
@click.option(
    "--no-witness",
    is_flag=True,
    help="Verify without a witness log: then a rollback to an older copy goes unnoticed.",
)
@format_option("text", "json")
@pass_app
def verify(
    app: Application,
    client_name: str | None,
    public_key: Path | None,
    witness: Path | None,
    no_witness: bool,
    output: str,
) -> None:
    """Prove the evidence intact with nothing but the MSP's public key.

    Recomputes every hash chain and its Merkle roots, checks every signed checkpoint
    and the witness log, and names each record edited, deleted, reordered, forged or
    cut off, and each chain rolled back or missing. Exits 0 only when all of it holds;
    1 when anything is wrong or cannot be proven (no public key, no witness log,
    guards missing)."""
    from mspauto.evidence.checkpoints import Witness
    from mspauto.signing import PublicKey, SigningError

    if witness is not None and no_witness:
        app.abort("give --witness DIR or --no-witness, not both")
    key_path = public_key or app.settings.public_key
    key = None
    if key_path.exists() or public_key is not None:
        try:
            key = PublicKey.load(key_path)
        except SigningError as exc:
            app.abort(str(exc))
    log = None if no_witness else Witness(witness or app.settings.witness_dir)
    with app.evidence_store() as store:
        chains = store.chains()
        if not chains:
            app.abort(f"no evidence to verify in {app.settings.evidence_url}")
        if client_name is not None and client_name not in chains:
            app.abort(f"no evidence chain for client '{client_name}'")
        result = store.verify([client_name] if client_name else None, key=key, witness=log)
        unguarded = store.guards_missing()
    problems = [str(problem) for problem in result.problems]
    if unguarded:
        problems.append(
            f"the guards {', '.join(unguarded)} are missing or disabled: the database no "
            "longer refuses changes to history (the next run records this and restores them)"
        )
    if key is None:
        problems.append(
            f"no public key at {key_path}: signatures not checked, so forged or rolled-back "
            "evidence would go unnoticed (give --public-key, or run 'mspauto keys init')"
        )
    if output == "json":
        app.print_json(
            {
                "intact": not problems,
                "records": result.checked,
                "checkpoints": result.checkpoints,
                "public_key": str(key_path) if key else None,
                "witness": str(log.path) if log else None,
                "problems": problems,
                "warnings": result.warnings,
            }
        )
    else:
        for line in problems:
            click.echo(line, err=True)
        for line in result.warnings:
            click.echo(f"warning: {line}", err=True)
    if problems:
        if output == "json":
            raise click.exceptions.Exit(1)
        app.abort(
            f"evidence is NOT proven intact: {len(problems)} problems in {result.checked} records"
        )
    if output != "json":
        witnessed = "and the witness log" if log else "(no witness log checked)"
        click.echo(
            f"evidence intact: {result.checked} records verified against "
            f"{result.checkpoints} checkpoints signed by {key.fingerprint() if key else '?'} "
            f"{witnessed}"
        )


@evidence.command("checkpoint")
@click.option("--client", "client_name", metavar="CLIENT", help="Only this client's chain.")
@pass_app
def checkpoint(app: Application, client_name: str | None) -> None:
    """Sign a checkpoint of each chain now, after you reviewed its unsigned records.

    A run signs only the records it wrote itself. Records left unsigned (a run cut
    short by a crash, or anything written to the database by other means) stay so until
    a person runs this; 'mspauto runs list' and 'evidence verify' show what they are."""
    from mspauto.evidence.store import EvidenceError

    with app.evidence_store(writable=True) as store:
        if store.notary is None:
            app.abort(f"no signing key at {app.settings.signing_key} (run 'mspauto keys init')")
        chains = [client_name] if client_name else store.chains()
        if client_name is not None and client_name not in store.chains():
            app.abort(f"no evidence chain for client '{client_name}'")
        for chain in chains:
            try:
                outcome = store.checkpoint(chain, adopt=True)
            except EvidenceError as exc:
                app.abort(str(exc))
            if outcome.checkpoint is not None:
                click.echo(f"{chain}: signed a checkpoint at #{outcome.checkpoint.size}")
            else:
                click.echo(f"{chain}: {outcome.skipped}")


@evidence.command("upgrade")
@pass_app
def upgrade(app: Application) -> None:
    """Bring the evidence store to this release's schema, keeping every record.

    Existing chains get their first signed checkpoint when a signing key exists. Every
    command that writes evidence does this on first use too; this command does only
    that, so it can be run (and its result seen) before the first scheduled run."""
    with app.evidence_store(writable=True) as store:
        assert store.upgrade is not None
        if not store.upgrade.changed:
            click.echo(f"the evidence store is at schema {store.upgrade.after} already")
        elif store.upgrade.before is None:
            click.echo(f"created an evidence store at schema {store.upgrade.after}")
        if store.notary is None and store.chains():
            click.echo(
                f"warning: no signing key at {app.settings.signing_key}: run "
                "'mspauto keys init', then 'mspauto evidence checkpoint'",
                err=True,
            )
