"""The apt probe's output, parsed: fixtures recorded from lab hosts (see
tests/fixtures/patching/apt/SOURCE.md) and single lines in the shapes real hosts print."""

from __future__ import annotations

from pathlib import Path

import pytest

from mspauto.patching.apt import is_security_origin, parse, release_of
from mspauto.patching.facts import HostPatchFacts

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "patching" / "apt"


def _facts(name: str) -> HostPatchFacts:
    return parse((FIXTURES / name).read_text(), "", 0)


def test_a_planted_host_lists_every_pending_update_with_its_origin() -> None:
    facts = _facts("lab-planted.txt")
    assert facts.problem is None and not facts.warnings
    by_name = {u.name: u for u in facts.updates}
    assert sorted(by_name) == [
        "lab-editor",
        "lab-kernel",
        "lab-openssl",
        "lab-tools",
        "lab-webserver",
    ]
    openssl = by_name["lab-openssl"]
    assert (openssl.installed, openssl.candidate) == ("3.0.11-1", "3.0.11-1+deb12u2")
    assert openssl.source == "Debian-Security:bookworm-security"
    assert openssl.classification == "security"
    assert openssl.severity == "unrated" and openssl.severity_source is None
    assert openssl.source_package == "lab-openssl"
    assert by_name["lab-tools"].classification == "other"
    assert sorted(n for n, u in by_name.items() if u.security) == [
        "lab-kernel",
        "lab-openssl",
        "lab-webserver",
    ]
    # A namespace host has no kernel in /boot and no reboot-required file: unknown.
    assert facts.reboot_pending is None
    assert "cannot tell" in facts.reboot_reason
    assert release_of((FIXTURES / "lab-planted.txt").read_text()) == ("debian", "bookworm")


def test_a_stock_host_has_nothing_pending() -> None:
    facts = _facts("lab-stock.txt")
    assert facts.problem is None
    assert facts.updates == () and facts.held == ()


def test_a_lock_that_stays_held_is_one_clear_reason() -> None:
    facts = _facts("lab-lock-held.txt")
    assert facts.updates == ()
    assert facts.problem is not None
    assert facts.problem.startswith(
        "the package lock /var/lib/apt/lists/lock stayed held by process"
    )
    assert "(python3)" in facts.problem


def test_a_held_package_is_still_seen_and_a_dead_source_is_a_warning() -> None:
    facts = _facts("lab-held-and-unreachable-source.txt")
    assert facts.held == ("lab-tools",)
    assert "lab-tools" in {u.name for u in facts.updates}
    assert facts.problem is None
    (warning,) = facts.warnings
    assert "could not be refreshed" in warning and "127.0.0.1:9" in warning


def test_reboot_required_file_names_the_packages() -> None:
    assert _facts("lab-reboot-required.txt").reboot_pending is True
    facts = _facts("lab-up-to-date.txt")
    assert facts.updates == ()
    assert facts.reboot_pending is True
    assert facts.reboot_reason == "/run/reboot-required exists (lab-kernel)"


def _probe(inst: str = "", reboot: str = "", update: str = "0 0") -> str:
    return (
        "@@mspauto apt-facts 1\n"
        f"@@mspauto update {update}\n"
        "@@mspauto simulate 0\n"
        f"{inst}"
        "@@mspauto sources\n@@mspauto held\n@@mspauto os\ndebian bookworm\n"
        f"@@mspauto reboot\n{reboot}"
        "@@mspauto end\n"
    )


@pytest.mark.parametrize(
    ("line", "name", "installed", "candidate", "security"),
    [
        # Ubuntu lists -updates and -security in one line: any security origin counts.
        # (Shape as pasted in public threads, e.g. Ubuntu 22.04 vim 2:8.2.3995-1ubuntu2.18.)
        (
            "Inst vim [2:8.2.3995-1ubuntu2.16] (2:8.2.3995-1ubuntu2.18 Ubuntu:22.04/jammy-updates,"
            " Ubuntu:22.04/jammy-security [amd64]) []",
            "vim",
            "2:8.2.3995-1ubuntu2.16",
            "2:8.2.3995-1ubuntu2.18",
            True,
        ),
        # A package the upgrade adds has no installed version.
        (
            "Inst linux-headers-5.15.0-69 (5.15.0-69.76 Ubuntu:22.04/jammy-updates,"
            " Ubuntu:22.04/jammy-security [all])",
            "linux-headers-5.15.0-69",
            None,
            "5.15.0-69.76",
            True,
        ),
        (
            "Inst iproute2 [5.15.0-1ubuntu2.1] (5.15.0-1ubuntu2.2 Ubuntu:22.04/jammy-updates"
            " [amd64])",
            "iproute2",
            "5.15.0-1ubuntu2.1",
            "5.15.0-1ubuntu2.2",
            False,
        ),
        # Debian: the point release and the security archive, arch-qualified name.
        (
            "Inst openssh-server:amd64 [1:9.2p1-2+deb12u3] (1:9.2p1-2+deb12u5"
            " Debian:12.15/oldstable, Debian-Security:12/stable-security [amd64])",
            "openssh-server:amd64",
            "1:9.2p1-2+deb12u3",
            "1:9.2p1-2+deb12u5",
            True,
        ),
        (
            "Inst base-files [12.4+deb12u5] (12.4+deb12u15 Debian:12.15/oldstable [amd64])",
            "base-files",
            "12.4+deb12u5",
            "12.4+deb12u15",
            False,
        ),
        # A package from a local file or a repository without a Release: no origin.
        ("Inst local-tool [1.0] (1.1 [all])", "local-tool", "1.0", "1.1", False),
    ],
)
def test_inst_lines(
    line: str, name: str, installed: str | None, candidate: str, security: bool
) -> None:
    (update,) = parse(_probe(line + "\n"), "", 0).updates
    assert (update.name, update.installed, update.candidate) == (name, installed, candidate)
    assert update.security is security


