"""The evidence store on the machine's PostgreSQL server (127.0.0.1:5432)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError, OperationalError

from mspauto.evidence.store import EvidenceStore, NewRecord, store_output

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
