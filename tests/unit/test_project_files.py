"""Odd names and links in a project, and the paths a client names: real files, folders
and links in a scratch project, each odd one reported in one line by every command."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from mspauto.cli import cli
from mspauto.config import Settings
from mspauto.project import Project, load_project


def _client(name: str, **settings: Any) -> dict[str, Any]:
    return {
        "client": {
            "name": name,
            "display_name": name.title(),
            "timezone": "UTC",
            "contract": "std",
            "platform": "debian",
            "credential": "admin",
            "credentials": {"admin": {"user": "root", "private_key": {"file": f"keys/{name}"}}},
            **settings,
        },
        "hosts": {f"{name}-web01": {"address": f"web01.{name}.example"}},
    }


def _write(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def project(empty_project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Clients acme and globex, each with its known_hosts; nothing wrong yet."""
    for name in ("MSPAUTO_INVENTORY", "MSPAUTO_POLICIES", "MSPAUTO_STATE_DIR"):
        monkeypatch.delenv(name, raising=False)
    for name in ("acme", "globex"):
        _write(empty_project / "inventory" / f"{name}.yaml", _client(name))
        known_hosts = empty_project / "inventory" / "known_hosts" / name
        known_hosts.parent.mkdir(exist_ok=True)
        known_hosts.write_text(f"# {name}\n")
    return empty_project


def _load(root: Path) -> Project:
    return load_project(Settings.load(root))


def _lines(project: Project) -> list[str]:
    return [str(problem) for problem in project.problems]


