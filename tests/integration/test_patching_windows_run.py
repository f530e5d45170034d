"""A real `mspauto patch` run on Windows hosts: ansible.windows.win_updates and
win_reboot through ansible-playbook and pywinrm, against the WinRM test endpoint.

Each host is a WinRM endpoint (HTTPS, Basic, loopback) whose answers come from a
simulated Windows Update state (mspauto.lab.windows_update): the probe lists what is
pending, win_updates installs what its accept list selects, win_reboot moves the boot
time. The updates are the published ones of tests/fixtures/winrm/windows-update.yaml;
the progress records follow ansible.windows' recorded unit-test data. This proves the
whole path mspauto owns: the play it writes, Ansible's WinRM connection with the
password answered at its prompt, the accept list that selects exactly the approved
updates, the scan after, the evidence, the exit code. It does not prove the Windows
Update Agent or a real reboot: no Windows host runs here.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from mspauto.config import Settings
from mspauto.lab.testing import mspauto_cli
from mspauto.lab.windows_update import INSTALL_FAILURE, WindowsUpdateHost, ansible_module_call
from mspauto.lab.winrm_endpoint import WinRMEndpoint
from mspauto.project import load_project
from mspauto.transport.ansible import AnsibleTransport
from mspauto.transport.base import ErrorKind

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).parent.parent / "fixtures" / "winrm" / "windows-update.yaml"
STATES: dict[str, dict[str, Any]] = yaml.safe_load(FIXTURE.read_text())
PASSWORD = "Wu-install-{{ 4e1a }}"  # braces: a password is data, never a template
SSU = "fe6bd8c2-3752-4c8b-ab3e-1a7ed08767ba"  # KB4470788, needs no restart
DOTNET = "915a6b1a-f556-4d83-8f50-b2e75a9a7e58"  # KB4483452, can request a restart
DEFENDER = "a89e56f1-2002-40c6-a9af-3cf8be801df7"  # KB2267602, a definition update
POLICY = """\
kind: patch
name: windows-weekly
targets: {clients: [contoso]}
schedule: {cron: '0 22 * * wed', timezone: client}
approvals:
  - match: {classifications: [security]}
    action: auto
  - action: manual
