"""The Ansible transport on the lab: one ansible-runner run for many hosts, nothing
secret left on disk, failures classified like every other transport."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mspauto.config import Settings
from mspauto.engine import RunSpec, run_command
from mspauto.evidence.store import EvidenceStore
from mspauto.inventory.resolve import Client, Host
from mspauto.lab.fleet import Lab
from mspauto.lab.testing import copy_project
from mspauto.project import load_project
from mspauto.transport.ansible import AnsibleTransport
from mspauto.transport.base import ErrorKind

pytestmark = pytest.mark.integration

SECRET = "ansible-become-s3cret-91c4"


def _client(lab: Lab, name: str, root: Path | None = None) -> Client:
    project = load_project(Settings.load(root or lab.directory))
    assert not project.errors, project.errors
    return project.inventory.clients[name]


def test_one_run_classifies_every_host_like_the_direct_transport(lab: Lab, tmp_path: Path) -> None:
    expected = {
        None: None,
        "sshd-down": ErrorKind.UNREACHABLE,
        "changed-key": ErrorKind.HOST_KEY_MISMATCH,
        "rejects-key": ErrorKind.AUTH_FAILED,
    }
    for name in ("acme", "globex"):
        client = _client(lab, name)
        store = EvidenceStore(f"sqlite:///{tmp_path / f'{name}.db'}")
        spec = RunSpec(
            client=client,
            hosts=list(client.hosts.values()),
            command="hostname; exit $(( $(hostname | wc -c) % 2 ))",
            retries=1,
        )
        outcome = run_command(spec, AnsibleTransport(client, lab.directory), store)
        faults = {p.name: p.fault for p in lab.plans() if p.client == name}
        for result in outcome.results:
            fault = faults[result.host]
            if fault is None:
                rc = (len(result.host) + 1) % 2
                assert result.rc == rc and result.stdout == result.host, result
                assert result.error is (None if rc == 0 else ErrorKind.COMMAND_FAILED)
            else:
                assert result.error is expected[fault], (result.host, result.message)
            assert result.attempts == (2 if fault == "sshd-down" else 1)
        assert store.verify().problems == []
        store.close()


def test_no_secret_is_left_in_the_private_data_dir(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = copy_project(lab, tmp_path / "project")
    acme = project / "inventory" / "acme.yaml"
    acme.write_text(
        acme.read_text().replace(
            "      private_key:",
            "      become_password:\n        env: LAB_BECOME\n      private_key:",
        )
    )
    monkeypatch.setenv("LAB_BECOME", SECRET)
    client = _client(lab, "acme", project)
    hosts = [
        h
        for h in client.hosts.values()
        if "lab" in h.tags and not any(t.startswith("fault-") for t in h.tags)
    ]
    kept = tmp_path / "kept"
    kept.mkdir()
    results = AnsibleTransport(client, project, keep_private_data=kept).run_many(
        hosts, "id -un", sudo=True, timeout=60
    )
    assert [r.stdout for r in results] == ["root"] * len(hosts), [r.message for r in results]
    files = [p for p in kept.rglob("*") if p.is_file()]
    assert files  # the inventory at least: there was something to search
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), path
    assert not any("job_events" in p.parts and p.suffix == ".json" for p in files)


def _healthy(client: Client) -> list[Host]:
    return [
        h
        for h in client.hosts.values()
        if "lab" in h.tags and not any(t.startswith("fault-") for t in h.tags)
    ]


def test_values_from_the_command_line_and_inventory_are_never_templated(
    lab: Lab, tmp_path: Path
) -> None:
    marker = tmp_path / "templated"
    hostile = f"{{{{ lookup('pipe', 'touch {marker}') }}}}"
    # A folder with a space in its name, as projects on a tech's laptop often are.
    project = copy_project(lab, tmp_path / "my project")
    client = _client(lab, "acme", project)
    hosts = _healthy(client)[:1]
    (result,) = AnsibleTransport(client, project).run_many(
        hosts, f'echo "{hostile}"', sudo=False, timeout=60
    )
    assert result.ok and result.stdout == hostile, result
    acme = project / "inventory" / "acme.yaml"
    acme.write_text(acme.read_text().replace("user: mspauto", f'user: "{hostile}"'))
    (result,) = AnsibleTransport(_client(lab, "acme", project), project).run_many(
        hosts, "true", sudo=False, timeout=60
    )
    # OpenSSH got the name literally, braces and all (and refused it).
    assert "username contains invalid characters" in result.message, result
    assert not marker.exists()


def test_a_known_hosts_path_stays_one_argument(lab: Lab, tmp_path: Path) -> None:
    project = copy_project(lab, tmp_path / "project")
    # Split into words, this name would make OpenSSH run "false" instead of connecting.
    hostile = "known hosts -oProxyCommand=false"
    shutil.copy(project / "inventory" / "known_hosts" / "acme", project / hostile)
    acme = project / "inventory" / "acme.yaml"
    acme.write_text(
        acme.read_text().replace("  name: acme\n", f"  name: acme\n  known_hosts: ../{hostile}\n")
    )
    client = _client(lab, "acme", project)
    hosts = _healthy(client)[:1]
    (result,) = AnsibleTransport(client, project).run_many(hosts, "true", sudo=False, timeout=60)
    assert result.ok, result  # the file with that odd name was read as the known_hosts
