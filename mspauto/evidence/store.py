"""The evidence store: append-only, hash-chained records of everything a run did.

Each client has its own chain, so one client's evidence can be handed to its auditor
and verified without any other client's. A record's hash covers the previous record's
hash, its position (``seq``) and its exact stored content, so an edited, deleted or
reordered record breaks the chain at that point. Raw outputs are stored once, keyed by
their SHA-256 (which the chained record carries), and capped in size.

The database refuses UPDATE and DELETE on evidence tables (triggers), so mistakes
cannot change history; the hash chain is what makes deliberate changes detectable.
SQLite (WAL) is the default; PostgreSQL is used by URL.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Row,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError

__all__ = [
    "GENESIS",
    "OUTPUT_CAP",
    "EvidenceError",
    "EvidenceStore",
    "NewRecord",
    "NoEvidenceYet",
    "StoredRecord",
    "VerifyProblem",
    "canonical_json",
]

GENESIS = "0" * 64
OUTPUT_CAP = 256 * 1024
"""Bytes of each output stream kept in the store; the record notes the full size."""

# Reading streams in batches so memory stays flat however large the store grows.
_READ_BATCH = 500
"""Records fetched per round trip when reading or verifying a chain."""
_OUTPUT_BATCH = 64
"""Outputs held at once while verify hashes them: at most 16 MiB at OUTPUT_CAP each."""
_OUTPUT_LOOKUP = 1000
"""Hashes per ``IN (...)`` lookup of outputs (well under every database's limit)."""
_VERIFIED_OUTPUTS = 16384
"""Output hashes remembered as intact during one verify (a few MB), so an output
shared by many records (an empty stderr, a common answer) is read once."""

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

_APPEND_ONLY = ("evidence_records", "evidence_outputs")


class EvidenceError(Exception):
    """The evidence store cannot be used; the message says why in one line."""


class NoEvidenceYet(EvidenceError):
    """Opened for reading, but nothing was ever recorded there."""


def canonical_json(data: Any) -> str:
    """The one JSON text of ``data`` that gets hashed and stored."""
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__} in evidence")


def record_hash(
    prev_hash: str,
    chain: str,
    seq: int,
    kind: str,
    run_id: str,
    host: str,
    recorded_at: str,
    payload: str,
) -> str:
    """SHA-256 over a record's exact stored fields and its predecessor's hash."""
    material = "\x1f".join([prev_hash, chain, str(seq), kind, run_id, host, recorded_at, payload])
    return hashlib.sha256(material.encode()).hexdigest()


@dataclass(frozen=True)
class NewRecord:
    """A record to append (its chain position and hash are assigned on write)."""

    chain: str
    kind: str
    run_id: str
    recorded_at: datetime
    payload: Mapping[str, Any]
    host: str = ""
    outputs: tuple[bytes, ...] = ()
    """Raw outputs to store alongside (already capped); the payload names their hashes."""


@dataclass(frozen=True)
class StoredRecord:
    """A record as stored."""

    chain: str
    seq: int
    kind: str
    run_id: str
    host: str
    recorded_at: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class VerifyProblem:
    """One break in a chain, located so an auditor can find the record."""

    chain: str
    seq: int
    message: str

    def __str__(self) -> str:
        return f"{self.chain} #{self.seq}: {self.message}"


def store_output(data: bytes) -> tuple[bytes, dict[str, Any]]:
    """Cap an output for storage; returns the bytes to store and their description."""
    kept = data[:OUTPUT_CAP]
    return kept, {
        "sha256": hashlib.sha256(kept).hexdigest(),
        "bytes": len(data),
        "stored": len(kept),
    }


