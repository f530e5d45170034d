"""The monthly report's signed manifest, made from a real evidence store: it verifies
with verify_report and with the stock minisign, it chains month to month, and each
edit someone could make to a report folder, its manifest or the evidence (a row edited,
deleted or slipped in) is caught in one line that names what was changed."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from report_sample import sample_report

from mspauto.evidence.checkpoints import KEY_NAME, Checkpoint, Notary, checkpoint_body
from mspauto.evidence.store import EvidenceStore, NewRecord, record_hash
from mspauto.patching.facts import parse_time
from mspauto.report.manifest import (
    MANIFEST,
    MANIFEST_SIGNATURE,
    ManifestError,
    ReportVerification,
    build_manifest,
    verify_report,
)
from mspauto.signing import PublicKey, SigningKey, generate_key, sign_file, sign_note
from mspauto.sla.model import EvidenceDigest, EvidenceRange, MonthlyReport, Period
from mspauto.sla.report import READ_KINDS

MINISIGN = shutil.which("minisign")
needs_minisign = pytest.mark.skipif(
    MINISIGN is None,
    reason="the minisign binary is not installed (bash scripts/install-system-deps.sh installs it)",
)

SEPTEMBER = Period(
    "2026-09", "UTC", datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 10, 1, tzinfo=UTC)
)
OCTOBER = Period(
    "2026-10", "UTC", datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
)
NOVEMBER = Period(
    "2026-11", "UTC", datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
)
DECEMBER = Period(
    "2026-12", "UTC", datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)
)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# Each run writes three records of acme, two findings and a host result (which a report
# does not count), and then signs a checkpoint (size 3, 6, ...). The run on 31 October
# is signed after midnight: October's manifest ends with that checkpoint, November's
# starts with the one before it (10 October).
HISTORY = [
    (at("2026-09-28 10:00"), at("2026-09-28 10:05")),  # #1..#3
    (at("2026-10-10 10:00"), at("2026-10-10 10:05")),  # #4..#6
    (at("2026-10-31 23:50"), at("2026-11-01 00:20")),  # #7..#9
    (at("2026-11-15 10:00"), at("2026-11-15 10:05")),  # #10..#12
    (at("2026-11-30 23:00"), at("2026-12-01 01:00")),  # #13..#15
    (at("2026-12-03 10:00"), at("2026-12-03 10:05")),  # #16..#18
]


class ClockedNotary(Notary):
    """Signs checkpoints at the time the test sets (Notary reads the system clock)."""

    now = HISTORY[0][1]

    def sign(self, chain: str, size: int, root: bytes) -> Checkpoint:
        time = self.now.isoformat(timespec="microseconds")
        note = sign_note(checkpoint_body(chain, size, root, time), self.key, KEY_NAME)
        return Checkpoint(chain, size, root, time, note)


@dataclasses.dataclass
class Evidence:
    """An evidence store whose records and checkpoints carry the times the test gives."""

    path: Path
    store: EvidenceStore
    notary: ClockedNotary
    public_key_file: Path

    @property
    def key(self) -> SigningKey:
        return self.notary.key

    @property
    def public_key(self) -> PublicKey:
        return self.notary.key.public_key

    def run(
        self, recorded: datetime, signed: datetime | None, *, result: str = "ok", records: int = 3
    ) -> None:
        """Records of acme from ``recorded`` on (every third a host result, the others
        findings), then a checkpoint signed at ``signed`` (None: left unsigned)."""
        run_id = str(uuid.uuid4())
        self.store.append(
            [
                NewRecord(
                    "acme",
                    "host_result" if i % 3 == 2 else "findings",
                    run_id,
                    recorded + timedelta(seconds=i),
                    {"rc": 0, "result": result},
                    host=f"web{i}",
                )
                for i in range(records)
            ]
        )
        if signed is not None:
            self.notary.now = signed
            outcome = self.store.checkpoint("acme")
            assert outcome.checkpoint is not None, outcome.skipped

    def report(self, period: Period, folder: Path, *, made: datetime | None = None) -> Path:
        """A report of ``period`` made at ``made`` (by default two hours after the month),
        counting acme's findings of the month as a report does, with its manifest."""
        report = dataclasses.replace(
            sample_report(),
            client="acme",
            period=period,
            generated_at=made or period.end + timedelta(hours=2),
            evidence=counted_in(self, period),
        )
        return make_report(folder, report, self.store, self.key)

    def copy(self, to: Path) -> Path:
        """A copy of the database as it is now (an older copy, later)."""
        source, target = sqlite3.connect(self.path), sqlite3.connect(to)
        with target:
            source.backup(target)
        source.close()
        target.close()
        return to


