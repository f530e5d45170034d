"""borg facts: every state as borg 1.2.4 printed it (recorded in the lab image, see
tests/fixtures/backup/borg/1.2/README.md) and plain-text and modern-exit-code outputs
of other versions (copied from public issues and docs, see .../borg/sourced/README.md);
the generated commands run under sh against a stub borg."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mspauto.backup import borg
from mspauto.backup.facts import JobFacts
from mspauto.backup.probe import CAPTURE_FUNCTION, Captured, read_captures

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "backup"
RECORDED = FIXTURES / "borg" / "1.2"
SOURCED = FIXTURES / "borg" / "sourced"


def _load(path: Path) -> dict[str, Captured]:
    document = json.loads(path.read_text())
    return {name: Captured(**fields) for name, fields in document["captures"].items()}


def _recorded(state: str) -> JobFacts:
    return borg.parse(_load(RECORDED / f"{state}.json"))


def _sourced(name: str) -> JobFacts:
    return borg.parse(_load(SOURCED / f"{name}.json"))


def test_the_newest_archive_and_the_count() -> None:
    facts = _recorded("healthy")
    assert facts.problem is None and facts.warnings == ()
    assert facts.count == 2
    assert facts.latest is not None
    assert facts.latest.name == "lab-2025-06-01"
    # Made with --timestamp 2025-06-01T02:00:00, which borg reads as UTC.
    assert facts.latest.time == datetime(2025, 6, 1, 2, 0, tzinfo=UTC)
    assert facts.last_success == facts.latest.time
    assert (facts.latest.size_bytes, facts.latest.files) == (None, None)
    assert facts.integrity is not None and facts.integrity.ok
    assert facts.integrity.message == "Archive consistency check complete, no problems found."


def test_borg_prints_naive_local_times_so_the_probe_runs_it_in_utc() -> None:
    """The same archives listed in Auckland's zone read 12 hours later: without the
    probe's TZ=UTC, a host's zone would shift every backup's age."""
    utc = _recorded("healthy")
    auckland = _recorded("healthy-auckland")
    assert (
        '"time": "2025-06-01T14:00:00.000000"'
        in _load(RECORDED / "healthy-auckland.json")["list"].stdout
    )
    assert utc.latest is not None and auckland.latest is not None
    assert auckland.latest.time - utc.latest.time == timedelta(hours=12)


def test_an_empty_repository_has_no_archive_and_is_not_a_problem() -> None:
    facts = _recorded("empty")
    assert (facts.latest, facts.count, facts.problem) == (None, 0, None)
    assert facts.integrity is not None and facts.integrity.ok


@pytest.mark.parametrize(
    ("state", "kind", "words"),
    [
        ("wrong-password", "wrong-password", "passphrase supplied in BORG_PASSPHRASE"),
        ("missing", "no-repository", "Repository /t/borg/missing does not exist."),
        ("not-a-repository", "no-repository", "is not a valid repository"),
        ("tool-missing", "tool-missing", "borg: not found"),
        ("permission-denied", "error", "Permission denied: '/t/borg/healthy/config'"),
        ("relocated", "error", "Repository access aborted: Warning: The repository at"),
    ],
)
def test_failures_are_told_apart(state: str, kind: str, words: str) -> None:
    facts = _recorded(state)
    assert facts.problem is not None
    assert facts.problem.kind == kind
    assert words in facts.problem.message
    assert "\n" not in facts.problem.message
    assert facts.latest is None


def test_a_relocated_repository_is_refused_not_waved_through() -> None:
    listing = _load(RECORDED / "relocated.json")["list"]
    assert "no (from BORG_RELOCATED_REPO_ACCESS_IS_OK)" in listing.stderr
    problem = _recorded("relocated").problem
    assert problem is not None
    assert "was previously located at /t/borg/moved-from" in problem.message


def test_a_held_lock_stops_the_check_within_a_second_but_not_the_listing() -> None:
    facts = _recorded("locked")
    assert facts.problem is not None and facts.problem.kind == "locked"
    assert facts.problem.message == (
        "borg check: Failed to create/acquire the lock /t/borg/locked/lock.exclusive (timeout)."
    )
    assert facts.integrity is None
    assert facts.latest is not None and facts.count == 2