class EvidenceStore:
    """Connection to the evidence database (SQLite file or PostgreSQL URL)."""

    def __init__(self, url: str, *, writable: bool = True) -> None:
        """Open the store; ``writable`` creates the schema and its append-only guards
        (readers skip that, so they never wait for a writer's lock)."""
        self.url = url
        path = _sqlite_path(url)
        if not writable and path is not None and not path.exists():
            raise NoEvidenceYet(f"no evidence recorded yet in {path}")
        try:
            self.engine = _engine(url)
            if writable:
                _create_schema(self.engine)
            elif not inspect(self.engine).has_table("evidence_records"):
                raise NoEvidenceYet(f"no evidence recorded yet in {_safe(url)}")
        except SQLAlchemyError as exc:
            raise EvidenceError(
                f"cannot open the evidence store {_safe(url)}: {_first_line(exc)}"
            ) from None
        except ImportError as exc:  # a URL for a database whose driver is not installed
            raise EvidenceError(
                f"cannot open the evidence store {_safe(url)}: no driver for it is installed "
                f"({exc.name or exc}); use sqlite:///PATH or postgresql+psycopg://..."
            ) from None
        self._write_lock = threading.Lock()

    def guards_missing(self) -> list[str]:
        """Append-only triggers that should exist and do not (someone dropped them)."""
        dialect = self.engine.dialect.name
        expected = [
            f"{table}_{suffix}" for table in _APPEND_ONLY for suffix in _trigger_suffixes(dialect)
        ] + list(_HEAD_TRIGGERS.get(dialect, ()))
        query = {
            "sqlite": "SELECT name FROM sqlite_master WHERE type = 'trigger'",
            "postgresql": "SELECT tgname FROM pg_trigger WHERE tgenabled <> 'D'",
        }.get(self.engine.dialect.name)
        if query is None:
            return []
        with self.engine.connect() as conn:
            present = {row[0] for row in conn.execute(text(query))}
        return [name for name in expected if name not in present]

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    # --- writing ------------------------------------------------------------------

    def append(self, new: Sequence[NewRecord]) -> list[StoredRecord]:
        """Append records in one transaction, chaining each onto its chain's head."""
        if not new:
            return []
        stored: list[StoredRecord] = []
        rows: list[dict[str, Any]] = []
        blobs: dict[str, bytes] = {}
        with self._write_lock, self.engine.begin() as conn:
            heads: dict[str, tuple[int, str]] = {}
            for chain in dict.fromkeys(r.chain for r in new):
                heads[chain] = _lock_head(conn, chain)
            for record in new:
                seq, prev = heads[record.chain]
                seq += 1
                payload = canonical_json(record.payload)
                recorded_at = record.recorded_at.isoformat(timespec="microseconds")
                digest = record_hash(
                    prev,
                    record.chain,
                    seq,
                    record.kind,
                    record.run_id,
                    record.host,
                    recorded_at,
                    payload,
                )
                rows.append(
                    {
                        "chain": record.chain,
                        "seq": seq,
                        "kind": record.kind,
                        "run_id": record.run_id,
                        "host": record.host,
                        "recorded_at": recorded_at,
                        "payload": payload,
                        "prev_hash": prev,
                        "hash": digest,
                    }
                )
                for data in record.outputs:
                    blobs.setdefault(hashlib.sha256(data).hexdigest(), data)
                heads[record.chain] = (seq, digest)
                stored.append(
                    StoredRecord(
                        record.chain,
                        seq,
                        record.kind,
                        record.run_id,
                        record.host,
                        recorded_at,
                        dict(record.payload),
                        prev,
                        digest,
                    )
                )
            # One statement for all rows of the batch: compiled once, sent as one
            # executemany (a statement per record cost more than the hashing).
            conn.execute(insert(records), rows)
            if blobs:
                _put_outputs(conn, blobs)
            for chain, (seq, digest) in heads.items():
                conn.execute(
                    update(chain_heads)
                    .where(chain_heads.c.chain == chain)
                    .values(seq=seq, hash=digest)
                )
        return stored

    # --- reading ------------------------------------------------------------------

    def records(
        self, *, chain: str | None = None, run_id: str | None = None, kind: str | None = None
    ) -> Iterator[StoredRecord]:
        """Records in chain order, filtered."""
        query = select(records).order_by(records.c.chain, records.c.seq)
        if chain is not None:
            query = query.where(records.c.chain == chain)
        if run_id is not None:
            query = query.where(records.c.run_id == run_id)
        if kind is not None:
            query = query.where(records.c.kind == kind)
        with self.engine.connect() as conn:
            # yield_per: a server-side cursor on PostgreSQL (whose client would otherwise
            # hold every row at once); SQLite's cursor fetches lazily anyway.
            for row in conn.execute(query.execution_options(yield_per=_READ_BATCH)):
                yield StoredRecord(
                    row.chain,
                    row.seq,
                    row.kind,
                    row.run_id,
                    row.host,
                    row.recorded_at,
                    json.loads(row.payload),
                    row.prev_hash,
                    row.hash,
                )

    def run_ids(self, prefix: str) -> list[str]:
        """Run ids starting with ``prefix`` (so users can type a short id)."""
        query = (
            select(records.c.run_id)
            .distinct()
            .where(records.c.kind == "run_started", records.c.run_id.startswith(prefix))
        )
        with self.engine.connect() as conn:
            return [row.run_id for row in conn.execute(query)]

    def output(self, sha256: str) -> bytes | None:
        """A stored output by its hash."""
        with self.engine.connect() as conn:
            row = conn.execute(select(outputs.c.data).where(outputs.c.sha256 == sha256)).first()
        return None if row is None else bytes(row.data)

    def chains(self) -> list[str]:
        """Every chain (client) with evidence, or a head saying it had some."""
        with self.engine.connect() as conn:
            found = {row.chain for row in conn.execute(select(records.c.chain).distinct())}
            found |= {row.chain for row in conn.execute(select(chain_heads.c.chain))}
        return sorted(found)

    # --- verifying ----------------------------------------------------------------

    def verify(self, chains: Iterable[str] | None = None) -> tuple[int, list[VerifyProblem]]:
        """Recompute every chain; returns the records checked and each break found.

        Records and outputs are streamed in batches, so memory stays flat as the store
        grows; records appended while verifying are left for the next verify.
        """
        problems: list[VerifyProblem] = []
        checked = 0
        verified_outputs = _VerifiedOutputs()
        for chain in list(chains) if chains is not None else self.chains():
            checked += self._verify_chain(chain, problems, verified_outputs)
        return checked, problems

    def _verify_chain(
        self, chain: str, problems: list[VerifyProblem], verified_outputs: _VerifiedOutputs
    ) -> int:
        expected_seq, prev = 1, GENESIS
        count = 0
        with self.engine.connect() as conn:
            # The head first: records appended while verifying lie beyond it and are left
            # for the next verify, instead of looking like a broken end.
            head = conn.execute(select(chain_heads).where(chain_heads.c.chain == chain)).first()
            query = select(records).where(records.c.chain == chain).order_by(records.c.id)
            if head is not None:
                query = query.where(records.c.seq <= head.seq)
            # yield_per makes PostgreSQL use a server-side cursor, so only one batch of
            # rows is ever held here; SQLite's cursor fetches lazily anyway.
            result = conn.execute(query.execution_options(yield_per=_READ_BATCH))
            for batch in result.partitions(_READ_BATCH):
                referenced = [list(_output_hashes(row.payload)) for row in batch]
                intact = verified_outputs.check(
                    conn, {sha for names in referenced for _, sha in names}
                )
                for row, named_outputs in zip(batch, referenced, strict=True):
                    count += 1
                    problems.extend(
                        _record_problems(chain, row, expected_seq, prev, named_outputs, intact)
                    )
                    expected_seq, prev = row.seq + 1, row.hash
        if head is not None and (head.seq, head.hash) != (expected_seq - 1, prev):
            problems.append(
                VerifyProblem(
                    chain,
                    head.seq,
                    f"the chain head says #{head.seq} but the last record "
                    f"is #{expected_seq - 1}: records were removed at the end",
                )
            )
        return count


