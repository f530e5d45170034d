"""The attack table: every way to change evidence is refused or detected.

Run against SQLite and the machine's PostgreSQL (127.0.0.1:5432). Each attack is tried
first as a careless or hostile database user would (the guards refuse it), then as
someone who owns the database and drops the guards first (``evidence verify`` with the
MSP's public key and the witness log names it). The attacker never has the signing key.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError, OperationalError

from mspauto.evidence.checkpoints import Notary, Witness
from mspauto.evidence.schema import GENESIS, STORE_CHAIN
from mspauto.evidence.store import (
    EvidenceStore,
    NewRecord,
    Verification,
    canonical_json,
    record_hash,
    store_output,
)
from mspauto.signing import PublicKey, SigningKey, generate_key

pytestmark = pytest.mark.integration

SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"


@dataclass
class Evidence:
    """A store with two clients' runs, signed and witnessed, and the attacker's access."""

    url: str
    store: EvidenceStore
    public_key: PublicKey
    witness: Witness
    raw: Callable[..., None]
    """Runs SQL as the database owner: ``raw(statement, ...)`` in one transaction."""
    copy: Callable[[], str]
    """An older copy of the whole database, as it is now: returns its URL."""

    def verify(self, witness: bool = True) -> Verification:
        return self.store.verify(key=self.public_key, witness=self.witness if witness else None)

    def problems(self) -> list[str]:
        return [str(p) for p in self.verify().problems]


def _run(chain: str, hosts: int = 2) -> list[NewRecord]:
    """One run's records, as the engine writes them."""
    run_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    kept, described = store_output(b"ok\n")
    return [
        NewRecord(chain, "run_started", run_id, now, {"command": "true"}),
        *(
            NewRecord(
                chain,
                "host_result",
                run_id,
                now,
                {"rc": 0, "stdout": described},
                host=f"{chain}-{i}",
                outputs=(kept,),
            )
            for i in range(hosts)
        ),
        NewRecord(chain, "run_finished", run_id, now, {"status": "completed"}),
    ]


def _record_run(store: EvidenceStore, chain: str) -> None:
    store.append(_run(chain))
    outcome = store.checkpoint(chain)
    assert outcome.checkpoint is not None, outcome.skipped


@pytest.fixture(params=["sqlite", "postgresql"])
def evidence(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Evidence]:
    generate_key(tmp_path / "key", tmp_path / "key.pub", comment="test key")
    notary = Notary(SigningKey.load(tmp_path / "key"), Witness(tmp_path / "witness"))
    cleanups: list[Callable[[], None]] = []
    if request.param == "sqlite":
        path = tmp_path / "evidence.db"
        url = f"sqlite:///{path}"

        def copy() -> str:
            with create_engine(url).connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            older = tmp_path / f"older-{uuid.uuid4().hex[:6]}.db"
            shutil.copy(path, older)
            return f"sqlite:///{older}"

    else:
        admin = create_engine(f"{SERVER}/postgres", isolation_level="AUTOCOMMIT")
        name = f"mspauto_attack_{uuid.uuid4().hex[:12]}"
        try:
            with admin.connect() as conn:
                conn.execute(text(f"CREATE DATABASE {name}"))
        except OperationalError as exc:
            pytest.skip(f"PostgreSQL on 127.0.0.1:5432 unavailable: {str(exc).splitlines()[0]}")
        url = f"{SERVER}/{name}"

        def drop(database: str) -> None:
            with admin.connect() as conn:
                conn.execute(text(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))

        cleanups.append(lambda: drop(name))

        def copy() -> str:
            older = f"{name}_old"
            store.engine.dispose()  # a template database must have no other session
            owner.dispose()
            with admin.connect() as conn:
                conn.execute(text(f"CREATE DATABASE {older} TEMPLATE {name}"))
            cleanups.append(lambda: drop(older))
            return f"{SERVER}/{older}"

    store = EvidenceStore(url, notary=notary)
    owner = _attacker_engine(url)

    def raw(*statements: str) -> None:
        with owner.begin() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)

    _record_run(store, "acme")
    _record_run(store, "globex")
    _record_run(store, "acme")
    evidence = Evidence(url, store, notary.key.public_key, notary.witness, raw, copy)  # type: ignore[arg-type]
    try:
        assert evidence.problems() == []
        yield evidence
    finally:
        store.close()
        owner.dispose()
        for cleanup in reversed(cleanups):
            cleanup()


