"""The SQLite evidence store on its own: chains, guards, and what verify catches."""

from __future__ import annotations

import sqlite3
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mspauto.evidence.store import EvidenceStore, NewRecord, store_output


def _records(chain: str, count: int) -> list[NewRecord]:
    kept, described = store_output(b"out\n")
    return [
        NewRecord(
            chain,
            "host_result",
            "run-1",
            datetime.now(UTC),
            {"rc": 0, "stdout": described},
            host=f"h{i}",
            outputs=(kept,),
        )
        for i in range(count)
    ]


@pytest.fixture
def store(tmp_path: Path) -> EvidenceStore:
    store = EvidenceStore(f"sqlite:///{tmp_path / 'state' / 'evidence.db'}")
    store.append(_records("acme", 4))
    store.append(_records("globex", 3))
    return store


def _tamper(path: Path, *statements: str) -> None:
    database = sqlite3.connect(path)
    with database:
        for statement in statements:
            database.execute(statement)
    database.close()


def test_the_file_is_private(store: EvidenceStore, tmp_path: Path) -> None:
    mode = (tmp_path / "state" / "evidence.db").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700


def test_chain_heads_never_move_back_or_vanish(store: EvidenceStore, tmp_path: Path) -> None:
    path = tmp_path / "state" / "evidence.db"
    for statement in (
        "UPDATE evidence_chain_heads SET seq = seq - 1",
        "DELETE FROM evidence_chain_heads",
    ):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            _tamper(path, statement)


def test_a_chain_deleted_whole_is_caught(store: EvidenceStore, tmp_path: Path) -> None:
    _tamper(
        tmp_path / "state" / "evidence.db",
        "DROP TRIGGER evidence_records_no_delete",
        "DELETE FROM evidence_records WHERE chain = 'globex'",
    )
    checked, problems = store.verify()
    assert checked == 4
    assert [str(p) for p in problems] == [
        "globex #3: the chain head says #3 but the last record is #0: "
        "records were removed at the end"
    ]
    assert store.guards_missing() == ["evidence_records_no_delete"]


def test_records_cut_from_the_end_are_caught(store: EvidenceStore, tmp_path: Path) -> None:
    _tamper(
        tmp_path / "state" / "evidence.db",
        "DROP TRIGGER evidence_records_no_delete",
        "DELETE FROM evidence_records WHERE chain = 'acme' AND seq = 4",
    )
    assert [p.seq for p in store.verify(["acme"])[1]] == [4]


def test_verify_ignores_what_is_appended_meanwhile(store: EvidenceStore) -> None:
    # Records beyond the head read at the start belong to the next verify.
    store.append(_records("acme", 2))
    assert store.verify() == (9, [])
