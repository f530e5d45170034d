"""Shared fixtures: scratch projects, and the lab fleet (up once per session)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from mspauto.lab.fleet import Lab
from mspauto.lab.system import mounts_under
from mspauto.lab.testing import lab_unavailable, running_lab

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def example_project(tmp_path: Path) -> Path:
    """A scratch copy of the repository's example project (inventory/ and policies/)."""
    project = tmp_path / "example"
    project.mkdir()
    shutil.copytree(REPO / "inventory", project / "inventory")
    shutil.copytree(REPO / "policies", project / "policies")
    return project


@pytest.fixture
def empty_project(tmp_path: Path) -> Path:
    """A project with one contract ('std') and no client yet."""
    project = tmp_path / "empty"
    (project / "inventory").mkdir(parents=True)
    (project / "policies").mkdir()
    (project / "policies" / "contract.yaml").write_text("kind: contract\nname: std\n")
    return project


LAB_HOSTS = 14  # every baseline x backup state on both clients, plus the three faults


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A 14-host lab over acme and globex, with faults, on 127.0.100.10 and up."""
    reason = lab_unavailable()
    if reason:
        pytest.skip(f"lab unavailable: {reason}")
    directory = tmp_path_factory.mktemp("lab") / "fleet"
    with running_lab(directory, LAB_HOSTS, ["acme", "globex"]) as fleet:
        yield fleet
    assert not mounts_under(directory), "lab down left mounts behind"