def _record_problems(
    chain: str,
    row: Row[Any],
    expected_seq: int,
    prev: str,
    named_outputs: Iterable[tuple[str, str]],
    intact: Mapping[str, bool],
) -> Iterator[VerifyProblem]:
    """What is wrong with one stored record, given where the chain expects it."""
    seq = row.seq
    if seq != expected_seq:
        what = "missing (deleted?)" if seq > expected_seq else "out of order"
        yield VerifyProblem(
            chain, expected_seq, f"record {what}; next stored is #{seq} ({_located(row)})"
        )
    if row.prev_hash != prev:
        yield VerifyProblem(
            chain,
            seq,
            f"does not follow the record before it ({_located(row)}): "
            "a record was removed, inserted or reordered",
        )
    digest = record_hash(
        row.prev_hash, row.chain, seq, row.kind, row.run_id, row.host, row.recorded_at, row.payload
    )
    if digest != row.hash:
        yield VerifyProblem(
            chain,
            seq,
            f"content does not match its hash ({_located(row)}): the record was edited",
        )
    for name, sha in named_outputs:
        state = intact.get(sha)
        if state is None:
            yield VerifyProblem(chain, seq, f"{name} output is missing ({_located(row)})")
        elif not state:
            yield VerifyProblem(chain, seq, f"{name} output was changed ({_located(row)})")