def counted_in(evidence: Evidence, period: Period) -> list[EvidenceRange]:
    """What a report of ``period`` counts of acme: its records of the kinds a report
    reads, recorded in the period."""
    counted = EvidenceDigest(READ_KINDS)
    for r in evidence.store.records(chain="acme"):
        at = parse_time(r.recorded_at)
        if r.kind in READ_KINDS and at is not None and period.start <= at < period.end:
            counted.add(r.chain, r.seq, r.hash)
    return counted.ranges()


def make_report(folder: Path, report: MonthlyReport, store: EvidenceStore, key: SigningKey) -> Path:
    folder.mkdir(parents=True)
    files = [folder / "report.pdf", folder / "report.csv", folder / "report.json"]
    files[0].write_bytes(b"%PDF-1.7\n% acme " + report.period.month.encode() + b"\n%%EOF\n")
    files[1].write_text("host,state\nweb1,compliant\nweb2,pending\n")
    files[2].write_text(json.dumps(report.as_dict(), indent=2))
    return build_manifest(folder, files, report, store, key, policy_set_hash="ab" * 32)


@pytest.fixture
def evidence(tmp_path: Path) -> Iterator[Evidence]:
    """An empty store, with the MSP's key (made as 'mspauto keys init' makes it)."""
    secret, public = tmp_path / "keys" / "evidence.key", tmp_path / "keys" / "evidence.key.pub"
    generate_key(secret, public, comment="test key")
    notary = ClockedNotary(SigningKey.load(secret), None)
    path = tmp_path / "evidence.db"
    store = EvidenceStore(f"sqlite:///{path}", notary=notary)
    yield Evidence(path, store, notary, public)
    store.close()


@pytest.fixture
def history(evidence: Evidence) -> Evidence:
    """The store after the six runs of HISTORY."""
    for recorded, signed in HISTORY:
        evidence.run(recorded, signed)
    return evidence


def verify(
    folder: Path,
    key: PublicKey,
    *,
    previous: Path | None = None,
    store: EvidenceStore | None = None,
) -> ReportVerification:
    """verify_report, and every line it writes is one line."""
    result = verify_report(folder, key, previous=previous, store=store)
    for line in [*result.problems, *result.checked, *result.warnings]:
        assert "\n" not in line, line
    return result


def manifest_of(folder: Path) -> dict[str, Any]:
    data = json.loads((folder / MANIFEST).read_text())
    assert isinstance(data, dict)
    return data


def size_of(note: str | None) -> int | None:
    return None if note is None else int(note.split("\n")[1])


def tamper(path: Path, *statements: str) -> None:
    database = sqlite3.connect(path)
    with database:
        for statement in statements:
            database.execute(statement)
    database.close()


def resign(folder: Path, key: SigningKey, change: dict[str, Any]) -> None:
    """Edit the manifest's acme evidence and sign it again with ``key``."""
    data = manifest_of(folder)
    data["evidence"]["acme"].update(change)
    text = json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    (folder / MANIFEST).write_text(text)
    comment = "mspauto monthly report manifest: client acme, month 2026-10"
    (folder / MANIFEST_SIGNATURE).write_text(sign_file(text.encode(), key, trusted_comment=comment))


# --- what the manifest holds -------------------------------------------------------