@pytest.mark.parametrize(
    ("origin", "security"),
    [
        ("Debian-Security:12/stable-security", True),
        ("Debian-Security:bookworm-security", True),
        ("Ubuntu:22.04/jammy-security", True),
        ("Ubuntu:22.04/jammy-updates", False),
        ("Debian:12.5/stable", False),
        ("Debian:bookworm", False),
        ("security-tools:1.0/stable", False),
    ],
)
def test_security_origins(origin: str, security: bool) -> None:
    assert is_security_origin(origin) is security


def test_reboot_from_needrestart_and_from_the_kernel_in_boot() -> None:
    # needrestart -b prints NEEDRESTART-KSTA: 3 when a newer kernel is installed
    # (constructed lines in needrestart's documented batch format).
    needrestart = "NEEDRESTART-KCUR: 6.1.0-17-amd64\nNEEDRESTART-KSTA: 3\nrunning 6.1.0-17-amd64\n"
    assert parse(_probe(reboot=needrestart), "", 0).reboot_pending is True
    boot = "running 6.1.0-17-amd64\ninstalled 6.1.0-9-amd64\ninstalled 6.1.0-18-amd64\n"
    facts = parse(_probe(reboot=boot), "", 0)
    assert facts.reboot_pending is True
    assert facts.reboot_reason == "running kernel 6.1.0-17-amd64, newest installed 6.1.0-18-amd64"
    current = "running 6.1.0-18-amd64\ninstalled 6.1.0-9-amd64\ninstalled 6.1.0-18-amd64\n"
    assert parse(_probe(reboot=current), "", 0).reboot_pending is False


def test_a_probe_that_did_not_finish_is_a_problem_not_an_empty_list() -> None:
    cut = _probe("Inst a [1] (2 Debian:bookworm [all])\n").split("@@mspauto end")[0]
    facts = parse(cut, "bash: line 9: apt-get: command not found\n", 127)
    assert facts.updates == ()
    assert facts.problem == (
        "the apt probe did not finish (rc 127): bash: line 9: apt-get: command not found"
    )
    assert parse("", "", None).problem is not None


def test_a_refused_simulation_is_a_problem() -> None:
    text = _probe().replace(
        "@@mspauto simulate 0\n",
        "@@mspauto simulate 100\n"
        "E: The package lists or status file could not be parsed or opened.\n",
    )
    facts = parse(text, "", 0)
    assert facts.problem is not None and "could not be parsed" in facts.problem


def test_cut_or_odd_section_headers_are_a_problem_not_a_crash() -> None:
    for broken in (
        "@@mspauto apt-facts 1\n@@mspauto update\n@@mspauto simulate 0\n@@mspauto held\n"
        "@@mspauto end\n",
        "@@mspauto apt-facts 1\n@@mspauto update 0 0\n@@mspauto held\n@@mspauto end\n",
        "@@mspauto apt-facts 1\n@@mspauto update 0 0\n@@mspauto simulate\n@@mspauto end\n",
    ):
        assert parse(broken, "", 0).problem is not None


def test_the_probe_never_globs_or_reads_names_as_options(tmp_path: Path) -> None:
    import os
    import subprocess

    from mspauto.patching.apt import probe_script

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "libfoo-exists").write_text("")
    fake = {
        "apt-get": "case \"$*\" in *-s*) echo 'Inst lib* [1] (2 Debian:bookworm [all])';"
        " echo 'Inst --load-avail=/dev/null [1] (2 Debian:bookworm [all])';; esac",
        "dpkg-query": 'for a in "$@"; do echo "ARG $a"; done',
        "apt-mark": "true",
    }
    for name, body in fake.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    done = subprocess.run(
        ["bash", "-c", probe_script(1)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        check=False,
    )
    args = [
        line.removeprefix("ARG ") for line in done.stdout.splitlines() if line.startswith("ARG")
    ]
    assert "--" in args
    assert args[args.index("--") + 1 :] == ["lib*", "--load-avail=/dev/null"]
