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
    inspect,
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
    "notifications",
    "outputs",
    "present_guards",
    "psa_tickets",
    "records",
    "schedule_jobs",
    "schedule_runs",
    "signers",
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
    Index("evidence_checkpoints_by_chain", "chain", "size"),
)

batches = Table(
    "evidence_batches",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("chain", String(128), nullable=False),
    Column("first_seq", Integer, nullable=False),
    Column("last_seq", Integer, nullable=False),
    Column("signature", Text, nullable=False),
    # None: signed with the MSP's key; else the fingerprint of the worker certificate
    # (evidence_signers) whose key signed it.
    Column("signer", String(64), nullable=True),
    Index("evidence_batches_by_chain", "chain", "last_seq"),
)

# Worker certificates (mspauto.evidence.worker_keys): signed notes by the MSP's key,
# each naming a worker's key and the clients it may write for.
signers = Table(
    "evidence_signers",
    metadata,
    Column("fingerprint", String(64), primary_key=True),
    Column("certificate", Text, nullable=False),
)

# The control node's schedule (mspauto.schedule): coordination state, not evidence.
# A tick's key is unique, so whichever scheduler stamps it first runs it; its row says
# how it went. Each job's row says up to when its ticks were handled.
schedule_runs = Table(
    "schedule_runs",
    metadata,
    Column("key", String(400), primary_key=True),
    Column("job", String(400), nullable=False),
    Column("due", String(40), nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("owner", String(300), nullable=False),
    Column("started_at", String(40), nullable=False),
    Column("heartbeat_at", String(40), nullable=False),
    Column("finished_at", String(40)),
    Column("exit_code", Integer),
    Column("run_pid", Integer),
    Column("in_evidence_at", String(40)),
    # When its scheduled_run record was appended to the client's chain (NULL: not yet).
    Index("schedule_runs_by_job", "job", "due"),
)

schedule_jobs = Table(
    "schedule_jobs",
    metadata,
    Column("job", String(400), primary_key=True),
    Column("seen_until", String(40), nullable=False),
)

# A distributed run's hosts (mspauto.distributed): a worker takes each host (a unique
# row) before anything runs on it, so a batch Celery delivers again never runs a host
# twice; the control node takes the hosts no worker took when it stops or gives up.
run_host_claims = Table(
    "run_host_claims",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("host", String(255), primary_key=True),
    Column("owner", String(300), nullable=False),
    Column("claimed_at", String(40), nullable=False),
    Column("alive_at", String(40), nullable=False),
    # Its owner renews this while it works on the run: a claim not renewed for
    # CLAIM_LEASE is a lost worker's.
)

# Each event once per channel: its key and the channel are the row's key, so an event
# seen again (the next pass, another scheduler) is not sent twice; a failed delivery
# is retried until it is sent or given up, and the row keeps the last error.
notifications = Table(
    "schedule_notifications",
    metadata,
    Column("event", String(500), primary_key=True),
    Column("channel", String(300), primary_key=True),
    Column("client", String(128), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_try", String(40), nullable=False),
    Column("last_error", Text, nullable=False),
    Column("message", Text, nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("sent_at", String(40)),
)

# One PSA ticket per SLA breach: the breach's key is the row's. A row is stamped before
# the ticket is asked for, so a retry after a timeout first looks in the PSA for the
# ticket the lost answer would have named (by the tag in its summary).
psa_tickets = Table(
    "schedule_psa_tickets",
    metadata,
    Column("breach", String(500), primary_key=True),
    Column("client", String(128), nullable=False),
    Column("system", String(32), nullable=False),
    Column("generation", Integer, nullable=False),
    Column("ticket", String(64)),
    Column("summary", Text, nullable=False),
    Column("pending_note", Text),
    Column("pending_tick", String(500)),
    Column("last_tick", String(500)),
    Column("attempts", Integer, nullable=False),
    Column("next_try", String(40), nullable=False),
    Column("last_error", Text, nullable=False),
    Column("updated_at", String(40), nullable=False),
)

_APPEND_ONLY = (
    "evidence_records",
    "evidence_outputs",
    "evidence_checkpoints",
    "evidence_batches",
    "evidence_signers",
)
_REFUSED = "evidence is append-only"
_DISCONTINUOUS = (
    "evidence continuity: a record must follow the head of its chain, with its own hash"
)

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
        "OR NEW.hash IS NOT mspauto_record_hash(NEW.prev_hash, NEW.chain, NEW.seq, "
        "NEW.kind, NEW.run_id, NEW.host, NEW.recorded_at, NEW.payload) "
        f"BEGIN SELECT RAISE(ABORT, '{_DISCONTINUOUS}'); END"
    ),
}

_PINNED = "SET search_path FROM CURRENT"
"""Each guard function runs with the search path it was created with, where the built-in
operators come first: a database owner who later puts a schema with their own ``<>``
ahead of ``pg_catalog`` does not change what the guard computes (checked: proconfig)."""

_POSTGRES_FUNCTIONS = [
    "CREATE OR REPLACE FUNCTION mspauto_append_only() RETURNS trigger LANGUAGE plpgsql "
    f"{_PINNED} AS $$ BEGIN RAISE EXCEPTION '{_REFUSED}'; END $$",
    "CREATE OR REPLACE FUNCTION mspauto_head_forward() RETURNS trigger LANGUAGE plpgsql "
    f"{_PINNED} AS $$ BEGIN IF TG_OP = 'DELETE' OR NEW.seq < OLD.seq OR NEW.chain <> OLD.chain "
    "OR (NEW.seq > 0 AND NEW.hash IS DISTINCT FROM (SELECT hash FROM evidence_records "
    "WHERE chain = NEW.chain AND seq = NEW.seq)) "
    f"THEN RAISE EXCEPTION '{_REFUSED}'; END IF; RETURN NEW; END $$",
    "CREATE OR REPLACE FUNCTION mspauto_continuity() RETURNS trigger LANGUAGE plpgsql "
    f"{_PINNED} AS $$ "
    "DECLARE head_seq integer; head_hash text; BEGIN "
    "SELECT seq, hash INTO head_seq, head_hash FROM evidence_records "
    "WHERE chain = NEW.chain ORDER BY seq DESC LIMIT 1; "
    f"IF head_seq IS NULL THEN head_seq := 0; head_hash := '{GENESIS}'; END IF; "
    "IF NEW.seq <> head_seq + 1 OR NEW.prev_hash <> head_hash OR NEW.hash <> encode(sha256("
    "convert_to(concat_ws(E'\\x1f', NEW.prev_hash, NEW.chain, NEW.seq::text, NEW.kind, "
    "NEW.run_id, NEW.host, NEW.recorded_at, NEW.payload), 'UTF8')), 'hex') THEN "
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
    """The guards the database has now, each exactly as defined here and enabled: a
    trigger of the right name that does something else (or nothing) does not count."""
    if conn.dialect.name == "sqlite":
        rows = conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"))
        expected = {name: _normal(ddl) for name, ddl in _SQLITE_GUARDS.items()}
        return {
            name for name, sql in rows if name in expected and _normal(str(sql)) == expected[name]
        }
    if conn.dialect.name == "postgresql":
        functions = {_function_name(f): _function_body(f) for f in _POSTGRES_FUNCTIONS}
        rows = conn.execute(
            text(
                "SELECT t.tgname, c.relname, p.proname, p.prosrc, p.proconfig FROM pg_trigger t "
                "JOIN pg_class c ON t.tgrelid = c.oid "
                "JOIN pg_namespace n ON c.relnamespace = n.oid "
                "JOIN pg_proc p ON t.tgfoid = p.oid "
                "WHERE NOT t.tgisinternal AND t.tgenabled = 'O' "
                "AND n.nspname = current_schema()"
            )
        )
        present = set()
        for name, table, function, source, config in rows:
            statement = _POSTGRES_GUARDS.get(name)
            if (
                statement is not None
                and _guarded_table(statement) == table
                and f"FUNCTION {function}()" in statement
                and _normal(source) == functions.get(function)
                and any(str(item).startswith("search_path=") for item in config or [])
            ):
                present.add(name)
        return present
    return set()


def _normal(sql: str) -> str:
    """SQL with whitespace collapsed and without IF NOT EXISTS (SQLite drops it)."""
    return " ".join(sql.replace("IF NOT EXISTS ", "").split())


def _function_name(statement: str) -> str:
    return statement.split("FUNCTION ", 1)[1].split("(", 1)[0]


def _function_body(statement: str) -> str:
    return _normal(statement.split("$$", 2)[1])


def _guarded_table(statement: str) -> str:
    return statement.split(" ON ", 1)[1].split(maxsplit=1)[0]


def install_guards(
    conn: Connection, names: list[str] | None = None, *, only_existing: bool = False
) -> None:
    """Create the guards (all, or the named ones), replacing older definitions.

    Migrations call this too: a guard is always installed at its current definition, so
    a release that changes one adds a migration that calls this again."""
    dialect = conn.dialect.name
    wanted = _guards(dialect) if names is None else {n: _guards(dialect)[n] for n in names}
    if only_existing:  # a migration: the tables of later revisions do not exist yet
        tables = set(inspect(conn).get_table_names())
        wanted = {n: s for n, s in wanted.items() if _guarded_table(s) in tables}
    if dialect == "postgresql":
        for function in _POSTGRES_FUNCTIONS:
            conn.execute(text(function))
    # A trigger of the same name may be a neutered one: replace it. (PostgreSQL's
    # CREATE OR REPLACE does that, unless the name is taken on another table.)
    for name, statement in wanted.items():
        if dialect == "sqlite":
            conn.execute(text(f"DROP TRIGGER IF EXISTS {name}"))
        else:
            conn.execute(text(f"DROP TRIGGER IF EXISTS {name} ON {_guarded_table(statement)}"))
    for name, statement in wanted.items():
        conn.execute(text(statement))
        if dialect == "postgresql":  # CREATE OR REPLACE leaves a disabled trigger disabled
            conn.execute(text(f"ALTER TABLE {_guarded_table(statement)} ENABLE TRIGGER {name}"))
