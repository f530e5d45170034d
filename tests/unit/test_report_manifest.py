"""The monthly report's signed manifest, made from a real evidence store: it verifies
with verify_report and with the stock minisign, it chains month to month, and each
edit someone could make to a report folder, its manifest or the evidence is caught in
one line that names what was changed."""

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
from mspauto.evidence.store import EvidenceStore, NewRecord
from mspauto.report.manifest import (
    MANIFEST,
    MANIFEST_SIGNATURE,
    ManifestError,
    ReportVerification,
    build_manifest,
    verify_report,
)
from mspauto.signing import PublicKey, SigningKey, generate_key, sign_file, sign_note
from mspauto.sla.model import EvidenceRef, MonthlyReport, Period

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


# Each run writes three records of acme and then signs a checkpoint (size 3, 6, ...).
# The run on 31 October is signed after midnight: October's manifest ends with that
# checkpoint, November's starts with the one before it (10 October).
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

    def run(self, recorded: datetime, signed: datetime | None, *, result: str = "ok") -> None:
        """Three records of acme at ``recorded``, then a checkpoint signed at ``signed``
        (None: left unsigned)."""
        run_id = str(uuid.uuid4())
        self.store.append(
            [
                NewRecord(
                    "acme",
                    "host_result",
                    run_id,
                    recorded + timedelta(seconds=i),
                    {"rc": 0, "result": result},
                    host=f"web{i}",
                )
                for i in range(3)
            ]
        )
        if signed is not None:
            self.notary.now = signed
            outcome = self.store.checkpoint("acme")
            assert outcome.checkpoint is not None, outcome.skipped

    def report(self, period: Period, folder: Path) -> Path:
        """A report of ``period`` counting acme's records of the month, with its manifest."""
        refs = [
            EvidenceRef(r.chain, r.seq, r.hash)
            for r in self.store.records(chain="acme")
            if period.start <= datetime.fromisoformat(r.recorded_at) < period.end
        ]
        report = dataclasses.replace(
            sample_report(),
            client="acme",
            period=period,
            generated_at=period.end + timedelta(hours=2),
            evidence=refs,
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
    assert (acme["records"], acme["first"]["seq"], acme["last"]["seq"]) == (6, 4, 9)
    # Start: the last checkpoint signed before 1 October. Handover: the first signed
    # after it. End: the first covering #9 signed after 1 November.
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
        "no signed checkpoint of acme covers record #21, which the report counted: "
        "run 'mspauto evidence checkpoint --client acme' first"
    )


def test_a_report_is_not_signed_over_evidence_edited_before_it_was_made(
    history: Evidence, tmp_path: Path
) -> None:
    tamper(
        history.path,
        "DROP TRIGGER evidence_records_no_update",
        'UPDATE evidence_records SET payload = \'{"rc":0,"result":"fine"}\' WHERE seq = 5',
    )
    with pytest.raises(ManifestError, match=r"^acme: the records up to #6 no longer match"):
        history.report(OCTOBER, tmp_path / "2026-10")


def test_report_json_must_list_the_evidence_of_the_report_being_signed(
    history: Evidence, tmp_path: Path
) -> None:
    refs = [EvidenceRef(r.chain, r.seq, r.hash) for r in history.store.records(chain="acme")]
    report = dataclasses.replace(sample_report(), client="acme", period=OCTOBER, evidence=refs[3:9])
    folder = tmp_path / "2026-10"
    folder.mkdir()
    (folder / "report.json").write_text(
        json.dumps(dataclasses.replace(report, evidence=refs[3:8]).as_dict())
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
        "acme: the 6 records report.json counts are the ones the manifest describes",
        "acme: the log at #15 (signed 2026-12-01T01:00:00.000000+00:00) extends the one at #6 "
        f"(signed 2026-10-10T10:05:00.000000+00:00): checkpoints signed by key {fingerprint}, "
        "consistency proven",
        "acme: the 6 counted records are in the evidence store as counted, included in the "
        "log signed at #15",
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


def test_a_report_file_slipped_in_fails_and_other_files_are_mentioned(
    history: Evidence, tmp_path: Path
) -> None:
    folder = tmp_path / "2026-10"
    history.report(OCTOBER, folder)
    (folder / "notes.txt").write_text("printed for the board meeting\n")
    result = verify(folder, history.public_key)
    assert (result.ok, result.warnings) == (
        True,
        ["notes.txt: not in the signed manifest (not a report file)"],
    )
    (folder / "appendix").mkdir()
    (folder / "appendix" / "hosts.csv").write_text("host\nweb9\n")
    assert verify(folder, history.public_key).problems == [
        "appendix/hosts.csv: not in the signed manifest, so nothing vouches for it (remove "
        "it, or make the report again)"
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
                "checkpoint's signed root: records were changed after they were signed",
                "evidence store: acme: records #5 that the report counted were edited or are "
                "missing (their content no longer gives the hash the report counted)",
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
    ],
    ids=["edited", "deleted"],
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
