"""``mspauto evidence`` and ``keys`` end to end, on a project whose hosts are local.

What a user sees: unsigned evidence is not called intact, signed evidence is, and each
way of getting records in without the key (or losing a guard, or the witness) turns
``evidence verify`` to exit 1 with a line that says what happened.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from mspauto.cli import cli
from mspauto.config import Settings
from mspauto.evidence.store import canonical_json, record_hash

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "evidence"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Two clients with one local host each."""
    root = tmp_path / "project"
    (root / "inventory").mkdir(parents=True)
    (root / "policies").mkdir()
    (root / "policies" / "c.yaml").write_text("kind: contract\nname: std\n")
    for client in ("acme", "globex"):
        document = {
            "client": {
                "name": client,
                "display_name": client,
                "timezone": "UTC",
                "contract": "std",
                "platform": "debian",
                "connection": "local",
            },
            "hosts": {f"{client}-001": {}},
        }
        (root / "inventory" / f"{client}.yaml").write_text(yaml.safe_dump(document))
    for name in (
        "MSPAUTO_INVENTORY",
        "MSPAUTO_POLICIES",
        "MSPAUTO_EVIDENCE_URL",
        "MSPAUTO_SIGNING_KEY",
        "MSPAUTO_WITNESS_DIR",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MSPAUTO_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    yield root


def run(project: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--project", str(project), *args])


def exec_(project: Path, client: str = "acme") -> Result:
    result = run(project, "exec", "--client", client, "--", "true")
    assert result.exit_code == 0, result.output
    return result


def database(project: Path) -> Path:
    return Settings.load(project).state_dir / "evidence.db"


def forge_run(project: Path, chain: str = "acme") -> None:
    """Append a fake run with correct links and move the head: no key needed."""
    db = sqlite3.connect(database(project))
    # The attacker knows mspauto's hash and gives the continuity guard its function.
    db.create_function("mspauto_record_hash", 8, record_hash)
    with db:
        seq, prev = db.execute(
            "SELECT seq, hash FROM evidence_chain_heads WHERE chain = ?", (chain,)
        ).fetchone()
        run_id = str(uuid.uuid4())
        for kind in ("run_started", "run_finished"):
            seq += 1
            payload = canonical_json({"forged": True})
            when = "2026-12-01T00:00:00.000000+00:00"
            digest = record_hash(prev, chain, seq, kind, run_id, "", when, payload)
            db.execute(
                "INSERT INTO evidence_records (chain, seq, kind, run_id, host, recorded_at, "
                "payload, prev_hash, hash) VALUES (?, ?, ?, ?, '', ?, ?, ?, ?)",
                (chain, seq, kind, run_id, when, payload, prev, digest),
            )
            prev = digest
        db.execute(
            "UPDATE evidence_chain_heads SET seq = ?, hash = ? WHERE chain = ?", (seq, prev, chain)
        )
    db.close()


def test_unsigned_evidence_is_not_called_intact(project: Path) -> None:
    result = exec_(project)
    assert "warning: evidence is not signed: no signing key" in result.stderr
    verified = run(project, "evidence", "verify")
    assert verified.exit_code == 1
    assert "no public key at" in verified.stderr
    assert "error: evidence is NOT proven intact" in verified.stderr


def test_signed_runs_verify_and_a_forged_run_does_not(project: Path) -> None:
    assert run(project, "keys", "init").exit_code == 0
    assert "warning" not in exec_(project).stderr
    exec_(project, "globex")
    verified = run(project, "evidence", "verify")
    assert verified.exit_code == 0, verified.output
    assert "evidence intact: 6 records verified against 2 checkpoints" in verified.stdout

    forge_run(project)
    verified = run(project, "evidence", "verify", "--format", "json")
    assert verified.exit_code == 1
    report = json.loads(verified.stdout)
    assert report["intact"] is False
    assert report["problems"] == [
        "acme #4: records #4..#5 are signed neither by a checkpoint nor by the writer "
        "that appended them: added without the signing key (review them, then 'mspauto "
        "evidence checkpoint --client acme')"
    ]
    # The next run does not sign over the forgery, and says so.
    assert (
        "acme: records #4..#5 were not written by a holder of the signing key"
        in exec_(project).stderr
    )
    # A person who reviewed them signs them explicitly.
    signed = run(project, "evidence", "checkpoint", "--client", "acme")
    assert signed.exit_code == 0 and "acme: signed a checkpoint at #8" in signed.stdout
    assert run(project, "evidence", "verify").exit_code == 0


def test_another_public_key_or_no_witness_is_not_proof(project: Path, tmp_path: Path) -> None:
    run(project, "keys", "init")
    exec_(project)
    settings = Settings.load(project)
    other = tmp_path / "other"
    other.mkdir()
    assert run(project, "keys", "init").exit_code == 1  # never replaced
    from mspauto.signing import generate_key

    generate_key(other / "k", other / "k.pub", comment="someone else")
    verified = run(project, "evidence", "verify", "--public-key", str(other / "k.pub"))
    assert verified.exit_code == 1
    assert "checkpoint not signed by key" in verified.stderr

    shutil.move(settings.witness_dir, tmp_path / "witness-elsewhere")
    verified = run(project, "evidence", "verify")
    assert verified.exit_code == 1 and "no witness log at" in verified.stderr
    assert run(project, "evidence", "verify", "--no-witness").exit_code == 0
    moved = run(project, "evidence", "verify", "--witness", str(tmp_path / "witness-elsewhere"))
    assert moved.exit_code == 0, moved.output


def test_dropped_guards_fail_verify_and_the_next_run_records_them(project: Path) -> None:
    run(project, "keys", "init")
    exec_(project)
    db = sqlite3.connect(database(project))
    db.execute("DROP TRIGGER evidence_records_no_delete")
    db.close()
    verified = run(project, "evidence", "verify")
    assert verified.exit_code == 1
    assert "the guards evidence_records_no_delete are missing or disabled" in verified.stderr

    result = exec_(project)
    assert (
        "warning: the evidence guards evidence_records_no_delete were missing; that is now "
        "recorded as evidence and they are restored"
    ) in result.stderr
    verified = run(project, "evidence", "verify")
    assert verified.exit_code == 0, verified.output
    assert "the guards evidence_records_no_delete were found missing at" in verified.stderr


def test_a_store_from_release_0_1_upgrades_and_gets_signed(project: Path) -> None:
    state = Settings.load(project).state_dir
    state.mkdir(mode=0o700)
    shutil.copy(FIXTURES / "store-0.1.0.db", database(project))
    before = sqlite3.connect(database(project))
    old_rows = before.execute("SELECT * FROM evidence_records ORDER BY id").fetchall()
    before.close()
    run(project, "keys", "init")

    upgraded = run(project, "evidence", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    assert upgraded.stderr.splitlines() == [
        "note: upgraded the evidence store from schema 0001 to 0006; every record and hash is kept"
    ]
    assert upgraded.stdout.splitlines() == [
        "acme: signed a checkpoint at #8",
        "globex: signed a checkpoint at #4",
    ]
    after = sqlite3.connect(database(project))
    assert after.execute("SELECT * FROM evidence_records ORDER BY id").fetchall() == old_rows
    assert after.execute(
        "SELECT chain, size FROM evidence_checkpoints ORDER BY chain"
    ).fetchall() == [("acme", 8), ("globex", 4)]
    after.close()
    verified = run(project, "evidence", "verify")
    assert verified.exit_code == 0, verified.output
    again = run(project, "evidence", "upgrade")
    assert again.stdout == "the evidence store is at schema 0006 already\n"


def test_a_store_from_a_newer_release_is_refused_in_one_line(project: Path) -> None:
    exec_(project)
    db = sqlite3.connect(database(project))
    with db:
        db.execute("UPDATE evidence_schema_version SET version_num = '9999'")
    db.close()
    result = run(project, "exec", "--client", "acme", "--", "true")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert "has schema revision 9999, which this mspauto does not know" in result.stderr


def test_a_store_made_to_look_old_is_not_signed_by_an_upgrade(project: Path) -> None:
    run(project, "keys", "init")
    exec_(project)
    forge_run(project)
    db = sqlite3.connect(database(project))
    with db:  # the owner drops what 0.1 did not have, so the store looks like 0.1's
        for table in ("evidence_checkpoints", "evidence_batches", "evidence_schema_version"):
            db.execute(f"DROP TABLE {table}")
    db.close()
    refused = run(project, "exec", "--client", "acme", "--", "true")  # no run takes it in
    assert refused.exit_code == 1 and "is from release 0.1" in refused.stderr
    upgraded = run(project, "evidence", "upgrade")
    assert upgraded.exit_code == 1
    assert (
        "acme: not signed: the witness log holds checkpoints of it but the store has none"
    ) in upgraded.stderr
    assert run(project, "evidence", "verify").exit_code == 1


def test_records_mspauto_did_not_write_are_named_not_crashed_on(project: Path) -> None:
    run(project, "keys", "init")
    exec_(project)
    db = sqlite3.connect(database(project))
    db.create_function("mspauto_record_hash", 8, record_hash)
    with db:
        seq, prev = db.execute(
            "SELECT seq, hash FROM evidence_chain_heads WHERE chain = 'acme'"
        ).fetchone()
        for kind, payload in (("run_started", "not json"), ("host_result", "[" * 100_000)):
            seq += 1
            digest = record_hash(prev, "acme", seq, kind, "r", "", "t", payload)
            db.execute(
                "INSERT INTO evidence_records (chain, seq, kind, run_id, host, recorded_at, "
                "payload, prev_hash, hash) VALUES ('acme', ?, ?, 'r', '', 't', ?, ?, ?)",
                (seq, kind, payload, prev, digest),
            )
            prev = digest
    db.close()
    verified = run(project, "evidence", "verify")
    assert verified.exit_code == 1 and "Traceback" not in verified.output
    assert "acme #4: records #4..#5 are signed neither" in verified.stderr
    listed = run(project, "runs", "list", "--format", "json")
    assert listed.exit_code == 0, listed.output
    assert len(json.loads(listed.stdout)) == 2  # the real run and the one that is not


def test_an_explicit_witness_folder_that_is_missing_is_a_failure(
    project: Path, tmp_path: Path
) -> None:
    run(project, "keys", "init")
    verified = run(project, "evidence", "verify", "--witness", str(tmp_path / "nowhere"))
    assert verified.exit_code == 1  # nothing recorded yet
    exec_(project)
    verified = run(project, "evidence", "verify", "--witness", str(tmp_path / "nowhere"))
    assert verified.exit_code == 1 and "no witness log at" in verified.stderr


def test_an_upgrade_signs_no_chain_in_a_store_of_this_release(project: Path) -> None:
    # A chain made up entirely by someone without the key (a new client, say) is not
    # signed by 'evidence upgrade': only a store actually from 0.1 is taken in.
    run(project, "keys", "init")
    exec_(project)
    db = sqlite3.connect(database(project))
    with db:
        db.execute("INSERT INTO evidence_chain_heads VALUES ('globex', 0, ?)", ("0" * 64,))
    db.close()
    forge_run(project, "globex")
    upgraded = run(project, "evidence", "upgrade")
    assert upgraded.exit_code == 0 and "globex" not in upgraded.output
    verified = run(project, "evidence", "verify")
    assert verified.exit_code == 1
    assert "globex #1: records #1..#2 are signed neither" in verified.stderr


def test_a_planted_head_row_does_not_stop_recording(project: Path) -> None:
    run(project, "keys", "init")
    exec_(project)
    db = sqlite3.connect(database(project))
    with db:
        db.execute("INSERT INTO evidence_chain_heads VALUES ('globex', 5, 'bogus')")
    db.close()
    result = exec_(project, "globex")  # records, and signs, despite the planted row
    assert "could not record" not in result.output and "warning" not in result.stderr
    verified = run(project, "evidence", "verify")
    assert "globex #5: the chain head says #5 but the last record is #3" in verified.stderr