def _attacker_engine(url: str) -> Engine:
    """The database as its owner sees it. On SQLite the attacker also knows mspauto's
    record hash (it is open source) and gives the connection the function the
    continuity guard calls; the sqlite3 shell lacks it and cannot insert at all."""
    engine = create_engine(url)
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _hash_function(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.create_function("mspauto_record_hash", 8, record_hash)

    return engine


def _drop_guards(conn: Connection) -> None:
    if conn.dialect.name == "sqlite":
        names = conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))
        for (name,) in list(names):
            conn.exec_driver_sql(f"DROP TRIGGER {name}")
    else:
        triggers = conn.execute(
            text(
                "SELECT tgname, relname FROM pg_trigger JOIN pg_class ON tgrelid = pg_class.oid "
                "WHERE NOT tgisinternal"
            )
        )
        for name, table in list(triggers):
            conn.exec_driver_sql(f"DROP TRIGGER {name} ON {table}")


@contextmanager
def _owner(evidence: Evidence) -> Iterator[Connection]:
    """The database owner's connection, with every guard dropped first."""
    with _attacker_engine(evidence.url).begin() as conn:
        _drop_guards(conn)
        yield conn


def _refused(evidence: Evidence, *statements: str) -> None:
    with pytest.raises(DBAPIError, match=r"append-only|continuity|mspauto_record_hash"):
        evidence.raw(*statements)


def _hash(evidence: Evidence, chain: str, seq: int) -> str:
    with evidence.store.engine.connect() as conn:
        found = conn.execute(
            text("SELECT hash FROM evidence_records WHERE chain = :c AND seq = :s"),
            {"c": chain, "s": seq},
        ).scalar()
    return str(found)


# --- the table ------------------------------------------------------------------------
# acme: two runs of 4 records (checkpoints at #4 and #8); globex: one run (#4).


def test_edit(evidence: Evidence) -> None:
    edit = "UPDATE evidence_records SET payload = '{\"rc\":0}' WHERE chain = 'acme' AND seq = 2"
    _refused(evidence, edit)
    with _owner(evidence) as conn:
        conn.exec_driver_sql(edit)
    problems = evidence.problems()
    assert any(p.startswith("acme #2: content does not match its hash") for p in problems)
    assert any("do not match the signed checkpoint" in p for p in problems)


def test_delete(evidence: Evidence) -> None:
    delete = "DELETE FROM evidence_records WHERE chain = 'acme' AND seq = 2"
    _refused(evidence, delete)
    with _owner(evidence) as conn:
        conn.exec_driver_sql(delete)
    assert any(p.startswith("acme #2: record missing") for p in evidence.problems())


def test_reorder(evidence: Evidence) -> None:
    swap = [
        "UPDATE evidence_records SET seq = -2 WHERE chain = 'acme' AND seq = 2",
        "UPDATE evidence_records SET seq = 2 WHERE chain = 'acme' AND seq = 3",
        "UPDATE evidence_records SET seq = 3 WHERE chain = 'acme' AND seq = -2",
    ]
    _refused(evidence, *swap)
    with _owner(evidence) as conn:
        for statement in swap:
            conn.exec_driver_sql(statement)
    assert any("out of order" in p or "does not follow" in p for p in evidence.problems())


def test_truncate(evidence: Evidence) -> None:
    cut = "DELETE FROM evidence_records WHERE chain = 'acme' AND seq > 4"
    _refused(evidence, cut)
    back = f"UPDATE evidence_chain_heads SET seq = 4, hash = '{_hash(evidence, 'acme', 4)}'"
    with _owner(evidence) as conn:
        conn.exec_driver_sql(cut)
        conn.exec_driver_sql(back + " WHERE chain = 'acme'")
    assert evidence.problems() == [
        "acme #8: a signed checkpoint covers #8 but the chain ends at #4: records were "
        "removed or the store was rolled back to an older copy"
    ]


def test_head_moved_back(evidence: Evidence) -> None:
    back = (
        f"UPDATE evidence_chain_heads SET seq = 4, hash = '{_hash(evidence, 'acme', 4)}' "
        "WHERE chain = 'acme'"
    )
    _refused(evidence, back)
    with _owner(evidence) as conn:
        conn.exec_driver_sql(back)
    assert evidence.problems() == [
        "acme #4: the chain head says #4 but the last record is #8: records were removed at the end"
    ]


