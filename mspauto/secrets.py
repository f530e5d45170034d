"""Resolving secret references at the moment a connection needs them.

A :class:`~mspauto.fields.SecretRef` names where a secret lives; this module fetches it
into memory for the one connection that needs it. Secrets are never written to disk,
logged, put in evidence or passed on a command line. Errors name the reference, never
the value.
"""

from __future__ import annotations

import os
from pathlib import Path

from mspauto.fields import SecretRef

__all__ = ["SecretError", "resolve_secret", "secret_file", "secret_path"]


class SecretError(Exception):
    """A secret could not be fetched; the message says which reference and why."""


def secret_path(ref: SecretRef, project_root: Path) -> Path | None:
    """The file a ``file:`` reference points at (relative to the project), else ``None``."""
    return _in_project(ref.file, project_root) if ref.file is not None else None


def secret_file(ref: SecretRef, project_root: Path) -> Path | None:
    """The file a ``file:`` or ``vault:`` reference makes the control node read, else
    ``None`` (``env:`` and ``keyring:`` name no file)."""
    written = ref.file or ref.vault
    return _in_project(written, project_root) if written is not None else None


def _in_project(written: Path, project_root: Path) -> Path:
    """A path as written in a reference: ``~`` expanded, else relative to the project."""
    path = written.expanduser()
    return path if path.is_absolute() else project_root / path


def resolve_secret(ref: SecretRef, project_root: Path) -> str:
    """The secret's value (for ``file:``, the file's text without the final newline)."""
    if ref.env is not None:
        value = os.environ.get(ref.env)
        if value is None:
            raise SecretError(f"environment variable {ref.env} is not set on this control node")
        return value
    if ref.file is not None:
        path = secret_path(ref, project_root)
        assert path is not None
        try:
            return path.read_text().rstrip("\n")
        except OSError as exc:
            raise SecretError(f"cannot read secret file {path}: {exc.strerror}") from None
    if ref.vault is not None:
        return _from_vault(ref, project_root)
    assert ref.keyring is not None
    return _from_keyring(ref.keyring)


def _from_vault(ref: SecretRef, project_root: Path) -> str:
    """Decrypt an ansible-vault file with the password file in $MSPAUTO_VAULT_PASSWORD_FILE."""
    import yaml
    from ansible.parsing.vault import VaultLib, VaultSecret

    assert ref.vault is not None
    password_file = os.environ.get("MSPAUTO_VAULT_PASSWORD_FILE")
    if not password_file:
        raise SecretError(
            f"{ref.describe()} needs MSPAUTO_VAULT_PASSWORD_FILE (the vault password file)"
        )
    vault_path = _in_project(ref.vault, project_root)
    try:
        password = Path(password_file).read_bytes().strip()
        ciphertext = vault_path.read_bytes()
    except OSError as exc:
        raise SecretError(f"{ref.describe()}: {exc.filename}: {exc.strerror}") from None
    try:
        plaintext: bytes = VaultLib([("default", VaultSecret(password))]).decrypt(ciphertext)
    except Exception as exc:  # ansible raises its own AnsibleError subclasses
        raise SecretError(f"{ref.describe()}: cannot decrypt ({type(exc).__name__})") from None
    if ref.vault_key is None:
        return plaintext.decode().rstrip("\n")
    data = yaml.safe_load(plaintext)
    if not isinstance(data, dict) or ref.vault_key not in data:
        raise SecretError(f"{ref.describe()}: the vault has no key '{ref.vault_key}'")
    return str(data[ref.vault_key])


def _from_keyring(entry: str) -> str:
    try:
        import keyring
    except ImportError:
        raise SecretError(
            f"keyring:{entry} needs the 'keyring' package on the control node (pip install keyring)"
        ) from None
    service, _, username = entry.partition("/")
    value = keyring.get_password(service, username)
    if value is None:
        raise SecretError(f"keyring:{entry} has no password in the OS keyring")
    return str(value)
