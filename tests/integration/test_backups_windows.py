"""The Windows backup probe over the real WinRM transport, against the test endpoint.

One WS-Management endpoint per host state (HTTPS, Basic, loopback), each answering the
probe with the state's output from tests/fixtures/winrm/backups.yaml (values from
published outputs or modelled, shape our probe's; none recorded from a host of ours).
This proves that the probe, base64 job list and all, travels whole over WinRS (the
endpoint receives exactly the script sent), and that what comes back (CRLF, \\u escapes,
an exit code) parses into the facts the unit tests pin. It does not prove the
PowerShell itself: no Windows host runs it here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from mspauto.backup.facts import JobFacts
from mspauto.backup.windows import PROBE_MARKER, parse, probe_script
from mspauto.config import Settings
from mspauto.inventory.resolve import Client
from mspauto.lab.winrm_endpoint import CannedAnswer, WinRMEndpoint, check_source
from mspauto.project import load_project
from mspauto.transport.winrm import WinRMTransport

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).parent.parent / "fixtures" / "winrm" / "backups.yaml"
STATES: dict[str, dict[str, Any]] = yaml.safe_load(FIXTURE.read_text())
PASSWORD = "Bk-probe-3e9a"
# A job name a script must never read as code; the endpoint must receive it intact.
HOSTILE = "Nightly'; Stop-Computer -Force; '\u2019$(whoami)"


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


def _job(state: str) -> tuple[int, str, str | None]:
    """The job the state's answer is for, as a policy would name it."""
    entry = json.loads(STATES[state]["stdout"])["Jobs"][0]
    return (0, entry["Provider"], entry["JobName"])


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
    root = tmp_path_factory.mktemp("backup-project")
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
                        "password": {"env": "BACKUP_PROBE_PASSWORD"},
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
            patch.setenv("BACKUP_PROBE_PASSWORD", PASSWORD)
            yield Fleet(project.inventory.clients["contoso"], root, endpoints)


Jobs = Sequence[tuple[int, str, str | None]]


def _probe(fleet: Fleet, state: str, jobs: Jobs) -> dict[int, JobFacts]:
    transport = WinRMTransport(fleet.client, fleet.root)
    script = probe_script(jobs)
    try:
        result = transport.run(fleet.client.hosts[state], script, sudo=False, timeout=30)
    finally:
        transport.close()
    assert result.error is None, result.message
    assert fleet.endpoints[state].scripts[-1] == script  # all of it, on stdin
    return parse(result.stdout, result.stderr, result.rc, jobs=jobs)


@pytest.mark.parametrize("state", sorted(STATES))
def test_every_state_over_winrm_parses_as_the_unit_tests_pin(fleet: Fleet, state: str) -> None:
    from_the_wire = _probe(fleet, state, [_job(state)])
    entry = STATES[state]
    local = parse(entry["stdout"] + "\r\n", "", 0, jobs=[_job(state)])
    assert from_the_wire == local


def test_wsb_failure_over_winrm_keeps_its_hresult_and_older_success(fleet: Fleet) -> None:
    facts = _probe(fleet, "wsb-last-failed", [_job("wsb-last-failed")])[0]
    assert facts.latest is not None and facts.latest.result == "failed"
    assert facts.latest.message.startswith("HRESULT 0x80780049, detailed 0x8007007B")
    assert facts.last_success is not None and facts.last_success < facts.latest.time
    assert facts.count == 100


@pytest.mark.parametrize("state", ["vbr-running-1900", "vbr-running-null"])
def test_running_vbr_session_over_winrm_is_skipped(fleet: Fleet, state: str) -> None:
    facts = _probe(fleet, state, [_job(state)])[0]
    assert facts.latest is not None and facts.latest.result == "success"
    assert facts.latest.time.isoformat() == "2022-02-02T22:03:03+00:00"
    assert "still running" in facts.warnings[0]


@pytest.mark.parametrize(
    ("state", "kind"),
    [
        ("wsb-not-installed", "tool-missing"),
        ("agent-log-missing", "tool-missing"),
        ("vbr-module-missing", "tool-missing"),
    ],
)
def test_missing_tools_over_winrm_are_problems(fleet: Fleet, state: str, kind: str) -> None:
    facts = _probe(fleet, state, [_job(state)])[0]
    assert facts.problem is not None and facts.problem.kind == kind
    assert facts.latest is None


def test_hostile_job_name_travels_as_data_and_the_answer_maps_back(fleet: Fleet) -> None:
    # The endpoint answers for job 0 only; the second job's missing entry is a problem,
    # which is what a host whose probe broke half-way would give.
    jobs = [(0, "veeam-br", "Backup Job Application"), (1, "veeam-agent", HOSTILE)]
    facts = _probe(fleet, "vbr-success", jobs)
    received = fleet.endpoints["vbr-success"].scripts[-1]
    assert HOSTILE not in received and received.isascii()
    assert facts[0].latest is not None and facts[0].latest.result == "success"
    assert facts[1].problem is not None
    assert facts[1].problem.message == "the probe's output has no entry for this job"


WINDOWS_POLICY = """\
kind: backup
name: windows-backups
targets: {hosts: [wsb-success, wsb-last-failed, wsb-not-installed]}
schedule: {cron: '0 7 * * *', timezone: client}
rpo: 5000d  # the published outputs are years old: judge the results, not the ages
jobs:
  - {name: system, provider: windows-server-backup}
---
kind: backup
name: veeam
targets: {hosts: [vbr-success, vbr-running-1900]}
schedule: {cron: '0 7 * * *', timezone: client}
rpo: 5000d
jobs:
  - {name: copy, provider: veeam-br, veeam_job: Backup Copy Job Long Retention}
"""


def test_mspauto_backups_judges_windows_jobs(fleet: Fleet, tmp_path: Path) -> None:
    """The whole command over the endpoints: policy, probe, judge, evidence, exit code."""
    from mspauto.lab.testing import mspauto_cli

    (fleet.root / "policies" / "backup.yaml").write_text(WINDOWS_POLICY)
    try:
        done = mspauto_cli(
            fleet.root,
            tmp_path,
            *("backups", "--client", "contoso", "--format", "json"),
            env={"BACKUP_PROBE_PASSWORD": PASSWORD},
        )
    finally:
        (fleet.root / "policies" / "backup.yaml").unlink()
    assert done.returncode == 2, done.stdout + done.stderr
    jobs = {(j["host"], j["job"]): j for j in json.loads(done.stdout)["jobs"]}
    assert jobs[("wsb-success", "system")]["state"] == "ok"
    failed = jobs[("wsb-last-failed", "system")]
    assert failed["state"] == "failed" and "0x80780049" in failed["reason"], failed
    missing = jobs[("wsb-not-installed", "system")]
    assert missing["state"] == "unchecked" and missing["problem"]["kind"] == "tool-missing"
    # vbr-success answers for another Veeam job: this one has no entry there.
    other = jobs[("vbr-success", "copy")]
    assert (
        other["state"] == "unchecked"
        and "answered for job 'Backup Job Application'" in (other["reason"])
    )
    running = jobs[("vbr-running-1900", "copy")]
    assert running["state"] == "ok" and running["last_success"] == "2022-02-02T22:03:03+00:00"