def _located(row: Row[Any]) -> str:
    """Where an auditor finds a record: its run and host (built only for a problem)."""
    return f"run {row.run_id[:8]}" + (f", host {row.host}" if row.host else "")


class _VerifiedOutputs:
    """Checks stored outputs against the hashes records name, a few at a time.

    Each output is fetched and hashed here rather than by the database: verify trusts
    nothing the database says about itself, and a database function can be replaced.
    Outputs found intact are remembered (least recently used first out), so one shared
    by many records is read once; broken ones are looked up again for every batch that
    names them, and so reported for every record.
    """

    def __init__(self) -> None:
        self._intact: OrderedDict[str, None] = OrderedDict()

    def check(self, conn: Connection, hashes: Collection[str]) -> dict[str, bool]:
        """Whether each stored output named in ``hashes`` matches its hash; an output
        that is not stored is absent from the answer."""
        intact: dict[str, bool] = {}
        unknown: list[str] = []
        for sha in hashes:
            if sha in self._intact:
                self._intact.move_to_end(sha)
                intact[sha] = True
            else:
                unknown.append(sha)
        for start in range(0, len(unknown), _OUTPUT_LOOKUP):
            query = select(outputs.c.sha256, outputs.c.data).where(
                outputs.c.sha256.in_(unknown[start : start + _OUTPUT_LOOKUP])
            )
            result = conn.execute(query.execution_options(yield_per=_OUTPUT_BATCH))
            for stored in result.partitions(_OUTPUT_BATCH):
                for row in stored:
                    digest = hashlib.sha256(_stored_bytes(row.data)).hexdigest()
                    intact[row.sha256] = digest == row.sha256
        for sha in unknown:
            if intact.get(sha):
                self._remember(sha)
        return intact

    def _remember(self, sha: str) -> None:
        self._intact[sha] = None
        if len(self._intact) > _VERIFIED_OUTPUTS:
            self._intact.popitem(last=False)


def _stored_bytes(value: object) -> bytes:
    """An output as stored; SQLite keeps any type written over it, and verify must then
    report the output changed, not stop."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode()


def _output_hashes(payload_text: str) -> Iterator[tuple[str, str]]:
    try:
        payload = json.loads(payload_text)
    except ValueError:
        return
    for name in ("stdout", "stderr", "script"):
        described = payload.get(name) if isinstance(payload, dict) else None
        if isinstance(described, dict) and isinstance(described.get("sha256"), str):
            yield name, described["sha256"]


def _lock_head(conn: Connection, chain: str) -> tuple[int, str]:
    """The chain's head, locked for this transaction (other writers wait)."""
    dialect = conn.dialect.name
    upsert = (pg_insert if dialect == "postgresql" else sqlite_insert)(chain_heads)
    conn.execute(upsert.values(chain=chain, seq=0, hash=GENESIS).on_conflict_do_nothing())
    # A no-op write takes the row lock (PostgreSQL) or the write lock (SQLite) first.
    conn.execute(
        update(chain_heads).where(chain_heads.c.chain == chain).values(seq=chain_heads.c.seq)
    )
    row = conn.execute(select(chain_heads).where(chain_heads.c.chain == chain)).one()
    return row.seq, row.hash


