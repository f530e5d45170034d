"""The Windows rule pack end to end over WinRM, against the WS-Management test endpoint.

The endpoint answers the audit script with what a stock Windows Server 2019 prints as
far as published outputs and Microsoft's documented defaults show (each value in
tests/fixtures/winrm/baseline-default-2019.yaml names its source or is marked modelled;
none was recorded from a host); every rule's verdict is checked.
This proves the pack, the PowerShell batching and the parsing over the real protocol,
not the PowerShell audits themselves (they need a real Windows host).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from mspauto.baseline.report import audit_client
from mspauto.baseline.script import MARK
from mspauto.config import Settings
from mspauto.evidence.store import EvidenceStore
from mspauto.lab.winrm_endpoint import CannedAnswer, WinRMEndpoint, check_source
from mspauto.project import load_project
from mspauto.transport import transport_for

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).parent.parent / "fixtures" / "winrm" / "baseline-default-2019.yaml"
OBSERVED: dict[str, dict[str, str]] = yaml.safe_load(FIXTURE.read_text())


def _block(rule: str, seen: dict[str, str]) -> str:
    """What Invoke-Audit prints for one rule: its value, or the error the audit threw."""
    check_source(seen["source"], seen.get("note", ""))
    if "error" in seen:
        error = f"{MARK} STDERR {rule}\r\n{seen['error']}\r\n"
        return f"{MARK} BEGIN {rule}\r\n{error}{MARK} END {rule} 1\r\n"
    value = seen["observed"]
    return (
        f"{MARK} BEGIN {rule}\r\n" + (f"{value}\r\n" if value else "") + f"{MARK} END {rule} 0\r\n"
    )


def _answer() -> CannedAnswer:
    blocks = "".join(_block(rule, seen) for rule, seen in OBSERVED.items())
    return CannedAnswer(
        pattern="Invoke-Audit 'win-password-history'",
        stdout=blocks,
        source=f"tests/fixtures/winrm/{FIXTURE.name}",
        note="one source per rule",
    )


@pytest.fixture
def windows_host(
    winrm_address: str, winrm_certificates: tuple[Path, Path, Path]
) -> Iterator[WinRMEndpoint]:
    with WinRMEndpoint(
        winrm_address,
        [_answer()],
        users={"svc": "pw-5f1e"},
        certificate=(winrm_certificates[1], winrm_certificates[2]),
    ) as host:
        yield host


def test_windows_pack_over_winrm(
    windows_host: WinRMEndpoint,
    winrm_certificates: tuple[Path, Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "inventory").mkdir()
    (tmp_path / "policies").mkdir()
    (tmp_path / "ca.pem").write_bytes(winrm_certificates[0].read_bytes())
    (tmp_path / "policies" / "all.yaml").write_text(
        "kind: contract\nname: std\n---\nkind: baseline\nname: win\n"
        "targets: {platforms: [windows]}\nschedule: {cron: '0 5 * * *', timezone: client}\n"
        "packs: [windows-cis]\n"
    )
    (tmp_path / "inventory" / "contoso.yaml").write_text(
        yaml.safe_dump(
            {
                "client": {
                    "name": "contoso",
                    "display_name": "Contoso",
                    "timezone": "UTC",
                    "contract": "std",
                    "platform": "windows",
                    "credential": "svc",
                    "credentials": {
                        "svc": {
                            "user": "svc",
                            "password": {"env": "WIN_PW"},
                            "winrm_transport": "basic",
                        }
                    },
                },
                "hosts": {
                    "win01": {
                        "address": windows_host.address,
                        "port": windows_host.port,
                        "vars": {"winrm_ca_trust_path": "ca.pem"},
                    }
                },
            }
        )
    )
    monkeypatch.setenv("WIN_PW", "pw-5f1e")
    project = load_project(Settings.load(tmp_path))
    assert not project.errors, project.errors
    client = project.inventory.clients["contoso"]
    store = EvidenceStore(f"sqlite:///{tmp_path / 'evidence.db'}")
    report = audit_client(
        project, "contoso", list(client.hosts.values()), transport_for(client, tmp_path), store
    )
    (host,) = report.hosts
    verdicts = {f.subject: f.status for f in host.findings}
    assert verdicts == {rule: seen["verdict"] for rule, seen in OBSERVED.items()}
    assert len(windows_host.scripts) == 1  # every rule in one script, one round trip
    assert windows_host.scripts[0].count("Invoke-Audit '") == len(OBSERVED)
    assert report.score is not None and report.below_floor
    assert store.verify().problems == []
