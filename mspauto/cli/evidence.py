"""``mspauto evidence``: prove recorded evidence intact, sign it, upgrade its store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mspauto.cli.application import Application, format_option, pass_app
from mspauto.problems import one_line

if TYPE_CHECKING:
    from mspauto.evidence.store import CheckpointOutcome, EvidenceStore

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
        result = store.verify(
            [client_name] if client_name else None,
            key=key,
            witness=log,
            must_exist=witness is not None,
        )
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
                "witness": str(log.path) if log and result.witness_checked else None,
                "problems": problems,
                "warnings": result.warnings,
            }
        )
    else:
        # Record fields are the attacker's text: one problem stays one printed line.
        for line in problems:
            click.echo(one_line(line), err=True)
        for line in result.warnings:
            click.echo(f"warning: {one_line(line)}", err=True)
    if problems:
        if output == "json":
            raise click.exceptions.Exit(1)
        app.abort(
            f"evidence is NOT proven intact: {len(problems)} problems in {result.checked} records"
        )
    if output != "json":
        witnessed = "and the witness log" if result.witness_checked else "(no witness log)"
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

    A run signs the records it wrote and those other runs of a key holder wrote (each
    append is signed by its writer). Records written to the database any other way stay
    unsigned until a person runs this; 'mspauto runs list' and 'evidence verify' show
    what they are. Exits 1 if a chain could not be signed."""
    with app.evidence_store(writable=True) as store:
        if store.notary is None:
            app.abort(f"no signing key at {app.settings.signing_key} (run 'mspauto keys init')")
        chains = store.chains()
        if client_name is not None and client_name not in chains:
            app.abort(f"no evidence chain for client '{client_name}'")
        failed = 0
        for chain in [client_name] if client_name else chains:
            failed += not _sign(chain, lambda c: store.checkpoint(c, adopt=True))
        failed += not _rewitness(store, [client_name] if client_name else chains)
    if failed:
        app.abort(f"{failed} chains could not be signed")


def _sign(chain: str, sign: Callable[[str], CheckpointOutcome]) -> bool:
    """Sign one chain and say what happened in one line; False when it failed."""
    from mspauto.evidence.store import EvidenceError
    from mspauto.signing import SigningError

    try:
        outcome = sign(chain)
    except (EvidenceError, SigningError) as exc:
        click.echo(f"{chain!r}: not signed: {exc}", err=True)
        return False
    if outcome.checkpoint is not None:
        click.echo(f"{chain}: signed a checkpoint at #{outcome.checkpoint.size}")
    else:
        click.echo(f"{chain}: {outcome.skipped}")
    if outcome.warning:
        click.echo(f"warning: {chain}: {outcome.warning}", err=True)
    return outcome.checkpoint is not None or outcome.nothing_new


def _rewitness(store: EvidenceStore, chains: list[str]) -> bool:
    """Hand the witness each chain's newest checkpoint it lacks (a write that failed,
    or a log that was cut); False if that failed too."""
    from mspauto.evidence.checkpoints import witnessed_sizes

    notary = store.notary
    if notary is None or notary.witness is None:
        return True
    key = notary.key.public_key
    witnessed = witnessed_sizes(notary.witness, key)
    for chain in chains:
        latest = store.latest_checkpoint(chain, key)
        if latest is None or witnessed.get(chain, 0) >= latest.size:
            continue
        try:
            notary.witness.append(latest)
        except OSError as exc:
            click.echo(
                f"{chain}: cannot write {notary.witness.path}: {exc.strerror or exc}", err=True
            )
            return False
        click.echo(f"{chain}: the witness log now holds the checkpoint at #{latest.size}")
    return True


@evidence.command("upgrade")
@pass_app
def upgrade(app: Application) -> None:
    """Bring a store of an older release to this release's schema, keeping every
    record, and sign the records written before signing existed.

    Only this command takes in a store of release 0.1 (others refuse it in one line),
    because signing its records is vouching for them: run it with the signing key and
    the real witness folder in place. It signs each chain only if the witness log does
    not know it (a store made to look old by dropping tables is refused). Safe to run
    again: chains signed already are only handed to the witness if it lacks them."""
    from mspauto.evidence.checkpoints import witnessed_sizes
    from mspauto.evidence.migrate import FIRST_REVISION
    from mspauto.signing import SigningError

    if not app.settings.signing_key.exists():
        app.abort(
            f"no signing key at {app.settings.signing_key}: run 'mspauto keys init' first "
            "(the upgrade signs the records from before)"
        )
    with app.evidence_store(writable=True, upgrade_legacy=True) as store:
        assert store.upgrade is not None and store.notary is not None
        notary = store.notary
        if not store.upgrade.changed:
            click.echo(f"the evidence store is at schema {store.upgrade.after} already")
        elif store.upgrade.before is None:
            click.echo(f"created an evidence store at schema {store.upgrade.after}")
        failed = 0
        if store.upgrade.before == FIRST_REVISION:
            key = notary.key.public_key
            try:
                witnessed = witnessed_sizes(notary.witness, key) if notary.witness else {}
            except SigningError as exc:
                app.abort(f"cannot read the witness log, so nothing is signed: {exc}")
            for chain in store.chains():
                if chain in witnessed:
                    click.echo(
                        f"{chain}: not signed: the witness log holds checkpoints of it but "
                        "the store has none; the store was tampered with (run 'mspauto "
                        "evidence verify')",
                        err=True,
                    )
                    failed += 1
                    continue
                failed += not _sign(chain, lambda c: store.checkpoint(c, legacy=True))
        failed += not _rewitness(store, store.chains())
    if failed:
        app.abort(f"{failed} chains could not be signed")
