"""restic facts: every state as restic 0.14 printed it (recorded in the lab image, see
tests/fixtures/backup/restic/0.14/README.md) and as 0.17/0.18 print it (copied from the
vendor's docs and public issues, see tests/fixtures/backup/restic/sourced/README.md);
the generated commands run under sh against a stub restic."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mspauto.backup import restic
from mspauto.backup.facts import JobFacts
from mspauto.backup.probe import CAPTURE_FUNCTION, Captured, read_captures

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "backup"
RECORDED = FIXTURES / "restic" / "0.14"
SOURCED = FIXTURES / "restic" / "sourced"


def _load(path: Path) -> dict[str, Captured]:
    document = json.loads(path.read_text())
    return {name: Captured(**fields) for name, fields in document["captures"].items()}


def _recorded(state: str) -> JobFacts:
    return restic.parse(_load(RECORDED / f"{state}.json"))


def _sourced(name: str) -> JobFacts:
    return restic.parse(_load(SOURCED / f"{name}.json"))


def test_the_newest_snapshot_is_read_in_utc_and_all_are_counted() -> None:
    facts = _recorded("healthy")
    assert facts.problem is None and facts.warnings == ()
    assert facts.count == 2
    assert facts.latest is not None
    # Made with TZ=Pacific/Auckland at 14:00 local: restic printed +12:00.
    assert (
        '"time":"2025-06-01T14:00:00+12:00"' in _load(RECORDED / "healthy.json")["snapshots"].stdout
    )
    assert facts.latest.time == datetime(2025, 6, 1, 2, 0, tzinfo=UTC)
    assert facts.latest.time.utcoffset() is not None and not facts.latest.time.utcoffset()
    assert facts.latest.name == "b93a7bb7"
    assert facts.last_success == facts.latest.time
    # 0.14 snapshots carry no summary: no size, no file count.
    assert (facts.latest.size_bytes, facts.latest.files) == (None, None)
    assert facts.integrity is not None and facts.integrity.ok
    assert facts.integrity.message == "no errors were found"


def test_an_empty_repository_has_no_snapshot_and_is_not_a_problem() -> None:
    facts = _recorded("empty")
    assert (facts.latest, facts.count, facts.problem) == (None, 0, None)
    assert facts.integrity is not None and facts.integrity.ok


@pytest.mark.parametrize(
    ("state", "kind", "words"),
    [
        ("wrong-password", "wrong-password", "wrong password or no key found"),
        ("empty-password", "wrong-password", "an empty password is not a password"),
        ("missing", "no-repository", "stat /t/restic/missing/config: no such file"),
        ("not-a-repository", "no-repository", "not-a-repository/config: no such file"),
        ("tool-missing", "tool-missing", "restic: not found"),
        ("permission-denied", "error", "open /t/restic/healthy/keys: permission denied"),
    ],
)
def test_restic_0_14_failures_exit_1_and_are_told_apart_by_message(
    state: str, kind: str, words: str
) -> None:
    document = json.loads((RECORDED / f"{state}.json").read_text())
    if state != "tool-missing":
        assert document["captures"]["snapshots"]["rc"] == 1
    facts = _recorded(state)
    assert facts.problem is not None
    assert facts.problem.kind == kind
    assert words in facts.problem.message
    assert "\n" not in facts.problem.message
    assert facts.latest is None and facts.integrity is None


@pytest.mark.parametrize("state", ["locked", "backup-running"])
def test_a_held_lock_stops_the_check_but_not_the_listing(state: str) -> None:
    facts = _recorded(state)
    assert facts.problem is not None and facts.problem.kind == "locked"
    assert "repository is already locked" in facts.problem.message
    assert facts.integrity is None
    # --no-lock: the snapshots are read while another restic holds the lock.
    assert facts.latest is not None and facts.latest.name == "b93a7bb7"
    assert facts.count == (3 if state == "locked" else 2)


def test_an_exclusive_lock_is_named_as_such() -> None:
    problem = _recorded("locked").problem
    assert problem is not None
    assert "locked exclusively by PID" in problem.message
    assert "unlock" not in problem.message


def test_a_damaged_config_is_unreadable_and_fails_the_check() -> None:
    """restic 0.14 panics in LoadConfig (exit 2): the repository is there, unusable."""
    assert _load(RECORDED / "damaged-config.json")["snapshots"].rc == 2
    facts = _recorded("damaged-config")
    assert facts.problem is not None
    assert facts.problem.kind == "unreadable"
    assert facts.problem.message.startswith(
        "restic snapshots crashed loading the repository config: runtime error: slice bounds"
    )
    assert facts.integrity is not None and not facts.integrity.ok
    assert "config" in facts.integrity.message


def test_a_corrupt_tree_fails_the_check_with_restic_s_finding() -> None:
    facts = _recorded("corrupt-tree")
    assert facts.problem is None and facts.latest is not None
    assert facts.integrity is not None and not facts.integrity.ok
    assert facts.integrity.message.startswith("restic check: repository contains errors; ")
    assert "ciphertext verification failed" in facts.integrity.message


def test_corrupt_file_data_is_found_only_when_data_is_read() -> None:
    plain = _recorded("corrupt-data")
    assert plain.integrity is not None and plain.integrity.ok
    read = _recorded("corrupt-data-read")
    assert read.integrity is not None and not read.integrity.ok
    assert "Pack ID does not match" in read.integrity.message


def test_a_hostile_repository_path_was_read_as_one_path() -> None:
    facts = _recorded("hostile-path")
    assert facts.problem is None and facts.count == 2
    script = json.loads((RECORDED / "hostile-path.json").read_text())["script"]
    assert "--repo=/t/restic/it'\"'\"'s a $(touch pwned) `touch pwned` repo'" in script


def test_summary_of_0_17_gives_size_and_files_and_nanoseconds_are_read() -> None:
    facts = _sourced("0.17.3-snapshots-with-summary")
    assert facts.latest is not None
    assert facts.latest.time == datetime(2025, 3, 11, 7, 0, 1, 664908, tzinfo=UTC)
    assert (facts.latest.name, facts.latest.files, facts.latest.size_bytes) == (
        "490d1990",
        1,
        7941120,
    )
    assert facts.count == 1


@pytest.mark.parametrize(
    ("name", "kind", "words"),
    [
        ("0.17.3-missing", "no-repository", "repository does not exist: unable to open config"),
        ("0.17.0-wrong-password", "wrong-password", "wrong password or no key found"),
        ("0.17.1-wrong-password", "wrong-password", "wrong password or no key found"),
        ("0.18-wrong-password-json", "wrong-password", "wrong password or no key found"),
        ("0.18-locked-json", "locked", "already locked by PID 20442 on Squidlet"),
    ],
)
def test_newer_restic_failures(name: str, kind: str, words: str) -> None:
    facts = _sourced(name)
    assert facts.problem is not None
    assert (facts.problem.kind, words in facts.problem.message) == (kind, True)
    assert "message_type" not in facts.problem.message


def test_a_lock_held_against_a_0_18_check_keeps_the_listing() -> None:
    facts = _sourced("0.18-locked-json")
    assert facts.latest is not None and facts.latest.name == "490d1990"


def test_a_damaged_index_fails_a_0_17_check() -> None:
    facts = _sourced("0.17.3-check-index-damaged")
    assert facts.problem is None
    assert facts.integrity is not None and not facts.integrity.ok
    assert "invalid data returned" in facts.integrity.message


@pytest.mark.parametrize(
    ("rc", "stderr", "kind"),
    [
        (10, "Fatal: something new\n", "no-repository"),
        (11, "Fatal: something new\n", "locked"),
        (12, "Fatal: something new\n", "wrong-password"),
        (1, "Fatal: something new\n", "error"),
        (130, "", "error"),
    ],
)
def test_the_exit_codes_of_0_17_decide_whatever_the_words(rc: int, stderr: str, kind: str) -> None:
    facts = restic.parse({"snapshots": Captured(rc, "", stderr)})
    assert facts.problem is not None and facts.problem.kind == kind


@pytest.mark.parametrize(
    "captured",
    [
        {},
        {"snapshots": Captured(None, "", "could not make a temporary file")},
        {"snapshots": Captured(0, "", "")},
        {"snapshots": Captured(0, "Fatal: not json", "")},
        {"snapshots": Captured(0, '{"time": 1}', "")},
        {"snapshots": Captured(0, '[{"time": "yesterday", "short_id": "x"}, 3]', "")},
    ],
)
def test_output_in_no_known_shape_is_a_problem_never_an_exception(
    captured: dict[str, Captured],
) -> None:
    facts = restic.parse(captured)
    assert facts.latest is None
    assert facts.problem is not None or facts.warnings


def test_the_password_reaches_restic_s_environment_never_the_script_or_argv(
    tmp_path: Path,
) -> None:
    password = "s3cret-$(touch leaked) 'quoted'"
    script = CAPTURE_FUNCTION + restic.commands(
        0, "/srv/restic", secret="MSPAUTO_SECRET_0", check=True, read_data_subset="5%"
    )
    assert "${MSPAUTO_SECRET_0}" in script and "s3cret" not in script
    captured = _run_with_stub(tmp_path, script, {"MSPAUTO_SECRET_0": password})
    assert captured["snapshots"].stderr == password
    assert password not in captured["snapshots"].stdout
    assert _argv(captured["check"]) == [
        "--repo=/srv/restic",
        "--no-cache",
        "check",
        "--read-data-subset=5%",
    ]
    assert not (tmp_path / "leaked").exists()


@pytest.mark.parametrize(
    "repository",
    [
        "/srv/it's a $(touch pwned) `touch pwned` repo",
        'sftp:backup@host:/srv/"quoted" path',
        "-r /tmp/other",
        "/srv/line\nbreak",
    ],
)
def test_a_repository_path_stays_one_word(tmp_path: Path, repository: str) -> None:
    script = CAPTURE_FUNCTION + restic.commands(3, repository, secret="S", check=False)
    captured = _run_with_stub(tmp_path, script, {"S": "x"})
    assert set(captured) == {"snapshots"}
    assert _argv(captured["snapshots"]) == [
        f"--repo={repository}",
        "--no-cache",
        "--no-lock",
        "--json",
        "snapshots",
    ]
    assert not (tmp_path / "pwned").exists()


def test_the_recorded_probe_output_reads_back_as_the_fixtures() -> None:
    """Every recorded state of the main probe, decoded from the probe's raw output."""
    records = read_captures((FIXTURES / "probe.txt").read_text())
    checked = 0
    for path in sorted(RECORDED.glob("*.json")):
        document = json.loads(path.read_text())
        if document["probe"] != "main":
            continue
        own = {name: c for (job, name), c in records.items() if job == document["job"]}
        assert own == _load(path), path.name
        assert restic.parse(own) == restic.parse(_load(path))
        checked += 1
    assert checked == 13


def _run_with_stub(tmp_path: Path, script: str, secrets: dict[str, str]) -> dict[str, Captured]:
    """Run the probe lines with a ``restic`` on PATH that prints its argv (NUL after
    each word) on stdout and its RESTIC_PASSWORD on stderr."""
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "restic").write_text(
        '#!/bin/sh\nfor word in "$@"; do printf \'%s\\0\' "$word"; done\n'
        "printf '%s' \"$RESTIC_PASSWORD\" >&2\n"
    )
    (stub / "restic").chmod(0o755)
    done = subprocess.run(
        ["sh", "-c", script],
        env={"PATH": f"{stub}:/usr/bin:/bin", **secrets},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    return {name: c for (_, name), c in read_captures(done.stdout).items()}


def _argv(captured: Captured) -> list[str]:
    return captured.stdout.split("\0")[:-1]