def _run(root: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--project", str(root), *args])


def test_the_scratch_project_is_valid(project: Path) -> None:
    assert _lines(_load(project)) == []


# --- names ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["NEWCO.YAML", "NEWCO.Yml", "NEWCO.yAmL"])
def test_an_upper_case_extension_is_an_error_asking_for_the_rename(
    project: Path, name: str
) -> None:
    _write(project / "inventory" / name, _client("NEWCO"))
    lowered = name[:5] + name[5:].lower()
    assert _lines(_load(project)) == [
        f"inventory/{name}: not read: the extension must be lower-case .yaml or .yml; "
        f"rename it to {lowered}"
    ]


def test_a_policy_naming_a_client_whose_file_was_not_read_gets_no_second_error(
    project: Path,
) -> None:
    _write(project / "inventory" / "NEWCO.YAML", _client("NEWCO"))
    (project / "policies" / "patch.yaml").write_text(
        "kind: patch\nname: p\ntargets: {clients: [NEWCO]}\n"
        "schedule: {cron: '0 2 * * sat', timezone: client}\n"
    )
    assert [p.location.file for p in _load(project).errors] == ["inventory/NEWCO.YAML"]


@pytest.mark.parametrize("name", ["acme.yaml.bak", "acme.yaml~", "#acme.yaml#", "acme.yml.orig"])
def test_a_backup_of_a_yaml_file_is_a_warning_not_an_error(project: Path, name: str) -> None:
    (project / "inventory" / name).write_text((project / "inventory" / "acme.yaml").read_text())
    loaded = _load(project)
    assert not loaded.errors
    assert [str(p) for p in loaded.warnings] == [
        f"inventory/{name}: warning: not read (only names ending in .yaml or .yml are); "
        "rename it to end in .yaml to use it, or start its name with '_' (or move it out) "
        "to silence this"
    ]
    result = _run(project, "validate", "--strict")
    assert result.exit_code == 1


def test_hidden_and_underscored_names_and_other_files_are_left_out_silently(
    project: Path,
) -> None:
    (project / "inventory" / "_draft.yaml").write_text(": not even yaml [")
    (project / "inventory" / ".acme.yaml.swp").write_bytes(b"\0binary")
    (project / "inventory" / "README.md").write_text("# notes\n")
    (project / "policies" / "_archive").mkdir()
    (project / "policies" / "_archive" / "old.yaml.bak").write_text("kind: nothing\n")
    assert _lines(_load(project)) == []


def test_a_client_as_file_and_folder_is_one_error_naming_both(project: Path) -> None:
    _write(project / "inventory" / "acme" / "hosts.yaml", {"hosts": {"acme-db01": {}}})
    loaded = _load(project)
    assert _lines(loaded) == [
        "inventory/acme.yaml: client 'acme' is also defined by the folder inventory/acme/; "
        "keep one file or one folder per client (move the hosts of one into the other)"
    ]
    assert "acme" not in loaded.inventory.clients


def test_a_client_as_yaml_and_yml_is_one_error(project: Path) -> None:
    _write(project / "inventory" / "acme.yml", _client("acme"))
    assert _lines(_load(project)) == [
        "inventory/acme.yaml: client 'acme' is also defined by inventory/acme.yml; "
        "keep one file or one folder per client (move the hosts of one into the other)"
    ]


def test_a_folder_without_yaml_beside_a_client_file_is_no_client(project: Path) -> None:
    (project / "inventory" / "acme").mkdir()
    (project / "inventory" / "acme" / "id_ed25519").write_text("key\n")
    assert _lines(_load(project)) == []


def test_a_folder_named_like_a_yaml_file_is_an_error(project: Path) -> None:
    (project / "policies" / "contract.yaml").unlink()
    _write(project / "policies" / "contract.yaml" / "std.yaml", {"kind": "contract", "name": "std"})
    assert _lines(_load(project)) == [
        "policies/contract.yaml/: a folder, where the name says a YAML file; replace it "
        "with the file, or rename the folder without '.yaml'"
    ]


def test_a_named_pipe_is_refused_before_anything_reads_it(project: Path) -> None:
    os.mkfifo(project / "inventory" / "initech.yaml")  # reading it would wait for ever
    assert _lines(_load(project)) == [
        "inventory/initech.yaml: not a regular file (a named pipe); replace it with a file"
    ]


def test_an_unreadable_policy_file_hides_no_contract_behind_a_second_error(
    project: Path,
) -> None:
    (project / "policies" / "contract.yaml").write_text("kind: contract\nname: [std\n")
    assert [p.location.file for p in _load(project).errors] == ["policies/contract.yaml"]


def test_an_invalid_contract_of_another_name_hides_no_unknown_contract(project: Path) -> None:
    (project / "policies" / "gold.yaml").write_text("kind: contract\nname: gold\nrpo: 0h\n")
    _write(project / "inventory" / "acme.yaml", _client("acme", contract="silver"))
    assert _lines(_load(project)) == [
        "inventory/acme.yaml:5 client.contract: unknown contract 'silver'; define it in "
        "policies/ with 'kind: contract'",
        "policies/gold.yaml:3 rpo: must be longer than 0 (e.g. 24h)",
    ]


# --- links ------------------------------------------------------------------------


def test_a_link_inside_the_project_is_followed_and_shown_as_the_link(project: Path) -> None:
    shared = project / "shared"
    (project / "inventory" / "acme.yaml").rename(shared.with_suffix(".yaml"))
    (project / "inventory" / "acme.yaml").symlink_to("../shared.yaml")
    _write(project / "inventory" / "globex.yaml", _client("globex", contract="gold"))
    loaded = _load(project)
    assert "acme" in loaded.inventory.clients
    assert _lines(loaded) == [
        "inventory/globex.yaml:5 client.contract: unknown contract 'gold'; define it in "
        "policies/ with 'kind: contract'"
    ]
    client = loaded.inventory.clients["acme"]
    assert client.files == ("inventory/acme.yaml",)
    assert str(client.known_hosts) == "inventory/known_hosts/acme"


def test_a_link_outside_the_project_is_not_followed_by_any_command(project: Path) -> None:
    outside = project.parent / "elsewhere.yaml"
    outside.write_text("secret-looking: content-from-outside\n")
    (project / "inventory" / "initech.yaml").symlink_to(outside)
    expected = (
        f"inventory/initech.yaml: a link to {outside}, outside the project; links are "
        "followed only inside the project folder: copy the file (or folder) in instead"
    )
    assert _lines(_load(project)) == [expected]
    for command in (
        ["validate"],
        ["inventory", "list"],
        ["inventory", "list", "--format", "json"],
        ["inventory", "show", "acme-web01"],
        ["policy", "list"],
        ["hosts", "trust", "acme-web01"],
        ["exec", "--client", "acme", "--", "true"],
    ):
        result = _run(project, *command)
        assert result.exit_code == 1, (command, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), command
        assert expected in result.stderr.splitlines(), (command, result.stderr)
        assert "content-from-outside" not in result.output, command
        assert "Traceback" not in result.output, command


def test_a_folder_link_outside_the_project_is_not_walked(project: Path) -> None:
    outside = project.parent / "other-policies"
    _write(outside / "contract.yaml", {"kind": "contract", "name": "gold"})
    (project / "policies" / "shared").symlink_to(outside)
    assert _lines(_load(project)) == [
        f"policies/shared: a link to {outside}, outside the project; links are followed "
        "only inside the project folder: copy the file (or folder) in instead"
    ]


@pytest.mark.parametrize("where", ["inventory/initech.yaml", "inventory/globex/hosts.yaml"])
def test_a_dangling_link_is_an_error_and_its_client_does_not_half_load(
    project: Path, where: str
) -> None:
    (project / "inventory" / "globex.yaml").rename(project / "inventory" / "client.yaml")
    (project / "inventory" / "globex").mkdir()
    (project / "inventory" / "client.yaml").rename(project / "inventory" / "globex" / "c.yaml")
    (project / where).symlink_to("gone.yaml")
    loaded = _load(project)
    assert _lines(loaded) == [
        f"{where}: a link to gone.yaml, which does not exist; point it at a real file or "
        "folder, or remove it"
    ]
    assert ("globex" in loaded.inventory.clients) is (where == "inventory/initech.yaml")


def test_links_in_a_circle_are_one_error_per_link_read(project: Path) -> None:
    (project / "inventory" / "acme.yaml").unlink()
    (project / "inventory" / "acme.yaml").symlink_to("../loop/a.yaml")
    (project / "loop").mkdir()
    (project / "loop" / "a.yaml").symlink_to("b.yaml")
    (project / "loop" / "b.yaml").symlink_to("../inventory/acme.yaml")
    assert _lines(_load(project)) == [
        "inventory/acme.yaml: a link to ../loop/a.yaml that loops (its links lead back to "
        "themselves, never to a file); point it at a real file or folder, or remove it"
    ]


def test_a_folder_reached_twice_through_links_is_read_once(project: Path) -> None:
    _write(project / "contracts" / "gold.yaml", {"kind": "contract", "name": "gold"})
    (project / "policies" / "a").symlink_to("../contracts")
    (project / "policies" / "b").symlink_to("../contracts")
    assert _lines(_load(project)) == [
        "policies/b/: leads to contracts/, which is already read as policies/a/; link "
        "each folder once, or copy it"
    ]


def test_inventory_moved_out_of_the_project_may_hold_links_within_itself(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    moved = tmp_path / "fleet-inventory"
    (project / "inventory").rename(moved)
    (moved / "acme.yaml").rename(moved / "_acme.yaml")
    (moved / "acme.yaml").symlink_to("_acme.yaml")
    monkeypatch.setenv("MSPAUTO_INVENTORY", str(moved))
    loaded = _load(project)
    assert sorted(loaded.inventory.clients) == ["acme", "globex"]
    assert _lines(loaded) == []


# --- paths a client names -----------------------------------------------------------


def test_clients_may_share_a_key_outside_every_client_folder(project: Path) -> None:
    for name in ("acme", "globex"):
        document = _client(name)
        document["client"]["credentials"]["admin"]["private_key"] = {"file": "keys/msp_ed25519"}
        _write(project / "inventory" / f"{name}.yaml", document)
    assert _lines(_load(project)) == []


def test_a_client_may_keep_its_key_in_its_own_folder(project: Path) -> None:
    (project / "inventory" / "acme.yaml").unlink()
    document = _client("acme")
    document["client"]["credentials"]["admin"]["private_key"] = {
        "file": "inventory/acme/id_ed25519"
    }
    _write(project / "inventory" / "acme" / "client.yaml", document)
    assert _lines(_load(project)) == []


def test_a_known_hosts_shared_by_two_clients_is_one_error_at_the_second(project: Path) -> None:
    (project / "inventory" / "shared_known_hosts").write_text("")
    for name in ("acme", "globex"):
        _write(
            project / "inventory" / f"{name}.yaml",
            _client(name, known_hosts="shared_known_hosts"),
        )
    assert _lines(_load(project)) == [
        "inventory/globex.yaml:13 client.known_hosts: inventory/shared_known_hosts is also the "
        "known_hosts of client 'acme' (inventory/acme.yaml:1); each client trusts only its "
        "own host keys: give globex its own file"
    ]


def test_a_default_known_hosts_linked_to_another_clients_is_an_error(project: Path) -> None:
    known_hosts = project / "inventory" / "known_hosts"
    (known_hosts / "globex").unlink()
    (known_hosts / "globex").symlink_to("acme")
    assert _lines(_load(project)) == [
        "inventory/globex.yaml:1 client.known_hosts: inventory/known_hosts/globex (this "
        "client's known_hosts; a link to inventory/known_hosts/acme) belongs to client 'acme' "
        "(its known_hosts inventory/known_hosts/acme); a client uses only its own files: "
        "give globex a known_hosts of its own"
    ]


def test_a_known_hosts_that_is_a_folder_is_an_error_not_a_missing_file(project: Path) -> None:
    known_hosts = project / "inventory" / "known_hosts" / "acme"
    known_hosts.unlink()
    known_hosts.mkdir()
    assert _lines(_load(project)) == [
        "inventory/acme.yaml:1 client.known_hosts: inventory/known_hosts/acme (this client's "
        "known_hosts) is a folder; known_hosts is a file of host keys (OpenSSH format): name "
        "a file in it, or remove the folder"
    ]


@pytest.mark.parametrize(
    ("reference", "key"),
    [
        ({"file": "../outside.key"}, "private_key"),
        ({"vault": "../outside.vault.yaml"}, "become_password"),
        ({"file": "../outside.pass"}, "key_passphrase"),
    ],
)
def test_every_secret_file_stays_inside_the_project(
    project: Path, reference: dict[str, str], key: str
) -> None:
    document = _client("acme")
    document["client"]["credentials"]["admin"][key] = reference
    _write(project / "inventory" / "acme.yaml", document)
    ((source, written),) = reference.items()
    outside = (project / written).resolve()
    what = "key" if key == "private_key" else "secret file"
    (problem,) = _load(project).errors
    assert str(problem).startswith(
        f"inventory/acme.yaml:1{'2' if key == 'private_key' else '4'} "
        f"client.credentials.admin.{key}.{source}: {outside} is outside the project; "
        f"a client's {what} stays inside the project folder"
    )


# --- local hosts --------------------------------------------------------------------


def test_a_local_host_in_a_project_of_several_clients_is_warned_about(project: Path) -> None:
    document = _client("acme")
    document["hosts"]["acme-ctl"] = {"connection": "local"}
    _write(project / "inventory" / "acme.yaml", document)
    loaded = _load(project)
    assert not loaded.errors
    assert [str(p) for p in loaded.warnings] == [
        "inventory/acme.yaml:16 hosts.acme-ctl: warning: connection: local runs this "
        "client's commands on the control node as mspauto's own user, who can read every "
        "client's key and secret files and the evidence store; for a separate client use "
        "an ssh host (docs/engine.md, 'Local commands')"
    ]


def test_a_local_host_of_the_only_client_is_not_warned_about(project: Path) -> None:
    (project / "inventory" / "globex.yaml").unlink()
    document = _client("acme")
    document["hosts"]["acme-ctl"] = {"connection": "local"}
    _write(project / "inventory" / "acme.yaml", document)
    assert _lines(_load(project)) == []


def test_import_never_writes_through_a_link(project: Path) -> None:
    source = project / "hosts.ini"
    source.write_text("web1 ansible_host=192.0.2.1\n")
    outside = project.parent / "written-through-the-link"
    (project / "inventory" / "initech.yaml").symlink_to(outside)
    options = ["--client", "initech", "--timezone", "UTC", "--contract", "std", "--force"]
    result = _run(project, "inventory", "import", str(source), *options)
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: {project / 'inventory' / 'initech.yaml'} is a link; remove it, then import again\n"
    )
    assert not outside.exists()


# --- one problem, one line --------------------------------------------------------


@pytest.mark.parametrize(
    ("character", "shown"),
    [
        pytest.param("\n", "\\n", id="newline"),
        pytest.param("\r", "\\r", id="carriage-return"),
        pytest.param("\x1b", "\\x1b", id="escape"),
        pytest.param("\x85", "\\x85", id="next-line"),
        pytest.param("\u2028", "\\u2028", id="line-separator"),
        pytest.param("\u202e", "\\u202e", id="bidi-override"),
    ],
)
@pytest.mark.parametrize("command", ["validate", "backups --client acme"])
def test_a_file_name_with_a_control_character_prints_as_one_escaped_line(
    project: Path, command: str, character: str, shown: str
) -> None:
    """A name must not print a second, forged line (nor move or reverse the terminal's
    text): validate and every command refusing a broken project print one line each."""
    _write(project / "inventory" / f"evil{character}FAKE: 0 errors.yaml", _client("initech"))
    result = _run(project, *command.split())
    assert result.exit_code == 1
    assert len(result.stderr.splitlines()) == 2  # the problem, then the verdict
    assert result.stderr.splitlines()[0] == (
        f"inventory/evil{shown}FAKE: 0 errors.yaml:2 client.name: 'initech' must match its "
        f"file or folder name 'evil{shown}FAKE: 0 errors'"
    )


def test_a_display_name_with_a_line_break_prints_as_one_summary_line(project: Path) -> None:
    _write(project / "inventory" / "acme.yaml", _client("acme", display_name="Acme\nFAKE OK"))
    result = _run(project, "validate")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].startswith("acme         Acme\\nFAKE OK ")
    assert len(result.stdout.splitlines()) == 3  # two clients and the verdict


