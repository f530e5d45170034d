"""The evidence store: append-only, hash-chained records of everything a run did.

Each client has its own chain, so one client's evidence can be handed to its auditor
and verified without any other client's. A record's hash covers the previous record's
hash, its position (``seq``) and its exact stored content, so an edited, deleted or
reordered record breaks the chain at that point. Raw outputs are stored once, keyed by
their SHA-256 (which the chained record carries), and capped in size.

The database refuses UPDATE and DELETE on evidence tables and accepts a record only as
its chain's next (triggers, see :mod:`mspauto.evidence.schema`), so mistakes cannot
change history. The hash chain makes deliberate changes detectable, and signed
checkpoints of each chain's Merkle tree (:mod:`mspauto.evidence.checkpoints`) make
them detectable to someone who trusts only the MSP's public key.
SQLite (WAL) is the default; PostgreSQL is used by URL.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sqlite3
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, cast
from urllib.parse import quote

from sqlalchemy import (
    Connection,
    Engine,
    Row,
    create_engine,
    event,
    insert,
    inspect,
    null,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from mspauto.evidence import migrate
from mspauto.evidence.checkpoints import (
    Checkpoint,
    Notary,
    Witness,
    WitnessCopyError,
    batch_message,
    parse_checkpoint,
)
from mspauto.evidence.merkle import Frontier, leaf_hash
from mspauto.evidence.schema import (
    GENESIS,
    STORE_CHAIN,
    batches,
    chain_heads,
    checkpoints,
    guard_names,
    install_guards,
    outputs,
    present_guards,
    records,
    signers,
)
from mspauto.evidence.worker_keys import WorkerCertificate, WorkerSigner
from mspauto.signing import PublicKey, SigningError

__all__ = [
    "GENESIS",
    "OUTPUT_CAP",
    "CheckpointOutcome",
    "EvidenceError",
    "EvidenceStore",
    "NewRecord",
    "NoEvidenceYet",
    "RecordHashes",
    "StoredRecord",
    "Verification",
    "VerifyProblem",
    "canonical_json",
    "evidence_url_problem",
]

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


class EvidenceError(Exception):
    """The evidence store cannot be used; the message says why in one line."""


class NoEvidenceYet(EvidenceError):
    """Opened for reading, but nothing was ever recorded there."""


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__} in evidence")


# One encoder for every record: json.dumps with options builds a new one per call.
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default
)


def canonical_json(data: Any) -> str:
    """The one JSON text of ``data`` that gets hashed and stored."""
    return _CANONICAL.encode(data)


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


class RecordHashes(NamedTuple):
    """A stored record's place, kind and time, its hash links as stored, and the hash
    its stored content gives (SQLite keeps any type in a column: a value mspauto did
    not write may be of another type)."""

    seq: int
    kind: str
    recorded_at: str
    prev_hash: str
    hash: str
    """As its hash column holds it."""
    content_hash: str
    """Recomputed from the record's stored fields."""


@dataclass(frozen=True)
class VerifyProblem:
    """One break in a chain, located so an auditor can find the record."""

    chain: str
    seq: int
    message: str

    def __str__(self) -> str:
        return f"{self.chain} #{self.seq}: {self.message}"