reboot: {policy: if-required, reconnect_wait: 2m}
"""


def _updates(*states: str) -> list[dict[str, Any]]:
    return [u for state in states for u in json.loads(STATES[state]["stdout"])["Updates"]]


@dataclass(frozen=True)
class Fleet:
    root: Path
    hosts: dict[str, WindowsUpdateHost]
    endpoints: dict[str, WinRMEndpoint]


@pytest.fixture
def fleet(
    winrm_address: str, winrm_certificates: tuple[Path, Path, Path], tmp_path: Path
) -> Iterator[Fleet]:
    simulated = {
        # Two security updates approved, a definition update waiting for a person.
        "win-ok": WindowsUpdateHost(_updates("security-critical-important", "definition-only")),
        # The .NET update fails to install as in ansible.windows' recorded run.
        "win-fail": WindowsUpdateHost(
            _updates("security-critical-important"), failing={DOTNET: INSTALL_FAILURE}
        ),
        # A reboot already pending: Windows Update installs nothing until it is done.
        "win-pending": WindowsUpdateHost(
            _updates("security-critical-important"), reboot_pending=True
        ),
    }
    root = tmp_path / "project"
    (root / "inventory").mkdir(parents=True)
    (root / "policies").mkdir()
    (root / "policies" / "contract.yaml").write_text("kind: contract\nname: std\n")
    (root / "policies" / "patch.yaml").write_text(POLICY)
    (root / "ca.pem").write_bytes(winrm_certificates[0].read_bytes())
    with ExitStack() as stack:
        endpoints = {
            name: stack.enter_context(
                WinRMEndpoint(
                    winrm_address,
                    [],
                    users={"svc-msp": PASSWORD},
                    certificate=(winrm_certificates[1], winrm_certificates[2]),
                    responder=host.respond,
                )
            )
            for name, host in simulated.items()
        }
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
                        "password": {"env": "WU_INSTALL_PASSWORD"},
                        "winrm_transport": "basic",
                    }
                },
            },
            "hosts": {
                name: {
                    "address": endpoint.address,
                    "port": endpoint.port,
                    "vars": {"winrm_ca_trust_path": "ca.pem"},
                }
                for name, endpoint in endpoints.items()
            },
        }
        (root / "inventory" / "contoso.yaml").write_text(yaml.safe_dump(document))
        yield Fleet(root, simulated, endpoints)


def _mspauto(fleet: Fleet, *args: str) -> subprocess.CompletedProcess[str]:
    return mspauto_cli(
        fleet.root, fleet.root / "state", *args, env={"WU_INSTALL_PASSWORD": PASSWORD}
    )


def _win_updates_calls(endpoint: WinRMEndpoint) -> list[dict[str, Any]]:
    calls = (ansible_module_call(script) for script in endpoint.scripts)
    return [args for call in calls if call is not None for args in [call[1]]]


def test_patch_run_installs_the_approved_windows_updates(fleet: Fleet) -> None:
    assert _mspauto(fleet, "keys", "init").returncode == 0
    done = _mspauto(fleet, "patch", "--client", "contoso", "--format", "json")
    assert done.returncode == 2, done.stdout + done.stderr  # win-fail and win-pending
    report = json.loads(done.stdout)

    # win-ok: exactly the two approved updates, the definition update left for a person;
    # the .NET update asked for a restart, the policy reboots if required, and the scan
    # after the reboot finds nothing pending but the definition update.
    ok = fleet.hosts["win-ok"]
    assert [sorted(ids) for ids in ok.installs] == [sorted([SSU, DOTNET])]
    assert [u["UpdateID"] for u in ok.updates] == [DEFENDER]
    assert ok.reboots == 1 and ok.reboot_pending is False
    (start, *_) = _win_updates_calls(fleet.endpoints["win-ok"])
    assert start["_operation"] == "start" and start["reboot"] is False
    assert start["accept_list"] == [
        r"^2018\-11\ Update\ for\ Windows\ Server\ 2019\ for\ x64\-based\ Systems\ "
        r"\(KB4470788\)$",
        r"^2019\-02\ Cumulative\ Update\ for\ \.NET\ Framework\ 3\.5\ and\ 4\.7\.2\ for\ "
        r"Windows\ Server\ 2019\ for\ x64\ \(KB4483452\)$",
    ]
    assert start["category_names"] == ["Security Updates", "Windows Server 2019"]
    hosts = {h["host"]: h for h in report["hosts"]}
    installed = {
        (name, o["subject"]): o["status"]
        for name, entry in hosts.items()
        for o in entry.get("installed", [])
    }
    assert installed[("win-ok", "KB4470788")] == "installed"
    assert installed[("win-ok", "KB4483452")] == "installed"
    assert hosts["win-ok"]["reboot_done"] == "rebooted"
    assert hosts["win-ok"]["pending_after"] == ["KB2267602"]

    # win-fail: the update that failed stays pending with Windows Update's reason; the
    # other went in and needs no restart.
    fail = fleet.hosts["win-fail"]
    assert fail.installs[0] == [SSU]
    assert installed[("win-fail", "KB4470788")] == "installed"
    assert installed[("win-fail", "KB4483452")] == "failed"
    # (ansible.windows names WUA's own codes only; 0x80070643 is ERROR_INSTALL_FAILURE.)
    assert "KB4483452: Unknown WUA HRESULT 2147944003 (UNKNOWN 0x80070643)" in json.dumps(
        hosts["win-fail"]["installed"]
    )
    assert fail.installs == [[SSU], []]  # the policy's one retry, of what failed
    assert fail.reboots == 0 and hosts["win-fail"]["reboot_done"] is None

    # win-pending: Windows Update refuses until the pending reboot is done; the policy
    # reboots it, and the next run installs.
    pending = fleet.hosts["win-pending"]
    assert pending.installs == [] and pending.reboots == 1
    assert "A reboot is required before more updates can be installed" in json.dumps(
        hosts["win-pending"]["installed"]
    )
    again = _mspauto(fleet, "patch", "--client", "contoso", "--hosts", "win-pending")
    assert again.returncode == 0, again.stdout + again.stderr
    assert [sorted(ids) for ids in pending.installs] == [sorted([SSU, DOTNET])]

    status = _mspauto(fleet, "patch", "status", "--client", "contoso", "--format", "json")
    pending_now = {
        (h["host"], p["name"]) for h in json.loads(status.stdout)["hosts"] for p in h["pending"]
    }
    assert pending_now == {("win-ok", "KB2267602"), ("win-fail", "KB4483452")}
    verify = _mspauto(fleet, "evidence", "verify", "--client", "contoso")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_windows_password_reaches_ansible_only_at_its_prompt(
    fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The password logs in (the endpoint checks it, braces and all: never templated)
    yet is in no file of the run, no script and no output."""
    monkeypatch.setenv("WU_INSTALL_PASSWORD", PASSWORD)
    project = load_project(Settings.load(fleet.root))
    client = project.inventory.clients["contoso"]
    kept = tmp_path / "kept"
    kept.mkdir()
    task = {
        "name": "search",
        "ansible.windows.win_updates": {"category_names": ["*"], "state": "searched"},
    }
    (result,) = AnsibleTransport(client, fleet.root, keep_private_data=kept).run_play(
        [client.hosts["win-ok"]], [task], check=False, timeout=60
    )
    assert result.ok, result.message
    assert fleet.hosts["win-ok"].installs == []  # searched, nothing installed
    files = [p for p in kept.rglob("*") if p.is_file()]
    assert any(p.name == "mspauto-hosts.yml" for p in files)
    for path in files:
        assert PASSWORD.encode() not in path.read_bytes(), path
    for endpoint in fleet.endpoints.values():
        assert not any(PASSWORD in script for script in endpoint.scripts)
    assert PASSWORD not in result.stdout + result.message


