"""file-age facts: states recorded with GNU stat and find of the lab image (see
tests/fixtures/backup/file-age/gnu/README.md), and the generated commands run for real
under sh against files made here."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mspauto.backup import fileage
from mspauto.backup.facts import JobFacts
from mspauto.backup.probe import CAPTURE_FUNCTION, Captured, read_captures

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "backup"
RECORDED = FIXTURES / "file-age" / "gnu"


def _load(path: Path) -> dict[str, Captured]:
    document = json.loads(path.read_text())
    return {name: Captured(**fields) for name, fields in document["captures"].items()}


def _recorded(state: str) -> JobFacts:
    return fileage.parse(_load(RECORDED / f"{state}.json"))


@pytest.mark.parametrize(
    ("state", "path", "changed"),
    [
        # rsnapshot sets daily.0's mtime; the entries keep their sources' older times.
        ("rsnapshot-daily", "/t/file-age/snapshots/daily.0", datetime(2025, 6, 1, 4, 30)),
        # The folder is old, the dump in it was rewritten in place: the dump's time.
        ("rewritten-in-place", "/t/file-age/dumps", datetime(2025, 6, 2, 1, 15)),
        ("file", "/t/file-age/db.sql.gz", datetime(2025, 6, 1, 1, 0)),
        ("empty-folder", "/t/file-age/empty", datetime(2025, 4, 1)),
        ("newline-in-name", "/t/file-age/odd\nname", datetime(2025, 6, 3)),
    ],
)
def test_the_newest_time_of_the_path_and_its_entries(
    state: str, path: str, changed: datetime
) -> None:
    facts = _recorded(state)
    assert facts.problem is None and facts.warnings == ()
    assert facts.latest is not None
    assert (facts.latest.name, facts.latest.time) == (path, changed.replace(tzinfo=UTC))
    assert facts.last_success == facts.latest.time
    assert facts.count is None and facts.integrity is None


def test_a_missing_path_is_no_repository() -> None:
    facts = _recorded("missing")
    assert facts.problem is not None and facts.problem.kind == "no-repository"
    assert "'/t/file-age/nothing-here': No such file or directory" in facts.problem.message
    assert facts.latest is None


def test_a_path_the_probe_may_not_read_leaves_the_job_unchecked() -> None:
    facts = _recorded("permission-denied")
    assert facts.problem is not None and facts.problem.kind == "error"
    assert "Permission denied" in facts.problem.message


def test_a_folder_whose_entries_cannot_be_listed_falls_back_to_its_own_time() -> None:
    facts = _recorded("unlistable-folder")
    assert facts.problem is None and facts.latest is not None
    assert facts.latest.time == datetime(2025, 5, 1, tzinfo=UTC)
    (warning,) = facts.warnings
    assert warning.startswith("/t/file-age/dumps: find exited 1 listing the entries")
    assert "Permission denied" in warning and warning.endswith("the folder's own time is used")


def test_the_recorded_probe_output_reads_back_as_the_fixtures() -> None:
    records = read_captures((FIXTURES / "probe.txt").read_text())
    checked = 0
    for path in sorted(RECORDED.glob("*.json")):
        document = json.loads(path.read_text())
        if document["probe"] != "main":
            continue
        own = {name: c for (job, name), c in records.items() if job == document["job"]}
        assert own == _load(path), path.name
        checked += 1
    assert checked == 6


@pytest.mark.parametrize(
    "name", ["it's a $(touch pwned) `touch pwned` dump", "-newer", "two\nlines", "back\\slash"]
)
def test_hostile_paths_are_read_as_one_path(tmp_path: Path, name: str) -> None:
    """Run for real with the host's stat and find, from the folder holding the path
    (a relative path starting with "-" must not become an option of either)."""
    target = tmp_path / name
    target.mkdir()
    (target / "entry").write_text("x")
    os.utime(target / "entry", (1_700_000_000, 1_700_000_000))
    os.utime(target, (1_600_000_000, 1_600_000_000))
    facts = _probe(tmp_path, name)
    assert facts.problem is None and facts.warnings == ()
    assert facts.latest is not None
    assert facts.latest.name == name
    assert facts.latest.time == datetime.fromtimestamp(1_700_000_000, UTC)
    assert not (tmp_path / "pwned").exists()


def test_a_file_is_its_own_time(tmp_path: Path) -> None:
    dump = tmp_path / "db.sql.gz"
    dump.write_text("x")
    os.utime(dump, (1_717_200_000, 1_717_200_000))
    facts = _probe(tmp_path, str(dump))
    assert facts.latest is not None
    assert facts.latest.time == datetime(2024, 6, 1, 0, 0, tzinfo=UTC)


def test_missing_and_unparsable_answers_are_problems() -> None:
    assert fileage.parse({}).problem is not None
    bad = fileage.parse({"stat": Captured(0, "yesterday directory\n/x\n", "")})
    assert bad.problem is not None and bad.problem.kind == "error"
    missing = fileage.parse({"stat": Captured(127, "", "sh: 1: stat: not found\n")})
    assert missing.problem is not None and missing.problem.kind == "tool-missing"


def _probe(directory: Path, path: str) -> JobFacts:
    script = CAPTURE_FUNCTION + fileage.commands(5, path)
    done = subprocess.run(
        ["sh", "-c", script], cwd=directory, capture_output=True, text=True, check=True
    )
    return fileage.parse({name: c for (_, name), c in read_captures(done.stdout).items()})
