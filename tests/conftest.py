"""Shared fixtures: scratch projects built from the examples or from nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

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