# --- files named for another client -----------------------------------------------


def test_a_secret_file_named_for_another_client_is_that_clients(project: Path) -> None:
    """keys/<client>.<field> is the name validate suggests for a client's secret file:
    another client naming it would be sent that client's secret."""
    document = _client("acme")
    document["client"]["credentials"]["admin"]["become_password"] = {
        "file": "keys/globex.become_password"
    }
    _write(project / "inventory" / "acme.yaml", document)
    assert _lines(_load(project)) == [
        "inventory/acme.yaml:14 client.credentials.admin.become_password.file: "
        "keys/globex.become_password belongs to client 'globex' (named for it, as "
        "keys/globex.<field> is); a client uses only its own files: give acme a secret "
        "file of its own"
    ]


def test_a_folder_named_for_another_client_is_that_clients_and_a_mere_prefix_is_nobodys(
    project: Path,
) -> None:
    document = _client("acme")
    document["client"]["credentials"]["admin"]["private_key"] = {"file": "keys/globex/id"}
    document["client"]["credentials"]["admin"]["become_password"] = {
        "file": "keys/globex_shared_sudo"  # starts with a client's name; not named for it
    }
    _write(project / "inventory" / "acme.yaml", document)
    assert _lines(_load(project)) == [
        "inventory/acme.yaml:12 client.credentials.admin.private_key.file: keys/globex/id "
        "belongs to client 'globex' (named for it, as keys/globex.<field> is); a client "
        "uses only its own files: give acme a key of its own"
    ]
