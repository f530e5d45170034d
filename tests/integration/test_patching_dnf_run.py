"""`mspauto patch` on a dnf lab host (Debian with dnf 4, not RHEL: docs/patching-dnf.md):
the dry run decides each advisory's update by its severity, the run installs exactly
the approved versions through the packaged task file and nothing else."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mspauto.lab.fleet import Lab
from mspauto.lab.testing import lab_unavailable, mspauto_cli, running_lab, ssh

pytestmark = pytest.mark.integration

CLIENT = "soylent"
POLICY = """\
kind: patch
name: soylent-patch
targets: {clients: [soylent]}
schedule: {cron: '0 1 * * *', timezone: client}
approvals:
  - match: {classifications: [security], severities: [critical, high]}
    action: auto
  - action: manual
reboot: {policy: never}
"""


@pytest.fixture(scope="module")
def dnf_host_lab(
    tmp_path_factory: pytest.TempPathFactory, address_block: Callable[[int], str]
) -> Iterator[Lab]:
    if reason := lab_unavailable():
        pytest.skip(f"lab unavailable: {reason}")
    directory = tmp_path_factory.mktemp("dnf-patch-lab") / "fleet"
    with running_lab(
        directory, 0, [CLIENT], faults=False, first_address=address_block(42), dnf=1
    ) as lab:
        (lab.directory / "policies" / "patch.yaml").write_text(POLICY)
        yield lab


def mspauto(lab: Lab, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return mspauto_cli(lab.directory, state, *args)


def _rpm(lab: Lab) -> dict[str, list[str]]:
    (host,) = lab.plans()
    done = ssh(lab, host, "rpm -qa --qf '%{NAME} %{EPOCHNUM}:%{VERSION}-%{RELEASE}\\n'")
    assert done.returncode == 0, done.stderr
    versions: dict[str, list[str]] = {}
    for line in done.stdout.splitlines():
        name, evr = line.split()
        versions.setdefault(name, []).append(evr.removeprefix("0:"))
    return {name: sorted(evrs) for name, evrs in versions.items()}


def test_a_dnf_host_is_patched_by_severity(dnf_host_lab: Lab, tmp_path: Path) -> None:
    before = _rpm(dnf_host_lab)
    dry = mspauto(
        dnf_host_lab, tmp_path, "patch", "--client", CLIENT, "--dry-run", "--format", "json"
    )
    assert dry.returncode == 0, dry.stderr
    (host,) = json.loads(dry.stdout)["hosts"]
    decided = {u["name"]: (u["severity"], u["decision"]["action"]) for u in host["updates"]}
    assert decided["kernel"] == ("critical", "install")
    assert decided["lab-openssl"] == ("high", "install")
    assert decided["lab-webserver"] == ("medium", "manual")
    assert decided["lab-editor"] == ("unrated", "manual")
    assert _rpm(dnf_host_lab) == before  # a dry run changes nothing

    done = mspauto(dnf_host_lab, tmp_path, "patch", "--client", CLIENT, "--format", "json")
    assert done.returncode == 0, done.stderr + done.stdout
    (host,) = json.loads(done.stdout)["hosts"]
    assert {o["subject"]: o["status"] for o in host["installed"]} == {
        "kernel": "installed",
        "lab-openssl": "installed",
        "lab-openssl-libs": "installed",
    }
    after = _rpm(dnf_host_lab)
    approved = {
        u["name"]: u["candidate"] for u in host["updates"] if u["decision"]["action"] == "install"
    }
    for name, candidate in approved.items():
        assert candidate in after[name]
    assert after["kernel"] == sorted([*before["kernel"], approved["kernel"]])  # beside the old
    for name in ("lab-webserver", "lab-editor", "lab-zlib", "lab-shell", "lab-tools"):
        assert after[name] == before[name]
    assert sorted(host["pending_after"]) == sorted(set(decided) - set(approved))
