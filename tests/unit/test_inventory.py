"""Inventory resolution: inheritance, merge order, folder clients, selectors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mspauto.config import Settings
from mspauto.inventory.selectors import Selector
from mspauto.project import Project, load_project

CLIENT = {
    "name": "acme",
    "display_name": "ACME",
    "timezone": "America/New_York",
    "contract": "std",
    "platform": "debian",
    "credentials": {"admin": {"user": "root", "private_key": {"file": "k"}}},
}


def _project(root: Path, client: dict[str, Any], defaults: dict[str, Any] | None = None) -> Project:
    if defaults is not None:
        (root / "inventory" / "defaults.yaml").write_text(yaml.safe_dump(defaults))
    (root / "inventory" / "acme.yaml").write_text(yaml.safe_dump(client))
    return load_project(Settings.load(root))


def test_each_level_overrides_the_one_above(empty_project: Path) -> None:
    project = _project(
        empty_project,
        {
            "client": {
                **CLIENT,
                "vars": {"a": "client", "b": "client", "c": "client", "d": "client"},
            },
            "sites": {"hq": {"vars": {"b": "site", "c": "site", "d": "site"}}},
            "groups": {"web": {"vars": {"c": "group", "d": "group"}}},
            "hosts": {"web01": {"site": "hq", "groups": ["web"], "vars": {"d": "host"}}},
        },
        defaults={"vars": {"a": "defaults", "z": "defaults"}},
    )
    assert not project.errors, project.errors
    host = project.inventory.host("web01")
    assert host is not None
    assert dict(host.vars) == {
        "a": "client",
        "b": "site",
        "c": "group",
        "d": "host",
        "z": "defaults",
    }
    assert host.origins["z"] == "defaults"
    assert host.origins["b"] == "site:hq"
    assert host.origins["c"] == "group:web"


def test_groups_merge_like_ansible_depth_then_priority_then_name(empty_project: Path) -> None:
    project = _project(
        empty_project,
        {
            "client": CLIENT,
            "groups": {
                "zeta": {"vars": {"v": "zeta", "w": "zeta"}},
                "beta": {"vars": {"v": "beta", "w": "beta"}},
                "child": {"parents": ["beta"], "vars": {"w": "child"}},
                "alpha": {"priority": 9, "vars": {"p": "alpha"}},
                "omega": {"vars": {"p": "omega"}},
            },
            # Listed order does not matter, as in Ansible.
            "hosts": {"h1": {"groups": ["child", "zeta", "omega", "alpha"]}},
        },
    )
    host = project.inventory.host("h1")
    assert host is not None
    assert host.groups == ("beta", "omega", "zeta", "alpha", "child")
    assert host.vars["v"] == "zeta"  # same depth as beta: later by name wins
    assert host.vars["w"] == "child"  # deeper group wins
    assert host.vars["p"] == "alpha"  # higher priority wins over name order


def test_settings_inherit_and_defaults_follow_platform(empty_project: Path) -> None:
    project = _project(
        empty_project,
        {
            "client": {**CLIENT, "credential": "admin"},
            "groups": {"win": {"platform": "windows"}},
            "hosts": {"ws01": {"groups": ["win"]}, "srv01": {"port": 2222, "address": "10.9.9.9"}},
        },
    )
    ws01, srv01 = project.inventory.host("ws01"), project.inventory.host("srv01")
    assert ws01 is not None and srv01 is not None
    assert (ws01.platform, ws01.connection, ws01.port, ws01.address) == (
        "windows",
        "winrm",
        5986,
        "ws01",
    )
    assert (srv01.platform, srv01.connection, srv01.port, srv01.address) == (
        "debian",
        "ssh",
        2222,
        "10.9.9.9",
    )
    assert srv01.credential == "admin" and srv01.origins["credential"] == "client"


def test_folder_client_merges_its_files(empty_project: Path) -> None:
    folder = empty_project / "inventory" / "acme"
    folder.mkdir()
    (folder / "client.yaml").write_text(yaml.safe_dump({"client": CLIENT, "sites": {"hq": {}}}))
    (folder / "hq.yaml").write_text(yaml.safe_dump({"hosts": {"a1": {"site": "hq"}}}))
    (folder / "dr.yaml").write_text(yaml.safe_dump({"hosts": {"a2": {}}}))
    project = load_project(Settings.load(empty_project))
    assert not project.errors, project.errors
    assert sorted(project.inventory.clients["acme"].hosts) == ["a1", "a2"]
    host = project.inventory.host("a1")
    assert host is not None and host.location.file == "inventory/acme/hq.yaml"


def test_host_defined_twice_in_a_folder_client(empty_project: Path) -> None:
    folder = empty_project / "inventory" / "acme"
    folder.mkdir()
    (folder / "a.yaml").write_text(yaml.safe_dump({"client": CLIENT, "hosts": {"h": {}}}))
    (folder / "b.yaml").write_text("hosts:\n  h: {}\n")
    project = load_project(Settings.load(empty_project))
    assert [str(p) for p in project.errors] == [
        "inventory/acme/b.yaml:2 hosts.h: defined twice (first at inventory/acme/a.yaml:13)"
    ]


def _hosts(project: Project, selector: dict[str, Any]) -> list[str]:
    return [h.name for h in Selector.model_validate(selector).select(project.inventory)]


def test_selectors_and_across_keys_or_within(example_project: Path) -> None:
    project = load_project(Settings.load(example_project))
    assert _hosts(project, {"clients": ["acme"], "tags": ["pci"]}) == [
        "acme-web01",
        "acme-web02",
        "acme-db01",
        "acme-ws-finance01",
    ]
    assert _hosts(project, {"clients": ["acme"], "tags": ["pci"], "platforms": ["windows"]}) == [
        "acme-ws-finance01"
    ]
    assert _hosts(project, {"groups": ["linux-servers"], "exclude_hosts": ["acme-web*"]}) == [
        "acme-db01",
        "acme-backup01",
    ]
    assert _hosts(project, {"sites": ["frankfurt-dc"], "rings": ["pilot"]}) == ["globex-sql01"]
    assert len(_hosts(project, {"clients": ["*"]})) == 15


def test_nested_group_selects_members_of_child_groups(example_project: Path) -> None:
    project = load_project(Settings.load(example_project))
    assert _hosts(project, {"groups": ["app"]}) == ["globex-app01", "globex-app02"]


def test_hidden_and_underscore_folders_inside_a_client_are_ignored(empty_project: Path) -> None:
    folder = empty_project / "inventory" / "acme"
    for sub in ("_archive", ".git"):
        (folder / sub).mkdir(parents=True)
        (folder / sub / "old.yaml").write_text(yaml.safe_dump({"hosts": {f"old{sub}": {}}}))
    (folder / "client.yaml").write_text(yaml.safe_dump({"client": CLIENT, "hosts": {"a1": {}}}))
    project = load_project(Settings.load(empty_project))
    assert not project.errors, project.errors
    assert list(project.inventory.clients["acme"].hosts) == ["a1"]


def test_addresses_are_normalised(empty_project: Path) -> None:
    project = _project(
        empty_project,
        {
            "client": CLIENT,
            "hosts": {
                "h1": {"address": " Web01.Example.COM. "},
                "h2": {"address": "::ffff:1.2.3.4"},
            },
        },
    )
    h1, h2 = project.inventory.host("h1"), project.inventory.host("h2")
    assert h1 is not None and h2 is not None
    assert (h1.address, h2.address) == ("web01.example.com", "1.2.3.4")


@pytest.mark.parametrize(
    ("name", "value", "where"),
    [
        ("secret_key", "x9", ()),
        ("aws_secret_access_key", "wJalrXUtnFEMI", ()),
        ("admin_pwd", "x9", ()),
        ("private_key_data", "-----BEGIN OPENSSH PRIVATE KEY-----", ()),
        ("tls_privatekey_pem", "-----BEGIN PRIVATE KEY-----", ()),
        ("private_key_file", "keys/acme_ed25519", None),  # a path, not the key
        ("db", {"host": "db1", "password": "x9"}, ("password",)),
        ("users", [{"name": "a"}, {"name": "b", "token": "t0k"}], (1, "token")),
        ("repository", "rest:https://backup:s3cr3t@backup.example/", ()),
        ("db_password", "{{ vault_db_password }}", None),  # a reference, not the secret
        ("repository", "rest:https://backup.example/acme", None),
        ("passes_needed", 3, None),
    ],
)
def test_secrets_are_found_under_other_names_nested_and_in_urls(
    name: str, value: object, where: tuple[str | int, ...] | None
) -> None:
    from mspauto.fields import secret_in

    assert secret_in(name, value) == where
