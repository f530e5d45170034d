"""The SQLite evidence store on its own: chains, guards, and what verify catches."""

from __future__ import annotations

import hashlib
import sqlite3
import stat
import threading
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mspauto.evidence import store as store_module
from mspauto.evidence.store import EvidenceError, EvidenceStore, NewRecord, store_output


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
    result = store.verify()
    checked, problems = result.checked, result.problems
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
    assert [p.seq for p in store.verify(["acme"]).problems] == [4]


def test_verify_ignores_what_is_appended_meanwhile(store: EvidenceStore) -> None:
    # Records beyond the head read at the start belong to the next verify.
    store.append(_records("acme", 2))
    result = store.verify()
    assert (result.checked, result.problems) == (9, [])


def test_verify_finds_changed_and_missing_outputs_across_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tiny batches and a one-entry cache, so a shared output is looked up again in
    # later batches and every record naming a broken one is reported.
    monkeypatch.setattr(store_module, "_READ_BATCH", 2)
    monkeypatch.setattr(store_module, "_VERIFIED_OUTPUTS", 1)
    path = tmp_path / "evidence.db"
    store = EvidenceStore(f"sqlite:///{path}")
    stderr, stderr_described = store_output(b"warning: shared by every record\n")
    new = []
    for i in range(5):
        stdout, stdout_described = store_output(f"output of h{i}\n".encode())
        new.append(
            NewRecord(
                "acme",
                "host_result",
                "run-1",
                datetime.now(UTC),
                {"rc": 0, "stdout": stdout_described, "stderr": stderr_described},
                host=f"h{i}",
                outputs=(stdout, stderr),
            )
        )
    store.append(new)
    result = store.verify()
    assert (result.checked, result.problems) == (5, [])

    changed, rewritten_as_text = (
        hashlib.sha256(f"output of h{i}\n".encode()).hexdigest() for i in (2, 3)
    )
    _tamper(
        path,
        "DROP TRIGGER evidence_outputs_no_update",
        "DROP TRIGGER evidence_outputs_no_delete",
        f"UPDATE evidence_outputs SET data = X'00' WHERE sha256 = '{changed}'",
        # SQLite keeps a TEXT value written over a BLOB column: reported, not a crash.
        f"UPDATE evidence_outputs SET data = 'forged' WHERE sha256 = '{rewritten_as_text}'",
        f"DELETE FROM evidence_outputs WHERE sha256 = '{stderr_described['sha256']}'",
    )
    result = store.verify()
    checked, problems = result.checked, result.problems
    assert checked == 5
    assert [str(p) for p in problems] == [
        "acme #1: stderr output is missing (run run-1, host h0)",
        "acme #2: stderr output is missing (run run-1, host h1)",
        "acme #3: stdout output was changed (run run-1, host h2)",
        "acme #3: stderr output is missing (run run-1, host h2)",
        "acme #4: stdout output was changed (run run-1, host h3)",
        "acme #4: stderr output is missing (run run-1, host h3)",
        "acme #5: stderr output is missing (run run-1, host h4)",
    ]


def test_verify_memory_does_not_grow_with_the_outputs(tmp_path: Path) -> None:
    # Verify once held every stored output at once; it must read a few at a time.
    count, size = 4000, 4096
    store = EvidenceStore(f"sqlite:///{tmp_path / 'evidence.db'}")
    new = []
    for i in range(count):
        kept, described = store_output(f"{i:08d}".encode() * (size // 8))
        new.append(
            NewRecord(
                "acme",
                "host_result",
                "run-1",
                datetime.now(UTC),
                {"rc": 0, "stdout": described},
                host=f"h{i}",
                outputs=(kept,),
            )
        )
    store.append(new)
    del new
    tracemalloc.start()
    try:
        result = store.verify()
        assert (result.checked, result.problems) == (count, [])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < count * size / 4, f"verify peaked at {peak / 2**20:.1f} MiB"


@pytest.mark.parametrize("url", ["mysql://u@127.0.0.1/e", "nosuchdb://x"])
def test_a_database_mspauto_has_no_driver_for_is_one_line(url: str) -> None:
    with pytest.raises(EvidenceError, match="cannot open the evidence store"):
        EvidenceStore(url)


def test_an_old_store_opened_by_two_writers_at_once_upgrades_once(tmp_path: Path) -> None:
    fixture = Path(__file__).resolve().parent.parent / "fixtures" / "evidence"
    path = tmp_path / "evidence.db"
    path.write_bytes((fixture / "store-0.1.0.db").read_bytes())
    opened: list[EvidenceStore] = []
    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            opened.append(EvidenceStore(f"sqlite:///{path}", upgrade_legacy=True))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    upgrades = [store.upgrade for store in opened]
    assert sum(1 for u in upgrades if u is not None and u.changed) == 1, upgrades
    result = opened[0].verify()
    assert (result.checked, result.problems) == (12, [])
    for store in opened:
        store.close()
