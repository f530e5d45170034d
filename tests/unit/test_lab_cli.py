"""``mspauto lab`` refuses clearly where it cannot work, and never touches other folders."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mspauto.cli import cli

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the lab is Linux only")


def test_without_root_the_lab_refuses_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    for args in (["up"], ["down"], ["fault", "stop", "acme-lab01"]):
        result = CliRunner().invoke(cli, ["lab", *args, "--dir", str(tmp_path / "lab")])
        assert result.exit_code == 1, args
        assert result.stderr == (
            "error: the lab needs root (it mounts filesystems and creates namespaces)\n"
        )
    assert not (tmp_path / "lab").exists()


def test_status_of_no_lab(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["lab", "status", "--dir", str(tmp_path / "none")])
    assert result.exit_code == 0
    assert result.stdout == f"no lab in {tmp_path / 'none'}\n"


def test_only_loopback_addresses_are_accepted(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the root check comes first")
    result = CliRunner().invoke(
        cli, ["lab", "up", "--first-address", "192.0.2.10", "--dir", str(tmp_path / "lab")]
    )
    assert result.exit_code == 1
    assert "lab addresses must stay inside 127.0.0.0/8" in result.stderr


def test_down_touches_nothing_in_a_folder_that_is_not_a_lab(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to get past the root check")
    keep = tmp_path / "hosts" / "precious.txt"
    keep.parent.mkdir()
    keep.write_text("mine")
    result = CliRunner().invoke(cli, ["lab", "down", "--dir", str(tmp_path)])
    assert result.exit_code == 0
    assert result.stdout == f"no lab in {tmp_path}\n"
    assert keep.read_text() == "mine"
