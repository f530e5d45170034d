"""The Windows Update probe over the real WinRM transport, against the test endpoint.

One WS-Management endpoint per host state (HTTPS, Basic, loopback), each answering the
probe with the state's output from tests/fixtures/winrm/windows-update.yaml (values
from published outputs, shape modelled on the probe; none recorded from a host). This
proves that the probe travels whole over WinRS, that what comes back (CRLF, the \\u
escapes of a non-English title, an exit code) parses into the facts the unit tests pin,
and that a search error reaches the facts as a problem. It does not prove the
PowerShell itself: no Windows host runs it here.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from mspauto.config import Settings
from mspauto.inventory.resolve import Client
from mspauto.lab.testing import mspauto_cli
from mspauto.lab.winrm_endpoint import CannedAnswer, WinRMEndpoint, check_source
from mspauto.patching.facts import HostPatchFacts
from mspauto.patching.windows import PROBE_MARKER, parse, probe_script
from mspauto.project import load_project
from mspauto.transport.winrm import WinRMTransport

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).parent.parent / "fixtures" / "winrm" / "windows-update.yaml"
STATES: dict[str, dict[str, Any]] = yaml.safe_load(FIXTURE.read_text())
PASSWORD = "Wu-probe-7c1d"


def _answer(entry: dict[str, Any]) -> CannedAnswer:
    check_source(entry["source"], entry.get("note", ""))
    return CannedAnswer(
        pattern=re.escape(PROBE_MARKER),
        source=entry["source"],
        note=entry["note"],
        stdout=entry["stdout"] + "\r\n",
        stderr=entry.get("stderr", ""),
        exit_code=entry.get("exit_code", 0),
    )


@dataclass(frozen=True)
class Fleet:
    """One client whose hosts are the endpoints, one per state."""

    client: Client
    root: Path
    endpoints: dict[str, WinRMEndpoint]


@pytest.fixture(scope="module")
def fleet(
    winrm_address: str,
    winrm_certificates: tuple[Path, Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("wu-project")
    with ExitStack() as stack:
        endpoints = {
            state: stack.enter_context(
                WinRMEndpoint(
                    winrm_address,
                    [_answer(entry)],
                    users={"svc-msp": PASSWORD},
                    certificate=(winrm_certificates[1], winrm_certificates[2]),
                )
            )
            for state, entry in STATES.items()
        }
        (root / "inventory").mkdir()
        (root / "policies").mkdir()
        (root / "policies" / "contract.yaml").write_text("kind: contract\nname: std\n")
        (root / "ca.pem").write_bytes(winrm_certificates[0].read_bytes())
        document = {
            "client": {
                "name": "contoso",
                "display_name": "Contoso",
                "timezone": "Europe/Berlin",
                "contract": "std",
                "platform": "windows",
                "credential": "svc",
                "credentials": {
                    "svc": {
                        "user": "svc-msp",
                        "password": {"env": "WU_PROBE_PASSWORD"},
                        "winrm_transport": "basic",
                    }
                },
            },
            "hosts": {
                state: {
                    "address": endpoint.address,
                    "port": endpoint.port,
                    "vars": {"winrm_ca_trust_path": "ca.pem"},
                }
                for state, endpoint in endpoints.items()
            },
        }
        (root / "inventory" / "contoso.yaml").write_text(yaml.safe_dump(document))
        project = load_project(Settings.load(root))
        assert not project.errors, project.errors
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("WU_PROBE_PASSWORD", PASSWORD)
            yield Fleet(project.inventory.clients["contoso"], root, endpoints)


def _probe(fleet: Fleet, state: str) -> HostPatchFacts:
    transport = WinRMTransport(fleet.client, fleet.root)
    try:
        result = transport.run(fleet.client.hosts[state], probe_script(), sudo=False, timeout=30)
    finally:
        transport.close()
    assert result.error is None, result.message
    assert fleet.endpoints[state].scripts[-1] == probe_script()  # all of it, on stdin
    return parse(result.stdout, result.stderr, result.rc)


def test_security_updates_over_winrm(fleet: Fleet) -> None:
    facts = _probe(fleet, "security-critical-important")
    assert [(u.name, u.severity, u.classification) for u in facts.updates] == [
        ("KB4470788", "critical", "security"),
        ("KB4483452", "high", "security"),
    ]
    assert facts.problem is None and facts.reboot_pending is False


def test_definition_update_over_winrm_is_unrated_definition(fleet: Fleet) -> None:
    (update,) = _probe(fleet, "definition-only").updates
    assert (update.name, update.classification, update.severity) == (
        "KB2267602",
        "definition",
        "unrated",
    )


def test_german_title_and_pending_reboot_over_winrm(fleet: Fleet) -> None:
    facts = _probe(fleet, "cumulative-needs-reboot")
    (update,) = facts.updates
    assert update.title is not None and "für .NET Framework" in update.title
    assert update.released == datetime(2023, 11, 14, tzinfo=UTC)
    assert update.reboot_required is True and facts.reboot_pending is True


def test_reboot_pending_over_winrm(fleet: Fleet) -> None:
    facts = _probe(fleet, "pending-reboot")
    assert facts.reboot_pending is True
    assert facts.reboot_reason == "Microsoft.Update.SystemInfo RebootRequired"


def test_nothing_pending_over_winrm(fleet: Fleet) -> None:
    assert _probe(fleet, "nothing-pending") == HostPatchFacts(
        "windows-update", reboot_pending=False
    )


@pytest.mark.parametrize(
    ("state", "hresult"),
    [("wsus-name-not-resolved", "0x8024402C"), ("endpoint-unreachable", "0x80240438")],
)
def test_search_error_over_winrm_is_a_problem(fleet: Fleet, state: str, hresult: str) -> None:
    facts = _probe(fleet, state)
    assert facts.updates == ()
    assert facts.problem is not None and hresult in facts.problem


WINDOWS_POLICY = """\
kind: patch
name: windows-weekly
targets: {clients: [contoso]}
schedule: {cron: '0 22 * * wed', timezone: client}
approvals:
  - match: {classifications: [security, definition]}
    action: auto
  - match: {classifications: [driver, enhancement]}
    action: reject
  - action: manual
"""


def _mspauto(fleet: Fleet, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return mspauto_cli(fleet.root, state, *args, env={"WU_PROBE_PASSWORD": PASSWORD})


def test_patch_dry_run_decides_windows_updates(fleet: Fleet, tmp_path: Path) -> None:
    (fleet.root / "policies" / "patch.yaml").write_text(WINDOWS_POLICY)
    try:
        done = _mspauto(
            fleet, tmp_path, "patch", "--client", "contoso", "--dry-run", "--format", "json"
        )
    finally:
        (fleet.root / "policies" / "patch.yaml").unlink()
    assert done.returncode == 2, done.stderr  # two hosts' searches failed
    hosts = {h["host"]: h for h in json.loads(done.stdout)["hosts"]}
    decided = {
        host: {
            u["name"]: (u["classification"], u["severity"], u["decision"]["action"])
            for u in entry["updates"]
        }
        for host, entry in hosts.items()
    }
    assert decided["security-critical-important"] == {
        "KB4470788": ("security", "critical", "install"),
        "KB4483452": ("security", "high", "install"),
    }
    # The definition update is unrated but still a definition update: auto-approved,
    # not lost in "other" waiting for a person.
    assert decided["definition-only"] == {"KB2267602": ("definition", "unrated", "install")}
    assert "0x8024402C" in hosts["wsus-name-not-resolved"]["unchecked"]
    assert hosts["nothing-pending"]["updates"] == []
