"""Installing on Windows, without a host: the win_updates task a scan's decisions
become, the reboot task, and the simulated Windows host the integration tests patch
(its filter must be win_updates.ps1's, or those tests would prove nothing)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from mspauto.config import Settings
from mspauto.inventory.resolve import Host
from mspauto.lab.windows_update import INSTALL_FAILURE, WindowsUpdateHost, ansible_module_call
from mspauto.patching.apply import install_play, reboot_play, scan_client
from mspauto.patching.windows import probe_script
from mspauto.project import load_project
from mspauto.transport.base import ErrorKind
from mspauto.transport.fake import FakeTransport

FIXTURE = Path(__file__).parent.parent / "fixtures" / "winrm" / "windows-update.yaml"
STATES: dict[str, dict[str, Any]] = yaml.safe_load(FIXTURE.read_text())
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def _updates(*states: str) -> list[dict[str, Any]]:
    return [u for state in states for u in json.loads(STATES[state]["stdout"])["Updates"]]


def _report(tmp_path: Path, updates: dict[str, list[dict[str, Any]]]) -> Any:
    root = tmp_path / "p"
    (root / "inventory").mkdir(parents=True)
    (root / "policies").mkdir()
    (root / "policies" / "c.yaml").write_text("kind: contract\nname: std\n")
    (root / "policies" / "patch.yaml").write_text(
        "kind: patch\nname: w\ntargets: {clients: [acme]}\n"
        "schedule: {cron: '0 1 * * *', timezone: client}\n"
        "approvals:\n  - match: {classifications: [security]}\n    action: auto\n"
        "  - action: manual\n"
    )
    client = {
        "name": "acme",
        "display_name": "ACME",
        "timezone": "UTC",
        "contract": "std",
        "platform": "windows",
        "connection": "local",
    }
    hosts: dict[str, dict[str, str]] = {name: {} for name in updates}
    (root / "inventory" / "acme.yaml").write_text(
        yaml.safe_dump({"client": client, "hosts": hosts})
    )
    project = load_project(Settings.load(root))
    assert not project.errors, project.errors
    simulated = {name: WindowsUpdateHost(u) for name, u in updates.items()}

    def outcome(host: Host, command: str) -> tuple[int, str, ErrorKind | None]:
        answer = simulated[host.name].respond(command)
        assert answer is not None
        return 0, answer.stdout, None

    chosen = sorted(project.inventory.clients["acme"].hosts.values(), key=lambda h: h.name)
    return scan_client(project, "acme", chosen, FakeTransport(outcome), None, now=NOW), chosen


def test_windows_hosts_install_exactly_their_approved_updates(tmp_path: Path) -> None:
    tricky = {
        **_updates("security-critical-important")[0],
        "Title": "Update {{ lookup('pipe', 'id') }} (KB4470788) [x64]",
    }
    report, hosts = _report(
        tmp_path,
        {
            "win-a": _updates("security-critical-important", "definition-only"),
            "win-b": [tricky],
        },
    )
    play = install_play(report, hosts)
    assert [t["name"] for t in play] == [
        "group 1: install 2 approved updates",
        "group 2: install 1 approved updates",
    ]
    first, second = (t["ansible.windows.win_updates"] for t in play)
    # The definition update waits for a person: not in the list, so not installed.
    assert first["accept_list"] == [
        r"^2018\-11\ Update\ for\ Windows\ Server\ 2019\ for\ x64\-based\ Systems\ "
        r"\(KB4470788\)$",
        r"^2019\-02\ Cumulative\ Update\ for\ \.NET\ Framework\ 3\.5\ and\ 4\.7\.2\ for\ "
        r"Windows\ Server\ 2019\ for\ x64\ \(KB4483452\)$",
    ]
    assert first["category_names"] == ["Security Updates", "Windows Server 2019"]
    assert first["reboot"] is False and first["state"] == "installed"
    # A title is matched as itself: escaped, anchored, never a template or a pattern.
    assert second["accept_list"] == [
        r"^Update\ \{\{\ lookup\('pipe',\ 'id'\)\ \}\}\ \(KB4470788\)\ \[x64\]$"
    ]
    assert play[0]["when"] == "inventory_hostname in ['win-a']"
    assert all(t["ignore_errors"] for t in play)

    reboot = reboot_play(report, hosts, 300)
    assert reboot == [
        {
            "name": "reboot",
            "ansible.windows.win_reboot": {
                "msg": "mspauto patch: rebooting after updates",
                "reboot_timeout": 300,
            },
            "when": "inventory_hostname in ['win-a', 'win-b']",
        }
    ]


def test_an_update_without_categories_is_accepted_in_any_category(tmp_path: Path) -> None:
    report, hosts = _report(tmp_path, {"win-a": _updates("cumulative-needs-reboot")})
    (task,) = install_play(report, hosts)
    assert task["ansible.windows.win_updates"]["category_names"] == ["*"]


def _payload(args: dict[str, Any]) -> str:
    """What Ansible 2.19 sends a PowerShell module on stdin (shape as seen on the wire)."""
    head = json.dumps({"name": "exec_wrapper", "script": "...", "params": {}})
    action = {
        "name": "module_wrapper.ps1",
        "params": {
            "Script": "ansible_collections.ansible.windows.plugins.modules.win_updates.ps1",
            "Variables": [
                {
                    "Name": "complex_args",
                    "Value": {**args, "_ansible_module_name": "ansible.windows.win_updates"},
                    "Scope": "Global",
                }
            ],
        },
    }
    return f"{head}\n\0\0\0\0\n{json.dumps({'scripts': {}, 'actions': [action]})}"


def _run(host: WindowsUpdateHost, **args: Any) -> list[dict[str, Any]]:
    start = host.respond(_payload({"_operation": "start", **args}))
    assert start is not None
    options = json.loads(start.stdout)
    poll = host.respond(
        _payload({"_operation": "poll", "_operation_options": options["poll_options"]})
    )
    assert poll is not None
    output: list[dict[str, Any]] = json.loads(poll.stdout)["output"]
    return output


def test_the_simulated_host_filters_as_win_updates_does() -> None:
    host = WindowsUpdateHost(_updates("security-critical-important", "definition-only"))
    assert ansible_module_call("Get-Date") is None
    records = _run(host, accept_list=["kb4470788"], category_names=["Security Updates"])
    search = records[0]["result"]
    # KB numbers match too, case-insensitively; the other category is filtered out.
    assert [f["reasons"] for f in search["filtered"]] == [
        ["accept_list"],
        ["accept_list", "category_names"],
    ]
    assert [r["task"] for r in records] == [
        "search_result",
        "download_result",
        "install_result",
        "exit",
    ]
    assert [u["KBArticleIDs"] for u in host.updates] == [["4483452"], ["2267602"]]
    # win_updates' default categories leave a definition update out.
    assert _run(host, category_names=["Critical Updates"])[-1]["result"]["changed"] is False


def test_the_simulated_host_fails_and_refuses_as_recorded() -> None:
    failing = WindowsUpdateHost(
        _updates("security-critical-important"),
        failing={"915a6b1a-f556-4d83-8f50-b2e75a9a7e58": INSTALL_FAILURE},
    )
    exit_ = _run(failing, category_names=["*"])[-1]["result"]
    assert exit_["failed"] is True and exit_["reboot_required"] is False
    assert len(failing.updates) == 1
    pending = WindowsUpdateHost(_updates("security-critical-important"), reboot_pending=True)
    exit_ = _run(pending, category_names=["*"])[-1]["result"]
    assert exit_["exception"]["message"].startswith("A reboot is required")
    assert len(pending.updates) == 2 and pending.installs == []


@pytest.mark.parametrize("state", ["security-critical-important", "definition-only"])
def test_the_simulated_probe_answers_as_the_fixture(state: str) -> None:
    host = WindowsUpdateHost(_updates(state))
    answer = host.respond(probe_script())
    assert answer is not None
    assert json.loads(answer.stdout) == json.loads(STATES[state]["stdout"])
