"""``mspauto keys``: the MSP's evidence signing key, and workers' keys it vouches for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from mspauto.cli.application import Application, pass_app

__all__ = ["keys"]

SECRET_KEY_COMMENT = "mspauto evidence signing key"


@click.group()
def keys() -> None:
    """The MSP's evidence signing key.

    One Ed25519 key, in minisign's format, signs evidence checkpoints and monthly
    reports; auditors verify reports offline with 'minisign -V' and the .pub file.
    Its location is $MSPAUTO_SIGNING_KEY (default: .state/keys/evidence.key)."""


@keys.command("init")
@pass_app
def init(app: Application) -> None:
    """Create the signing key (never replaces one that exists).

    Prints the public key file and its fingerprint; exits 1 if a key is there already."""
    from mspauto.signing import SigningError, generate_key

    settings = app.settings
    try:
        public_key = generate_key(
            settings.signing_key, settings.public_key, comment=SECRET_KEY_COMMENT
        )
    except SigningError as exc:
        app.abort(str(exc))
    click.echo(f"public key: {settings.public_key}")
    click.echo(f"fingerprint: {public_key.fingerprint()}")
    click.echo(
        f"keep the secret key {settings.signing_key} off the evidence database's disk and "
        "out of its backups; give the .pub file to auditors"
    )


@keys.command("show")
@pass_app
def show(app: Application) -> None:
    """Print the public key file (what auditors get) and its fingerprint.

    Exits 1 if there is no key yet."""
    from mspauto.signing import PublicKey, SigningError

    settings = app.settings
    if not settings.public_key.exists():
        if settings.signing_key.exists():
            app.abort(
                f"the public key {settings.public_key} is missing; recreate it with "
                f"'minisign -R -s {settings.signing_key} -p {settings.public_key}'"
            )
        app.abort(f"no signing key at {settings.signing_key}; create one with 'mspauto keys init'")
    try:
        public_key = PublicKey.load(settings.public_key)
    except SigningError as exc:
        app.abort(str(exc))
    click.echo(public_key.to_text(), nl=False)
    click.echo(f"fingerprint: {public_key.fingerprint()}")


@keys.command("worker")
@click.argument("name")
@click.option(
    "--client",
    "clients",
    multiple=True,
    required=True,
    metavar="CLIENT",
    help="A client whose evidence the worker may write (repeat for more).",
)
@click.option(
    "--days",
    type=click.IntRange(1, 3650),
    default=90,
    show_default=True,
    help="How long the certificate holds; issue a new one before then.",
)
@click.option(
    "--out",
    "folder",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where to write NAME.key and NAME.cert (default: the state folder's keys/workers).",
)
@pass_app
def worker_key(
    app: Application, name: str, clients: tuple[str, ...], days: int, folder: Path | None
) -> None:
    """Make a key of its own for worker NAME and a certificate, signed with the MSP's
    key, that lets it sign the evidence of the given clients for --days.

    Copy NAME.key, NAME.cert and NAME.msp.pub (the MSP's public key, with which the
    worker checks its certificate and every batch message) to the worker, the key
    staying 0600, and set MSPAUTO_WORKER_KEY to the key there: the worker then needs
    neither the MSP's key nor any other client's. Exits 1 without the MSP's key or if
    NAME.key exists."""
    from mspauto.evidence.worker_keys import (
        certificate_path,
        check_request,
        issue_certificate,
        msp_key_path,
    )
    from mspauto.signing import SigningError, SigningKey, generate_key

    settings = app.settings
    project = app.usable_project()
    unknown = [c for c in clients if c not in project.inventory.clients]
    if unknown:
        app.abort(f"no client named {', '.join(unknown)} in {settings.inventory_dir}")
    folder = folder or settings.state_dir / "keys" / "workers"
    key_path = folder / f"{name}.key"
    try:
        check_request(name, clients)
        msp_key = SigningKey.load(settings.signing_key)
        if certificate_path(key_path).exists():
            raise SigningError(f"{certificate_path(key_path)} already exists")
        not_after = datetime.now(UTC) + timedelta(days=days)
        public = generate_key(
            key_path, key_path.with_name(key_path.name + ".pub"), comment=f"mspauto worker {name}"
        )
        certificate = issue_certificate(msp_key, name, public, clients, not_after)
        certificate_path(key_path).write_text(certificate.note, encoding="utf-8")
        msp_key_path(key_path).write_text(msp_key.public_key.to_text(), encoding="utf-8")
    except SigningError as exc:
        app.abort(str(exc))
    click.echo(f"worker key: {key_path}")
    click.echo(f"certificate: {certificate_path(key_path)}")
    click.echo(f"the MSP's public key: {msp_key_path(key_path)}")
    click.echo(f"fingerprint: {public.fingerprint()}")
    click.echo(f"clients: {', '.join(certificate.clients)}")
    click.echo(f"valid until: {certificate.not_after:%Y-%m-%d %H:%M} UTC")
    click.echo(
        "copy the three files to the worker and set MSPAUTO_WORKER_KEY to the key there; "
        "delete the key here afterwards"
    )
