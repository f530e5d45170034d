"""Severity from offline copies of Debian's security tracker and CISA's KEV catalogue.

Fixtures (tests/fixtures/patching/severity/, each folder's SOURCE.md says where every
entry comes from): ``excerpts.json`` holds tracker entries as other projects vendored
them, ``openssl-bullseye.json`` real openssl fixes from Debian's DSA list (urgency
assumed), ``constructed.json`` made-up edge cases (CVE-2099-*), and the KEV folder an
excerpt of the real catalogue. Broken files are written by the tests themselves.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from mspauto.config import Settings
from mspauto.patching.facts import PendingUpdate
from mspauto.patching.severity import (
    DebianTracker,
    KevCatalog,
    SeveritySourceError,
    SeveritySources,
    severity_from_urgency,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "patching" / "severity"
TRACKER = FIXTURES / "debian-tracker"
KEV = FIXTURES / "kev" / "known_exploited_vulnerabilities.json"

DSA_5343 = ("CVE-2022-2097", "CVE-2022-4304", "CVE-2022-4450", "CVE-2023-0215", "CVE-2023-0286")


@pytest.fixture(scope="module")
def excerpts() -> DebianTracker:
    return DebianTracker.load(TRACKER / "excerpts.json")


@pytest.fixture(scope="module")
def openssl() -> DebianTracker:
    return DebianTracker.load(TRACKER / "openssl-bullseye.json")


@pytest.fixture(scope="module")
def constructed() -> DebianTracker:
    return DebianTracker.load(TRACKER / "constructed.json")


@pytest.fixture(scope="module")
def kev() -> KevCatalog:
    return KevCatalog.load(KEV)


def update(
    name: str, installed: str | None, candidate: str, source: str | None = None
) -> PendingUpdate:
    return PendingUpdate(
        name=name,
        installed=installed,
        candidate=candidate,
        source_package=source,
        classification="security",
    )


# --- urgency -> severity ------------------------------------------------------------


@pytest.mark.parametrize(
    ("urgency", "severity"),
    [
        ("high", "high"),
        ("medium", "medium"),
        ("low", "low"),
        ("unimportant", "low"),
        (" High ", "high"),
        ("not yet assigned", "unrated"),
        ("end-of-life", "unrated"),
        ("", "unrated"),
        (None, "unrated"),
        ("unknown", "unrated"),
        # NVD's rating, filled in by the tracker where Debian assigned none.
        ("high**", "unrated"),
        ("low**", "unrated"),
        ("medium*", "unrated"),
        ("critical", "unrated"),
    ],
)
def test_urgency_maps_to_severity(urgency: str | None, severity: str) -> None:
    assert severity_from_urgency(urgency) == severity


@pytest.mark.parametrize(
    ("installed", "candidate", "cve", "severity"),
    [
        ("1.9-1", "2.0-1", "CVE-2099-0010", "high"),
        ("2.0-1", "2.1-1", "CVE-2099-0011", "medium"),
        ("2.1-1", "2.2-1", "CVE-2099-0012", "low"),
        ("2.2-1", "2.3-1", "CVE-2099-0013", "low"),
        ("2.3-1", "2.4-1", "CVE-2099-0014", "unrated"),
        ("2.4-1", "2.5-1", "CVE-2099-0015", "unrated"),
        ("2.5-1", "2.6-1", "CVE-2099-0016", "unrated"),
        ("2.6-1", "2.7-1", "CVE-2099-0017", "unrated"),
        ("2.7-1", "2.8-1", "CVE-2099-0018", "unrated"),
        ("2.8-1", "2.9-1", "CVE-2099-0019", "unrated"),
    ],
)
def test_one_fixed_cve_rates_the_update(
    constructed: DebianTracker, installed: str, candidate: str, cve: str, severity: str
) -> None:
    rated = constructed.rate(update("constructed-urgencies", installed, candidate), "bookworm")
    assert rated.cves == (cve,)
    assert rated.severity == severity
    assert rated.severity_source == (None if severity == "unrated" else "debian-security-tracker")


def test_the_highest_debian_rating_wins(constructed: DebianTracker) -> None:
    rated = constructed.rate(update("constructed-urgencies", "2.0-2", "2.3-1"), "bookworm")
    assert rated.cves == ("CVE-2099-0011", "CVE-2099-0012", "CVE-2099-0013")
    assert rated.severity == "medium"


def test_an_unassessed_cve_makes_a_lower_rated_fix_unrated(constructed: DebianTracker) -> None:
    # low + "not yet assigned": the unassessed CVE may be the worst, so not "low".
    rated = constructed.rate(update("constructed-urgencies", "2.1-1", "2.4-1"), "bookworm")
    assert rated.cves == ("CVE-2099-0012", "CVE-2099-0013", "CVE-2099-0014")
    assert rated.severity == "unrated"
    assert rated.severity_source is None


def test_high_stands_next_to_unassessed_cves(constructed: DebianTracker) -> None:
    rated = constructed.rate(update("constructed-urgencies", "1.0-1", "9.0-1"), "bookworm")
    assert len(rated.cves) == 10
    assert rated.severity == "high"


def test_an_unrated_result_keeps_an_earlier_rating(constructed: DebianTracker) -> None:
    earlier = update("constructed-urgencies", "2.3-1", "2.4-1").with_severity("medium", "x")
    rated = constructed.rate(earlier, "bookworm")
    assert rated.cves == ("CVE-2099-0014",)
    assert (rated.severity, rated.severity_source) == ("medium", "x")


# --- the version window: installed < fixed <= candidate, in Debian order ------------


@pytest.mark.parametrize(
    ("package", "installed", "candidate", "fixed"),
    [
        # An epoch outranks everything after it: 2.0-1 is older than 1:1.0-1.
        ("constructed-epoch", "2.0-1", "1:1.0-1", True),
        ("constructed-epoch", "1:0.9-1", "1:1.0-2", True),
        ("constructed-epoch", "1:1.0-1", "1:1.1-1", False),
        ("constructed-epoch", "0.9-1", "1.1-1", False),
        # ~ sorts before anything, even the end of the version.
        ("constructed-tilde", "3.0.11-1~deb12u2", "3.0.13-1~deb12u1", True),
        ("constructed-tilde", "3.0.11-1~deb12u2", "3.0.13-1", True),
        ("constructed-tilde", "3.0.11-1~deb12u2", "3.0.13-1~deb12u0", False),
        ("constructed-tilde", "3.0.11-1~deb12u2", "3.0.13~rc1-1", False),
        ("constructed-tilde", "3.0.13-1~deb12u1", "3.0.14-1~deb12u1", False),
    ],
)
def test_the_fix_must_lie_between_installed_and_candidate(
    constructed: DebianTracker, package: str, installed: str, candidate: str, fixed: bool
) -> None:
    rated = constructed.rate(update(package, installed, candidate), "bookworm")
    assert bool(rated.cves) is fixed


def test_deb_update_numbers_compare_as_numbers(constructed: DebianTracker) -> None:
    # As strings "u10" < "u9"; Debian compares the digits as a number.
    between = constructed.rate(
        update("constructed-debu", "1.2.3-4+deb12u9", "1.2.3-4+deb12u10"), "bookworm"
    )
    assert (between.cves, between.severity) == (("CVE-2099-0004",), "high")
    both = constructed.rate(
        update("constructed-debu", "1.2.3-4+deb12u1", "1.2.3-4+deb12u10"), "bookworm"
    )
    assert both.cves == ("CVE-2099-0003", "CVE-2099-0004")
    already = constructed.rate(
        update("constructed-debu", "1.2.3-4+deb12u2", "1.2.3-4+deb12u3"), "bookworm"
    )
    assert already.cves == ()


def test_binnmu_versions_compare_with_source_fixes(openssl: DebianTracker) -> None:
    rated = openssl.rate(
        update("libssl1.1", "1.1.1n-0+deb11u3", "1.1.1n-0+deb11u4+b1", "openssl"), "bullseye"
    )
    assert rated.cves == DSA_5343


# --- what does not count as a fix ---------------------------------------------------


def test_not_affected_open_undetermined_temp_and_other_releases_are_no_fix(
    constructed: DebianTracker,
) -> None:
    rated = constructed.rate(update("constructed-not-fixes", "0.1-1", "5.0-1"), "bookworm")
    # Only CVE-2099-0024 is resolved on bookworm at a real version; the TEMP- issue and
    # the trixie-only fix do not count.
    assert rated.cves == ("CVE-2099-0024",)
    assert rated.severity == "low"


@pytest.mark.parametrize(
    ("tracker", "unchanged", "codename"),
    [
        ("constructed", update("not-in-tracker", "1.0-1", "2.0-1"), "bookworm"),
        ("constructed", update("constructed-urgencies", "2.0-1", "2.0-2"), "trixie"),
        ("constructed", update("constructed-urgencies", "2.0-1", "2.0-2"), "jammy"),
        ("constructed", update("constructed-urgencies", None, "9.0-1"), "bookworm"),
        ("constructed", update("constructed-urgencies", "1.0-1", "not a version!"), "bookworm"),
        ("excerpts", update("apparmor", "2.13.6-10", "2.13.6-11"), "bullseye"),
    ],
    ids=["unknown-package", "other-release", "ubuntu", "new-install", "bad-version", "open"],
)
def test_an_update_the_tracker_does_not_rate_is_unchanged(
    request: pytest.FixtureRequest, tracker: str, unchanged: PendingUpdate, codename: str
) -> None:
    loaded: DebianTracker = request.getfixturevalue(tracker)
    assert loaded.rate(unchanged, codename) is unchanged


def test_the_classification_is_not_changed(constructed: DebianTracker) -> None:
    other = PendingUpdate(name="constructed-urgencies", installed="1.0-1", candidate="2.0-1")
    rated = constructed.rate(other, "bookworm")
    assert (rated.severity, rated.classification) == ("high", "other")


# --- binary -> source ---------------------------------------------------------------


def test_a_binary_package_is_rated_by_its_source(openssl: DebianTracker) -> None:
    libssl = update("libssl1.1", "1.1.1n-0+deb11u3", "1.1.1n-0+deb11u4", "openssl")
    rated = openssl.rate(libssl, "bullseye")
    assert rated.cves == DSA_5343
    assert rated.severity == "unrated"  # the fixture's urgencies are "not yet assigned"
    # Without its source the binary name is looked up, and the tracker has no libssl1.1.
    assert openssl.rate(
        update("libssl1.1", "1.1.1n-0+deb11u3", "1.1.1n-0+deb11u4"), "bullseye"
    ) == (update("libssl1.1", "1.1.1n-0+deb11u3", "1.1.1n-0+deb11u4"))


def test_an_older_installed_version_collects_every_fix_since(openssl: DebianTracker) -> None:
    rated = openssl.rate(
        update("openssl", "1.1.1k-1+deb11u1", "1.1.1n-0+deb11u4", "openssl"), "bullseye"
    )
    assert rated.cves == (
        "CVE-2021-4160",
        "CVE-2022-0778",
        "CVE-2022-1292",
        "CVE-2022-2068",
        *DSA_5343,
    )


def test_existing_cves_are_kept_and_not_repeated(openssl: DebianTracker) -> None:
    known = PendingUpdate(
        name="libssl1.1",
        installed="1.1.1n-0+deb11u2",
        candidate="1.1.1n-0+deb11u3",
        source_package="openssl (1.1.1n-0+deb11u3)",
        cves=("CVE-2022-2068", "CVE-2000-0001"),
    )
    assert openssl.rate(known, "bullseye").cves == ("CVE-2022-2068", "CVE-2000-0001")


def test_signed_kernels_are_rated_as_linux(constructed: DebianTracker) -> None:
    meta = update("linux-image-amd64", "6.1.69-1", "6.1.76-1", "linux-signed-amd64")
    rated = constructed.rate(meta, "bookworm")
    assert (rated.cves, rated.severity) == (("CVE-2099-0030",), "high")


# --- real excerpts ------------------------------------------------------------------


def test_real_excerpts_load_and_rate(excerpts: DebianTracker) -> None:
    assert excerpts.snapshot.entries == 6
    assert {"bookworm", "bullseye", "buster", "sid", "trixie"} <= excerpts.codenames
    # sope, DSA fix on bookworm-security, "not yet assigned".
    sope = excerpts.rate(update("sope4.9-libs", "5.8.0-1", "5.8.0-1+deb12u1", "sope"), "bookworm")
    assert (sope.cves, sope.severity) == (("CVE-2025-53603",), "unrated")
    # backupninja: Debian said "medium".
    ninja = excerpts.rate(update("backupninja", "0.8-1", "1.1.0-2"), "buster")
    assert (ninja.cves, ninja.severity) == (("CVE-2005-3111",), "medium")
    assert ninja.severity_source == "debian-security-tracker"
    # prototypejs: "high**" is NVD's rating, not Debian's.
    proto = excerpts.rate(update("libjs-prototype", "1.6.0-1", "1.7.1-3", "prototypejs"), "buster")
    assert (proto.cves, proto.severity) == (("CVE-2008-7220",), "unrated")
    # apparmor CVE-2017-6507: resolved with a real version, "not yet assigned".
    apparmor = excerpts.rate(update("apparmor", "2.10-1", "2.13.6-10"), "bullseye")
    assert (apparmor.cves, apparmor.severity) == (("CVE-2017-6507",), "unrated")


# --- KEV ----------------------------------------------------------------------------


def test_kev_marks_an_exploited_update_with_its_due_date(kev: KevCatalog) -> None:
    heartbleed = PendingUpdate(
        name="libssl1.0.0",
        installed="1.0.1e-2",
        candidate="1.0.1e-2+deb7u5",
        cves=("CVE-2014-0160",),
    )
    marked = kev.mark(heartbleed)
    assert marked.known_exploited is True
    assert marked.exploited_due == date(2022, 5, 25)
    assert (marked.severity, marked.severity_source) == ("unrated", None)


def test_kev_takes_the_earliest_due_date(kev: KevCatalog) -> None:
    exim = PendingUpdate(
        name="exim4-daemon-light",
        installed="4.92-8+deb10u2",
        candidate="4.92-8+deb10u3",
        cves=("CVE-2019-10149", "CVE-2018-6789", "CVE-2019-16928", "CVE-2099-0001"),
    )
    assert kev.mark(exim).exploited_due == date(2022, 3, 17)
    earlier = PendingUpdate(
        name="x", candidate="1", cves=("cve-2019-10149",), exploited_due=date(2021, 1, 1)
    )
    assert kev.mark(earlier).exploited_due == date(2021, 1, 1)


def test_kev_leaves_the_severity_and_unlisted_updates_alone(kev: KevCatalog) -> None:
    rated = PendingUpdate(name="sudo", candidate="1.9.5p2-3", cves=("CVE-2021-3156",))
    marked = kev.mark(rated.with_severity("low", "debian-security-tracker"))
    assert (marked.severity, marked.known_exploited) == ("low", True)
    plain = PendingUpdate(name="bash", candidate="5.2-1", cves=("CVE-2022-3715",))
    assert kev.mark(plain) is plain


def test_kev_snapshot_names_the_catalogue(kev: KevCatalog) -> None:
    snapshot = kev.snapshot
    assert snapshot.version == "2025.08.25"
    assert snapshot.taken_at == datetime(2025, 8, 25, 17, 4, 19, 979600, tzinfo=UTC)
    assert snapshot.taken_at_basis == "dateReleased"
    assert snapshot.entries == 9
    assert snapshot.as_dict()["sha256"] == snapshot.sha256
    assert len(snapshot.sha256) == 64


# --- both sources, from the settings ------------------------------------------------


def test_sources_from_settings_rate_then_mark(tmp_path: Path) -> None:
    tracker = tmp_path / "tracker.json"
    tracker.write_text(
        json.dumps(  # constructed: a tracker entry whose CVE is also in the KEV excerpt
            {
                "sudo": {
                    "CVE-2021-3156": {
                        "releases": {
                            "buster": {
                                "status": "resolved",
                                "fixed_version": "1.8.27-1+deb10u3",
                                "urgency": "high",
                            }
                        }
                    }
                }
            }
        )
    )
    settings = Settings.load(
        tmp_path,
        env={"MSPAUTO_DEBIAN_TRACKER": "tracker.json", "MSPAUTO_KEV_CATALOG": str(KEV)},
    )
    assert settings.debian_tracker == tmp_path / "tracker.json"
    assert settings.kev_catalog == KEV
    sources = SeveritySources.from_settings(settings)
    sudo = update("sudo", "1.8.27-1+deb10u2", "1.8.27-1+deb10u3")
    (rated,) = sources.apply([sudo], "buster")
    assert rated.cves == ("CVE-2021-3156",)
    assert (rated.severity, rated.severity_source) == ("high", "debian-security-tracker")
    assert (rated.known_exploited, rated.exploited_due) == (True, date(2022, 4, 27))
    # A host that is not Debian gets no tracker rating, but KEV still reads its CVEs.
    (windows,) = sources.apply([PendingUpdate(name="KB1", candidate="1", cves=rated.cves)], None)
    assert (windows.severity, windows.known_exploited) == ("unrated", True)
    assert [s.source for s in sources.snapshots] == ["debian-security-tracker", "cisa-kev"]


def test_no_sources_configured_change_nothing(tmp_path: Path) -> None:
    settings = Settings.load(tmp_path, env={})
    assert (settings.debian_tracker, settings.kev_catalog) == (None, None)
    sources = SeveritySources.from_settings(settings)
    plain = update("openssl", "1.0-1", "1.0-2")
    assert sources.apply([plain], "bookworm") == (plain,)
    assert sources.snapshots == ()


def test_tracker_snapshot_date_is_the_files_time(tmp_path: Path) -> None:
    copy = tmp_path / "tracker.json"
    copy.write_bytes((TRACKER / "excerpts.json").read_bytes())
    published = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
    os.utime(copy, (published.timestamp(), published.timestamp()))
    sources = SeveritySources(tracker=DebianTracker.load(copy))
    snapshot = sources.snapshots[0]
    assert (snapshot.taken_at, snapshot.taken_at_basis) == (published, "file modification time")
    assert sources.stale(published + timedelta(days=1), timedelta(days=2)) == ()
    (warning,) = sources.stale(published + timedelta(days=9), timedelta(days=2))
    assert str(copy) in warning and "2026-11-30" in warning and "9 days old" in warning


def test_the_tracker_is_read_in_pieces_across_chunk_edges(tmp_path: Path) -> None:
    # constructed: more than one 1 MiB read, a multi-byte character on the edges.
    big = {
        f"pkg{i}": {
            f"CVE-2099-{i:05d}": {
                "description": "é" * 700,
                "releases": {
                    "bookworm": {"status": "resolved", "fixed_version": "1.0-2", "urgency": "low"}
                },
            }
        }
        for i in range(3000)
    }
    path = tmp_path / "tracker.json"
    path.write_text(json.dumps(big, ensure_ascii=False), encoding="utf-8")
    assert path.stat().st_size > 3 << 20
    tracker = DebianTracker.load(path)
    assert tracker.snapshot.entries == 3000
    rated = tracker.rate(update("pkg2999", "1.0-1", "1.0-2"), "bookworm")
    assert (rated.cves, rated.severity) == (("CVE-2099-02999",), "low")


# --- broken files: one line naming the file -----------------------------------------


TRACKER_BREAKAGES = [
    ("missing", None, "no such file; download it (docs/patching-severity.md) or unset"),
    (
        "empty-file",
        b"",
        "is not valid JSON at character 1: expected '{', found the end of the file",
    ),
    (
        "cut-short",
        b'{"openssl": {"CVE-2099-1": {"releases": {',
        "is not valid JSON at character 42: Expecting",
    ),
    (
        "not-json",
        b"<html>502 Bad Gateway</html>",
        "is not valid JSON at character 1: expected '{', found '<'",
    ),
    (
        "trailing",
        b'{"a": {}} x',
        "is not valid JSON at character 11: unexpected data after the end",
    ),
    ("list", b"[]", "holds a JSON list, not an object"),
    ("string", b'"tracker"', "holds a JSON value, not an object"),
    ("no-packages", b"{}", "holds no source packages"),
    ("latin-1", b'{"caf\xe9": {}}', "is not UTF-8 text"),
    (
        "kev-instead",
        KEV.read_bytes(),
        "package 'title' is a string, expected an object of CVEs; this is not the tracker's",
    ),
    (
        # As in anchore/vunnel's fixture: "releases" a list (the tracker writes an object).
        "releases-list",
        b'{"chromium-browser": {"CVE-2022-0358": {"releases": []}}}',
        "package 'chromium-browser', CVE-2022-0358: 'releases' is a list, expected an object",
    ),
    (
        "urgency-number",
        b'{"x": {"TEMP-0000000-2099AA": {"releases": {"sid": {"urgency": 3}}}}}',
        "'urgency' or 'fixed_version' is a number, expected a string",
    ),
]


@pytest.mark.parametrize(
    ("case", "content", "message"), TRACKER_BREAKAGES, ids=[c[0] for c in TRACKER_BREAKAGES]
)
def test_a_broken_tracker_is_one_line_naming_the_file(
    tmp_path: Path, case: str, content: bytes | None, message: str
) -> None:
    path = tmp_path / f"{case}.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SeveritySourceError) as caught:
        DebianTracker.load(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: ")
    assert message in text
    assert "\n" not in text
    # No chained exception: a user sees this line, not a traceback.
    assert caught.value.__context__ is None or caught.value.__suppress_context__


def test_a_folder_is_not_a_tracker(tmp_path: Path) -> None:
    with pytest.raises(SeveritySourceError, match="is a folder, not a file"):
        DebianTracker.load(tmp_path)


def test_bad_json_says_where(tmp_path: Path) -> None:
    path = tmp_path / "tracker.json"
    path.write_text('{"a": {"CVE-2099-1": {"releases": {}}}, "b": {,}}')
    with pytest.raises(SeveritySourceError, match=r"at character 47: Expecting property name"):
        DebianTracker.load(path)


KEV_BREAKAGES = [
    ("missing", None, "no such file; download it (docs/patching-severity.md) or unset"),
    ("cut-short", KEV.read_bytes()[:500], "is not valid JSON at line "),
    ("tracker-instead", (TRACKER / "excerpts.json").read_bytes(), "'vulnerabilities' is null"),
    ("list", b"[]", "holds a list, expected an object with 'vulnerabilities'"),
    ("entry", b'{"vulnerabilities": ["CVE-2014-0160"]}', "vulnerabilities[0] is a string"),
    (
        "no-cve",
        b'{"vulnerabilities": [{"cveID": "Heartbleed", "dueDate": "2022-05-25"}]}',
        "vulnerabilities[0].cveID is 'Heartbleed', expected a CVE id",
    ),
    (
        "bad-date",
        b'{"vulnerabilities": [{"cveID": "CVE-2014-0160", "dueDate": "05/25/2022"}]}',
        "vulnerabilities[0].dueDate (CVE-2014-0160) is '05/25/2022', expected YYYY-MM-DD",
    ),
    (
        "no-date",
        b'{"vulnerabilities": [{"cveID": "CVE-2014-0160"}]}',
        "vulnerabilities[0].dueDate (CVE-2014-0160) is None",
    ),
]


@pytest.mark.parametrize(
    ("case", "content", "message"), KEV_BREAKAGES, ids=[c[0] for c in KEV_BREAKAGES]
)
def test_a_broken_kev_catalogue_is_one_line_naming_the_file(
    tmp_path: Path, case: str, content: bytes | None, message: str
) -> None:
    path = tmp_path / f"{case}.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SeveritySourceError) as caught:
        KevCatalog.load(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: ")
    assert message in text
    assert "\n" not in text


def test_from_settings_names_the_broken_file(tmp_path: Path) -> None:
    settings = Settings.load(tmp_path, env={"MSPAUTO_KEV_CATALOG": "feeds/kev.json"})
    with pytest.raises(SeveritySourceError) as caught:
        SeveritySources.from_settings(settings)
    assert str(caught.value).startswith(f"{tmp_path / 'feeds' / 'kev.json'}: no such file")
    assert "MSPAUTO_KEV_CATALOG" in str(caught.value)