@dataclass
class Verification:
    """What :meth:`EvidenceStore.verify` found."""

    signatures_checked: bool
    """A public key was given, so checkpoints were checked (else only hash links)."""
    witness_checked: bool
    checked: int = 0
    """Records verified."""
    checkpoints: int = 0
    """Signed checkpoints whose signature was valid."""
    problems: list[VerifyProblem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    """Worth knowing, but no record is in doubt because of it."""


_NOTHING_NEW = "nothing new to sign"


class _Unsignable(Exception):
    """Why a chain cannot be signed now (the message, for the user)."""

    def __init__(self, reason: str, broken_at: tuple[int, str] | None = None) -> None:
        super().__init__(reason)
        self.broken_at = broken_at
        """The chain's last record (seq, stored hash) when the chain is broken."""


@dataclass(frozen=True)
class CheckpointOutcome:
    """What :meth:`EvidenceStore.checkpoint` did for one chain."""

    chain: str
    checkpoint: Checkpoint | None
    skipped: str | None
    """Why nothing was signed (None when a checkpoint was signed)."""
    warning: str | None = None
    """What went wrong after signing (the witness could not be written)."""

    @property
    def nothing_new(self) -> bool:
        return self.skipped == _NOTHING_NEW


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

    def __init__(
        self,
        url: str,
        *,
        writable: bool = True,
        notary: Notary | None = None,
        upgrade_legacy: bool = False,
        batch_signer: WorkerSigner | None = None,
    ) -> None:
        """Open the store. ``writable`` brings its schema up to date (see
        :attr:`upgrade`) and restores missing guards after recording that they were
        missing (:attr:`guards_restored`); readers change nothing, so they never wait
        for a writer's lock."""
        self.url = url
        self.notary = notary
        """Signs a checkpoint of each chain a run wrote to (None: evidence stays unsigned)."""
        self.batch_signer = batch_signer
        """A worker's own key, certified by the MSP's, signing what it appends (when it
        has no ``notary``): a checkpoint by the control node then takes those in."""
        self._signer_stored = False
        self.checkpoint_outcomes: list[CheckpointOutcome] = []
        """Every :meth:`checkpoint` call's outcome, for the command to report."""
        self.upgrade: migrate.Upgrade | None = None
        """What opening for writing did to the schema (None for readers)."""
        self.guards_restored: list[str] = []
        """Guards found missing on opening for writing, recorded and then restored."""
        self._write_lock = threading.Lock()
        self._unsigned_appends = False
        self._written: dict[str, dict[int, str]] = {}
        """Per chain, the records this store object appended and has not yet signed
        (seq -> hash): a checkpoint signs only what its own process wrote."""
        unusable = evidence_url_problem(url)
        if unusable:
            raise EvidenceError(f"cannot open the evidence store: {unusable}")
        path = _sqlite_path(url)
        if not writable and path is not None and not path.exists():
            raise NoEvidenceYet(f"no evidence recorded yet in {path}")
        try:
            self.engine = _engine(url)
            if writable:
                lock = None if path is None else path.with_name(path.name + ".migrate.lock")
                self.upgrade = migrate.upgrade(self.engine, lock, legacy=upgrade_legacy)
                self._restore_guards()
            elif not self._readable():
                raise NoEvidenceYet(f"no evidence recorded yet in {_safe(url)}")
        except SQLAlchemyError as exc:
            raise EvidenceError(
                f"cannot open the evidence store {_safe(url)}: {_first_line(exc)}"
            ) from None
        except migrate.LegacyStore:
            raise EvidenceError(
                f"the evidence store {_safe(url)} is from release 0.1: run 'mspauto evidence "
                "upgrade' (with the signing key and the witness folder in place) first"
            ) from None
        except migrate.UnknownRevision as exc:
            raise EvidenceError(
                f"the evidence store {_safe(url)} has schema revision {exc}, which this "
                "mspauto does not know: it was written by a newer release; upgrade mspauto"
            ) from None

    def _readable(self) -> bool:
        """Whether the store has evidence tables, for a reader. A SQLite file this
        process cannot write to (a read-only copy, say) is reopened as immutable."""
        try:
            return inspect(self.engine).has_table("evidence_records")
        except OperationalError:
            path = _sqlite_path(self.url)
            if path is None:
                raise
            if path.with_name(path.name + "-wal").exists():
                # An immutable open ignores the WAL: what it holds would go unseen.
                raise EvidenceError(
                    f"{path} cannot be opened for reading here, and has a -wal file beside "
                    "it that a read-only open would ignore: copy both to a folder you can "
                    "write to and verify there"
                ) from None
            self.engine.dispose()
            self.engine = _engine(self.url, immutable=True)
            return inspect(self.engine).has_table("evidence_records")

    @property
    def wrote_records(self) -> bool:
        """Whether this store object appended records that are not yet signed."""
        return self._unsigned_appends or any(self._written.values())

    def latest_checkpoint(self, chain: str, key: PublicKey) -> Checkpoint | None:
        """The chain's largest checkpoint signed by ``key``, if any."""
        with self.engine.connect() as conn:
            if not inspect(conn).has_table("evidence_checkpoints"):
                return None
            last = _last_checkpoint(conn, chain, key)
        return None if last is None else last.checkpoint

    def guards_missing(self) -> list[str]:
        """Guards (triggers) that should exist and do not, or are disabled: someone
        dropped them, so the database alone no longer stops changes to history."""
        with self.engine.connect() as conn:
            present = present_guards(conn)
        return [name for name in guard_names(self.engine.dialect.name) if name not in present]

    def _restore_guards(self) -> None:
        """Record that guards were missing, as evidence, before putting them back: the
        missing guard is the only trace of whatever was done while it was gone."""
        missing = self.guards_missing()
        if not missing:
            return
        self.append(
            [
                NewRecord(
                    STORE_CHAIN,
                    "guards_missing",
                    str(uuid.uuid4()),
                    datetime.now(UTC),
                    {"guards": missing, "restored": True},
                )
            ]
        )
        with self.engine.begin() as conn:
            install_guards(conn, missing)
        self.guards_restored = missing

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    # --- writing ------------------------------------------------------------------

    def append(self, new: Sequence[NewRecord]) -> list[StoredRecord]:
        """Append records in one transaction, chaining each onto its chain's head."""
        if not new:
            return []
        stored: list[StoredRecord] = []
        rows: list[tuple[Any, ...]] = []
        blobs: dict[str, bytes] = {}
        # A worker's certificate goes in with its first append that commits.
        certify = self.notary is None and self.batch_signer is not None and not self._signer_stored
        with self._write_lock, self.engine.begin() as conn:
            heads: dict[str, tuple[int, str]] = {}
            for chain in dict.fromkeys(r.chain for r in new):
                heads[chain] = _lock_head(conn, chain)
            starts = dict(heads)
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
                row = (record.chain, seq, record.kind, record.run_id, record.host)
                rows.append((*row, recorded_at, payload, prev, digest))
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
            # One statement for all rows of the batch, straight to the driver's
            # executemany: a statement per record cost more than the hashing, and
            # SQLAlchemy's per-row parameter handling a sixth of each append.
            conn.exec_driver_sql(_insert_records_sql(conn), rows)
            if self.notary is not None or self.batch_signer is not None:
                if certify:
                    self._store_certificate(conn)
                conn.execute(insert(batches), self._batch_signatures(starts, heads))
            if blobs:
                _put_outputs(conn, blobs)
            for chain, (seq, digest) in heads.items():
                conn.execute(
                    update(chain_heads)
                    .where(chain_heads.c.chain == chain, chain_heads.c.seq <= seq)
                    .values(seq=seq, hash=digest)
                )
        self._signer_stored = self._signer_stored or certify
        if self.notary is None:
            # Nothing here will sign them (a worker's are signed by the control node's
            # checkpoint): keep no list.
            self._unsigned_appends = self.batch_signer is None
        else:  # what a checkpoint signs (and then forgets)
            for written in stored:
                self._written.setdefault(written.chain, {})[written.seq] = written.hash
        return stored

    def _batch_signatures(
        self, starts: Mapping[str, tuple[int, str]], ends: Mapping[str, tuple[int, str]]
    ) -> list[dict[str, Any]]:
        """One signature per chain over what this append added to it: proof that a key
        holder wrote these records, for a checkpoint signed by another process (a
        concurrent run, or the next run after this one was killed)."""
        signer: Notary | WorkerSigner | None = self.notary
        certificate = None  # signed with the MSP's key
        if signer is None:
            signer = self.batch_signer
            assert signer is not None
            certificate = signer.certificate.fingerprint
        signed = []
        for chain, (before, prev) in starts.items():
            last, last_hash = ends[chain]
            signature = signer.sign_batch(chain, before + 1, prev, last, last_hash)
            signed.append(
                {
                    "chain": chain,
                    "first_seq": before + 1,
                    "last_seq": last,
                    "signature": signature,
                    "signer": certificate,
                }
            )
        return signed

    def _store_certificate(self, conn: Connection) -> None:
        """Keep this worker's certificate beside its signatures (if no one did yet:
        workers sharing a certificate may store it at once)."""
        assert self.batch_signer is not None
        certificate = self.batch_signer.certificate
        insert_new = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        conn.execute(
            insert_new(signers)
            .values(fingerprint=certificate.fingerprint, certificate=certificate.note)
            .on_conflict_do_nothing()
        )

    def checkpoint(
        self, chain: str, *, adopt: bool = False, legacy: bool = False
    ) -> CheckpointOutcome:
        """Sign a checkpoint of ``chain`` as it is now, store it and hand it to the witness.

        Records since the chain's last checkpoint are checked first (links and hashes),
        and signed only if this store object wrote them: records someone else put in the
        database between runs are never signed by the next run. ``adopt`` signs them
        anyway, for ``mspauto evidence checkpoint`` after a person reviewed them (a run
        cut short by a crash leaves its records unsigned until then). ``legacy`` signs
        unsigned records only at the start of the chain, before any a writer signed:
        records from a release without signed appends (``mspauto evidence upgrade``)."""
        if self.notary is None:
            raise EvidenceError("no signing key: run 'mspauto keys init'")
        outcome = self._checkpoint(chain, self.notary, adopt, legacy)
        self.checkpoint_outcomes.append(outcome)
        return outcome

    def _checkpoint(
        self, chain: str, notary: Notary, adopt: bool, legacy: bool
    ) -> CheckpointOutcome:
        try:
            signed, written = self._sign_chain(chain, notary, adopt, legacy)
        except _Unsignable as reason:
            if reason.broken_at is not None and notary.witness is not None:
                # Nothing can be checkpointed past the break; the witness still learns
                # how far the chain reached, so removing what follows is caught.
                with suppress(OSError):  # the outcome says the chain is unsigned anyway
                    notary.witness.append(notary.sign_head(chain, *reason.broken_at))
            return CheckpointOutcome(chain, None, str(reason))
        self._written[chain] = {s: h for s, h in written.items() if s > signed.size}
        if notary.witness is not None:
            try:
                notary.witness.append(signed)
            except WitnessCopyError as exc:  # the log has it; a copy elsewhere does not
                return CheckpointOutcome(
                    chain,
                    signed,
                    None,
                    f"the checkpoint at #{signed.size} is witnessed, but "
                    f"{'; and '.join(exc.failures)}",
                )
            except OSError as exc:
                return CheckpointOutcome(
                    chain,
                    signed,
                    None,
                    f"the checkpoint at #{signed.size} is signed but not witnessed: cannot "
                    f"write {notary.witness.path}: {exc.strerror or exc}",
                )
        return CheckpointOutcome(chain, signed, None)

    def _sign_chain(
        self, chain: str, notary: Notary, adopt: bool, legacy: bool
    ) -> tuple[Checkpoint, dict[int, str]]:
        """Sign and store a checkpoint of ``chain``; :class:`_Unsignable` says why not."""
        key = notary.key.public_key
        with self._write_lock, self.engine.begin() as conn:
            head_seq, head_hash = _lock_head(conn, chain)
            # Checkpoints not signed by this key (forged, or an older key's) are passed
            # over: the tree is then rebuilt from the first record, and every record
            # must again be this process's or signed by its writer with this key.
            last = _last_checkpoint(conn, chain, key)
            signed_size = 0 if last is None else last.checkpoint.size
            if signed_size > head_seq:
                raise _Unsignable(
                    f"the chain ends at #{head_seq} but its last checkpoint covers "
                    f"#{signed_size}: records were removed; run 'mspauto evidence verify'"
                )
            if signed_size == head_seq:
                raise _Unsignable(_NOTHING_NEW)
            frontier = _frontier_at(conn, chain, last)
            written = self._written.get(chain, {})
            # (A missing record here makes the first link below fail: "broken".)
            prev = _hash_at(conn, chain, signed_size) or ""
            hashes = {signed_size: prev}
            unknown: list[int] = []
            # Records this process wrote are known by hash: only the links and hashes
            # are read back. Others are read whole and rehashed, then signed only if a
            # key holder signed them when appending (or a person adopts them).
            query = (
                select(records.c.seq, records.c.prev_hash, records.c.hash)
                .where(records.c.chain == chain, records.c.seq > signed_size)
                .order_by(records.c.seq)
            )
            for seq, prev_hash, digest in conn.execute(
                query.execution_options(yield_per=_READ_BATCH)
            ):
                ours = written.get(seq) == digest
                if (
                    seq != frontier.size + 1
                    or prev_hash != prev
                    or not (ours or digest == _rehash(_record_at(conn, chain, seq)))
                ):
                    raise _Unsignable(
                        f"the chain is broken at #{seq}: nothing signed; run "
                        "'mspauto evidence verify'",
                        (head_seq, head_hash),
                    )
                if not ours:
                    unknown.append(seq)
                hashes[seq] = digest
                frontier.append(leaf_hash(bytes.fromhex(digest)))
                prev = digest
            ranges = _signed_batches(conn, chain, signed_size, key, hashes.get) if unknown else []
            foreign = [seq for seq in unknown if not _within(seq, ranges)]
            if frontier.size != head_seq or prev != head_hash:
                raise _Unsignable(
                    "its last record moved while signing: nothing signed; run "
                    "'mspauto evidence verify'"
                )
            if legacy and foreign == list(range(1, len(foreign) + 1)):
                foreign = []  # from before signed appends existed, and nothing after
            if foreign and not adopt:
                raise _Unsignable(
                    f"records {_spans(foreign)} were not written by a holder of the signing "
                    "key; left unsigned "
                    f"for review ('mspauto evidence checkpoint --client {chain}')"
                )
            signed = notary.sign(chain, frontier.size, frontier.root())
            conn.execute(
                insert(checkpoints).values(
                    chain=chain,
                    size=signed.size,
                    root=signed.root.hex(),
                    signed_at=signed.time,
                    note=signed.note,
                    frontier=json.dumps(frontier.to_json()),
                )
            )
        return signed, written

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
                    _payload(row.payload),
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

    def outputs(self, hashes: Iterable[str]) -> dict[str, bytes]:
        """Stored outputs by their hashes, in one round trip per 500 (those missing are
        left out)."""
        wanted, found = sorted(set(hashes)), dict[str, bytes]()
        with self.engine.connect() as conn:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                rows = conn.execute(
                    select(outputs.c.sha256, outputs.c.data).where(outputs.c.sha256.in_(chunk))
                )
                found.update((row.sha256, bytes(row.data)) for row in rows)
        return found

    def chains(self) -> list[str]:
        """Every chain (client) with evidence, or a head saying it had some."""
        with self.engine.connect() as conn:
            found = {row.chain for row in conn.execute(select(records.c.chain).distinct())}
            found |= {row.chain for row in conn.execute(select(chain_heads.c.chain))}
            if inspect(conn).has_table("evidence_checkpoints"):
                found |= {row.chain for row in conn.execute(select(checkpoints.c.chain))}
        # A name that is not text (SQLite keeps whatever it is given) is no chain mspauto
        # wrote: verify reports such rows (_untyped_rows).
        return sorted(chain for chain in found if isinstance(chain, str))

    def signed_checkpoints(self, chain: str, key: PublicKey) -> list[Checkpoint]:
        """The chain's stored checkpoints that ``key`` signed for this chain, smallest
        first. Rows that are not (forged, another key's, another chain's note) are
        skipped: verify reports them."""
        with self.engine.connect() as conn:
            if not inspect(conn).has_table("evidence_checkpoints"):
                return []
            query = (
                select(checkpoints.c.note)
                .where(checkpoints.c.chain == chain)
                .order_by(checkpoints.c.size, checkpoints.c.id)
            )
            found = []
            for row in conn.execute(query):
                try:
                    checkpoint = parse_checkpoint(row.note, key)
                except SigningError:
                    continue
                if checkpoint.chain == chain and not checkpoint.head:
                    found.append(checkpoint)
        return found

    def stored_hashes(self, chain: str, size: int) -> Iterator[tuple[int, str]]:
        """``(seq, hash)`` of the chain's records ``1..size`` in order, as their hash
        column holds them (nothing recomputed: for the writer that signed them, which
        builds proofs from them; :meth:`content_hashes` is for checking). A missing
        record is simply absent (callers check the sequence)."""
        query = (
            select(records.c.seq, records.c.hash)
            .where(records.c.chain == chain, records.c.seq >= 1, records.c.seq <= size)
            .order_by(records.c.seq)
        )
        with self._snapshot() as conn:
            if conn.dialect.name != "sqlite":
                yield from conn.execute(query.execution_options(yield_per=_READ_BATCH))
                return
            # Straight from the driver's cursor: SQLAlchemy's rows were a third of the
            # time of this read, which a report's manifest makes of a month's records.
            cursor = conn.connection.cursor()
            cursor.execute(
                f"SELECT seq, hash FROM {records.name} WHERE chain = ? AND seq BETWEEN 1 AND ? "
                "ORDER BY seq",
                (chain, size),
            )
            while batch := cursor.fetchmany(_READ_BATCH):
                yield from batch

    def content_hashes(self, chain: str, size: int) -> Iterator[RecordHashes]:
        """The chain's records ``1..size`` in order, read as one snapshot, each with the
        hash recomputed from its stored content, as verify does: an edited record shows
        as another hash. A missing record is simply absent (callers check the sequence)."""
        c = records.c
        query = (
            select(
                c.chain,
                c.seq,
                c.kind,
                c.run_id,
                c.host,
                c.recorded_at,
                c.payload,
                c.prev_hash,
                c.hash,
            )
            .where(c.chain == chain, c.seq >= 1, c.seq <= size)
            .order_by(c.seq)
        )
        unreadable = hashlib.sha256(b"").hexdigest()  # as _rehash gives
        sha256 = hashlib.sha256
        with self._snapshot() as conn:
            rows = conn.execute(query.execution_options(yield_per=_READ_BATCH))
            # record_hash inlined, the row unpacked by position: reading fields by name
            # and a call per record cost as much as the hashing itself.
            for stored, seq, kind, run_id, host, recorded_at, payload, prev, digest in rows:
                try:
                    material = "\x1f".join(
                        (prev, stored, str(seq), kind, run_id, host, recorded_at, payload)
                    )
                    content = sha256(material.encode()).hexdigest()
                except TypeError:  # a field not of its type (SQLite keeps any)
                    content = unreadable
                if type(seq) is not int:
                    content = unreadable
                yield RecordHashes(seq, kind, recorded_at, prev, digest, content)

    def recorded_times(
        self, chain: str, kinds: Collection[str], *, after: int
    ) -> Iterator[tuple[int, str]]:
        """``(seq, recorded_at)`` of the chain's records after ``after`` whose kind is one
        of ``kinds``, in order."""
        query = (
            select(records.c.seq, records.c.recorded_at)
            .where(records.c.chain == chain, records.c.kind.in_(kinds), records.c.seq > after)
            .order_by(records.c.seq)
        )
        with self._snapshot() as conn:
            yield from conn.execute(query.execution_options(yield_per=_READ_BATCH))

    # --- verifying ----------------------------------------------------------------

    def verify(
        self,
        chains: Iterable[str] | None = None,
        *,
        key: PublicKey | None = None,
        witness: Witness | None = None,
        must_exist: bool = False,
    ) -> Verification:
        """Recompute every chain, its Merkle roots and its signed checkpoints.

        Without ``key`` only the hash links are checked (anyone who can write the
        database can forge those). With it, every checkpoint's signature is checked,
        each signed root is recomputed from the records, and records no signed
        checkpoint covers are reported. With ``witness``, its checkpoints count too,
        so a store cut back, rolled back or missing a chain is caught. Each chain is
        read as one snapshot, in batches, so memory stays flat as the store grows."""
        result = Verification(key is not None, witness is not None and key is not None)
        witnessed = {}
        if witness is not None and key is not None:
            if witness.exists() or must_exist or self.anything_signed():
                witnessed = _read_witness(witness, key, result)
            else:  # nothing was ever signed, so nothing was witnessed yet
                result.witness_checked = False
                result.warnings.append(
                    f"no witness log at {witness.path} yet: nothing was signed so far"
                )
        chosen = sorted(set(self.chains()) | set(witnessed)) if chains is None else list(chains)
        untyped = self._untyped_rows()
        if untyped:
            result.problems.append(
                VerifyProblem(
                    "store",
                    0,
                    f"{untyped} records hold values of the wrong type (bytes where text "
                    "belongs): they were not written by mspauto",
                )
            )
        verified_outputs = _VerifiedOutputs()
        for chain in chosen:
            self._verify_chain(chain, key, witnessed.get(chain, []), result, verified_outputs)
        with self.engine.connect() as conn:
            if inspect(conn).has_table("evidence_records"):
                query = select(records.c.payload, records.c.recorded_at).where(
                    records.c.chain == STORE_CHAIN, records.c.kind == "guards_missing"
                )
                for row in conn.execute(query):
                    found = _json_field(row.payload, "guards") or ["(unreadable)"]
                    result.warnings.append(
                        f"the guards {', '.join(map(str, found))} were found missing at "
                        f"{row.recorded_at} and restored: until then the database alone did "
                        "not stop changes (the signed checkpoints still vouch for the records)"
                    )
        return result

    def _untyped_rows(self) -> int:
        """Records whose columns hold another type (possible only in SQLite)."""
        if self.engine.dialect.name != "sqlite":
            return 0
        checks = " OR ".join(
            f"typeof({column}) <> 'text'"
            for column in ("chain", "kind", "run_id", "host", "recorded_at", "payload")
        )
        with self.engine.connect() as conn:
            query = (
                f"SELECT count(*) FROM evidence_records WHERE {checks} OR typeof(seq) <> 'integer'"
            )
            return int(conn.exec_driver_sql(query).scalar() or 0)

    def anything_signed(self) -> bool:
        """Whether any checkpoint or signed append is stored (then a witness must be)."""
        with self.engine.connect() as conn:
            return any(
                inspect(conn).has_table(table.name)
                and conn.execute(select(table.c.id).limit(1)).first() is not None
                for table in (checkpoints, batches)
            )

    def _verify_chain(
        self,
        chain: str,
        key: PublicKey | None,
        witnessed: list[Checkpoint],
        result: Verification,
        verified_outputs: _VerifiedOutputs,
    ) -> None:
        problems = result.problems
        expected_seq, prev = 1, GENESIS
        frontier = Frontier()
        with self._snapshot() as conn:
            head = conn.execute(select(chain_heads).where(chain_heads.c.chain == chain)).first()
            signed = _signed_roots(conn, chain, key, [w for w in witnessed if not w.head], result)
            heads = {w.size: w.root for w in witnessed if w.head}
            query = select(records).where(records.c.chain == chain).order_by(records.c.id)
            # yield_per makes PostgreSQL use a server-side cursor, so only one batch of
            # rows is ever held here; SQLite's cursor fetches lazily anyway.
            rows = conn.execute(query.execution_options(yield_per=_READ_BATCH))
            for batch in rows.partitions(_READ_BATCH):
                referenced = [list(_output_hashes(row.payload)) for row in batch]
                intact = verified_outputs.check(
                    conn, {sha for names in referenced for _, sha in names}
                )
                for row, named_outputs in zip(batch, referenced, strict=True):
                    # The leaf is the hash of the record's content as stored now, not
                    # its hash column: a signed root then vouches for every field.
                    digest = _rehash(row)
                    problems.extend(
                        _record_problems(
                            chain, row, digest, expected_seq, prev, named_outputs, intact
                        )
                    )
                    expected_seq, prev = row.seq + 1, row.hash
                    frontier.append(leaf_hash(bytes.fromhex(digest)))
                    seen = heads.get(frontier.size)
                    if seen is not None and seen != _head_digest(row.hash):
                        problems.append(
                            VerifyProblem(
                                chain,
                                frontier.size,
                                "not the record the witness saw here (a head note): records "
                                "were replaced",
                            )
                        )
                    roots = signed.get(frontier.size)
                    if roots is not None and frontier.root() not in roots:
                        problems.append(
                            VerifyProblem(
                                chain,
                                frontier.size,
                                "the records up to here do not match the signed checkpoint "
                                "of this size: history was rewritten",
                            )
                        )
            count = frontier.size
            covered = max((size for size in signed if size <= count), default=0)
            if key is not None and count > covered:
                _check_unsigned_tail(conn, chain, covered, count, key, result)
        result.checked += count
        if head is not None and (head.seq, head.hash) != (expected_seq - 1, prev):
            problems.append(
                VerifyProblem(
                    chain,
                    head.seq,
                    f"the chain head says #{head.seq} but the last record "
                    f"is #{expected_seq - 1}: records were removed at the end",
                )
            )
        cut = sorted(size for size in heads if size > count)
        if cut:
            problems.append(
                VerifyProblem(
                    chain,
                    cut[-1],
                    f"the witness saw this chain reach #{cut[-1]} (a head note) but it ends at "
                    f"#{count}: records were removed or the store was rolled back",
                )
            )
        beyond = sorted(size for size in signed if size > count)
        if beyond:
            what = "the chain is missing" if count == 0 else f"the chain ends at #{count}"
            problems.append(
                VerifyProblem(
                    chain,
                    beyond[-1],
                    f"a signed checkpoint covers #{beyond[-1]} but {what}: records were "
                    "removed or the store was rolled back to an older copy",
                )
            )

    @contextmanager
    def _snapshot(self) -> Iterator[Connection]:
        """A connection that sees the database as of one moment, for one chain's verify
        (records appended meanwhile are left for the next verify)."""
        options = (
            {"isolation_level": "REPEATABLE READ"}
            if self.engine.dialect.name == "postgresql"
            else {}
        )
        with self.engine.connect().execution_options(**options) as conn, conn.begin():
            yield conn


def _signed_roots(
    conn: Connection,
    chain: str,
    key: PublicKey | None,
    witnessed: list[Checkpoint],
    result: Verification,
) -> dict[int, set[bytes]]:
    """The Merkle root each signed checkpoint of ``chain`` vouches for, by tree size:
    the store's own (each signature checked) and the witness's."""
    signed: dict[int, set[bytes]] = {}
    if key is None:
        return signed
    stored_latest = 0
    if inspect(conn).has_table("evidence_checkpoints"):
        query = select(checkpoints).where(checkpoints.c.chain == chain).order_by(checkpoints.c.id)
        for row in conn.execute(query):
            try:
                checkpoint = parse_checkpoint(row.note, key)
            except SigningError as exc:
                result.problems.append(
                    VerifyProblem(
                        chain,
                        row.size,
                        f"checkpoint not signed by key {key.fingerprint()} ({exc}): forged",
                    )
                )
                continue
            if (checkpoint.chain, checkpoint.size, checkpoint.root.hex()) != (
                chain,
                row.size,
                row.root,
            ):
                result.problems.append(
                    VerifyProblem(
                        chain,
                        row.size,
                        "a checkpoint's stored columns disagree with its signed note: edited",
                    )
                )
                if checkpoint.chain != chain:
                    continue
            result.checkpoints += 1
            stored_latest = max(stored_latest, checkpoint.size)
            signed.setdefault(checkpoint.size, set()).add(checkpoint.root)
    witnessed_latest = 0
    for checkpoint in witnessed:
        witnessed_latest = max(witnessed_latest, checkpoint.size)
        signed.setdefault(checkpoint.size, set()).add(checkpoint.root)
    for size, roots in sorted(signed.items()):
        if len(roots) > 1:
            result.problems.append(
                VerifyProblem(
                    chain,
                    size,
                    "two different signed roots for this size: the signing key signed two "
                    "different histories (treat the key as compromised)",
                )
            )
    if result.witness_checked and stored_latest > witnessed_latest:
        result.problems.append(
            VerifyProblem(
                chain,
                stored_latest,
                "this checkpoint is signed but not in the witness log: the log was cut, or "
                "a write to it failed ('mspauto evidence checkpoint' writes it again); "
                f"rollback is ruled out only up to #{witnessed_latest}",
            )
        )
    return signed


def _read_witness(
    witness: Witness, key: PublicKey, result: Verification
) -> dict[str, list[Checkpoint]]:
    """Every checkpoint in the witness log, by chain, each signature checked."""
    found: dict[str, list[Checkpoint]] = {}
    if not witness.exists():
        result.problems.append(
            VerifyProblem(
                "witness",
                0,
                f"no witness log at {witness.path}: a rollback of the store cannot be ruled "
                "out (give the right folder with --witness, or --no-witness to accept that)",
            )
        )
        return found
    for entry in witness.entries():
        if isinstance(entry, str):
            result.problems.append(VerifyProblem("witness", 0, entry))
            continue
        try:
            checkpoint = parse_checkpoint(entry.note, key)
        except SigningError as exc:
            result.problems.append(
                VerifyProblem(
                    "witness",
                    entry.line,
                    f"line {entry.line} is not signed by key {key.fingerprint()} ({exc}): "
                    "someone else wrote to the witness log",
                )
            )
            continue
        found.setdefault(checkpoint.chain, []).append(checkpoint)
    return found


@dataclass(frozen=True)
class _Signed:
    """A stored checkpoint whose signature checked out, with its stored frontier."""

    checkpoint: Checkpoint
    frontier: str


def _last_checkpoint(conn: Connection, chain: str, key: PublicKey) -> _Signed | None:
    """The chain's largest checkpoint signed by ``key``, if any (rows that are not,
    forged or from another key, are skipped here; verify reports them)."""
    query = (
        select(checkpoints.c.note, checkpoints.c.frontier)
        .where(checkpoints.c.chain == chain)
        .order_by(checkpoints.c.size.desc())
    )
    for row in conn.execute(query):
        try:
            checkpoint = parse_checkpoint(row.note, key)
        except SigningError:
            continue
        if checkpoint.chain == chain:
            return _Signed(checkpoint, row.frontier)
    return None


def _frontier_at(conn: Connection, chain: str, last: _Signed | None) -> Frontier:
    """The Merkle frontier at the last checkpoint (stored with it, or rebuilt), checked
    against that checkpoint's signed root so a new checkpoint only ever extends it."""
    if last is None:
        return Frontier()
    size, signed_root = last.checkpoint.size, last.checkpoint.root
    try:
        frontier = Frontier.from_json(json.loads(last.frontier))
    except (ValueError, TypeError, RecursionError):  # damaged: rebuilt below
        frontier = Frontier()
    if frontier.size != size or frontier.root() != signed_root:
        frontier = Frontier()
        query = (
            select(records)
            .where(records.c.chain == chain, records.c.seq <= size)
            .order_by(records.c.seq)
        )
        for row in conn.execute(query.execution_options(yield_per=_READ_BATCH)):
            frontier.append(leaf_hash(bytes.fromhex(_rehash(row))))
        if frontier.size != size or frontier.root() != signed_root:
            raise _Unsignable(
                f"the chain no longer matches its checkpoint at #{size}: nothing signed; "
                "run 'mspauto evidence verify'"
            )
    return frontier


def _hash_at(conn: Connection, chain: str, seq: int) -> str | None:
    """The stored hash of record ``seq`` (GENESIS before the first; None if missing)."""
    if seq == 0:
        return GENESIS
    found = conn.execute(
        select(records.c.hash).where(records.c.chain == chain, records.c.seq == seq)
    ).scalar()
    return None if found is None else str(found)


def _check_unsigned_tail(
    conn: Connection, chain: str, covered: int, count: int, key: PublicKey, result: Verification
) -> None:
    """Records after the newest checkpoint: those a key holder signed when appending
    them (a run in progress, or killed) are a warning; any others are forged."""

    def hash_at(seq: int) -> str | None:
        return _hash_at(conn, chain, seq)

    has_batches = inspect(conn).has_table("evidence_batches")  # not in a 0.1 store
    ranges = _signed_batches(conn, chain, covered, key, hash_at) if has_batches else []
    tail = range(covered + 1, count + 1)
    unsigned = [seq for seq in tail if not _within(seq, ranges)]
    if unsigned:
        result.problems.append(
            VerifyProblem(
                chain,
                unsigned[0],
                f"records {_spans(unsigned)} are signed neither by a checkpoint nor by the "
                "writer that appended them: added without the signing key (review them, "
                f"then 'mspauto evidence checkpoint --client {chain}')",
            )
        )
    if len(unsigned) < len(tail):
        writer_signed = [seq for seq in tail if _within(seq, ranges)]
        result.warnings.append(
            f"{chain}: records {_spans(writer_signed)} are signed by their writer but no "
            "checkpoint covers them yet (a run in progress, or cut short): the next run "
            "of this client, or 'mspauto evidence checkpoint', signs them"
        )


def _signed_batches(
    conn: Connection,
    chain: str,
    after: int,
    key: PublicKey,
    hash_at: Callable[[int], str | None],
) -> list[tuple[int, int]]:
    """The ranges of records after ``after`` whose writer signed them when appending
    them: with ``key``, or with a worker key whose certificate ``key`` signed for this
    chain and which has not expired (``hash_at`` gives a record's hash, None if
    unknown)."""
    with_signer = "signer" in {c["name"] for c in inspect(conn).get_columns(batches.name)}
    columns = [batches.c.first_seq, batches.c.last_seq, batches.c.signature]
    query = (
        select(*columns, batches.c.signer if with_signer else null().label("signer"))
        .where(batches.c.chain == chain, batches.c.last_seq > after)
        .order_by(batches.c.first_seq)
    )
    ranges = []
    workers: dict[str, PublicKey | None] = {}
    for row in conn.execute(query):
        if not (isinstance(row.first_seq, int) and isinstance(row.last_seq, int)):
            continue  # not a row mspauto wrote (SQLite keeps any type)
        prev, last = hash_at(row.first_seq - 1), hash_at(row.last_seq)
        if prev is None or last is None:
            continue
        try:
            signature = base64.b64decode(row.signature, validate=True)
        except ValueError:
            continue
        signer: PublicKey | None = key
        if row.signer is not None:
            if row.signer not in workers:
                workers[row.signer] = _worker_key(conn, str(row.signer), chain, key)
            signer = workers[row.signer]
        if signer is None:
            continue
        message = batch_message(chain, row.first_seq, prev, row.last_seq, last)
        if signer.verify(message, signature):
            ranges.append((row.first_seq, row.last_seq))
    return ranges


def _worker_key(conn: Connection, fingerprint: str, chain: str, key: PublicKey) -> PublicKey | None:
    """The worker key the certificate ``fingerprint`` names, if ``key`` signed it for
    ``chain`` and it has not expired; None otherwise (its signatures count for nothing)."""
    if not inspect(conn).has_table(signers.name):
        return None
    note = conn.execute(
        select(signers.c.certificate).where(signers.c.fingerprint == fingerprint)
    ).scalar()
    if not isinstance(note, str) or hashlib.sha256(note.encode()).hexdigest() != fingerprint:
        return None
    try:
        certificate = WorkerCertificate.read(note, key)
    except SigningError:
        return None
    return certificate.key if certificate.allows(chain, datetime.now(UTC)) else None


def _within(seq: int, ranges: Sequence[tuple[int, int]]) -> bool:
    return any(first <= seq <= last for first, last in ranges)


def _record_at(conn: Connection, chain: str, seq: int) -> Row[Any]:
    return conn.execute(select(records).where(records.c.chain == chain, records.c.seq == seq)).one()


def _rehash(row: Row[Any]) -> str:
    """The hash a stored record's content gives (that of an empty record if a field is
    not of its type, which SQLite allows: the record then does not match its hash)."""
    digest = _sql_record_hash(
        row.prev_hash,
        row.chain,
        row.seq,
        row.kind,
        row.run_id,
        row.host,
        row.recorded_at,
        row.payload,
    )
    return digest if digest is not None else hashlib.sha256(b"").hexdigest()


def _head_digest(stored_hash: object) -> bytes:
    """What a head note holds for a record: the SHA-256 of its stored hash text."""
    return hashlib.sha256(str(stored_hash).encode(errors="replace")).digest()


def _spans(seqs: Sequence[int]) -> str:
    """Ascending record numbers as runs: ``#4..#7, #9``."""
    runs: list[list[int]] = []
    for seq in seqs:
        if runs and seq == runs[-1][1] + 1:
            runs[-1][1] = seq
        else:
            runs.append([seq, seq])
    return ", ".join(f"#{a}" if a == b else f"#{a}..#{b}" for a, b in runs)


def _record_problems(
    chain: str,
    row: Row[Any],
    digest: str,
    expected_seq: int,
    prev: str,
    named_outputs: Iterable[tuple[str, str]],
    intact: Mapping[str, bool],
) -> Iterator[VerifyProblem]:
    """What is wrong with one stored record (whose content hashes to ``digest``), given
    where the chain expects it."""
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


def _payload(text: object) -> dict[str, Any]:
    """A stored payload; empty when it is not what mspauto writes (verify names it)."""
    try:
        payload = json.loads(text)  # type: ignore[arg-type]
    except (ValueError, TypeError, RecursionError):
        return {}
    return payload if isinstance(payload, dict) else {}


def _json_field(payload_text: object, name: str) -> list[str]:
    """A list field of a stored payload, as text; empty when the payload is not what
    mspauto writes (verify must report such a record, never stop on it)."""
    value = _payload(payload_text).get(name)
    return [str(item) for item in value] if isinstance(value, list) else []


def _output_hashes(payload_text: str) -> Iterator[tuple[str, str]]:
    try:
        payload = json.loads(payload_text)
    except (ValueError, TypeError, RecursionError):
        return
    for name in ("stdout", "stderr", "script"):
        described = payload.get(name) if isinstance(payload, dict) else None
        if isinstance(described, dict) and isinstance(described.get("sha256"), str):
            yield name, described["sha256"]


def _lock_head(conn: Connection, chain: str) -> tuple[int, str]:
    """The chain's last record (seq, hash), with the chain locked for this transaction
    (other writers wait)."""
    dialect = conn.dialect.name
    upsert = (pg_insert if dialect == "postgresql" else sqlite_insert)(chain_heads)
    conn.execute(upsert.values(chain=chain, seq=0, hash=GENESIS).on_conflict_do_nothing())
    # The upsert took SQLite's write lock; PostgreSQL locks the head row. (No update
    # here: a head row someone planted must not stop the chain from being written.)
    if dialect == "postgresql":
        conn.execute(
            select(chain_heads.c.seq).where(chain_heads.c.chain == chain).with_for_update()
        )
    # Chain onto the real last record, not what the head row says: a record slipped in
    # beyond the head must not stop every later run from recording (it is reported by
    # verify, and never signed by a checkpoint).
    last = conn.execute(
        select(records.c.seq, records.c.hash)
        .where(records.c.chain == chain)
        .order_by(records.c.seq.desc())
        .limit(1)
    ).first()
    return (0, GENESIS) if last is None else (last.seq, last.hash)


def _put_outputs(conn: Connection, blobs: Mapping[str, bytes]) -> None:
    """Store outputs by their SHA-256; one already stored is left as it is."""
    dialect = conn.dialect.name
    upsert = (pg_insert if dialect == "postgresql" else sqlite_insert)(outputs)
    conn.execute(
        upsert.on_conflict_do_nothing(),
        [{"sha256": sha, "size": len(data), "data": data} for sha, data in blobs.items()],
    )


_RECORD_COLUMNS = "chain, seq, kind, run_id, host, recorded_at, payload, prev_hash, hash"
"""The columns :meth:`EvidenceStore.append` writes, in the order of its row tuples."""


def _insert_records_sql(conn: Connection) -> str:
    """The INSERT of evidence records in the driver's own placeholder style."""
    marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    count = len(_RECORD_COLUMNS.split(", "))
    return f"INSERT INTO {records.name} ({_RECORD_COLUMNS}) VALUES ({', '.join([marker] * count)})"


def _sql_record_hash(
    prev: object,
    chain: object,
    seq: object,
    kind: object,
    run_id: object,
    host: object,
    recorded_at: object,
    payload: object,
) -> str | None:
    """:func:`record_hash` for the SQLite continuity guard (None if a field is not of
    its type, which the guard then refuses)."""
    if type(seq) is not int:
        return None
    try:
        # str.join refuses anything but text, so a field of another type is refused too.
        fields = cast(list[str], [prev, chain, str(seq), kind, run_id, host, recorded_at, payload])
        material = "\x1f".join(fields)
    except TypeError:
        return None
    return hashlib.sha256(material.encode()).hexdigest()


def _sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///PATH`` URL (None for other databases)."""
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


def _engine(url: str, *, immutable: bool = False) -> Engine:
    """An engine for ``url``. ``immutable`` opens a SQLite file that cannot be written
    (an auditor's read-only copy) without the locks and WAL files SQLite would create."""
    path = _sqlite_path(url)
    if path is not None:
        # Every client's command output lives here: readable by this user only.
        if not immutable:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not path.exists():
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        target = f"sqlite:///file:{quote(str(path))}?immutable=1&uri=true" if immutable else url
        engine = create_engine(target, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            # Transactions begin where SQLAlchemy says (below), not where Python's
            # sqlite3 guesses: DDL in a migration and a verify's reads are then atomic.
            dbapi_connection.isolation_level = None
            # The continuity guard recomputes each new record's hash with this; a
            # connection without it (the sqlite3 shell) cannot insert records at all.
            dbapi_connection.create_function(
                "mspauto_record_hash", 8, _sql_record_hash, deterministic=True
            )
            if immutable:
                return
            cursor = dbapi_connection.cursor()
            _switch_to_wal(cursor)
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN")

        return engine
    return create_engine(url, pool_pre_ping=True)


def _switch_to_wal(cursor: Any, patience: float = 30.0) -> None:
    """Put the file in WAL mode (once set, it stays). Switching needs the file to
    itself, and SQLite answers "database is locked" at once, without its busy
    timeout, while another connection is opening it: several writers opening an
    old or new store together then retry here instead of failing."""
    deadline = time.monotonic() + patience
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


_HOW_TO_NAME_A_STORE = "use sqlite:///PATH or postgresql+psycopg://USER@HOST/DATABASE"


def evidence_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be an evidence store, in words (None when it can): not a
    database URL, a database without mspauto's guards (SQLite and PostgreSQL have them),
    or one whose driver is not installed. Nothing is contacted."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return f"'{_safe(url)}' is not a database URL; {_HOW_TO_NAME_A_STORE}"
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        return (
            f"{_safe(url)}: evidence is kept only in SQLite or PostgreSQL, whose triggers "
            f"guard its chains; {_HOW_TO_NAME_A_STORE}"
        )
    try:
        parsed.get_dialect().import_dbapi()
    except ImportError as exc:  # a driver SQLAlchemy knows but nobody installed
        return (
            f"{_safe(url)}: no driver for it is installed ({exc.name or exc}); "
            f"{_HOW_TO_NAME_A_STORE}"
        )
    except Exception as exc:  # e.g. an unknown driver name after '+'
        return f"{_safe(url)}: {_first_line(exc)}; {_HOW_TO_NAME_A_STORE}"
    return None


def _safe(url: str) -> str:
    """The URL without its password (if it has one), for messages."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        pass
    else:
        hidden = {k: "***" for k in parsed.query if "password" in k.lower()}
        return parsed.update_query_dict(hidden).render_as_string(hide_password=True)
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