def test_the_manifest_lists_files_records_and_the_month_s_checkpoints(
    history: Evidence, tmp_path: Path
) -> None:
    folder = tmp_path / "2026-10"
    assert history.report(OCTOBER, folder) == folder / MANIFEST
    data = manifest_of(folder)
    assert sorted(data) == [
        "client",
        "evidence",
        "files",
        "format",
        "generated_at",
        "month",
        "mspauto_version",
        "period",
        "policy_set_hash",
        "version",
    ]
    assert (data["format"], data["version"], data["client"], data["month"]) == (
        "mspauto-report-manifest",
        1,
        "acme",
        "2026-10",
    )
    assert sorted(data["files"]) == ["report.csv", "report.json", "report.pdf"]
    assert data["files"]["report.csv"]["bytes"] == len((folder / "report.csv").read_bytes())
    acme = data["evidence"]["acme"]
    # October's findings: #4, #5, #7 and #8 (#6 and #9 are host results).
    hashes = {r.seq: r.hash for r in history.store.records(chain="acme")}
    assert acme["kinds"] == ["findings", "change_result", "baseline_result", "scheduled_run"]
    assert (acme["records"], acme["first"], acme["last"]) == (
        4,
        {"seq": 4, "hash": hashes[4]},
        {"seq": 8, "hash": hashes[8]},
    )
    lines = "".join(f"{seq} {hashes[seq]}\n" for seq in (4, 5, 7, 8))
    assert acme["refs_sha256"] == hashlib.sha256(lines.encode()).hexdigest()
    assert data["period"] == {
        "start": "2026-10-01T00:00:00Z",
        "end": "2026-11-01T00:00:00Z",
        "timezone": "UTC",
    }
    # Start: the last checkpoint signed before 1 October. Handover: the first signed
    # after it. End: the first covering #8 signed after 1 November.
    assert [size_of(acme[k]) for k in ("start_checkpoint", "handover_checkpoint")] == [3, 6]
    assert size_of(acme["end_checkpoint"]) == 9
    assert "time 2026-11-01T00:20:00" in acme["end_checkpoint"]
    assert acme["consistency_proof"]
    # Sorted keys, so the signed bytes are the same for the same report.
    text = (folder / MANIFEST).read_text()
    assert text == json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def test_the_end_checkpoint_is_the_first_signed_after_the_month_not_the_newest(
    history: Evidence, tmp_path: Path
) -> None:
    folder = tmp_path / "2026-11"
    history.report(NOVEMBER, folder)
    acme = manifest_of(folder)["evidence"]["acme"]
    sizes = [
        size_of(acme[k]) for k in ("start_checkpoint", "handover_checkpoint", "end_checkpoint")
    ]
    assert sizes == [6, 9, 15]  # #18 was signed on 3 December
    assert verify(folder, history.public_key).problems == []


def test_a_report_made_before_the_month_is_over_ends_at_the_newest_checkpoint(
    history: Evidence, tmp_path: Path
) -> None:
    folder = tmp_path / "2026-12"
    history.report(DECEMBER, folder)
    assert size_of(manifest_of(folder)["evidence"]["acme"]["end_checkpoint"]) == 18
    result = verify(folder, history.public_key)
    assert (result.problems, len(result.warnings)) == ([], 1)
    assert "before the period ended" in result.warnings[0]


def test_a_chain_with_no_checkpoint_before_the_month_is_proven_from_its_first_record(
    history: Evidence, tmp_path: Path
) -> None:
    folder = tmp_path / "2026-09"
    history.report(SEPTEMBER, folder)
    acme = manifest_of(folder)["evidence"]["acme"]
    assert (acme["start_checkpoint"], acme["consistency_proof"]) == (None, [])
    result = verify(folder, history.public_key)
    assert result.problems == []
    assert any("extends the one at the chain's first record" in line for line in result.checked)


def test_records_no_checkpoint_covers_yet_are_refused_in_one_line(
    history: Evidence, tmp_path: Path
) -> None:
    history.run(at("2026-12-20 10:00"), None)  # a run killed before its checkpoint
    with pytest.raises(ManifestError) as caught:
        history.report(DECEMBER, tmp_path / "2026-12")
    assert str(caught.value) == (
        "no signed checkpoint of acme covers record #20, which the report counted: "
        "run 'mspauto evidence checkpoint --client acme' first"
    )


