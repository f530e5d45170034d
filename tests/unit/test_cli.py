"""The command line as a user meets it: help, exit codes, one-line errors, JSON output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from mspauto.cli import cli

HEAVY_MODULES = (
    "pydantic",
    "yaml",
    "ansible",
    "ansible_runner",
    "paramiko",
    "nornir",
    "rich",
    "croniter",
    "winrm",
)


def _all_command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    ctx = click.Context(group)
    paths = [prefix]
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        if isinstance(command, click.Group):
            paths += _all_command_paths(command, (*prefix, name))
        else:
            paths.append((*prefix, name))
    return paths


COMMANDS = _all_command_paths(cli)


def run(project: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--project", str(project), *args])


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) or "mspauto" for p in COMMANDS])
def test_help_explains_itself_without_loading_heavy_libraries(path: tuple[str, ...]) -> None:
    code = (
        "import sys\n"
        "from mspauto.cli import main\n"
        f"sys.argv = ['mspauto', *{list(path)!r}, '--help']\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    assert exit.code == 0, exit.code\n"
        f"print([m for m in {HEAVY_MODULES!r} if m in sys.modules])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    *help_lines, loaded = result.stdout.strip().splitlines()
    assert loaded == "[]", f"--help imported {loaded}"
    help_text = "\n".join(help_lines)
    assert "Usage: mspauto" in help_text
    assert len(help_text) > 150


def test_validate_the_examples(example_project: Path) -> None:
    result = run(example_project, "validate")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].startswith("acme ")
    assert "OK: 2 clients, 15 hosts, 12 policies; 0 errors, 0 warnings" in result.stdout


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("mysql://u@127.0.0.1/e", "mysql://u@127.0.0.1/e: evidence is kept only in SQLite or"),
        ("postgresql+nosuch://u:pw@127.0.0.1/e", "postgresql+nosuch://u:***@127.0.0.1/e: "),
        ("not a url", "'not a url' is not a database URL; use sqlite:///PATH or"),
    ],
)
def test_validate_refuses_an_evidence_store_no_command_could_open(
    example_project: Path, monkeypatch: pytest.MonkeyPatch, url: str, why: str
) -> None:
    monkeypatch.setenv("MSPAUTO_EVIDENCE_URL", url)
    result = run(example_project, "validate")
    assert result.exit_code == 1
    [line] = [line for line in result.stderr.splitlines() if "MSPAUTO_EVIDENCE_URL" in line]
    assert line.startswith(f"$MSPAUTO_EVIDENCE_URL: {why}"), line
    assert "1 error" in result.stderr


def test_validate_json(example_project: Path) -> None:
    data = json.loads(run(example_project, "validate", "--format", "json").stdout)
    assert data["ok"] is True
    assert [c["client"] for c in data["clients"]] == ["acme", "globex"]
    assert data["clients"][1]["platforms"] == {"debian": 3, "windows": 2, "rhel": 1}


def test_waiver_expiry_warns_then_fails(example_project: Path) -> None:
    soon = run(example_project, "validate", "--as-of", "2027-03-25")
    assert soon.exit_code == 0
    assert (
        "policies/waivers/acme-fw-ssh.yaml:10 expires: warning: waiver expires in 6 days "
        "(2027-03-31); renew it or plan the fix"
    ) in soon.stderr
    assert run(example_project, "validate", "--as-of", "2027-03-25", "--strict").exit_code == 1
    lapsed = run(example_project, "validate", "--as-of", "2027-04-01")
    assert lapsed.exit_code == 1
    assert "waiver expired on 2027-03-31" in lapsed.stderr


def test_inventory_list_json_and_client_filter(example_project: Path) -> None:
    hosts = json.loads(
        run(example_project, "inventory", "list", "--client", "globex", "--format", "json").stdout
    )
    assert [h["name"] for h in hosts][:2] == ["globex-app01", "globex-app02"]
    assert {h["client"] for h in hosts} == {"globex"}
    table = run(example_project, "inventory", "list")
    assert table.exit_code == 0
    assert "acme-backup01" in table.stdout and table.stdout.rstrip().endswith("15 hosts")


def test_unknown_client_is_one_line(example_project: Path) -> None:
    result = run(example_project, "inventory", "list", "--client", "acm")
    assert result.exit_code == 1
    assert result.stderr == "error: unknown client 'acm' (clients: acme, globex)\n"


def test_show_host_tells_where_each_value_came_from(example_project: Path) -> None:
    result = run(example_project, "inventory", "show", "acme-backup01")
    assert result.exit_code == 0
    assert "mail_relay = 'smtp-dr.acme.example'   [site:nj-dr]" in result.stdout
    assert "backup01.nj.acme.example:2222" in result.stdout
    data = json.loads(
        run(example_project, "inventory", "show", "acme-backup01", "--format", "json").stdout
    )
    assert data["origins"]["port"] == "host"
    assert {p["name"] for p in data["policies"]} == {
        "linux-monthly",
        "cis-linux",
        "acme-legacy-ftp-root",
    }


def test_show_unknown_host_suggests(example_project: Path) -> None:
    result = run(example_project, "inventory", "show", "acme-web1")
    assert result.exit_code == 1
    assert result.stderr == "error: no host named 'acme-web1' (did you mean 'acme-web01'?)\n"


def test_commands_refuse_a_broken_project(example_project: Path) -> None:
    acme = example_project / "inventory" / "acme.yaml"
    acme.write_text(
        acme.read_text().replace("timezone: America/New_York", "timezone: America/NewYork")
    )
    result = run(example_project, "inventory", "list")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "inventory/acme.yaml:6 client.timezone: 'America/NewYork' is not an IANA time zone "
        "(did you mean 'America/New_York'?)",
        "error: 1 error in the project files; fix them first ('mspauto validate' lists them)",
    ]


def test_policy_list_and_schema(example_project: Path) -> None:
    rows = json.loads(run(example_project, "policy", "list", "--format", "json").stdout)
    patch = next(r for r in rows if r["name"] == "linux-monthly")
    assert patch["hosts"] == 8 and patch["schedule"] == "0 1 * * sat (client)"
    acme_only = json.loads(
        run(example_project, "policy", "list", "--client", "acme", "--format", "json").stdout
    )
    assert "globex-backups" not in {r["name"] for r in acme_only}
    assert "standard" in {r["name"] for r in acme_only}
    schema = json.loads(run(example_project, "policy", "schema", "--kind", "patch").stdout)
    assert schema["title"] == "mspauto patch policy"
    assert "approvals" in schema["properties"]


def test_missing_project_folders_are_explained(tmp_path: Path) -> None:
    result = run(tmp_path, "validate")
    assert result.exit_code == 1
    assert "inventory: inventory folder not found" in result.stderr
    assert "policies: policies folder not found" in result.stderr


def test_runs_and_verify_before_any_run(example_project: Path) -> None:
    listed = run(example_project, "runs", "list", "--format", "json")
    assert listed.exit_code == 0 and json.loads(listed.stdout) == []
    verified = run(example_project, "evidence", "verify")  # an auditor expects evidence
    assert verified.exit_code == 1
    assert verified.stderr.startswith("error: no evidence to verify in sqlite:///")
    assert not (example_project / ".state" / "evidence.db").exists()  # reading creates nothing
    unknown = run(example_project, "runs", "show", "abc")
    assert unknown.exit_code == 1 and unknown.stderr == "error: no run 'abc'\n"


def test_validate_names_a_witness_copy_setting_no_command_could_use(
    example_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MSPAUTO_WITNESS_SYSLOG", "bogus")
    result = run(example_project, "validate")
    assert result.exit_code == 1
    assert (
        "$MSPAUTO_WITNESS_SYSLOG: 'bogus' is not unix:PATH, udp:HOST[:PORT] or tcp:HOST[:PORT]"
    ) in result.stderr.splitlines()


def test_validate_names_a_queue_wait_that_is_not_seconds(
    example_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MSPAUTO_QUEUE_WAIT", "ten minutes")
    result = run(example_project, "validate")
    assert result.exit_code == 1
    assert (
        "$MSPAUTO_QUEUE_WAIT: 'ten minutes' is not a number of seconds over 0 (e.g. 600)"
    ) in result.stderr.splitlines()


def test_distributed_remediation_without_a_broker_says_so_in_one_line(
    example_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MSPAUTO_BROKER_URL", raising=False)
    result = run(example_project, "baseline", "--client", "acme", "--remediate", "--distributed")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: a distributed run needs the broker: ")
    assert len(result.stderr.splitlines()) == 1


def test_a_worker_without_the_signing_key_starts_only_when_told(
    example_project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MSPAUTO_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("MSPAUTO_BROKER_URL", "amqp://guest:guest@127.0.0.1:1//")
    monkeypatch.setenv("MSPAUTO_EVIDENCE_URL", "postgresql+psycopg://postgres@127.0.0.1:1/x")
    result = run(example_project, "worker")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no signing key at ")
    assert "start it with --unsigned knowingly" in result.stderr
