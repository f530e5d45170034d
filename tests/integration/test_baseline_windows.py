"""The Windows rule pack end to end over WinRM, against the WS-Management test endpoint.

The endpoint answers the audit script with what a default Windows Server 2019 prints
(tests/fixtures/winrm/baseline-default-2019.yaml); every rule's verdict is checked.
This proves the pack, the PowerShell batching and the parsing over the real protocol,
not the PowerShell audits themselves (they need a real Windows host).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from mspauto.baseline.audit import audit_client
from mspauto.baseline.script import MARK
from mspauto.config import Settings
from mspauto.evidence.store import EvidenceStore
from mspauto.lab.winrm_endpoint import RecordedAnswer, WinRMEndpoint
from mspauto.project import load_project
from mspauto.transport import transport_for

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).parent.parent / "fixtures" / "winrm" / "baseline-default-2019.yaml"
OBSERVED: dict[str, list[str]] = yaml.safe_load(FIXTURE.read_text())


def _answer() -> RecordedAnswer:
    blocks = "".join(
        f"{MARK} BEGIN {rule}\r\n" + (f"{value}\r\n" if value else "") + f"{MARK} END {rule} 0\r\n"
        for rule, (value, _) in OBSERVED.items()
    )
    return RecordedAnswer(pattern="Invoke-Audit 'win-password-history'", stdout=blocks)


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
    verdicts = {r.rule_id: r.status for r in host.results}
    assert verdicts == {rule: verdict for rule, (_, verdict) in OBSERVED.items()}
    assert len(windows_host.scripts) == 1  # every rule in one script, one round trip
    assert windows_host.scripts[0].count("Invoke-Audit '") == len(OBSERVED)
    assert report.score is not None and report.below_floor
    assert store.verify()[1] == []