def test_windows_hosts_refuse_clear_text_logins_over_http(fleet: Fleet) -> None:
    document = yaml.safe_load((fleet.root / "inventory" / "contoso.yaml").read_text())
    document["hosts"]["win-ok"]["port"] = 5985
    (fleet.root / "inventory" / "contoso.yaml").write_text(yaml.safe_dump(document))
    project = load_project(Settings.load(fleet.root))
    client = project.inventory.clients["contoso"]
    (result,) = AnsibleTransport(client, fleet.root).run_play(
        [client.hosts["win-ok"]], [], check=False, timeout=60
    )
    assert result.error is ErrorKind.CONFIG
    assert "basic over HTTP (port 5985) would send the credentials in clear text" in (
        result.message
    )


def test_windows_health_checks_hold_a_host_back_or_fail_it(fleet: Fleet) -> None:
    """Pre-checks run in the scan before the install (too little disk: not patched),
    post-checks in the scan after it (a service down: the host failed)."""
    (fleet.root / "policies" / "patch.yaml").write_text(
        POLICY
        + "pre_checks: {min_free_disk_mb: 10000, services: [W32Time]}\n"
        + "post_checks: {services: [Spooler]}\n"
    )
    fleet.hosts["win-fail"].free_disk_mb = 2048
    done = _mspauto(
        fleet, "patch", "--client", "contoso", "--hosts", "win-ok", "--hosts", "win-fail"
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert fleet.hosts["win-fail"].installs == []
    assert (
        "win-fail: NOT PATCHED: pre-checks failed: free disk on C: >= 10000 MB: 2048 MB free"
        in done.stdout
    )
    # win-ok passed its pre-checks and installed, but its post-check found the spooler
    # stopped: it counts as failed, and it is not tried again.
    assert len(fleet.hosts["win-ok"].installs) == 1
    assert "post-checks failed: service Spooler active: inactive" in done.stdout
