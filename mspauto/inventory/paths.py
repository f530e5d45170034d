"""Files a client's inventory makes the control node read for it: its ``known_hosts``,
and the file behind every ``file:`` or ``vault:`` secret of its credentials.

Each must resolve (links followed) inside the project and must not be another client's:
a client's folder (``inventory/<name>/``), its file (``inventory/<name>.yaml``), its
known_hosts, or a file named for it (``keys/<name>.<field>``, ``keys/<name>_ed25519``).
Otherwise one client's inventory, edited by its tech or imported from the client, could
name any file the control node's user can read (``/etc/shadow``,
``~/.ssh/id_ed25519``) or another client's key or vault, and mspauto would read it and
send it to that client's hosts as a password or a key; or a client could trust (and
``hosts trust`` write into) another client's host keys.

There is no setting for a folder outside the project where such files may live: keep
them inside it (``keys/``, kept out of version control), or reference secrets as
``env:``, ``vault:`` or ``keyring:``.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mspauto.inventory.resolve import Client, Inventory
from mspauto.problems import Problem, Severity, format_key_path
from mspauto.projectfiles import ProjectTree, real_path
from mspauto.secrets import secret_file

__all__ = ["SECRET_FIELDS", "client_path_problems"]

SECRET_FIELDS = ("password", "private_key", "key_passphrase", "become_password")
"""The secret references of a credential, in the order they are checked."""


@dataclass(frozen=True)
class _Owned:
    """A path that belongs to one client."""

    client: str
    path: Path
    """Everything under it is the client's."""
    what: str


def client_path_problems(
    tree: ProjectTree,
    inventory_dir: Path,
    inventory: Inventory,
    broken_clients: Iterable[str] = (),
) -> Iterator[Problem]:
    """One problem per path a client names outside the project or inside another
    client's files; a known_hosts that is a folder or a loop; a warning for a
    known_hosts an SSH host needs that does not exist yet."""
    owners = _owners(tree, inventory_dir, sorted(set(inventory.clients) | set(broken_clients)))
    first_known_hosts: dict[Path, Client] = {}
    for client in inventory.clients.values():
        default = tree.show(inventory_dir / "known_hosts" / client.name)
        yield from _known_hosts_problems(tree, client, owners, first_known_hosts, default)
        for credential_name, credential in client.credentials.items():
            for field in SECRET_FIELDS:
                ref = getattr(credential, field)
                path = secret_file(ref, tree.root) if ref is not None else None
                if path is None:
                    continue
                source = "file" if ref.file is not None else "vault"
                key = ("client", "credentials", credential_name, field, source)
                what, example = (
                    ("key", f"keys/{client.name}_ed25519")
                    if field == "private_key"
                    else ("secret file", f"keys/{client.name}.{field}")
                )
                message = _placement(
                    tree,
                    path,
                    owners,
                    client.name,
                    what,
                    f"e.g. {example}, kept out of version control; or use env:, vault: or keyring:",
                )
                if message:
                    yield Problem(client.doc.location(key), format_key_path(key), message)


class _Owners:
    """Which client each path belongs to: a path inside an owned folder is its client's,
    and so is a path named for a client (see :meth:`_named_for`)."""

    def __init__(self, root: Path, names: Iterable[str]) -> None:
        self._root = real_path(root)
        self._by_path: dict[Path, list[_Owned]] = {}
        # Longest first: keys/acme_east.password is acme_east's, not acme's.
        self._names = sorted(names, key=len, reverse=True)

    def add(self, owned: _Owned) -> None:
        self._by_path.setdefault(owned.path, []).append(owned)

    def other_than(self, client: str, path: Path, real: Path) -> _Owned | None:
        """A client other than ``client`` that owns ``path`` (``real`` where it leads)."""
        for candidate in (real, *real.parents):
            for owned in self._by_path.get(candidate, ()):
                if owned.client != client:
                    return owned
        for candidate in (path, real):
            owner = self._named_for(candidate)
            if owner is not None and owner != client:
                return _Owned(owner, path, f"named for it, as keys/{owner}.<field> is")
        return None

    def _named_for(self, path: Path) -> str | None:
        """The client a path is named for: a folder on the way named exactly like a
        client (``keys/acme/``), or a file in a form validate suggests for a client's
        own (``acme``, ``acme.<field>``, ``acme_ed25519``). Other names that merely start
        with a client's name (``keys/msp_shared_key``) belong to nobody."""
        names = set(self._names)
        try:  # folders inside the project only: the project may sit in /srv/acme/
            inside = real_path(path.parent).relative_to(self._root).parts
        except ValueError:
            inside = ()
        for folder in inside:
            if folder in names:
                return folder
        for name in self._names:
            own = {name, f"{name}_ed25519", *(f"{name}.{field}" for field in SECRET_FIELDS)}
            if path.name in own:
                return name
        return None


