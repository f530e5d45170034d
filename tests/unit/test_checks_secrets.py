"""Secrets on a script's stdin: the prelude skips whatever comes before its marker
(sudo's password, or nothing when sudo needs none), reads each secret whole, and leaves
nothing for the rest of the script to read."""

from __future__ import annotations

import subprocess

import pytest

from mspauto.checks.secrets import MARK, secret_input, secret_variable

SHOW = (
    'printf "[%s]\\n" "$MSPAUTO_SECRET_1" "$MSPAUTO_SECRET_2"; cat; '
    "env | grep -c MSPAUTO_SECRET || true"
)


@pytest.mark.parametrize("before", [b"", b"become-password\n", b"line one\nline two\n"])
def test_the_prelude_reads_exactly_the_secrets(before: bytes) -> None:
    given = secret_input(["  spaced $(id) 'quoted' \\ ", "second"])
    assert b"spaced" not in given.prelude.encode()  # the script names variables only
    done = subprocess.run(
        ["sh", "-c", given.prelude + SHOW],
        input=before + given.stdin + b"left over\n",
        capture_output=True,
        check=True,
    )
    # The marker first (the SSH transport waits for it before it sends the secrets);
    # then each secret whole (spaces, quotes, backslash kept), not exported, and stdin
    # closed after.
    marker, *rest = done.stdout.decode().splitlines()
    assert given.stdin.startswith(f"{marker}\n".encode()) and marker.startswith(MARK)
    assert rest == ["[  spaced $(id) 'quoted' \\ ]", "[second]", "0"]


def test_a_secret_spanning_lines_is_refused() -> None:
    with pytest.raises(ValueError, match="line break"):
        secret_input(["one\ntwo"])
    assert secret_variable(0) == "MSPAUTO_SECRET_1"


def test_each_input_has_its_own_marker() -> None:
    assert secret_input(["x"]).stdin != secret_input(["x"]).stdin
