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
    assert f"acme 2026-11: 62.5% (poor) -> {folder}" in result.output
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
    assert data["baseline"]["score"] == 75.0
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