def test_a_corrupt_segment_fails_the_check() -> None:
    """borg check exits 1 (its "warning") when it finds errors."""
    assert _load(RECORDED / "corrupt-segment.json")["check"].rc == 1
    facts = _recorded("corrupt-segment")
    assert facts.problem is None and facts.latest is not None
    assert facts.integrity is not None and not facts.integrity.ok
    assert facts.integrity.message.startswith("Data integrity error: Segment entry checksum")


def test_a_damaged_config_is_unreadable_and_fails_the_check() -> None:
    facts = _recorded("damaged-config")
    assert facts.problem is not None and facts.problem.kind == "unreadable"
    assert facts.problem.message == (
        "borg list: configparser.MissingSectionHeaderError: File contains no section headers."
    )
    assert facts.integrity is not None and not facts.integrity.ok


def test_a_hostile_repository_path_was_read_as_one_path() -> None:
    facts = _recorded("hostile-path")
    assert facts.problem is None and facts.count == 2


@pytest.mark.parametrize(
    ("name", "kind", "words"),
    [
        ("1.4-modern-missing", "no-repository", "test_repo_rc_not_created does not exist."),
        ("1.4-modern-not-a-repository", "no-repository", "is not a valid repository"),
        ("1.2.4-wrong-passphrase-plain", "wrong-password", "is incorrect"),
    ],
)
def test_plain_text_and_modern_exit_codes(name: str, kind: str, words: str) -> None:
    facts = _sourced(name)
    assert facts.problem is not None
    assert facts.problem.kind == kind and words in facts.problem.message
    assert "terminating with" not in facts.problem.message


def test_a_plain_text_lock_timeout_stops_the_check() -> None:
    facts = _sourced("1.1-lock-timeout-plain")
    assert facts.problem is not None and facts.problem.kind == "locked"
    assert facts.latest is not None and facts.latest.name == "lab-2025-06-01"


def test_the_documented_listing_has_only_start() -> None:
    facts = _sourced("1.4.1-list-docs-example")
    assert facts.latest is not None
    assert facts.latest.time == datetime(2017, 8, 7, 12, 27, 20, 789123, tzinfo=UTC)


@pytest.mark.parametrize(
    ("rc", "kind"), [(13, "no-repository"), (52, "wrong-password"), (73, "locked"), (2, "error")]
)
def test_modern_exit_codes_decide_when_there_is_no_msgid(rc: int, kind: str) -> None:
    facts = borg.parse({"list": Captured(rc, "", "something borg said\n")})
    assert facts.problem is not None and facts.problem.kind == kind


def test_a_listing_with_a_warning_is_still_used() -> None:
    stderr = json.dumps({"type": "log_message", "levelname": "WARNING", "message": "something odd"})
    stdout = '{"archives": [{"name": "a", "time": "2025-06-01T02:00:00.000000"}]}'
    facts = borg.parse({"list": Captured(1, stdout, stderr + "\n")})
    assert facts.problem is None and facts.count == 1
    assert facts.warnings == ("borg list: something odd",)


def test_an_aware_time_is_converted_not_relabelled() -> None:
    stdout = '{"archives": [{"name": "a", "time": "2025-06-01T14:00:00+12:00"}]}'
    facts = borg.parse({"list": Captured(0, stdout, "")})
    assert facts.latest is not None
    assert facts.latest.time == datetime(2025, 6, 1, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "captured",
    [
        {},
        {"list": Captured(None, "", "could not make a temporary file")},
        {"list": Captured(0, "", "")},
        {"list": Captured(0, "[]", "")},
        {"list": Captured(0, '{"archives": {}}', "")},
        {"list": Captured(0, '{"archives": [{"name": "a", "time": "soon"}, 1]}', "")},
        {"list": Captured(2, "", "{not json\n")},
    ],
)
def test_output_in_no_known_shape_is_a_problem_never_an_exception(
    captured: dict[str, Captured],
) -> None:
    facts = borg.parse(captured)
    assert facts.latest is None
    assert facts.problem is not None or facts.warnings


