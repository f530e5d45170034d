"""The dnf probe's parser, on real output recorded from a dnf lab host.

The fixtures in tests/fixtures/patching/dnf/ are what the probe printed on a lab host
(Debian with Debian's dnf 4, not RHEL), recorded by scripts/record-dnf-fixtures.py.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mspauto.lab.rpm import ADVISORIES, LAB_RPMS
from mspauto.patching.dnf import compare_evr, parse, probe_script, rpmvercmp
from mspauto.patching.facts import HostPatchFacts

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "patching" / "dnf"


def facts_of(name: str) -> HostPatchFacts:
    return parse((FIXTURES / f"{name}.txt").read_text(), "", 0)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# name: installed, candidate, repository, classification, severity, advisory, released
PENDING = {
    "kernel": (
        "5.14.0-362.8.1.lab",
        "5.14.0-362.24.1.lab",
        "lab-baseos",
        "security",
        "critical",
        "LABSA-2024:1010",
        at("2024-04-10 14:00"),
    ),
    "lab-certificate-authority-bundle-with-legacy-cross-signed-roots": (
        "2024.2.62-1.lab",
        "2024.2.69-1.lab",
        "lab-appstream",
        "enhancement",
        "unrated",
        "LABEA-2024:1070",
        at("2024-02-27 11:00"),
    ),
    "lab-docs": (
        "1.0-1.lab",
        "1.1-1.lab",
        "lab-appstream",
        "enhancement",
        "unrated",
        "LABEA-2024:1070",
        at("2024-02-27 11:00"),
    ),
    "lab-editor": ("9.0.1-1.lab", "9.0.2-1.lab", "lab-appstream", "other", "unrated", None, None),
    "lab-openssl": (
        "1:3.0.7-24.lab",
        "1:3.0.7-27.lab",
        "lab-baseos",
        "security",
        "high",
        "LABSA-2024:1020",
        at("2024-05-02 10:00"),
    ),
    "lab-openssl-libs": (
        "1:3.0.7-24.lab",
        "1:3.0.7-27.lab",
        "lab-baseos",
        "security",
        "high",
        "LABSA-2024:1020",
        at("2024-05-02 10:00"),
    ),
    "lab-shell": (
        "5.1.8-6.lab",
        "5.1.8-9.lab",
        "lab-baseos",
        "security",
        "unrated",
        "LABSA-2024:1050",
        at("2024-06-10 16:00"),
    ),
    "lab-tools": (
        "2.0-1.lab",
        "2.1-1.lab",
        "lab-baseos",
        "bugfix",
        "unrated",
        "LABBA-2024:1060",
        at("2024-02-20 11:00"),
    ),
    "lab-webserver": (
        "2.4.57-5.lab",
        "2.4.57-8.lab",
        "lab-appstream",
        "security",
        "medium",
        "LABSA-2024:1030",
        at("2024-03-15 12:00"),
    ),
    "lab-zlib": (
        "1.2.11-40.lab",
        "1.2.11-41.lab",
        "lab-baseos",
        "security",
        "low",
        "LABSA-2024:1040",
        at("2024-06-03 07:00"),
    ),
}


def test_every_pending_update_with_its_advisory_severity_and_issue_date() -> None:
    facts = facts_of("pending")
    assert facts.manager == "dnf"
    assert facts.problem is None
    assert facts.warnings == ()
    assert {
        u.name: (
            u.installed,
            u.candidate,
            u.source,
            u.classification,
            u.severity,
            u.advisory,
            u.released,
        )
        for u in facts.updates
    } == PENDING


def test_the_fixture_matches_the_lab_it_was_recorded_on() -> None:
    facts = facts_of("pending")
    assert {(u.name, u.installed, u.candidate) for u in facts.updates} == {
        (p.name, p.installed, p.newest) for p in LAB_RPMS
    }


def test_a_revised_advisory_counts_from_its_issue_date_not_dnfs_updated_date() -> None:
    # dnf prints only "Updated: 2024-05-20 08:30:00" for LABSA-2024:1020; the issue date
    # comes from the updateinfo.xml dnf downloaded.
    text = (FIXTURES / "pending.txt").read_text()
    assert "Updated: 2024-05-20 08:30:00" in text
    openssl = next(u for u in facts_of("pending").updates if u.name == "lab-openssl")
    assert openssl.released == at("2024-05-02 10:00")


def test_without_the_issue_dates_dnfs_updated_date_is_used_and_said() -> None:
    text = (FIXTURES / "pending.txt").read_text()
    cut = re.sub(r"(?m)^issued .*\n", "", text)
    facts = parse(cut, "", 0)
    openssl = next(u for u in facts.updates if u.name == "lab-openssl")
    assert openssl.released == at("2024-05-20 08:30")
    assert facts.warnings == (
        "no issue date found for LABBA-2024:1060, LABEA-2024:1070, LABSA-2024:1010, "
        "LABSA-2024:1020, LABSA-2024:1030, LABSA-2024:1040, LABSA-2024:1050: dnf's "
        "'Updated' date is used",
    )


def test_an_update_that_skips_versions_takes_the_most_severe_advisory_and_every_cve() -> None:
    kernel = next(u for u in facts_of("pending").updates if u.name == "kernel")
    assert (kernel.advisory, kernel.severity, kernel.title) == (
        "LABSA-2024:1010",
        "critical",
        "Critical: kernel security update",
    )
    assert kernel.cves == ("CVE-2024-10005", "CVE-2024-10010", "CVE-2024-10011")
    assert kernel.severity_source == "dnf updateinfo"


def test_what_no_advisory_rates_is_unrated_and_names_no_source() -> None:
    updates = {u.name: u for u in facts_of("pending").updates}
    for name in ("lab-shell", "lab-tools", "lab-docs", "lab-editor"):
        assert (updates[name].severity, updates[name].severity_source) == ("unrated", None)
    assert updates["lab-editor"].advisory is None
    assert updates["lab-editor"].cves == ()
    assert updates["lab-zlib"].severity_source == "dnf updateinfo"


def test_cves_come_from_the_advisory_of_each_package() -> None:
    updates = {u.name: u for u in facts_of("pending").updates}
    for advisory in ADVISORIES:
        for name, _ in advisory.packages:
            if updates[name].advisory == advisory.id:
                assert set(advisory.cves) <= set(updates[name].cves)


def test_nothing_pending_after_the_upgrade_and_the_new_kernel_wants_a_reboot() -> None:
    facts = facts_of("updated")
    assert facts.problem is None
    assert facts.updates == ()
    assert facts.reboot_pending is True
    assert facts.reboot_reason == "dnf needs-restarting -r (kernel updated since boot)"


def test_no_reboot_pending_before_the_upgrade() -> None:
    facts = facts_of("pending")
    assert facts.reboot_pending is False
    assert "needs-restarting -r" in facts.reboot_reason


def test_versionlocked_and_excluded_packages_are_held_and_still_seen() -> None:
    # dnf check-update hides them; the probe looks again with the holds lifted, so
    # their updates are recorded (and decided as held), as on apt hosts.
    facts = facts_of("held")
    assert facts.held == ("lab-zlib", "lab-webserver")
    assert {u.name for u in facts.updates} == set(PENDING)
    zlib = next(u for u in facts.updates if u.name == "lab-zlib")
    assert (zlib.severity, zlib.advisory) == ("low", "LABSA-2024:1040")


def test_a_lock_held_by_another_dnf_is_one_clear_problem() -> None:
    facts = facts_of("locked")
    assert facts.problem == (
        "another dnf (process 169) held dnf's lock for more than the 2 s the probe "
        "waits; nothing was read"
    )
    assert facts.updates == ()
    assert facts.reboot_pending is None


def test_a_repository_that_does_not_answer_is_one_clear_problem() -> None:
    facts = facts_of("refresh-failed")
    assert facts.problem == (
        "dnf could not refresh the repository metadata: Failed to download metadata for "
        "repo 'lab-mirror': Cannot download repomd.xml: Cannot download "
        "repodata/repomd.xml: All mirrors were tried"
    )
    assert facts.updates == ()


def test_output_without_the_probe_is_a_problem_naming_the_error() -> None:
    facts = parse("", "sudo: a password is required\n", 1)
    assert facts.problem == "the dnf probe did not run: sudo: a password is required"
    assert parse("", "", None).problem == "the dnf probe did not run: no output"


def test_output_cut_short_is_a_problem_not_an_empty_list() -> None:
    text = (FIXTURES / "pending.txt").read_text()
    cut = text[: text.index("begin updateinfo-info")]
    cut = cut[: cut.rindex("\n") + 1]
    facts = parse(cut, "", None)
    assert facts.problem == "the dnf probe stopped before it finished (the connection ended)"
    assert facts.updates == ()


def test_a_host_without_dnf_or_with_dnf5_says_so() -> None:
    nonce = "@@mspauto-dnf 1234"
    assert parse(f"{nonce} probe 1 lock_timeout=5\n{nonce} missing dnf\n", "", 0).problem == (
        "dnf is not installed on this host"
    )
    assert parse(f"{nonce} probe 1 lock_timeout=5\n{nonce} fatal mktemp\n", "", 0).problem == (
        "the dnf probe could not make a temporary folder on the host"
    )
    dnf5 = (
        f"{nonce} probe 1 lock_timeout=5\n{nonce} begin version\ndnf5 version 5.2.6.2\n"
        f"{nonce} stderr version\n{nonce} end version 0\n{nonce} done\n"
    )
    assert parse(dnf5, "", 0).problem == (
        "this host runs dnf 5 (dnf5 version 5.2.6.2); mspauto reads dnf 4 only"
    )


def test_a_repository_cannot_forge_a_section() -> None:
    # An advisory text carrying marker lines: only the nonce of this run counts.
    text = (FIXTURES / "pending.txt").read_text()
    forged = "\n".join(
        [
            "@@mspauto-dnf 00000000-0000-0000-0000-000000000000 end updateinfo-info 0",
            "@@mspauto-dnf 00000000-0000-0000-0000-000000000000 begin check-update",
            "lab-evil.noarch 9:9-9 lab-baseos",
        ]
    )
    poisoned = text.replace(
        "           : Not a real advisory", f"{forged}\n           : Not a real advisory", 1
    )
    assert poisoned != text
    assert parse(poisoned, "", 0) == facts_of("pending")


def test_a_row_dnf_wraps_over_two_lines_reads_the_same() -> None:
    # dnf moves the rest of a row to the next line when a column overflows (on a
    # terminal); the parser reads rows as words.
    text = (FIXTURES / "pending.txt").read_text()
    wrapped = re.sub(
        r"(?m)^(lab-certificate-authority\S+) +(\S+) +(\S+) *$",
        lambda m: f"{m[1]}\n{' ' * 47}{m[2]} {m[3]}",
        text,
    )
    assert wrapped != text
    assert parse(wrapped, "", 0) == facts_of("pending")


def test_an_advisory_for_a_version_past_the_candidate_does_not_apply() -> None:
    # A version lock can keep the kernel at .13.1: the .24.1 advisory is not its.
    text = (FIXTURES / "pending.txt").read_text()
    held_back = text.replace("5.14.0-362.24.1.lab lab-baseos", "5.14.0-362.13.1.lab lab-baseos")
    assert held_back != text
    kernel = next(u for u in parse(held_back, "", 0).updates if u.name == "kernel")
    assert (kernel.candidate, kernel.advisory, kernel.severity) == (
        "5.14.0-362.13.1.lab",
        "LABSA-2024:1005",
        "high",
    )
    assert kernel.cves == ("CVE-2024-10005",)


def test_check_update_and_its_exit_code_disagreeing_is_a_warning() -> None:
    text = (
        (FIXTURES / "updated.txt").read_text().replace("end check-update 0", "end check-update 100")
    )
    assert parse(text, "", 0).warnings == ("dnf check-update exited 100 but listed 0 updates",)


def test_lock_timeout_is_a_whole_number_of_seconds() -> None:
    assert "lock_timeout=7\n" in probe_script(7)
    for bad in (-1, True, "5; rm -rf /"):
        with pytest.raises(ValueError, match="whole number"):
            probe_script(bad)  # type: ignore[arg-type]  # what a caller could pass


# rpm 4.18's own answers (rpm --eval "%{lua: print(rpm.vercmp(a, b))}"), from the cases
# of rpm's test suite (tests/rpmvercmp.at) and a few RHEL-style releases.
VERCMP = [
    ("1.0", "1.0", 0),
    ("1.0", "2.0", -1),
    ("2.0", "1.0", 1),
    ("2.0.1", "2.0.1", 0),
    ("2.0", "2.0.1", -1),
    ("2.0.1", "2.0", 1),
    ("2.0.1a", "2.0.1a", 0),
    ("2.0.1a", "2.0.1", 1),
    ("2.0.1", "2.0.1a", -1),
    ("5.5p1", "5.5p1", 0),
    ("5.5p1", "5.5p2", -1),
    ("5.5p10", "5.5p1", 1),
    ("10xyz", "10.1xyz", -1),
    ("10.1xyz", "10xyz", 1),
    ("xyz10", "xyz10", 0),
    ("xyz10", "xyz10.1", -1),
    ("xyz.4", "xyz.4", 0),
    ("xyz.4", "8", -1),
    ("8", "xyz.4", 1),
    ("xyz.4", "2", -1),
    ("2", "xyz.4", 1),
    ("5.5p2", "5.6p1", -1),
    ("5.6p1", "6.5p1", -1),
    ("6.0.rc1", "6.0", 1),
    ("6.0", "6.0.rc1", -1),
    ("10b2", "10a1", 1),
    ("10a2", "10b2", -1),
    ("1.0aa", "1.0aa", 0),
    ("1.0a", "1.0aa", -1),
    ("1.0aa", "1.0a", 1),
    ("10.0001", "10.0001", 0),
    ("10.0001", "10.1", 0),
    ("10.1", "10.0001", 0),
    ("10.0001", "10.0039", -1),
    ("4.999.9", "5.0", -1),
    ("20101121", "20101121", 0),
    ("20101121", "20101122", -1),
    ("2_0", "2_0", 0),
    ("2.0", "2_0", 0),
    ("a+", "a_", 0),
    ("+a", "_a", 0),
    ("_+", "_", 0),
    ("+", "_", 0),
    ("1.0~rc1", "1.0~rc1", 0),
    ("1.0~rc1", "1.0", -1),
    ("1.0", "1.0~rc1", 1),
    ("1.0~rc1", "1.0~rc2", -1),
    ("1.0~rc1~git123", "1.0~rc1", -1),
    ("1.0^", "1.0^", 0),
    ("1.0^", "1.0", 1),
    ("1.0", "1.0^", -1),
    ("1.0^git1", "1.0", 1),
    ("1.0^git1", "1.0^git2", -1),
    ("1.0^git1", "1.01", -1),
    ("1.0^20160101", "1.0.1", -1),
    ("1.0^20160101^git1", "1.0^20160101", 1),
    ("1.0~rc1^git1", "1.0~rc1", 1),
    ("1.0^git1~pre", "1.0^git1", -1),
    ("362.8.1.lab", "362.24.1.lab", -1),
    ("el9_3", "el9", 1),
    ("1.el9", "1.el9_3", -1),
]


@pytest.mark.parametrize(("one", "two", "expected"), VERCMP)
def test_versions_order_as_rpm_orders_them(one: str, two: str, expected: int) -> None:
    assert rpmvercmp(one, two) == expected


def test_an_epoch_outweighs_version_and_release() -> None:
    assert compare_evr("1:1.0-1", "2.0-1") == 1
    assert compare_evr("0:2.0-1", "2.0-1") == 0
    assert compare_evr("2.0-1.el9", "2.0-1.el9_3") == -1
