"""`mspauto patch` as a user meets it before any host is touched: one-line errors for
bad options and files, and validate's warning about overlapping patch policies."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mspauto.cli import cli

CLIENT = """\
client: {name: initech, display_name: Initech, timezone: America/Chicago, contract: std,
         platform: debian, credential: admin,
         credentials: {admin: {user: admin, private_key: {file: keys/id}}}}
hosts:
  initech-web01: {address: 127.0.0.1, tags: [web]}
"""
POLICY = """\
kind: patch
name: {name}
targets: {{clients: [initech]}}
schedule: {{cron: '0 1 * * sat', timezone: client}}
"""


def run(project: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["--project", str(project), *args], env=env)


@pytest.fixture
def project(empty_project: Path) -> Path:
    (empty_project / "inventory" / "initech.yaml").write_text(CLIENT)
    (empty_project / "policies" / "patch.yaml").write_text(POLICY.format(name="monthly"))
    return empty_project


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((), "error: give the client: mspauto patch --client NAME [--dry-run]"),
        (
            ("--client", "initech", "--force-window"),
            "error: --force-window needs --reason 'why' (it is recorded with the run)",
        ),
        (
            ("--client", "initech", "--reason", "x"),
            "error: --reason goes with --force-window or --resume-rollout",
        ),
        (
            ("--client", "initech", "--resume-rollout"),
            "error: --resume-rollout needs --reason 'why' (it is recorded with the run)",
        ),
        (("--client", "nobody"), "error: unknown client 'nobody' (clients: initech)"),
    ],
)
def test_bad_options_are_one_line(project: Path, args: tuple[str, ...], error: str) -> None:
    result = run(project, "patch", *args)
    assert result.exit_code == 1
    assert result.output.strip() == error


def test_no_patch_policy_is_one_line(project: Path) -> None:
    (project / "policies" / "patch.yaml").unlink()
    result = run(project, "patch", "--client", "initech", "--dry-run")
    assert result.exit_code == 1
    assert result.output.strip().startswith(
        "error: no patch policy selects these hosts of initech; add a 'kind: patch' policy"
    )


def test_a_broken_severity_source_is_one_line_before_any_host(project: Path) -> None:
    (project / "kev.json").write_text("{not json")
    result = run(
        project,
        "patch",
        "--client",
        "initech",
        "--dry-run",
        env={"MSPAUTO_KEV_CATALOG": "kev.json"},
    )
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: ") and "kev.json" in line


def test_validate_warns_when_two_patch_policies_select_a_host(project: Path) -> None:
    # Files load in name order: patch.yaml's policy comes first.
    (project / "policies" / "patch.yaml.d").mkdir()
    (project / "policies" / "patch.yaml.d" / "weekly.yaml").write_text(POLICY.format(name="weekly"))
    result = run(project, "validate")
    assert result.exit_code == 0, result.output
    assert (
        "policies/patch.yaml.d/weekly.yaml:3 targets: warning: host initech-web01 is also "
        "selected by patch policy 'monthly', which comes first and decides its updates"
        in result.output
    )


def test_a_regex_too_large_to_compile_is_a_file_line_error(project: Path) -> None:
    (project / "policies" / "patch.yaml").write_text(
        POLICY.format(name="monthly")
        + "approvals:\n  - match: {names: ['^openssl{1,4294967296}$']}\n    action: auto\n"
    )
    result = run(project, "validate")
    assert result.exit_code == 1
    assert "policies/patch.yaml:6 approvals[0].match.names[0]: " in result.output
    assert "Traceback" not in result.output


def test_status_covers_patched_hosts_only_and_windows_use_the_site_zone(
    project: Path,
) -> None:
    from mspauto.config import Settings
    from mspauto.patching.apply import patched_hosts
    from mspauto.project import load_project

    (project / "inventory" / "initech.yaml").write_text(
        CLIENT.replace(
            "hosts:\n",
            "sites: {berlin: {display_name: Berlin, timezone: Europe/Berlin}}\nhosts:\n"
            "  initech-sw01: {address: 127.0.0.2, platform: network}\n"
            "  initech-db01: {address: 127.0.0.3, site: berlin}\n",
        )
    )
    loaded = load_project(Settings.load(project))
    assert not loaded.errors, loaded.errors
    client = loaded.inventory.clients["initech"]
    names = [h.name for h in patched_hosts(loaded, list(client.hosts.values()))]
    assert sorted(names) == ["initech-db01", "initech-web01"]  # not the switch
    assert client.timezone_of(client.hosts["initech-db01"]) == "Europe/Berlin"
    assert client.timezone_of(client.hosts["initech-web01"]) == "America/Chicago"
