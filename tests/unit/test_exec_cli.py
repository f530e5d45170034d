"""``mspauto exec`` argument handling: what reaches the host is exactly what was typed.

The scratch project's hosts are ``connection: local``, so each command really runs on
this machine (harmless ones only); a command that should not run leaves no trace.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from mspauto.cli import cli
from mspauto.config import Settings
from mspauto.evidence.runs import list_runs
from mspauto.evidence.store import EvidenceStore


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Two clients of two local hosts each; commands run in a scratch working folder."""
    root = tmp_path / "project"
    (root / "inventory").mkdir(parents=True)
    (root / "policies").mkdir()
    (root / "policies" / "c.yaml").write_text("kind: contract\nname: std\n")
    for client in ("acme", "globex"):
        document = {
            "client": {
                "name": client,
                "display_name": client,
                "timezone": "UTC",
                "contract": "std",
                "platform": "debian",
                "connection": "local",
            },
            "hosts": {f"{client}-{i:03d}": {} for i in range(2)},
        }
        (root / "inventory" / f"{client}.yaml").write_text(yaml.safe_dump(document))
    for name in ("MSPAUTO_INVENTORY", "MSPAUTO_POLICIES", "MSPAUTO_EVIDENCE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MSPAUTO_STATE_DIR", str(tmp_path / "state"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    yield root


def exec_(project: Path, *args: str) -> Result:
    """``mspauto exec --format json ARGS`` in-process."""
    return CliRunner().invoke(cli, ["--project", str(project), "exec", "--format", "json", *args])


def results(result: Result) -> dict[str, dict[str, Any]]:
    """A successful run's results by host."""
    assert result.exit_code == 0, (result.exit_code, result.output)
    return {r["host"]: r for r in json.loads(result.stdout)["results"]}


def recorded_commands(project: Path) -> list[str]:
    """The command of every run in the evidence store, as recorded."""
    store = EvidenceStore(Settings.load(project).evidence_url)
    try:
        return [run.command for run in list_runs(store)]
    finally:
        store.close()


def assert_rejected(result: Result, project: Path, message: str) -> None:
    """Exit 1 (not 2, which means "some hosts failed"), one error line, nothing run."""
    assert result.exit_code == 1, (result.exit_code, result.output)
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr
    assert not (Settings.load(project).state_dir / "evidence.db").exists()
    assert os.listdir() == []


def test_each_word_reaches_the_host_as_one_argument(project: Path) -> None:
    output = results(exec_(project, "--client", "acme", "--", "printf", r"%s\n", "a;b"))
    assert [r["stdout"] for r in output.values()] == ["a;b\n", "a;b\n"]
    assert recorded_commands(project) == [r"printf '%s\n' 'a;b'"]


def test_shell_syntax_in_a_word_is_not_run(project: Path) -> None:
    results(exec_(project, "--client", "acme", "--hosts", "acme-000", "--", "touch", "x;touch y"))
    assert os.listdir() == ["x;touch y"]


def test_options_after_the_command_belong_to_the_command(project: Path) -> None:
    output = results(exec_(project, "--client", "acme", "echo", "hi", "--client", "globex"))
    assert set(output) == {"acme-000", "acme-001"}
    assert {r["stdout"] for r in output.values()} == {"hi --client globex\n"}


def test_words_after_the_separator_are_not_options_either(project: Path) -> None:
    output = results(exec_(project, "--client", "acme", "--", "echo", "--", "--hosts", "x"))
    assert {r["stdout"] for r in output.values()} == {"-- --hosts x\n"}


def test_a_misspelled_option_is_an_error_and_nothing_runs(project: Path) -> None:
    result = exec_(project, "--client", "acme", "--host", "acme-000", "touch", "ran")
    assert_rejected(result, project, "No such option '--host'")
    assert "--hosts" in result.stderr  # click's suggestion


@pytest.mark.parametrize(
    "args",
    [(), ("--",), ("--", ""), ("--", "", " "), ("--shell", ""), ("--shell", "  ")],
    ids=["nothing", "separator only", "empty word", "blank words", "empty shell", "blank shell"],
)
def test_an_empty_command_is_an_error(project: Path, args: tuple[str, ...]) -> None:
    result = exec_(project, "--client", "acme", *args)
    assert_rejected(result, project, "command")


def test_an_option_after_the_separator_is_an_error(project: Path) -> None:
    result = exec_(project, "--client", "acme", "--", "--hosts", "acme-000", "touch", "ran")
    assert_rejected(result, project, "looks like an option")


def test_shell_runs_a_string_as_written(project: Path) -> None:
    script = "echo one; echo two | tr o 0 && touch made"
    output = results(exec_(project, "--client", "acme", "--hosts", "acme-000", "--shell", script))
    assert output["acme-000"]["stdout"] == "one\ntw0\n"
    assert os.listdir() == ["made"]
    assert recorded_commands(project) == [script]


def test_shell_and_a_command_together_are_an_error(project: Path) -> None:
    result = exec_(project, "--client", "acme", "--shell", "touch a", "--", "touch", "b")
    assert_rejected(result, project, "not both")


def test_a_bad_option_value_exits_1_not_2(project: Path) -> None:
    result = exec_(project, "--client", "acme", "--timeout", "soon", "--", "touch", "ran")
    assert_rejected(result, project, "Invalid value for '--timeout'")


def test_some_hosts_failing_still_exits_2(project: Path) -> None:
    result = exec_(project, "--client", "acme", "--shell", '[ "$(hostname)" = nowhere ]')
    assert result.exit_code == 2, result.output
