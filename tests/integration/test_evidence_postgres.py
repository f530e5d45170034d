"""The evidence store on the machine's PostgreSQL server (127.0.0.1:5432)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError, OperationalError

from mspauto.evidence import migrate
from mspauto.evidence.schema import GENESIS
from mspauto.evidence.store import (
    EvidenceStore,
    NewRecord,
    canonical_json,
    record_hash,
    store_output,
)

pytestmark = pytest.mark.integration

SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh database for one test, dropped afterwards."""
    admin = create_engine(f"{SERVER}/postgres", isolation_level="AUTOCOMMIT")
    name = f"mspauto_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
    except OperationalError as exc:
        pytest.skip(f"PostgreSQL on 127.0.0.1:5432 unavailable: {str(exc).splitlines()[0]}")
    try:
        yield f"{SERVER}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def _records(count: int) -> list[NewRecord]:
    kept, described = store_output(b"output\n")
    return [
        NewRecord(
            "acme",
            "host_result",
            "run-1",
            datetime.now(UTC),
            {"rc": 0, "stdout": described},
            host=f"h{i}",
            outputs=(kept,),
        )
        for i in range(count)
    ]


def test_append_verify_and_detect_tampering(postgres_url: str) -> None:
    store = EvidenceStore(postgres_url)
    store.append(_records(5))
    store.append(_records(3))
    result = store.verify()
    assert (result.checked, result.problems) == (8, [])

    with store.engine.begin() as conn, pytest.raises(DBAPIError, match="append-only"):
        conn.execute(text("UPDATE evidence_records SET host = 'x' WHERE seq = 2"))
    with store.engine.begin() as conn:  # an attacker who can disable triggers
        conn.execute(text("ALTER TABLE evidence_records DISABLE TRIGGER USER"))
        conn.execute(text("UPDATE evidence_records SET host = 'x' WHERE seq = 2"))
        conn.execute(text("DELETE FROM evidence_records WHERE seq = 6"))
    result = store.verify()
    checked, problems = result.checked, result.problems
    assert checked == 7
    assert [(p.seq, p.message.split(" (")[0]) for p in problems] == [
        (2, "content does not match its hash"),
        (6, "record missing"),
        (7, "does not follow the record before it"),
    ]
    store.close()


def test_two_writers_share_one_chain(postgres_url: str) -> None:
    first, second = EvidenceStore(postgres_url), EvidenceStore(postgres_url)
    for _ in range(5):
        first.append(_records(2))
        second.append(_records(2))
    assert [r.seq for r in first.records(chain="acme")] == list(range(1, 21))
    result = first.verify()
    assert (result.checked, result.problems) == (20, [])
    first.close()
    second.close()


def test_a_store_of_release_0_1_upgrades_in_place(postgres_url: str) -> None:
    # Release 0.1's schema, as its migration 0001 makes it, without the version table
    # 0.1 never had, and records written the way 0.1 wrote them.
    engine = create_engine(postgres_url)
    with engine.begin() as conn:
        config = migrate.alembic_config()
        config.attributes["connection"] = conn
        command.upgrade(config, migrate.FIRST_REVISION)
        conn.execute(text(f"DROP TABLE {migrate.VERSION_TABLE}"))
        prev = GENESIS
        for seq in range(1, 4):
            payload = canonical_json({"rc": 0})
            digest = record_hash(prev, "acme", seq, "host_result", "run-0", "h", "t", payload)
            conn.execute(
                text(
                    "INSERT INTO evidence_records (chain, seq, kind, run_id, host, "
                    "recorded_at, payload, prev_hash, hash) VALUES ('acme', :s, "
                    "'host_result', 'run-0', 'h', 't', :p, :prev, :h)"
                ),
                {"s": seq, "p": payload, "prev": prev, "h": digest},
            )
            prev = digest
        conn.execute(text(f"INSERT INTO evidence_chain_heads VALUES ('acme', 3, '{prev}')"))
        old_rows = conn.execute(text("SELECT * FROM evidence_records ORDER BY id")).all()

    store = EvidenceStore(postgres_url, upgrade_legacy=True)
    assert store.upgrade == migrate.Upgrade(migrate.FIRST_REVISION, migrate.head_revision())
    assert store.guards_missing() == []
    with engine.connect() as conn:
        assert conn.execute(text("SELECT * FROM evidence_records ORDER BY id")).all() == old_rows
    store.append(_records(2))  # continuity now enforced, and the chain goes on
    result = store.verify()
    assert (result.checked, result.problems) == (5, [])
    with engine.begin() as conn, pytest.raises(DBAPIError, match="continuity"):
        conn.execute(
            text(
                "INSERT INTO evidence_records (chain, seq, kind, run_id, host, recorded_at, "
                f"payload, prev_hash, hash) VALUES ('acme', 9, 'x', 'x', '', 't', '{{}}', "
                f"'{GENESIS}', '{GENESIS}')"
            )
        )
    store.close()
    engine.dispose()


def test_the_continuity_guard_hashes_text_as_mspauto_does(postgres_url: str) -> None:
    # The guard recomputes each record's hash in SQL: non-ASCII text and the field
    # separator inside a value must hash exactly as in Python, or records are refused.
    store = EvidenceStore(postgres_url)
    odd = {"out": "héllo ✓ 日本", "sep": "a\x1fb", "nul": "\x00"}
    store.append([NewRecord("acme", "host_result", "run-1", datetime.now(UTC), odd, host="h é")])
    result = store.verify()
    assert (result.checked, result.problems) == (1, [])
    store.close()
