"""``mspauto keys``: the MSP's evidence signing key."""

from __future__ import annotations

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
