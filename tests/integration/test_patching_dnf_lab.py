"""dnf patch facts and the dnf task file, on real dnf (Debian's dnf 4 on a lab host:
not RHEL). The probe runs over mspauto's SSH transport; what it reports is checked
against ``dnf check-update`` and ``rpm -q`` on the host, and the task file runs in a
real ``ansible-playbook`` with strict host-key checking."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mspauto.config import Settings
from mspauto.inventory.resolve import Client, Host
from mspauto.lab.fleet import Lab
from mspauto.lab.plan import HostPlan
from mspauto.lab.rpm import LAB_RPMS, holding_dnf_lock
from mspauto.lab.testing import ssh
from mspauto.patching.dnf import parse, probe_script
from mspauto.patching.facts import HostPatchFacts
from mspauto.project import load_project
from mspauto.transport import transport_for

pytestmark = pytest.mark.integration

DNF_CLIENT = "vandelay"  # the client of the dnf_lab fixture (tests/conftest.py)

TASKS = Path(__file__).resolve().parents[2] / "mspauto" / "patching" / "playbooks" / "dnf.yml"
READER, INSTALLER = f"{DNF_CLIENT}-dnf01", f"{DNF_CLIENT}-dnf02"


def _client(lab: Lab) -> Client:
    project = load_project(Settings.load(lab.directory))
    assert not project.errors, project.errors
    return project.inventory.clients[DNF_CLIENT]


def _plan(lab: Lab, name: str) -> HostPlan:
    return next(plan for plan in lab.plans() if plan.name == name)


def _probe(lab: Lab, name: str, lock_timeout: int = 120) -> HostPatchFacts:
    """The probe run as mspauto runs it: the SSH transport, through sudo."""
    client = _client(lab)
    host: Host = client.hosts[name]
    assert host.platform == "rhel"
    transport = transport_for(client, lab.directory)
    try:
        result = transport.run(host, probe_script(lock_timeout), sudo=True, timeout=300)
    finally:
        transport.close()
    assert result.error is None, result.message
    return parse(result.stdout, result.stderr, result.rc)


def _root(lab: Lab, name: str, command: str) -> subprocess.CompletedProcess[str]:
    return ssh(lab, _plan(lab, name), "sudo -n -- sh -c " + shlex.quote(command), timeout=300)


def _installed(lab: Lab, name: str) -> set[str]:
    result = _root(lab, name, "rpm -qa --qf '%{NAME}-%{EPOCHNUM}:%{VERSION}-%{RELEASE}\\n'")
    assert result.returncode == 0, result.stderr
    return {line for line in result.stdout.splitlines() if line}


def test_the_probe_reports_what_dnf_check_update_and_rpm_say(dnf_lab: Lab) -> None:
    facts = _probe(dnf_lab, READER)
    assert facts.problem is None, facts.problem
    assert facts.warnings == ()

    check = _root(dnf_lab, READER, "dnf -q check-update")
    assert check.returncode == 100, check.stderr  # updates pending
    rows = [line.split() for line in check.stdout.splitlines() if line.strip()]
    assert {(u.name, u.candidate, u.source) for u in facts.updates} == {
        (name_arch.rpartition(".")[0], evr, repo) for name_arch, evr, repo in rows
    }

    names = " ".join(shlex.quote(u.name) for u in facts.updates)
    rpm = _root(dnf_lab, READER, f"rpm -q --qf '%{{NAME}} %{{VERSION}}-%{{RELEASE}}\\n' {names}")
    assert rpm.returncode == 0, rpm.stderr
    on_host = dict(line.split() for line in rpm.stdout.splitlines())
    assert {u.name: u.installed.rpartition(":")[2] for u in facts.updates if u.installed} == (
        on_host
    )
    assert len(facts.updates) == len(LAB_RPMS)

    severities = {u.name: (u.classification, u.severity, u.advisory) for u in facts.updates}
    assert severities["kernel"] == ("security", "critical", "LABSA-2024:1010")
    assert severities["lab-editor"] == ("other", "unrated", None)
    assert facts.reboot_pending is False


def test_another_dnf_holding_the_lock_is_a_problem_not_a_hang(dnf_lab: Lab) -> None:
    with holding_dnf_lock(dnf_lab, _plan(dnf_lab, READER)):
        facts = _probe(dnf_lab, READER, lock_timeout=2)
    assert facts.problem is not None
    assert "held dnf's lock for more than the 2 s" in facts.problem
    assert facts.updates == ()
    assert _probe(dnf_lab, READER).problem is None  # and once it is free, all is read


def test_a_repository_that_does_not_answer_is_a_problem(dnf_lab: Lab) -> None:
    mirror = "/etc/yum.repos.d/lab-mirror.repo"
    # A mirror on a loopback port nothing listens on.
    repo = "[lab-mirror]\\nname=down\\nbaseurl=http://127.0.0.1:9/\\ngpgcheck=0\\n"
    written = _root(dnf_lab, READER, f"printf '{repo}' > {mirror}")
    assert written.returncode == 0, written.stderr
    try:
        facts = _probe(dnf_lab, READER)
    finally:
        _root(dnf_lab, READER, f"rm -f {mirror}")
    assert facts.problem is not None
    assert facts.problem.startswith("dnf could not refresh the repository metadata: ")
    assert "lab-mirror" in facts.problem
    assert facts.updates == ()


# --- the task file --------------------------------------------------------------------


def _unsafe(value: object) -> str:
    """A YAML scalar Ansible reads as data, never as a template."""
    return "!unsafe " + json.dumps(str(value))


def _playbook(
    lab: Lab, tmp_path: Path, install: list[str], holds: list[str], lock_timeout: int = 30
) -> subprocess.CompletedProcess[str]:
    """The task file in a play of its own (hosts: all, become), run by ansible-playbook
    on the installing host, with strict host-key checking."""
    plan = _plan(lab, INSTALLER)
    known_hosts = lab.inventory_dir / "known_hosts" / plan.client
    variables = {
        "ansible_host": _unsafe(plan.address),
        "ansible_user": _unsafe("mspauto"),
        "ansible_ssh_private_key_file": _unsafe(lab.key),
        "ansible_ssh_common_args": _unsafe(
            f"-o UserKnownHostsFile={known_hosts} -o GlobalKnownHostsFile=/dev/null "
            "-o StrictHostKeyChecking=yes -o BatchMode=yes"
        ),
        "ansible_python_interpreter": _unsafe("/usr/bin/python3"),
        "mspauto_install": "[" + ", ".join(_unsafe(v) for v in install) + "]",
        "mspauto_holds": "[" + ", ".join(_unsafe(v) for v in holds) + "]",
        "mspauto_lock_timeout": _unsafe(lock_timeout),
    }
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        f"all:\n  hosts:\n    {plan.name}:\n"
        + "".join(f"      {key}: {value}\n" for key, value in variables.items())
    )
    play = tmp_path / "play.yml"
    tasks = yaml.safe_load(TASKS.read_text())
    play.write_text(
        yaml.safe_dump([{"hosts": "all", "become": True, "gather_facts": False, "tasks": tasks}])
    )
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), str(play)],
        # Ansible refuses a non-blocking stdin, which a parent may hand down.
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=tmp_path,
        env={
            **os.environ,
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        },
    )


def test_the_task_file_installs_exact_versions_and_never_moves_a_hold(
    dnf_lab: Lab, tmp_path: Path
) -> None:
    before = _installed(dnf_lab, INSTALLER)

    # lab-webserver's fix needs the newer lab-openssl-libs, which is held: nothing moves.
    blocked = _playbook(dnf_lab, tmp_path, ["lab-webserver-2.4.57-8.lab"], ["lab-openssl-libs"])
    assert blocked.returncode != 0, blocked.stdout
    assert "filtered out by exclude filtering" in blocked.stdout
    assert _installed(dnf_lab, INSTALLER) == before

    # Another dnf holds the lock for longer than the run waits: it fails, nothing moves.
    with holding_dnf_lock(dnf_lab, _plan(dnf_lab, INSTALLER)):
        locked = _playbook(dnf_lab, tmp_path, ["lab-tools-2.1-1.lab"], [], lock_timeout=0)
    assert locked.returncode != 0, locked.stdout
    assert '"rc": 200' in locked.stdout
    assert _installed(dnf_lab, INSTALLER) == before

    # A hold that looks like a template stays text: Ansible never runs it.
    canary = tmp_path / "templated"
    install = ["lab-tools-2.1-1.lab", "kernel-5.14.0-362.24.1.lab", "lab-openssl-1:3.0.7-27.lab"]
    holds = ["lab-webserver", f"{{{{ lookup('pipe', 'touch {canary}') }}}}"]
    done = _playbook(dnf_lab, tmp_path, install, holds)
    assert done.returncode == 0, done.stdout
    assert not canary.exists()
    after = _installed(dnf_lab, INSTALLER)
    assert after - before == {
        "lab-tools-0:2.1-1.lab",
        "kernel-0:5.14.0-362.24.1.lab",  # installed beside the old one, as kernels are
        "lab-openssl-1:3.0.7-27.lab",
        "lab-openssl-libs-1:3.0.7-27.lab",  # what lab-openssl-1:3.0.7-27 requires
    }
    assert before - after == {
        "lab-tools-0:2.0-1.lab",
        "lab-openssl-1:3.0.7-24.lab",
        "lab-openssl-libs-1:3.0.7-24.lab",
    }

    again = _playbook(dnf_lab, tmp_path, install, holds)
    assert again.returncode == 0, again.stdout
    assert "changed=0" in again.stdout
    assert _installed(dnf_lab, INSTALLER) == after

    facts = _probe(dnf_lab, INSTALLER)
    assert facts.problem is None, facts.problem
    pending = {u.name for u in facts.updates}
    assert pending.isdisjoint({"kernel", "lab-tools", "lab-openssl", "lab-openssl-libs"})
    assert "lab-webserver" in pending
    assert facts.reboot_pending is True  # needs-restarting -r: a kernel newer than boot
    assert "kernel" in facts.reboot_reason


def test_the_task_file_installs_nothing_but_exact_versions(dnf_lab: Lab, tmp_path: Path) -> None:
    before = _installed(dnf_lab, INSTALLER)
    specs = [
        "lab-tools",  # a name alone: dnf would pick the newest
        "lab-*-2.1-1.lab",  # a pattern
        "--nogpgcheck-2.1-1.lab",
        "lab-tools-2.1-1.lab; touch /tmp/x",
        "lab-webserver-2.4.57-8.lab",  # held below
    ]
    refused = _playbook(dnf_lab, tmp_path, specs, ["lab-webserver"])
    assert refused.returncode != 0
    for spec in specs:
        assert f"failed: [{INSTALLER}] (item={spec})" in refused.stdout, spec
    assert "not name-[epoch:]version-release" in refused.stdout
    assert _installed(dnf_lab, INSTALLER) == before