def test_a_row_at_the_head_with_a_made_up_hash(evidence: Evidence) -> None:
    # Right position, right link, wrong hash: the record is refused, and if the owner
    # forces it in, later runs still record (they chain onto it; verify names it).
    junk = (
        "INSERT INTO evidence_records (chain, seq, kind, run_id, host, recorded_at, "
        "payload, prev_hash, hash) VALUES ('acme', 9, 'junk', 'x', '', 'now', '{}', "
        f"'{_hash(evidence, 'acme', 8)}', 'junk')"
    )
    _refused(evidence, junk)
    with _owner(evidence) as conn:
        conn.exec_driver_sql(junk)
    writer = EvidenceStore(evidence.url, notary=evidence.store.notary)
    try:
        assert [r.seq for r in writer.append(_run("acme"))] == [10, 11, 12, 13]
        assert writer.checkpoint("acme").skipped == (
            "the chain is broken at #9: nothing signed; run 'mspauto evidence verify'"
        )
    finally:
        writer.close()
    problems = evidence.problems()
    assert any(p.startswith("acme #9: content does not match its hash") for p in problems)
    assert any(p.startswith("acme #9: records #9 are signed neither") for p in problems)


def test_junk_row(evidence: Evidence) -> None:
    junk = (
        "INSERT INTO evidence_records (chain, seq, kind, run_id, host, recorded_at, "
        "payload, prev_hash, hash) VALUES ('acme', 9, 'junk', 'x', '', 'now', '{}', "
        f"'{GENESIS}', '{GENESIS}')"
    )
    _refused(evidence, junk)
    with _owner(evidence) as conn:
        conn.exec_driver_sql(junk)
    problems = evidence.problems()
    assert any(p.startswith("acme #9: records #9 are signed neither") for p in problems)
    assert any(p.startswith("acme #9: does not follow the record before it") for p in problems)
    # The next run still records (#10..#13, signed by its writer): the warning names those
    # records only, never the junk row the problem above names.
    evidence.store.append(_run("acme"))
    verified = evidence.verify()
    assert any(p.message.startswith("records #9 are signed neither") for p in verified.problems)
    assert [w for w in verified.warnings if "signed by their writer" in w] == [
        "acme: records #10..#13 are signed by their writer but no checkpoint covers them "
        "yet (a run in progress, or cut short): the next run of this client, or 'mspauto "
        "evidence checkpoint', signs them"
    ]


def _forge_run(evidence: Evidence, chain: str, head: int) -> list[str]:
    """SQL appending a whole fake run with correct SHA-256 links and moving the head:
    exactly what a database writer without the key can do."""
    prev, seq, statements = _hash(evidence, chain, head), head, []
    for record in _run(chain):
        seq += 1
        payload = canonical_json(record.payload)
        when = record.recorded_at.isoformat(timespec="microseconds")
        digest = record_hash(
            prev, chain, seq, record.kind, record.run_id, record.host, when, payload
        )
        statements.append(
            "INSERT INTO evidence_records (chain, seq, kind, run_id, host, recorded_at, "
            f"payload, prev_hash, hash) VALUES ('{chain}', {seq}, '{record.kind}', "
            f"'{record.run_id}', '{record.host}', '{when}', '{payload}', '{prev}', '{digest}')"
        )
        prev = digest
    statements.append(
        f"UPDATE evidence_chain_heads SET seq = {seq}, hash = '{prev}' WHERE chain = '{chain}'"
    )
    return statements


def test_forged_run(evidence: Evidence) -> None:
    # The guards let it in: every link is right. The signatures are what catch it.
    evidence.raw(*_forge_run(evidence, "acme", 8))
    assert evidence.problems() == [
        "acme #9: records #9..#12 are signed neither by a checkpoint nor by the writer "
        "that appended them: added without the signing key (review them, then 'mspauto "
        "evidence checkpoint --client acme')"
    ]
    # The next real run does not sign over the forgery either.
    evidence.store.append(_run("acme"))
    outcome = evidence.store.checkpoint("acme")
    assert outcome.checkpoint is None
    assert (
        outcome.skipped is not None
        and "#9..#12 were not written by a holder of the signing key" in outcome.skipped
    )


