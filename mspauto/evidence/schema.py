"""The evidence database's tables and the guards the database itself enforces.

Tables are created and changed only by the Alembic migrations in
``mspauto/evidence/migrations`` (``mspauto evidence upgrade``); the definitions here
are what the code reads and writes, and must match the newest migration.

Guards are triggers. They make mistakes impossible and attacks visible: evidence rows
are never updated or deleted, a chain head only moves forward to the chain's real last
record, and a record is accepted only as its chain's next (``seq = head + 1`` and
``prev_hash = head hash``). Someone who owns the database can drop a trigger; that is
what signed checkpoints and the witness catch (docs/evidence.md), and a writer that
finds a guard missing records the fact before restoring it.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

__all__ = [
    "GENESIS",
    "STORE_CHAIN",
    "batches",
    "chain_heads",
    "checkpoints",
    "guard_names",
    "install_guards",
    "metadata",
    "outputs",
    "present_guards",
    "records",
]

GENESIS = "0" * 64
"""The ``prev_hash`` of every chain's first record."""

STORE_CHAIN = "@store"
"""The chain of the store's own events (guards found missing). No client can have this
name: client names start with a letter or digit."""

metadata = MetaData()
records = Table(
    "evidence_records",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("chain", String(128), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("run_id", String(36), nullable=False),
    Column("host", String(255), nullable=False, default=""),
    Column("recorded_at", String(40), nullable=False),
    Column("payload", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    UniqueConstraint("chain", "seq", name="evidence_chain_seq"),
    Index("evidence_by_run", "run_id"),
    Index("evidence_by_kind", "chain", "kind"),
)
chain_heads = Table(
    "evidence_chain_heads",
    metadata,
    Column("chain", String(128), primary_key=True),
    Column("seq", Integer, nullable=False),
    Column("hash", String(64), nullable=False),
)
outputs = Table(
    "evidence_outputs",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("data", LargeBinary, nullable=False),
)
checkpoints = Table(
    "evidence_checkpoints",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("chain", String(128), nullable=False),
    Column("size", Integer, nullable=False),
    Column("root", String(64), nullable=False),
    Column("signed_at", String(40), nullable=False),
    Column("note", Text, nullable=False),
    Column("frontier", Text, nullable=False),
    UniqueConstraint("chain", "size", name="evidence_checkpoint_size"),
)

batches = Table(
    "evidence_batches",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("chain", String(128), nullable=False),
    Column("first_seq", Integer, nullable=False),
    Column("last_seq", Integer, nullable=False),
    Column("signature", Text, nullable=False),
    Index("evidence_batches_by_chain", "chain", "last_seq"),
)

_APPEND_ONLY = (
    "evidence_records",
    "evidence_outputs",
    "evidence_checkpoints",
    "evidence_batches",
)
_REFUSED = "evidence is append-only"
_DISCONTINUOUS = "evidence continuity: a record must follow the head of its chain"

_SQLITE_GUARDS: dict[str, str] = {
    **{
        f"{table}_no_{action.lower()}": (
            f"CREATE TRIGGER IF NOT EXISTS {table}_no_{action.lower()} "
            f"BEFORE {action} ON {table} BEGIN SELECT RAISE(ABORT, '{_REFUSED}'); END"
        )
        for table in _APPEND_ONLY
        for action in ("UPDATE", "DELETE")
    },
    # A head moves only forward, and only to the chain's real last record.
    "evidence_chain_heads_no_rollback": (
        "CREATE TRIGGER IF NOT EXISTS evidence_chain_heads_no_rollback BEFORE UPDATE ON "
        "evidence_chain_heads WHEN NEW.seq < OLD.seq OR NEW.chain <> OLD.chain "
        "OR (NEW.seq > 0 AND NEW.hash IS NOT (SELECT hash FROM evidence_records "
        "WHERE chain = NEW.chain AND seq = NEW.seq)) "
        f"BEGIN SELECT RAISE(ABORT, '{_REFUSED}'); END"
    ),
    "evidence_chain_heads_no_delete": (
        "CREATE TRIGGER IF NOT EXISTS evidence_chain_heads_no_delete BEFORE DELETE ON "
        f"evidence_chain_heads BEGIN SELECT RAISE(ABORT, '{_REFUSED}'); END"
    ),
    "evidence_records_continuity": (
        "CREATE TRIGGER IF NOT EXISTS evidence_records_continuity BEFORE INSERT ON "
        "evidence_records WHEN NEW.seq IS NOT "
        "(SELECT COALESCE(MAX(seq), 0) + 1 FROM evidence_records WHERE chain = NEW.chain) "
        "OR NEW.prev_hash IS NOT COALESCE((SELECT hash FROM evidence_records "
        f"WHERE chain = NEW.chain AND seq = NEW.seq - 1), '{GENESIS}') "
        f"BEGIN SELECT RAISE(ABORT, '{_DISCONTINUOUS}'); END"
    ),
}

_POSTGRES_FUNCTIONS = [
    "CREATE OR REPLACE FUNCTION mspauto_append_only() RETURNS trigger LANGUAGE plpgsql "
    f"AS $$ BEGIN RAISE EXCEPTION '{_REFUSED}'; END $$",
    "CREATE OR REPLACE FUNCTION mspauto_head_forward() RETURNS trigger LANGUAGE plpgsql "
    "AS $$ BEGIN IF TG_OP = 'DELETE' OR NEW.seq < OLD.seq OR NEW.chain <> OLD.chain "
    "OR (NEW.seq > 0 AND NEW.hash IS DISTINCT FROM (SELECT hash FROM evidence_records "
    "WHERE chain = NEW.chain AND seq = NEW.seq)) "
    f"THEN RAISE EXCEPTION '{_REFUSED}'; END IF; RETURN NEW; END $$",
    "CREATE OR REPLACE FUNCTION mspauto_continuity() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "DECLARE head_seq integer; head_hash text; BEGIN "
    "SELECT seq, hash INTO head_seq, head_hash FROM evidence_records "
    "WHERE chain = NEW.chain ORDER BY seq DESC LIMIT 1; "
    f"IF head_seq IS NULL THEN head_seq := 0; head_hash := '{GENESIS}'; END IF; "
    "IF NEW.seq <> head_seq + 1 OR NEW.prev_hash <> head_hash THEN "
    f"RAISE EXCEPTION '{_DISCONTINUOUS}'; END IF; RETURN NEW; END $$",
]
_POSTGRES_GUARDS: dict[str, str] = {
    **{
        f"{table}_append_only": (
            f"CREATE OR REPLACE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON "
            f"{table} FOR EACH ROW EXECUTE FUNCTION mspauto_append_only()"
        )
        for table in _APPEND_ONLY
    },
    "evidence_chain_heads_forward": (
        "CREATE OR REPLACE TRIGGER evidence_chain_heads_forward BEFORE UPDATE OR DELETE ON "
        "evidence_chain_heads FOR EACH ROW EXECUTE FUNCTION mspauto_head_forward()"
    ),
    "evidence_records_continuity": (
        "CREATE OR REPLACE TRIGGER evidence_records_continuity BEFORE INSERT ON "
        "evidence_records FOR EACH ROW EXECUTE FUNCTION mspauto_continuity()"
    ),
}


def _guards(dialect: str) -> dict[str, str]:
    return {"sqlite": _SQLITE_GUARDS, "postgresql": _POSTGRES_GUARDS}.get(dialect, {})


def guard_names(dialect: str) -> list[str]:
    """Every guard (trigger) a store of this database kind must have."""
    return list(_guards(dialect))


def present_guards(conn: Connection) -> set[str]:
    """The guards (enabled triggers) the database has now."""
    query = {
        "sqlite": "SELECT name FROM sqlite_master WHERE type = 'trigger'",
        "postgresql": "SELECT tgname FROM pg_trigger WHERE tgenabled <> 'D'",
    }.get(conn.dialect.name)
    if query is None:
        return set()
    return {row[0] for row in conn.execute(text(query))}


def install_guards(conn: Connection, names: list[str] | None = None) -> None:
    """Create the guards (all, or the named ones), replacing older definitions.

    Migrations call this too: a guard is always installed at its current definition, so
    a release that changes one adds a migration that calls this again."""
    dialect = conn.dialect.name
    wanted = _guards(dialect) if names is None else {n: _guards(dialect)[n] for n in names}
    if dialect == "postgresql":
        for function in _POSTGRES_FUNCTIONS:
            conn.execute(text(function))
    elif dialect == "sqlite":
        # CREATE TRIGGER IF NOT EXISTS keeps an old definition: drop it first.
        for name in wanted:
            conn.execute(text(f"DROP TRIGGER IF EXISTS {name}"))
    for name, statement in wanted.items():
        conn.execute(text(statement))
        if dialect == "postgresql":  # CREATE OR REPLACE leaves a disabled trigger disabled
            table = statement.split(" ON ", 1)[1].split()[0]
            conn.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER {name}"))
