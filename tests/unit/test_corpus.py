"""Broken inventory and policy files: each gets its own one-line error at the right place.

Every file in ``tests/corpus/cases/`` is dropped into a copy of the valid project in
``tests/corpus/base/`` at the path its ``# target:`` header names; ``mspauto validate``
must then fail with exactly the ``# expect:`` lines as its errors (no traceback, no
other error). Before that, ``# remove: PATH`` deletes a file of the base project and
``# link: PATH -> TARGET`` makes a symbolic link (TARGET as written: relative to the
link's folder, or absolute).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from mspauto.cli import cli

CORPUS = Path(__file__).parent.parent / "corpus"
CASES = sorted((CORPUS / "cases").glob("*.yaml"))
# Waiver expiry is judged as of this day, so the cases do not age.
AS_OF = "2026-11-26"


def _header(case: Path, key: str) -> list[str]:
    prefix = f"# {key}: "
    return [
        line[len(prefix) :].rstrip("\n")
        for line in case.read_text().splitlines()
        if line.startswith(prefix)
    ]


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30


def test_base_project_is_valid(tmp_path: Path) -> None:
    shutil.copytree(CORPUS / "base", tmp_path / "project")
    result = CliRunner().invoke(
        cli, ["--project", str(tmp_path / "project"), "validate", "--as-of", AS_OF]
    )
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_broken_file_gets_its_error(case: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(CORPUS / "base", project)
    targets = _header(case, "target")
    expected = _header(case, "expect")
    assert len(targets) == 1 and expected, f"{case.name} needs '# target:' and '# expect:'"
    for removed in _header(case, "remove"):
        (project / removed).unlink()
    for link in _header(case, "link"):
        path, _, points_to = link.partition(" -> ")
        (project / path).parent.mkdir(parents=True, exist_ok=True)
        (project / path).symlink_to(points_to)
    target = project / targets[0]
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(case, target)

    result = CliRunner().invoke(cli, ["--project", str(project), "validate", "--as-of", AS_OF])

    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    errors = [
        line
        for line in result.stderr.splitlines()
        if line and "warning:" not in line and not line.startswith("FAILED")
    ]
    assert sorted(errors) == sorted(expected)