def test_forged_run_with_a_checkpoint_signed_by_another_key(
    evidence: Evidence, tmp_path: Path
) -> None:
    evidence.raw(*_forge_run(evidence, "acme", 8))
    generate_key(tmp_path / "other", tmp_path / "other.pub", comment="attacker")
    forged = Notary(SigningKey.load(tmp_path / "other"), None).sign("acme", 12, bytes(32))
    evidence.raw(
        "INSERT INTO evidence_checkpoints (chain, size, root, signed_at, note, frontier) "
        f"VALUES ('acme', 12, '{forged.root.hex()}', 'now', '{forged.note}', '{{}}')"
    )
    problems = evidence.problems()
    assert any(p.startswith("acme #12: checkpoint not signed by key") for p in problems)
    assert any(p.startswith("acme #9: records #9..#12 are signed neither") for p in problems)


def test_full_rewrite(evidence: Evidence) -> None:
    # Change one record, then recompute every hash after it and the head: the links
    # all hold again, but the signed roots no longer match.
    with evidence.store.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT * FROM evidence_records WHERE chain = 'acme' ORDER BY seq")
        ).all()
    with _owner(evidence) as conn:
        prev = GENESIS
        for row in rows:
            payload = '{"rc":0,"forged":true}' if row.seq == 2 else row.payload
            digest = record_hash(
                prev, row.chain, row.seq, row.kind, row.run_id, row.host, row.recorded_at, payload
            )
            conn.execute(
                text(
                    "UPDATE evidence_records SET payload = :p, prev_hash = :prev, hash = :h "
                    "WHERE chain = 'acme' AND seq = :s"
                ),
                {"p": payload, "prev": prev, "h": digest, "s": row.seq},
            )
            prev = digest
        conn.execute(
            text("UPDATE evidence_chain_heads SET hash = :h WHERE chain = 'acme'"), {"h": prev}
        )
    problems = evidence.problems()
    assert [p.split(":")[0] for p in problems] == ["acme #4", "acme #8"]
    assert all("do not match the signed checkpoint" in p for p in problems)


def test_rollback_to_an_older_copy(evidence: Evidence) -> None:
    older = evidence.copy()  # acme at #8
    _record_run(evidence.store, "acme")  # acme at #12, witnessed
    rolled_back = EvidenceStore(older, writable=False)
    try:
        result = rolled_back.verify(key=evidence.public_key, witness=evidence.witness)
        assert [str(p) for p in result.problems] == [
            "acme #12: a signed checkpoint covers #12 but the chain ends at #8: records "
            "were removed or the store was rolled back to an older copy"
        ]
        # Without the witness, the older copy is self-consistent: that is the witness's job.
        assert rolled_back.verify(key=evidence.public_key).problems == []
    finally:
        rolled_back.close()


def test_chain_deleted(evidence: Evidence) -> None:
    wipe = [
        f"DELETE FROM {table} WHERE chain = 'globex'"
        for table in ("evidence_records", "evidence_chain_heads", "evidence_checkpoints")
    ]
    _refused(evidence, *wipe)
    with _owner(evidence) as conn:
        for statement in wipe:
            conn.exec_driver_sql(statement)
    assert evidence.problems() == [
        "globex #4: a signed checkpoint covers #4 but the chain is missing: records were "
        "removed or the store was rolled back to an older copy"
    ]


def test_guards_dropped(evidence: Evidence) -> None:
    with _owner(evidence):
        pass
    assert evidence.store.guards_missing()  # `evidence verify` exits 1 on this
    # The next writer records that they were missing before restoring them.
    writer = EvidenceStore(evidence.url, notary=evidence.store.notary)
    try:
        assert writer.guards_restored
        assert writer.guards_missing() == []
        [event] = list(writer.records(chain=STORE_CHAIN))
        assert event.kind == "guards_missing"
        assert event.payload["guards"] == writer.guards_restored
        result = writer.verify(key=evidence.public_key, witness=evidence.witness)
        assert any("were found missing at" in w for w in result.warnings)
    finally:
        writer.close()