def test_a_report_is_not_signed_over_stored_hashes_the_signed_log_does_not_have(
    history: Evidence, tmp_path: Path
) -> None:
    # Building reads the stored hashes only (verify recomputes them from the content):
    # proofs made from hashes that are not the ones signed would prove nothing.
    tamper(
        history.path,
        "DROP TRIGGER evidence_records_no_update",
        f"UPDATE evidence_records SET hash = '{'0' * 64}' WHERE seq = 5",
    )
    with pytest.raises(ManifestError) as caught:
        history.report(OCTOBER, tmp_path / "2026-10")
    assert str(caught.value) == (
        "acme: the records up to #9 no longer match their signed checkpoint: run "
        "'mspauto evidence verify'"
    )


def test_a_report_is_not_signed_when_its_last_record_is_no_longer_stored_as_counted(
    history: Evidence, tmp_path: Path
) -> None:
    report = dataclasses.replace(
        sample_report(), client="acme", period=OCTOBER, evidence=counted_in(history, OCTOBER)
    )
    tamper(
        history.path,
        "DROP TRIGGER evidence_records_no_update",
        f"UPDATE evidence_records SET hash = '{'0' * 64}' WHERE seq = 8",
    )
    with pytest.raises(ManifestError) as caught:
        make_report(tmp_path / "2026-10", report, history.store, history.key)
    assert str(caught.value) == (
        "acme #8: the record the report counted is no longer what it counted (its stored "
        "hash differs): run 'mspauto evidence verify'"
    )


def test_report_json_must_list_the_evidence_of_the_report_being_signed(
    history: Evidence, tmp_path: Path
) -> None:
    (counted,) = counted_in(history, OCTOBER)
    report = dataclasses.replace(sample_report(), client="acme", period=OCTOBER, evidence=[counted])
    other = dataclasses.replace(counted, count=counted.count - 1)
    folder = tmp_path / "2026-10"
    folder.mkdir()
    (folder / "report.json").write_text(
        json.dumps(dataclasses.replace(report, evidence=[other]).as_dict())
    )
    with pytest.raises(ManifestError, match=r"report.json lists other evidence records than"):
        build_manifest(
            folder,
            [folder / "report.json"],
            report,
            history.store,
            history.key,
            policy_set_hash="p",
        )
    assert not (folder / MANIFEST).exists()


# --- verifying a folder ------------------------------------------------------------