def test_the_passphrase_and_answers_reach_borg_s_environment_only(tmp_path: Path) -> None:
    passphrase = "s3cret-$(touch leaked) 'quoted'"
    script = CAPTURE_FUNCTION + borg.commands(
        0, "ssh://borg@host/./repo", secret="MSPAUTO_SECRET_0", check=True
    )
    assert "${MSPAUTO_SECRET_0}" in script and "s3cret" not in script
    captured = _run_with_stub(tmp_path, script, {"MSPAUTO_SECRET_0": passphrase, "TZ": "NZ"})
    environment = dict(
        line.split("=", 1) for line in captured["list"].stderr.splitlines() if "=" in line
    )
    assert environment == {
        "BORG_PASSPHRASE": passphrase,
        "TZ": "UTC",
        "BORG_RELOCATED_REPO_ACCESS_IS_OK": "no",
        "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "no",
        "BORG_CHECK_I_KNOW_WHAT_I_AM_DOING": "NO",
    }
    assert _argv(captured["list"]) == [
        "list",
        "--json",
        "--log-json",
        "--bypass-lock",
        "--",
        "ssh://borg@host/./repo",
    ]
    assert _argv(captured["check"]) == [
        "check",
        "--info",
        "--log-json",
        "--lock-wait",
        "1",
        "--",
        "ssh://borg@host/./repo",
    ]
    assert not (tmp_path / "leaked").exists()


def test_an_unencrypted_repository_gets_no_passphrase(tmp_path: Path) -> None:
    script = CAPTURE_FUNCTION + borg.commands(0, "/srv/borg", secret="", check=False)
    assert "BORG_PASSPHRASE" not in script
    captured = _run_with_stub(tmp_path, script, {})
    assert "BORG_PASSPHRASE" not in captured["list"].stderr
    assert "TZ=UTC" in captured["list"].stderr


@pytest.mark.parametrize(
    "repository",
    ["/srv/it's a $(touch pwned) `touch pwned` repo", "--help", '/srv/"q" path\nnext'],
)
def test_a_repository_path_stays_one_word(tmp_path: Path, repository: str) -> None:
    script = CAPTURE_FUNCTION + borg.commands(2, repository, secret="S", check=False)
    captured = _run_with_stub(tmp_path, script, {"S": "x"})
    assert _argv(captured["list"])[-2:] == ["--", repository]
    assert not (tmp_path / "pwned").exists()


def test_an_archive_is_not_a_repository() -> None:
    with pytest.raises(ValueError, match="not an archive"):
        borg.commands(0, "/srv/borg::host-2025-06-01", secret="S", check=False)


def test_the_recorded_probe_output_reads_back_as_the_fixtures() -> None:
    records = read_captures((FIXTURES / "probe.txt").read_text())
    checked = 0
    for path in sorted(RECORDED.glob("*.json")):
        document = json.loads(path.read_text())
        if document["probe"] != "main":
            continue
        own = {name: c for (job, name), c in records.items() if job == document["job"]}
        assert own == _load(path), path.name
        assert borg.parse(own) == borg.parse(_load(path))
        checked += 1
    assert checked == 11


def _run_with_stub(tmp_path: Path, script: str, environment: dict[str, str]) -> dict[str, Captured]:
    """Run the probe lines with a ``borg`` on PATH that prints its argv (NUL after each
    word) on stdout and the variables borg reads on stderr."""
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "borg").write_text(
        '#!/bin/sh\nfor word in "$@"; do printf \'%s\\0\' "$word"; done\n'
        "env | grep -E '^(BORG_|TZ=)' >&2\n"
    )
    (stub / "borg").chmod(0o755)
    done = subprocess.run(
        ["sh", "-c", script],
        env={"PATH": f"{stub}:/usr/bin:/bin", **environment},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    return {name: c for (_, name), c in read_captures(done.stdout).items()}


def _argv(captured: Captured) -> list[str]:
    return captured.stdout.split("\0")[:-1]