def test_concurrent_and_killed_writers_sign_each_others_records(evidence: Evidence) -> None:
    # Two control-node processes append to one chain in turns; a third is killed
    # before it checkpoints. Each append was signed by its writer, so every later
    # checkpoint takes the others' records in, and nothing is left unsigned.
    notary = evidence.store.notary
    other = EvidenceStore(evidence.url, notary=notary)
    killed = EvidenceStore(evidence.url, notary=notary)
    try:
        evidence.store.append(_run("acme"))
        other.append(_run("acme"))
        killed.append(_run("acme"))  # and never checkpoints
        result = evidence.verify()
        assert result.problems == []
        assert result.warnings == [
            "acme: records #9..#20 are signed by their writer but no checkpoint covers "
            "them yet (a run in progress, or cut short): the next run of this client, or "
            "'mspauto evidence checkpoint', signs them"
        ]
        outcome = other.checkpoint("acme")
        assert outcome.checkpoint is not None and outcome.checkpoint.size == 20
        assert evidence.store.checkpoint("acme").skipped == "nothing new to sign"
        assert evidence.verify() == Verification(True, True, 24, 4, [], [])
    finally:
        other.close()
        killed.close()


def test_a_batch_signed_by_another_key_does_not_count(evidence: Evidence, tmp_path: Path) -> None:
    generate_key(tmp_path / "other", tmp_path / "other.pub", comment="attacker")
    forger = EvidenceStore(evidence.url, notary=Notary(SigningKey.load(tmp_path / "other"), None))
    forger.append(_run("acme"))  # signs its append with the wrong key
    forger.close()
    assert evidence.problems() == [
        "acme #9: records #9..#12 are signed neither by a checkpoint nor by the writer "
        "that appended them: added without the signing key (review them, then 'mspauto "
        "evidence checkpoint --client acme')"
    ]
    evidence.store.append(_run("acme"))
    assert "#9..#12 were not written by a holder" in str(evidence.store.checkpoint("acme"))


def test_guards_neutered_under_their_own_names(evidence: Evidence) -> None:
    with evidence.store.engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("DROP TRIGGER evidence_records_no_update")
            conn.exec_driver_sql(
                "CREATE TRIGGER evidence_records_no_update BEFORE UPDATE ON evidence_records "
                "WHEN 0 BEGIN SELECT 1; END"
            )
        else:
            conn.exec_driver_sql(
                "ALTER TABLE evidence_records ENABLE REPLICA TRIGGER evidence_records_append_only"
            )
    missing = evidence.store.guards_missing()
    assert missing and missing[0].startswith("evidence_records_")
    writer = EvidenceStore(evidence.url, notary=evidence.store.notary)
    try:
        assert writer.guards_restored == missing
        assert writer.guards_missing() == []
    finally:
        writer.close()
    _refused(evidence, "UPDATE evidence_records SET host = 'x' WHERE seq = 2")


def test_records_after_a_break_are_still_witnessed(evidence: Evidence) -> None:
    # A row with a made-up hash right after the head (on SQLite the attacker's own
    # connection can supply a lying hash function; on PostgreSQL the owner drops the
    # guard for a moment). No checkpoint can be signed past it; each run then hands the
    # witness a signed head note, so cutting the chain back afterwards is still caught.
    junk = (
        "INSERT INTO evidence_records (chain, seq, kind, run_id, host, recorded_at, "
        "payload, prev_hash, hash) VALUES ('acme', 9, 'junk', 'x', '', 'now', '{}', "
        f"'{_hash(evidence, 'acme', 8)}', 'bad')"
    )
    with _owner(evidence) as conn:
        conn.exec_driver_sql(junk)
    writer = EvidenceStore(evidence.url, notary=evidence.store.notary)  # restores guards
    try:
        writer.append(_run("acme"))  # #10..#13, recorded after the junk row
        assert "broken at #9" in str(writer.checkpoint("acme").skipped)
    finally:
        writer.close()
    eighth = _hash(evidence, "acme", 8)
    with _owner(evidence) as conn:  # then everything from the junk row on is removed
        conn.exec_driver_sql("DELETE FROM evidence_records WHERE chain = 'acme' AND seq > 8")
        conn.exec_driver_sql("DELETE FROM evidence_batches WHERE chain = 'acme'")
        conn.exec_driver_sql(
            f"UPDATE evidence_chain_heads SET seq = 8, hash = '{eighth}' WHERE chain = 'acme'"
        )
    problems = evidence.problems()
    assert any(
        p.startswith("acme #13: the witness saw this chain reach #13 (a head note)")
        for p in problems
    ), problems