@needs_minisign
def test_the_stock_minisign_verifies_the_manifest_with_the_pub_file(
    history: Evidence, tmp_path: Path
) -> None:
    folder = tmp_path / "2026-10"
    history.report(OCTOBER, folder)
    assert MINISIGN is not None
    verified = subprocess.run(
        [MINISIGN, "-Vm", str(folder / MANIFEST), "-p", str(history.public_key_file)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert verified.returncode == 0, verified.stderr
    assert "Trusted comment: mspauto monthly report manifest: client acme, month 2026-10" in (
        verified.stdout
    )
    (folder / MANIFEST).write_text((folder / MANIFEST).read_text().replace('"acme"', '"acne"', 1))
    edited = subprocess.run(
        [MINISIGN, "-Vm", str(folder / MANIFEST), "-p", str(history.public_key_file)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert edited.returncode != 0


def test_an_untouched_report_verifies_with_the_store_and_last_month(
    history: Evidence, tmp_path: Path
) -> None:
    history.report(OCTOBER, tmp_path / "2026-10")
    history.report(NOVEMBER, tmp_path / "2026-11")
    auditor = EvidenceStore(f"sqlite:///{history.path}", writable=False)
    result = verify(
        tmp_path / "2026-11", history.public_key, previous=tmp_path / "2026-10", store=auditor
    )
    auditor.close()
    assert result.problems == []
    assert result.ok
    fingerprint = history.public_key.fingerprint()
    assert result.checked == [
        f"manifest.json: signed by key {fingerprint} (acme, 2026-11)",
        "3 files have the SHA-256 and size the manifest lists: report.csv, report.json, report.pdf",
        "acme: the 4 records report.json counts are the ones the manifest describes",
        "acme: the log at #15 (signed 2026-12-01T01:00:00.000000+00:00) extends the one at #6 "
        f"(signed 2026-10-10T10:05:00.000000+00:00): checkpoints signed by key {fingerprint}, "
        "consistency proven",
        "acme: the 4 records the report counted are the ones in the evidence store of kinds "
        "findings, change_result, baseline_result, scheduled_run dated in the month, their "
        "hashes recomputed from their content, included in the log signed at #15",
        f"{tmp_path / '2026-10' / MANIFEST}: signed by key {fingerprint} (acme, 2026-10)",
        "acme: the previous month's end checkpoint (#9) is this month's handover checkpoint: "
        "the log continues it",
    ]


@pytest.mark.parametrize("name", ["report.pdf", "report.csv", "report.json"])
def test_an_edited_file_fails_naming_it(history: Evidence, tmp_path: Path, name: str) -> None:
    folder = tmp_path / "2026-10"
    history.report(OCTOBER, folder)
    path = folder / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    problems = verify(folder, history.public_key).problems
    assert len(problems) == 1
    assert problems[0].startswith(f"{name}: changed since the manifest was signed (SHA-256 ")


def test_a_deleted_file_fails(history: Evidence, tmp_path: Path) -> None:
    folder = tmp_path / "2026-10"
    history.report(OCTOBER, folder)
    (folder / "report.csv").unlink()
    assert verify(folder, history.public_key).problems == [
        "report.csv: missing (the signed manifest lists it)"
    ]


def test_anything_slipped_into_the_folder_fails(history: Evidence, tmp_path: Path) -> None:
    """A report folder holds only what the manifest lists: a note, a look-alike file or
    a folder of extra "report" files could pass for part of the signed report."""
    folder = tmp_path / "2026-10"
    history.report(OCTOBER, folder)
    (folder / "notes.txt").write_text("printed for the board meeting\n")
    (folder / "appendix").mkdir()
    (folder / "appendix" / "hosts.csv").write_text("host\nweb9\n")
    assert verify(folder, history.public_key).problems == [
        "'appendix': a folder the signed manifest does not list, so nothing vouches for it "
        "(remove it, or make the report again)",
        "'notes.txt': a file the signed manifest does not list, so nothing vouches for it "
        "(remove it, or make the report again)",
    ]


def test_an_edited_manifest_fails_its_signature(history: Evidence, tmp_path: Path) -> None:
    folder = tmp_path / "2026-10"
    history.report(OCTOBER, folder)
    data = manifest_of(folder)
    digest = data["files"]["report.pdf"]["sha256"]
    (folder / "report.pdf").write_bytes(b"%PDF-1.7\n% a better month\n%%EOF\n")
    forged = (
        (folder / MANIFEST)
        .read_text()
        .replace(digest, hashlib.sha256((folder / "report.pdf").read_bytes()).hexdigest())
    )
    (folder / MANIFEST).write_text(forged)
    assert verify(folder, history.public_key).problems == [
        f"manifest.json: the signature by key {history.public_key.fingerprint()} does not "
        "match the data: the manifest was changed after signing, or is not the MSP's"
    ]


def test_a_manifest_signed_by_another_key_fails(history: Evidence, tmp_path: Path) -> None:
    folder = tmp_path / "2026-10"
    history.report(OCTOBER, folder)
    generate_key(tmp_path / "other.key", tmp_path / "other.pub", comment="not the MSP")
    other = SigningKey.load(tmp_path / "other.key")
    resign(folder, other, {})
    assert verify(folder, history.public_key).problems == [
        f"manifest.json: signed by key {other.public_key.fingerprint()}, not by key "
        f"{history.public_key.fingerprint()}: the manifest was changed after signing, or is "
        "not the MSP's"
    ]


def test_a_missing_signature_fails(history: Evidence, tmp_path: Path) -> None:
    folder = tmp_path / "2026-10"
    history.report(OCTOBER, folder)
    (folder / MANIFEST_SIGNATURE).unlink()
    assert verify(folder, history.public_key).problems == [
        "manifest.json.minisig: missing: the manifest is not signed"
    ]


def test_a_signed_manifest_whose_proof_does_not_hold_fails(
    history: Evidence, tmp_path: Path
) -> None:
    # Signed with the right key, so only the proof itself can catch it.
    folder = tmp_path / "2026-10"
    history.report(OCTOBER, folder)
    proof = manifest_of(folder)["evidence"]["acme"]["consistency_proof"]
    resign(folder, history.key, {"consistency_proof": ["A" * 43 + "=", *proof[1:]]})
    assert verify(folder, history.public_key).problems == [
        "manifest.json: evidence for acme: the consistency proof from the start checkpoint "
        "(#3) to the end checkpoint (#9) does not hold: the end checkpoint's log does not "
        "extend it"
    ]


def test_a_signed_manifest_with_another_chain_s_checkpoint_fails(
    history: Evidence, tmp_path: Path
) -> None:
    folder = tmp_path / "2026-10"
    history.report(OCTOBER, folder)
    history.notary.now = at("2026-11-02 00:00")
    history.store.append(
        [NewRecord("globex", "host_result", "run-g", at("2026-11-02 00:00"), {"rc": 0})]
    )
    globex = history.store.checkpoint("globex").checkpoint
    assert globex is not None
    resign(folder, history.key, {"end_checkpoint": globex.note})
    assert verify(folder, history.public_key).problems == [
        "manifest.json: evidence for acme: the end checkpoint is one of globex, not of acme"
    ]


FORGED = (
    "INSERT INTO evidence_records (chain, seq, kind, run_id, host, recorded_at, payload, "
    "prev_hash, hash) SELECT 'acme', 19, 'findings', 'forged', 'web9', "
    '\'2026-10-20T10:00:00.000000+00:00\', \'{"rc":0,"result":"ok"}\', hash, '
    f"'{'f' * 64}' FROM evidence_records WHERE chain = 'acme' AND seq = 18"
)
"""A findings record of 20 October slipped in at the end of the chain."""


@pytest.mark.parametrize(
    ("statements", "expected"),
    [
        (
            (
                "DROP TRIGGER evidence_records_no_update",
                'UPDATE evidence_records SET payload = \'{"rc":0,"result":"fine"}\' WHERE seq = 5',
            ),
            [
                "evidence store: acme: the records up to #9 do not hash to the end "
                "checkpoint's signed root: records #5 were edited (their content no longer "
                "gives their hash)",
                "evidence store: acme: the records of the report's kinds dated in the month, "
                "in the log up to #9, are not the ones the report counted (their SHA-256 is "
                "not the one the manifest signed; records #5 were edited)",
            ],
        ),
        (
            (
                "DROP TRIGGER evidence_records_no_update",
                "UPDATE evidence_records SET kind = 'findings' WHERE seq = 6",
            ),
            [
                "evidence store: acme: the records up to #9 do not hash to the end "
                "checkpoint's signed root: records #6 were edited (their content no longer "
                "gives their hash)",
                "evidence store: acme: the records of the report's kinds dated in the month, "
                "in the log up to #9, are not the ones the report counted (5 records, the "
                "report counted 4; records #6 were edited)",
            ],
        ),
        (
            (
                "DROP TRIGGER evidence_records_no_delete",
                "DELETE FROM evidence_records WHERE seq = 7",
            ),
            [
                "evidence store: acme: records #7 are missing, though the end checkpoint covers #9",
            ],
        ),
        (
            ("DROP TRIGGER evidence_records_continuity", FORGED),
            [
                "evidence store: acme: records #19 of the report's kinds are dated in the month "
                "before the report was made, yet come after the end checkpoint (#9) and were "
                "not counted: added after the report was made",
            ],
        ),
    ],
    ids=["edited", "made to count", "deleted", "inserted"],
)
def test_evidence_changed_after_the_report_fails_with_the_store(
    history: Evidence, tmp_path: Path, statements: tuple[str, ...], expected: list[str]
) -> None:
    folder = tmp_path / "2026-10"
    history.report(OCTOBER, folder)
    tamper(history.path, *statements)
    # The folder alone cannot tell: the store can.
    assert verify(folder, history.public_key).problems == []
    auditor = EvidenceStore(f"sqlite:///{history.path}", writable=False)
    assert verify(folder, history.public_key, store=auditor).problems == expected
    auditor.close()


def test_an_edit_that_rehashes_the_record_is_caught_at_the_record_after_it(
    history: Evidence, tmp_path: Path
) -> None:
    folder = tmp_path / "2026-10"
    history.report(OCTOBER, folder)
    (fifth,) = [r for r in history.store.records(chain="acme") if r.seq == 5]
    payload = '{"rc":0,"result":"fine"}'
    digest = record_hash(
        fifth.prev_hash, "acme", 5, fifth.kind, fifth.run_id, fifth.host, fifth.recorded_at, payload
    )
    tamper(
        history.path,
        "DROP TRIGGER evidence_records_no_update",
        f"UPDATE evidence_records SET payload = '{payload}', hash = '{digest}' WHERE seq = 5",
    )
    auditor = EvidenceStore(f"sqlite:///{history.path}", writable=False)
    problems = verify(folder, history.public_key, store=auditor).problems
    auditor.close()
    assert problems == [
        "evidence store: acme: the records up to #9 do not hash to the end checkpoint's "
        "signed root: records #6 no longer follow the records before them (records were "
        "replaced)",
        "evidence store: acme: the records of the report's kinds dated in the month, in the "
        "log up to #9, are not the ones the report counted (their SHA-256 is not the one the "
        "manifest signed)",
    ]


def test_records_of_the_month_after_an_early_report_are_a_warning(
    history: Evidence, tmp_path: Path
) -> None:
    folder = tmp_path / "2026-12"
    history.report(DECEMBER, folder, made=at("2026-12-03 12:00"))
    history.run(at("2026-12-10 10:00"), at("2026-12-10 10:05"))
    result = verify(folder, history.public_key, store=history.store)
    assert result.problems == []
    assert result.warnings == [
        "acme: the end checkpoint was signed at 2026-12-03T10:05:00.000000+00:00, before the "
        "period ended (a report made before the month was over)",
        "acme: records #19..#20 were recorded in the month after the report was made, so it "
        "does not count them",
    ]


def test_report_json_must_say_what_the_manifest_says(history: Evidence, tmp_path: Path) -> None:
    folder = tmp_path / "2026-10"
    history.report(OCTOBER, folder)
    # Signed with the right key, so only the comparison with report.json catches it.
    resign(folder, history.key, {"kinds": ["findings"]})
    assert verify(folder, history.public_key).problems == [
        "manifest.json: the evidence for acme does not describe the records report.json "
        "counts (kinds, number, first, last or their SHA-256 differ)"
    ]


def test_proofs_hold_over_a_log_of_thousands_of_records(evidence: Evidence, tmp_path: Path) -> None:
    # Sizes past a thousand and no power of two: every path of the proofs is taken.
    for recorded, signed, records in [
        (at("2026-09-30 10:00"), at("2026-09-30 11:00"), 1100),
        (at("2026-10-01 10:00"), at("2026-10-01 11:00"), 1333),
        (at("2026-10-20 10:00"), at("2026-10-20 11:00"), 1500),
        (at("2026-10-31 23:00"), at("2026-11-01 01:00"), 777),
        (at("2026-11-12 10:00"), at("2026-11-12 11:00"), 2049),
        (at("2026-11-30 23:00"), at("2026-12-01 01:00"), 5),
    ]:
        evidence.run(recorded, signed, records=records)
    october, november = tmp_path / "2026-10", tmp_path / "2026-11"
    evidence.report(OCTOBER, october)
    evidence.report(NOVEMBER, november)
    acme = manifest_of(november)["evidence"]["acme"]
    sizes = [
        size_of(acme[k]) for k in ("start_checkpoint", "handover_checkpoint", "end_checkpoint")
    ]
    assert sizes == [3933, 4710, 6764]
    assert verify(october, evidence.public_key, store=evidence.store).problems == []
    result = verify(november, evidence.public_key, previous=october, store=evidence.store)
    assert result.problems == []
    assert len(result.checked) == 7


# --- month to month ----------------------------------------------------------------


def test_last_month_s_manifest_file_chains_without_the_store(
    history: Evidence, tmp_path: Path
) -> None:
    history.report(OCTOBER, tmp_path / "2026-10")
    history.report(NOVEMBER, tmp_path / "2026-11")
    result = verify(
        tmp_path / "2026-11", history.public_key, previous=tmp_path / "2026-10" / MANIFEST
    )
    assert result.problems == []
    assert result.checked[-1] == (
        "acme: the previous month's end checkpoint (#9) is this month's handover checkpoint: "
        "the log continues it"
    )


def test_a_rolled_back_store_no_longer_chains_with_last_month(
    evidence: Evidence, tmp_path: Path
) -> None:
    for recorded, signed in HISTORY[:2]:
        evidence.run(recorded, signed)
    older = evidence.copy(tmp_path / "older.db")
    for recorded, signed in HISTORY[2:]:
        evidence.run(recorded, signed)
    evidence.report(OCTOBER, tmp_path / "2026-10")
    # Someone restores the copy from before 31 October and records that night again,
    # differently: a log of the size October's report signed, with another root. On
    # its own, the new history is perfectly consistent.
    notary = ClockedNotary(evidence.key, None)
    restored = Evidence(
        older,
        EvidenceStore(f"sqlite:///{older}", notary=notary),
        notary,
        evidence.public_key_file,
    )
    for recorded, signed in HISTORY[2:5]:
        restored.run(recorded, signed, result="rewritten")
    restored.report(NOVEMBER, tmp_path / "2026-11")
    november = tmp_path / "2026-11"
    assert verify(november, evidence.public_key, store=restored.store).problems == []
    result = verify(november, evidence.public_key, previous=tmp_path / "2026-10")
    assert result.problems == [
        "manifest.json: evidence for acme: the handover checkpoint at #9 has another root "
        "than the previous month's end checkpoint of that size: the log was rewritten or the "
        "store rolled back"
    ]
    restored.store.close()


def test_an_end_checkpoint_between_others_is_proven_from_the_store(
    evidence: Evidence, tmp_path: Path
) -> None:
    # October's report is made in mid-October: it ends at the newest checkpoint then
    # (#6). A run on 20 October means November's manifest starts at #9 and hands over
    # at #12, so only the store can prove #6 is in November's log.
    evidence.run(at("2026-10-10 10:00"), at("2026-10-10 10:05"))
    evidence.run(at("2026-10-10 12:00"), at("2026-10-10 12:05"))
    evidence.report(OCTOBER, tmp_path / "2026-10")
    evidence.run(at("2026-10-20 10:00"), at("2026-10-20 10:05"))
    evidence.run(at("2026-11-15 10:00"), at("2026-11-15 10:05"))
    evidence.run(at("2026-11-30 23:00"), at("2026-12-01 01:00"))
    evidence.report(NOVEMBER, tmp_path / "2026-11")
    november, october = tmp_path / "2026-11", tmp_path / "2026-10"
    assert verify(november, evidence.public_key, previous=october).problems == [
        "manifest.json: evidence for acme: the previous month's end checkpoint (#6) is not "
        "one this manifest proves; give the evidence store to compute the consistency proof"
    ]
    result = verify(november, evidence.public_key, previous=october, store=evidence.store)
    assert result.problems == []
    assert result.checked[-1] == (
        "acme: the log at #15 extends the previous month's end checkpoint (#6): "
        "consistency proven from the evidence store"
    )


def test_a_previous_manifest_must_be_signed_and_come_before(
    history: Evidence, tmp_path: Path
) -> None:
    history.report(OCTOBER, tmp_path / "2026-10")
    history.report(NOVEMBER, tmp_path / "2026-11")
    backwards = verify(tmp_path / "2026-10", history.public_key, previous=tmp_path / "2026-11")
    assert backwards.problems == [
        f"{tmp_path / '2026-11' / MANIFEST}: is for 2026-11, which does not come before 2026-10"
    ]
    (tmp_path / "2026-10" / MANIFEST_SIGNATURE).unlink()
    unsigned = verify(tmp_path / "2026-11", history.public_key, previous=tmp_path / "2026-10")
    assert unsigned.problems == [
        f"{tmp_path / '2026-10' / MANIFEST}.minisig: missing: the manifest is not signed"
    ]
