"""Ansible and nornir inventories, checked with Ansible's and nornir's own readers.

Import then export must give Ansible the same hosts, groups (members and children)
and per-host variables as the original, except the secrets that import drops on
purpose. Export of our own examples must give every host exactly the variables
mspauto resolves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from mspauto.cli import cli
from mspauto.config import Settings
from mspauto.fields import secret_variable
from mspauto.inventory.ansible import (
    expected_ansible_vars,
    export_ini,
    export_yaml,
    read_ansible_inventory,
)
from mspauto.project import load_project

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parent.parent / "fixtures" / "ansible"
SOURCES = ["site.ini", "site.yaml", "folder"]


def _ansible_view(path: Path) -> dict[str, Any]:
    """What Ansible sees: merged vars per host, direct members and children per group."""
    data = read_ansible_inventory(path, export=False)
    hostvars = {
        host: {k: v for k, v in variables.items() if not secret_variable(k, v)}
        for host, variables in data["_meta"]["hostvars"].items()
    }
    groups = {
        name: (sorted(entry.get("hosts", [])), sorted(entry.get("children", [])))
        for name, entry in data.items()
        if name != "_meta"
    }
    return {"hostvars": hostvars, "groups": groups}


def _import(source: Path, project: Path) -> list[str]:
    result = CliRunner().invoke(
        cli,
        [
            "--project",
            str(project),
            "inventory",
            "import",
            str(source),
            "--client",
            "imp",
            "--timezone",
            "America/New_York",
            "--contract",
            "std",
        ],
    )
    assert result.exit_code == 0, result.output
    return [line for line in result.stderr.splitlines() if line.startswith("warning:")]


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("export_format", ["ansible-ini", "ansible-yaml"])
def test_import_then_export_keeps_hosts_groups_and_vars(
    source: str, export_format: str, empty_project: Path, tmp_path: Path
) -> None:
    _import(FIXTURES / source, empty_project)
    # Ansible picks its parser by suffix: YAML inventories must end in .yaml or .yml.
    exported = tmp_path / ("exported.ini" if export_format == "ansible-ini" else "exported.yaml")
    result = CliRunner().invoke(
        cli,
        [
            "--project",
            str(empty_project),
            "inventory",
            "export",
            "--client",
            "imp",
            "--to",
            export_format,
            "--output",
            str(exported),
        ],
    )
    assert result.exit_code == 0, result.output

    original, round_tripped = _ansible_view(FIXTURES / source), _ansible_view(exported)
    assert round_tripped["hostvars"] == original["hostvars"]
    assert round_tripped["groups"] == original["groups"]
    assert len(original["hostvars"]) >= 3


def test_import_drops_secrets_and_says_so(empty_project: Path, tmp_path: Path) -> None:
    source = tmp_path / "secrets.ini"
    source.write_text(
        "web1 ansible_password=123456 ansible_ssh_host=192.0.2.7 ansible_ssh_port=2200\n"
        "[web]\nweb1\n[web:vars]\nansible_become_pass=778899\nansible_sudo_pass=sudopw\n"
        "ansible_enable_pass=cisco123\ndb_password='{{ vault_db_password }}'\n"
        "[all:vars]\nansible_ssh_pass=hunter2\n"
    )
    warnings = _import(source, empty_project)
    written = (empty_project / "inventory" / "imp.yaml").read_text()
    for secret in ("123456", "778899", "sudopw", "cisco123", "hunter2"):
        assert secret not in written
    assert sorted(w.split(": dropped ")[1].split()[0] for w in warnings) == [
        "ansible_become_pass",
        "ansible_enable_pass",
        "ansible_password",
        "ansible_ssh_pass",
        "ansible_sudo_pass",
    ]
    project = load_project(Settings.load(empty_project))
    web1 = project.inventory.host("web1")
    assert web1 is not None
    assert (web1.address, web1.port) == ("192.0.2.7", 2200)  # the ssh plugin's old names
    assert web1.vars["db_password"] == "{{ vault_db_password }}"  # a reference, kept


def test_import_maps_ansible_settings_onto_hosts(empty_project: Path) -> None:
    _import(FIXTURES / "site.ini", empty_project)
    project = load_project(Settings.load(empty_project))
    assert not project.errors
    dc01 = project.inventory.host("dc01.acme.example")
    web04 = project.inventory.host("web04.acme.example")
    mail = project.inventory.host("mail.acme.example")
    assert dc01 is not None and web04 is not None and mail is not None
    assert (dc01.platform, dc01.connection, dc01.port) == ("windows", "winrm", 5986)
    assert (web04.platform, web04.port, web04.vars["max_clients"]) == ("debian", 2222, 200)
    assert mail.address == "192.0.2.25" and mail.groups == ()


def test_import_refuses_to_overwrite_a_client(empty_project: Path) -> None:
    _import(FIXTURES / "site.ini", empty_project)
    result = CliRunner().invoke(
        cli,
        [
            "--project",
            str(empty_project),
            "inventory",
            "import",
            str(FIXTURES / "site.yaml"),
            "--client",
            "imp",
            "--timezone",
            "UTC",
            "--contract",
            "std",
        ],
    )
    assert result.exit_code == 1
    assert "already exists" in result.stderr


def test_import_of_unreadable_inventory_is_one_line(empty_project: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("all:\n  hosts: [unclosed\n")
    result = CliRunner().invoke(
        cli,
        [
            "--project",
            str(empty_project),
            "inventory",
            "import",
            str(broken),
            "--client",
            "imp",
            "--timezone",
            "UTC",
            "--contract",
            "std",
        ],
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ansible could not read")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("export", "suffix"), [(export_ini, ".ini"), (export_yaml, ".yaml")])
def test_export_gives_ansible_exactly_our_resolved_vars(
    export: Any, suffix: str, example_project: Path, tmp_path: Path
) -> None:
    project = load_project(Settings.load(example_project))
    for client in project.inventory.clients.values():
        path = tmp_path / f"{client.name}{suffix}"
        path.write_text(export(client, project.inventory.defaults))
        seen = read_ansible_inventory(path, export=False)["_meta"]["hostvars"]
        assert set(seen) == set(client.hosts)
        for name, host in client.hosts.items():
            assert seen[name] == expected_ansible_vars(host, client), name


def test_nornir_export_resolves_like_mspauto(example_project: Path, tmp_path: Path) -> None:
    from nornir.plugins.inventory.simple import SimpleInventory

    out = tmp_path / "nornir"
    result = CliRunner().invoke(
        cli,
        [
            "--project",
            str(example_project),
            "inventory",
            "export",
            "--client",
            "acme",
            "--to",
            "nornir",
            "--output",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    nornir_inventory = SimpleInventory(
        host_file=str(out / "hosts.yaml"),
        group_file=str(out / "groups.yaml"),
        defaults_file=str(out / "defaults.yaml"),
    ).load()
    project = load_project(Settings.load(example_project))
    acme = project.inventory.clients["acme"]
    assert set(nornir_inventory.hosts) == set(acme.hosts)
    for name, host in acme.hosts.items():
        nornir_host = nornir_inventory.hosts[name]
        assert (nornir_host.hostname, nornir_host.port, nornir_host.platform) == (
            host.address,
            host.port,
            host.platform,
        )
        for key, value in host.vars.items():
            assert nornir_host[key] == value, (name, key)
