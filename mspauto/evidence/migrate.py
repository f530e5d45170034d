"""Bring an evidence database to the current schema (Alembic), keeping every record.

A store made by release 0.1 has the evidence tables but no version table: it is marked
as revision 0001 and upgraded from there. Two processes opening one old store at once
take turns (a lock file for SQLite, an advisory lock for PostgreSQL), so a migration
never runs twice.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

__all__ = [
    "FIRST_REVISION",
    "VERSION_TABLE",
    "LegacyStore",
    "UnknownRevision",
    "Upgrade",
    "alembic_config",
    "current_revision",
    "head_revision",
    "upgrade",
]

VERSION_TABLE = "evidence_schema_version"
FIRST_REVISION = "0001"
"""The schema of release 0.1, which had no version table."""

_MIGRATIONS = Path(__file__).with_name("migrations")
_MARKERS = {"0002": "evidence_batches"}
"""A table each revision creates, oldest first: how a store without a version row is
placed (a new revision adds its own)."""
_POSTGRES_LOCK = 0x6D737061  # pg_advisory_xact_lock key: "mspa"


class LegacyStore(Exception):
    """A store of release 0.1, opened by a command that does not upgrade those."""


class UnknownRevision(Exception):
    """The store was written by a newer release (its revision is the message)."""


@dataclass(frozen=True)
class Upgrade:
    """What :func:`upgrade` did: the revision found (None: an empty database) and now."""

    before: str | None
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after

    @property
    def existing(self) -> bool:
        """An existing store was upgraded (not a new one created)."""
        return self.changed and self.before is not None


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


def head_revision() -> str:
    """The revision this release writes."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _known_revisions() -> set[str]:
    return {
        script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()
    }


def current_revision(conn: Connection) -> str | None:
    """The store's revision; ``0001`` for a 0.1 store; None for an empty database."""
    revision = _recorded_revision(conn)
    if revision is None and inspect(conn).has_table("evidence_records"):
        # No version recorded: a 0.1 store, or one whose version row was deleted; the
        # tables say which revision it is at.
        tables = set(inspect(conn).get_table_names())
        found = [revision for revision, table in _MARKERS.items() if table in tables]
        return found[-1] if found else FIRST_REVISION
    return revision


def upgrade(engine: Engine, lock_path: Path | None = None, *, legacy: bool = False) -> Upgrade:
    """Migrate the store to :func:`head_revision` (a no-op when it is there already).

    A release 0.1 store is upgraded only with ``legacy`` (``mspauto evidence upgrade``,
    which then vouches for its records): any other writer raises :class:`LegacyStore`,
    so a store made to look old by dropping tables is never quietly taken in."""
    head = head_revision()
    with engine.connect() as conn:
        before, recorded = current_revision(conn), _recorded_revision(conn)
    if before == head and recorded == head:
        return Upgrade(before, head)
    if before is not None and before not in _known_revisions():
        raise UnknownRevision(before)
    if before == FIRST_REVISION and not legacy:
        raise LegacyStore(before)
    with _exclusive(engine, lock_path), engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _POSTGRES_LOCK})
        # Again, under the lock: another process may have upgraded meanwhile.
        before, recorded = current_revision(conn), _recorded_revision(conn)
        config = alembic_config()
        config.attributes["connection"] = conn
        if before is not None and recorded is None:
            command.stamp(config, before)  # a 0.1 store, or its version row deleted
        if before != head:
            command.upgrade(config, "head")
    return Upgrade(before, head)


def _recorded_revision(conn: Connection) -> str | None:
    """The revision in the version table (None: no table, or no row)."""
    return MigrationContext.configure(
        conn, opts={"version_table": VERSION_TABLE}
    ).get_current_revision()


@contextmanager
def _exclusive(engine: Engine, lock_path: Path | None) -> Iterator[None]:
    """Hold a lock file while migrating a SQLite store (PostgreSQL locks in SQL)."""
    if engine.dialect.name != "sqlite" or lock_path is None:
        yield
        return
    descriptor = os.open(lock_path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the lock
