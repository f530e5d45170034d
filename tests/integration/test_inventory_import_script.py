"""Importing an inventory never runs its code by surprise (issue 9, hostile input).

Every inventory here would leave a marker file behind if Ansible ran it: an
executable script, a folder holding one, a YAML file naming the ``constructed`` plugin
(whose Jinja can run commands), and an ``ansible.cfg`` in the working directory that
replaces Ansible's INI reader. Without ``--allow-script`` the marker must not appear;
with it, the script runs but sees none of the control node's other variables.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mspauto.cli import cli
from mspauto.config import Settings
from mspauto.inventory import ansible
from mspauto.inventory.ansible import AnsibleInventoryError, read_ansible_inventory
from mspauto.project import load_project

pytestmark = pytest.mark.integration

SECRET = "s3cr3t-from-the-control-node"


def _script(path: Path, marker: Path, env_dump: Path) -> Path:
    """An executable inventory that touches ``marker`` and dumps its environment."""
    inventory = {
        "web": {"hosts": ["script-web1"]},
        "_meta": {"hostvars": {"script-web1": {"ansible_host": "192.0.2.31"}}},
    }
    path.write_text(
        f"#!/bin/sh\ntouch '{marker}'\nenv > '{env_dump}'\necho '{json.dumps(inventory)}'\n"
    )
    path.chmod(0o755)
    return path


def _import(project: Path, source: Path, *extra: str) -> Result:
    return CliRunner().invoke(
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
            "UTC",
            "--contract",
            "std",
            *extra,
        ],
    )


@pytest.fixture
def secret_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A secret the way a credential's ``env:`` reference finds it."""
    monkeypatch.setenv("MSPAUTO_TEST_SECRET", SECRET)


@pytest.mark.parametrize("in_folder", [False, True], ids=["script", "folder-with-script"])
def test_executable_inventory_is_refused_without_running(
    in_folder: bool, empty_project: Path, tmp_path: Path
) -> None:
    marker, env_dump = tmp_path / "ran", tmp_path / "env"
    source = tmp_path / "client"
    if in_folder:
        source.mkdir()
        (source / "hosts.ini").write_text("[db]\ndb1\n")
        _script(source / "dynamic", marker, env_dump)
    else:
        _script(source, marker, env_dump)

    result = _import(empty_project, source)

    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: refused to import {source}: ")
    assert "is executable" in lines[0] and lines[0].endswith("pass --allow-script to run it")
    assert not marker.exists()
    assert not (empty_project / "inventory" / "imp.yaml").exists()


@pytest.mark.parametrize("in_folder", [False, True], ids=["script", "folder-with-script"])
@pytest.mark.usefixtures("secret_in_environment")
def test_allowed_script_runs_without_the_control_nodes_environment(
    in_folder: bool, empty_project: Path, tmp_path: Path
) -> None:
    marker, env_dump = tmp_path / "ran", tmp_path / "env"
    source = tmp_path / "client"
    if in_folder:
        source.mkdir()
        (source / "hosts.ini").write_text("[db]\ndb1\n")
        _script(source / "dynamic", marker, env_dump)
    else:
        _script(source, marker, env_dump)

    result = _import(empty_project, source, "--allow-script")

    assert result.exit_code == 0, result.output
    assert marker.exists()
    seen = dict(line.split("=", 1) for line in env_dump.read_text().splitlines() if "=" in line)
    assert "PATH" in seen  # the dump is the script's real environment
    assert SECRET not in env_dump.read_text()
    assert "MSPAUTO_TEST_SECRET" not in seen
    assert seen["ANSIBLE_INVENTORY_ENABLED"] == "host_list,script,auto,yaml,ini,toml"
    project = load_project(Settings.load(empty_project))
    web1 = project.inventory.host("script-web1")
    assert web1 is not None and web1.address == "192.0.2.31"
    assert (project.inventory.host("db1") is not None) == in_folder


def test_plugin_configuration_is_refused_without_running(
    empty_project: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    source = tmp_path / "client"
    source.mkdir()
    (source / "hosts.ini").write_text("[web]\nweb1\n")
    # After hosts.ini in Ansible's (sorted) order, so that there are hosts to compose for.
    (source / "zz-constructed.yml").write_text(
        "plugin: ansible.builtin.constructed\n"
        f"compose:\n  pwned: lookup('pipe', 'touch {marker} && echo yes')\n"
    )

    refused = _import(empty_project, source)

    assert refused.exit_code == 1
    assert refused.stderr == (
        f"error: refused to import {source}: {source / 'zz-constructed.yml'} is an inventory "
        "plugin configuration (plugin: ansible.builtin.constructed); "
        "pass --allow-script to run it\n"
    )
    assert not marker.exists()

    allowed = _import(empty_project, source, "--allow-script")

    assert allowed.exit_code == 0, allowed.output
    assert marker.exists()  # the flag really hands the file to Ansible's plugin loader


def test_ansible_itself_runs_no_script_when_not_allowed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Even if mspauto's own check missed a script, ansible-inventory would not run it."""
    marker = tmp_path / "ran"
    source = _script(tmp_path / "client", marker, tmp_path / "env")
    monkeypatch.setattr(ansible, "code_in_inventory", lambda path: None)

    with pytest.raises(AnsibleInventoryError, match="ansible could not read"):
        read_ansible_inventory(source)
    assert not marker.exists()


def test_ansible_cfg_in_working_directory_cannot_replace_the_ini_reader(
    monkeypatch: pytest.MonkeyPatch, empty_project: Path, tmp_path: Path
) -> None:
    """An unpacked client folder may hold ansible.cfg; the user may run mspauto from it."""
    marker = tmp_path / "ran"
    unpacked = tmp_path / "unpacked"
    (unpacked / "plugins").mkdir(parents=True)
    (unpacked / "ansible.cfg").write_text("[defaults]\ninventory_plugins = ./plugins\n")
    (unpacked / "plugins" / "ini.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"
    )
    (unpacked / "hosts.ini").write_text("[web]\nweb1\n")
    monkeypatch.chdir(unpacked)

    result = _import(empty_project, Path("hosts.ini"))

    assert result.exit_code == 0, result.output
    assert not marker.exists()
    assert load_project(Settings.load(empty_project)).inventory.host("web1") is not None