def _owners(tree: ProjectTree, inventory_dir: Path, names: list[str]) -> _Owners:
    """What is written under each client's name, and where those names lead when they are
    links (unless to another client's name: that link is its own client's mistake)."""
    slots: list[_Owned] = []
    for name in names:
        folder = inventory_dir / name
        slots.append(_Owned(name, folder, f"its folder {tree.show(folder, folder=True)}"))
        known_hosts = inventory_dir / "known_hosts" / name
        slots.append(_Owned(name, known_hosts, f"its known_hosts {tree.show(known_hosts)}"))
        for suffix in (".yaml", ".yml"):
            file = inventory_dir / f"{name}{suffix}"
            slots.append(_Owned(name, file, f"its file {tree.show(file)}"))
    owners = _Owners(tree.root, names)
    for slot in slots:
        owners.add(_Owned(slot.client, real_path(slot.path.parent) / slot.path.name, slot.what))
    for slot in slots:
        real = real_path(slot.path)
        if owners.other_than(slot.client, slot.path, real) is None:
            owners.add(_Owned(slot.client, real, slot.what))
    return owners


def _shown(tree: ProjectTree, path: Path, real: Path, note: str = "") -> str:
    """``path`` as written, with ``note`` and where it leads when that is a link."""
    notes = [note] if note else []
    if real != real_path(path.parent) / path.name:
        notes.append(f"a link to {tree.show(real)}")
    return tree.show(path) + (f" ({'; '.join(notes)})" if notes else "")


def _placement(
    tree: ProjectTree,
    path: Path,
    owners: _Owners,
    client: str,
    what: str,
    hint: str,
    note: str = "",
) -> str | None:
    """Why ``path`` may not be read for ``client``, or None when it may."""
    real = real_path(path)
    shown = _shown(tree, path, real, note)
    if not tree.contains(real):
        return (
            f"{shown} is outside the project; a client's {what} stays inside the project "
            f"folder ({hint})"
        )
    other = owners.other_than(client, path, real)
    if other is not None:
        return (
            f"{shown} belongs to client '{other.client}' ({other.what}); a client uses "
            f"only its own files: give {client} a {what} of its own"
        )
    return None


def _known_hosts_problems(
    tree: ProjectTree,
    client: Client,
    owners: _Owners,
    first: dict[Path, Client],
    default: str,
) -> Iterator[Problem]:
    path = tree.root / client.known_hosts
    written = client.spec.known_hosts is not None
    location = client.doc.location(("client", "known_hosts")) if written else client.location
    note = "" if written else "this client's known_hosts"

    def problem(message: str, severity: Severity = "error") -> Problem:
        return Problem(location, "client.known_hosts", message, severity)

    hint = f"e.g. the default {default}"
    message = _placement(tree, path, owners, client.name, "known_hosts", hint, note)
    if message:
        yield problem(message)
        return
    real = real_path(path)
    shown = _shown(tree, path, real, note)
    other = first.setdefault(real, client)
    if other is not client:
        yield problem(
            f"{shown} is also the known_hosts of client '{other.name}' ({other.location}); "
            f"each client trusts only its own host keys: give {client.name} its own file"
        )
        return
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            yield problem(f"{shown} is a link that loops; point it at a file or remove it")
        elif any(h.connection == "ssh" for h in client.hosts.values()):
            yield problem(
                f"{shown} does not exist yet; SSH host keys are checked "
                "strictly, so connections will be refused until it holds them",
                "warning",
            )
        return
    if real.is_dir():
        yield problem(
            f"{shown} is a folder; known_hosts is a file of host keys (OpenSSH format): "
            "name a file in it, or remove the folder"
        )