def _put_outputs(conn: Connection, blobs: Mapping[str, bytes]) -> None:
    """Store outputs by their SHA-256; one already stored is left as it is."""
    dialect = conn.dialect.name
    upsert = (pg_insert if dialect == "postgresql" else sqlite_insert)(outputs)
    conn.execute(
        upsert.on_conflict_do_nothing(),
        [{"sha256": sha, "size": len(data), "data": data} for sha, data in blobs.items()],
    )


def _sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///PATH`` URL (None for other databases)."""
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


def _engine(url: str) -> Engine:
    path = _sqlite_path(url)
    if path is not None:
        # Every client's command output lives here: readable by this user only.
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def _create_schema(engine: Engine) -> None:
    metadata.create_all(engine)
    with engine.begin() as conn:
        for statement in _HEAD_GUARDS.get(engine.dialect.name, []):
            conn.execute(text(statement))
        if engine.dialect.name == "sqlite":
            for table in _APPEND_ONLY:
                for action in ("UPDATE", "DELETE"):
                    conn.execute(
                        text(
                            f"CREATE TRIGGER IF NOT EXISTS {table}_no_{action.lower()} "
                            f"BEFORE {action} ON {table} "
                            "BEGIN SELECT RAISE(ABORT, 'evidence is append-only'); END"
                        )
                    )
        elif engine.dialect.name == "postgresql":
            conn.execute(
                text(
                    "CREATE OR REPLACE FUNCTION mspauto_append_only() RETURNS trigger "
                    "LANGUAGE plpgsql AS $$ BEGIN "
                    "RAISE EXCEPTION 'evidence is append-only'; END $$"
                )
            )
            for table in _APPEND_ONLY:
                conn.execute(
                    text(
                        f"CREATE OR REPLACE TRIGGER {table}_append_only "
                        f"BEFORE UPDATE OR DELETE ON {table} "
                        "FOR EACH ROW EXECUTE FUNCTION mspauto_append_only()"
                    )
                )


def _trigger_suffixes(dialect: str) -> tuple[str, ...]:
    return ("no_update", "no_delete") if dialect == "sqlite" else ("append_only",)


# A chain head may only move forward and never disappear: rolling it back is how records
# cut from the end of a chain would otherwise be hidden.
_HEAD_GUARDS = {
    "sqlite": [
        "CREATE TRIGGER IF NOT EXISTS evidence_chain_heads_no_rollback BEFORE UPDATE ON "
        "evidence_chain_heads WHEN NEW.seq < OLD.seq OR NEW.chain <> OLD.chain "
        "BEGIN SELECT RAISE(ABORT, 'evidence is append-only'); END",
        "CREATE TRIGGER IF NOT EXISTS evidence_chain_heads_no_delete BEFORE DELETE ON "
        "evidence_chain_heads BEGIN SELECT RAISE(ABORT, 'evidence is append-only'); END",
    ],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION mspauto_head_forward() RETURNS trigger LANGUAGE plpgsql "
        "AS $$ BEGIN IF TG_OP = 'DELETE' OR NEW.seq < OLD.seq OR NEW.chain <> OLD.chain "
        "THEN RAISE EXCEPTION 'evidence is append-only'; END IF; RETURN NEW; END $$",
        "CREATE OR REPLACE TRIGGER evidence_chain_heads_forward BEFORE UPDATE OR DELETE ON "
        "evidence_chain_heads FOR EACH ROW EXECUTE FUNCTION mspauto_head_forward()",
    ],
}
_HEAD_TRIGGERS = {
    "sqlite": ("evidence_chain_heads_no_rollback", "evidence_chain_heads_no_delete"),
    "postgresql": ("evidence_chain_heads_forward",),
}


def _safe(url: str) -> str:
    """The URL without a password, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
