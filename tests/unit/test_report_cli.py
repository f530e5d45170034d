"""``mspauto report`` and ``report verify`` end to end, on evidence written by the store.

What an MSP and its auditor see: a report folder with every format and a signed
manifest; the stock ``minisign`` accepts the manifest; ``report verify`` accepts the
folder, and refuses it once a file or an evidence row is changed.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from mspauto.cli import cli
from mspauto.config import Settings
from mspauto.evidence.checkpoints import Notary, Witness
from mspauto.evidence.records import Finding, FindingStatus, HostFindings, RecordKind
from mspauto.evidence.store import EvidenceStore, NewRecord
from mspauto.signing import SigningKey

NOVEMBER = datetime(2026, 11, 1, 5, tzinfo=UTC)  # Nov 1 00:00 in New York (EST)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Two clients (acme in New York, globex in Berlin) with two hosts each."""
    root = tmp_path / "project"
    (root / "inventory").mkdir(parents=True)
    (root / "policies").mkdir()
    (root / "policies" / "all.yaml").write_text(
        "kind: contract\nname: std\n---\n"
        "kind: baseline\nname: cis\ntargets: {platforms: [debian]}\n"
        "schedule: {cron: '0 6 * * *', timezone: client}\n"
        "packs: [debian-cis]\n"
    )
    for client, zone in (("acme", "America/New_York"), ("globex", "Europe/Berlin")):
        document = {
            "client": {
                "name": client,
                "display_name": f"{client.title()} <Corp>",
                "timezone": zone,
                "contract": "std",
            },
            "hosts": {
                f"{client}-{n}": {"address": f"127.0.9{len(client)}.{n}", "platform": "debian"}
                for n in (1, 2)
            },
        }
        (root / "inventory" / f"{client}.yaml").write_text(yaml.safe_dump(document))
    for name in ("MSPAUTO_EVIDENCE_URL", "MSPAUTO_SIGNING_KEY", "MSPAUTO_WITNESS_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MSPAUTO_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    assert run(root, "keys", "init").exit_code == 0
    yield root


def run(project: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--project", str(project), *args])


def audit(host: str, *verdicts: str) -> dict[str, object]:
    return HostFindings(
        "baseline",
        host,
        tuple(
            Finding(
                f"rule-{i}",
                "cis",
                FindingStatus(v),
                detail={"title": f"Rule {i}", "pack": "debian-cis", "severity": "high"},
            )
            for i, v in enumerate(verdicts)
        ),
    ).payload()


def record_audits(project: Path, client: str, days: list[int]) -> None:
    """One audit of the client's first host on each day (of November), signed."""
    settings = Settings.load(project)
    witness = Witness(settings.witness_dir)
    if not witness.exists():
        witness.create()
    notary = Notary(SigningKey.load(settings.signing_key), witness)
    store = EvidenceStore(settings.evidence_url, writable=True, notary=notary)
    try:
        for day in days:
            at = NOVEMBER + timedelta(days=day - 1, hours=9)
            host = f"{client}-1"
            store.append(
                [
                    NewRecord(
                        client,
                        RecordKind.FINDINGS,
                        f"run-{day}",
                        at,
                        audit(host, "pass", "pass", "fail", "pass"),
                        host=host,
                    )
                ]
            )
            store.checkpoint(client)
    finally:
        store.close()


def report_dir(project: Path, client: str = "acme", month: str = "2026-11") -> Path:
    return Settings.load(project).state_dir / "reports" / client / month


def test_a_report_is_written_signed_and_verified_offline(project: Path) -> None:
    record_audits(project, "acme", [3, 20])
    result = run(project, "report", "--client", "acme", "--month", "2026-11")
    assert result.exit_code == 0, result.output
    folder = report_dir(project)
    assert f"acme 2026-11: 43.8% (poor) -> {folder}" in result.output
    names = {p.name for p in folder.iterdir()}
    assert {
        "report.html",
        "report.pdf",
        "report.json",
        "hosts.csv",
        "findings.csv",
        "assessment-results.json",
        "manifest.json",
        "manifest.json.minisig",
    } <= names
    data = json.loads((folder / "report.json").read_text())
    # acme-1 passed 3 of 4 rules; acme-2, never audited, counts as an audit of 4 failed.
    assert data["baseline"]["score"] == 37.5
    # acme-2 was never audited: coverage says so, and the report says what is missing.
    assert data["coverage"]["unchecked"][0]["host"] == "acme-2"
    assert "1 of 2 hosts had no baseline audit in the month" in result.output

    public = Settings.load(project).public_key
    stock = subprocess.run(
        ["minisign", "-Vm", str(folder / "manifest.json"), "-p", str(public)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert stock.returncode == 0, stock.stderr
    verified = run(
        project, "report", "verify", str(folder), "--public-key", str(public), "--evidence"
    )
    assert verified.exit_code == 0, verified.output
    assert "report verified" in verified.output


def test_an_edited_file_or_evidence_row_fails_verify(project: Path) -> None:
    record_audits(project, "acme", [3, 20])
    assert run(project, "report", "--client", "acme", "--month", "2026-11").exit_code == 0
    folder = report_dir(project)
    public = str(Settings.load(project).public_key)

    copy = folder.parent / "edited"
    shutil.copytree(folder, copy)
    with (copy / "hosts.csv").open("a") as handle:
        handle.write("acme-9,compliant\n")
    result = run(project, "report", "verify", str(copy), "--public-key", public)
    assert result.exit_code == 1
    assert "hosts.csv" in result.output and "report NOT verified" in result.output

    database = Settings.load(project).state_dir / "evidence.db"
    with sqlite3.connect(database) as db:
        db.execute("DROP TRIGGER evidence_records_no_update")
        db.execute(
            "UPDATE evidence_records SET payload = replace(payload, '\"fail\"', '\"pass\"') "
            "WHERE chain = 'acme' AND seq = 1"
        )
    result = run(project, "report", "verify", str(folder), "--public-key", public, "--evidence")
    assert result.exit_code == 1, result.output
    assert "acme" in result.output and "report NOT verified" in result.output


def test_every_client_at_once_and_one_line_errors(project: Path) -> None:
    record_audits(project, "acme", [5])
    result = run(project, "report", "--all", "--month", "2026-11")
    assert result.exit_code == 0, result.output
    assert report_dir(project, "globex").is_dir()
    # globex recorded nothing: its report says so instead of showing 100%.
    assert "globex 2026-11: no data" in result.output
    # A delivered report is never overwritten silently.
    again = run(project, "report", "--client", "acme", "--month", "2026-11")
    assert again.exit_code == 1
    assert "exists already" in again.output and "--replace" in again.output
    assert (
        run(project, "report", "--client", "acme", "--month", "2026-11", "--replace").exit_code == 0
    )
    for args, message in (
        (["--month", "2026-11"], "give --client NAME (repeatable) or --all"),
        (["--client", "nobody", "--month", "2026-11"], "unknown client 'nobody'"),
        (["--client", "acme", "--month", "11/2026"], "is not a month: give it as YYYY-MM"),
        (["--client", "acme", "--month", "2099-01"], "has not started yet"),
    ):
        result = run(project, "report", *args)
        assert result.exit_code == 1, result.output
        assert message in result.output
        assert "Traceback" not in result.output


def test_a_store_rolled_back_behind_the_witness_is_refused(project: Path) -> None:
    """Restoring an older copy of the store (a failing audit gone) must not give a clean
    report: the witness log holds a checkpoint the copy lacks."""
    record_audits(project, "acme", [3])
    database = Settings.load(project).state_dir / "evidence.db"
    with sqlite3.connect(database) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    saved = database.read_bytes()
    record_audits(project, "acme", [20])
    with sqlite3.connect(database) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    database.write_bytes(saved)
    result = run(project, "report", "--client", "acme", "--month", "2026-11")
    assert result.exit_code == 1
    assert "does not match the witness log" in result.output
    assert not report_dir(project).exists()


def test_no_evidence_store_is_an_error_not_an_empty_report(project: Path) -> None:
    result = run(project, "report", "--client", "acme", "--month", "2026-11")
    assert result.exit_code == 1
    assert "no evidence recorded yet" in result.output
    for month in ("9999-12", "1970-01", "0000-01"):
        result = run(project, "report", "--all", "--month", month)
        assert result.exit_code == 1
        assert result.output.count("is not a month") == 1, result.output


def test_anything_unlisted_fails_and_names_are_printed_escaped(project: Path) -> None:
    record_audits(project, "acme", [3])
    assert run(project, "report", "--client", "acme", "--month", "2026-11").exit_code == 0
    folder = report_dir(project)
    public = str(Settings.load(project).public_key)
    hostile = "x\nok: everything\nreport verified\x1b[8m"
    (folder / hostile).write_text("forged")
    (folder / "more").mkdir()
    (folder / "more" / "report.pdf").write_text("forged")
    result = run(project, "report", "verify", str(folder), "--public-key", public)
    assert result.exit_code == 1
    assert "\x1b" not in result.output and "\\x1b[8m" in result.output
    assert result.output.splitlines()[-1] == "report NOT verified"
    assert "report verified" not in result.output.splitlines()
    assert "'more': a folder the signed manifest does not list" in result.output

    renamed = folder.parent.parent / "globex" / "2026-11"
    renamed.parent.mkdir()
    shutil.copytree(folder, renamed)
    for extra in (renamed / hostile, renamed / "more"):
        shutil.rmtree(extra) if extra.is_dir() else extra.unlink()
    result = run(project, "report", "verify", str(renamed), "--public-key", public)
    assert result.exit_code == 0, result.output
    assert "says this is acme's report for 2026-11, but the folder is named globex" in (
        result.output
    )
