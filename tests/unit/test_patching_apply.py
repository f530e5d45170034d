"""The patch run's pure parts over recorded probe output (no host): what a scan
decides and records, what the install play says, and that a host reporting package
names no package manager would print is never installed from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from mspauto.config import Settings
from mspauto.evidence.store import EvidenceStore
from mspauto.inventory.resolve import Host
from mspauto.patching.apply import first_detections, install_play, scan_client
from mspauto.project import Project, load_project
from mspauto.transport.base import ErrorKind
from mspauto.transport.fake import FakeTransport

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "patching" / "apt"
PLANTED = (FIXTURES / "lab-planted.txt").read_text()
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
POLICY = """\
kind: patch
name: p
targets: {clients: [acme]}
schedule: {cron: '0 1 * * *', timezone: client}
approvals:
  - match: {classifications: [security]}
    action: auto
  - action: manual
holds: [lab-tools]
"""


def _project(root: Path) -> Project:
    (root / "inventory").mkdir(parents=True)
    (root / "policies").mkdir()
    (root / "policies" / "c.yaml").write_text("kind: contract\nname: std\n")
    (root / "policies" / "patch.yaml").write_text(POLICY)
    client = {
        "name": "acme",
        "display_name": "ACME",
        "timezone": "UTC",
        "contract": "std",
        "platform": "debian",
        "connection": "local",
    }
    hosts: dict[str, dict[str, str]] = {"acme-01": {}, "acme-02": {}}
    (root / "inventory" / "acme.yaml").write_text(
        yaml.safe_dump({"client": client, "hosts": hosts})
    )
    project = load_project(Settings.load(root))
    assert not project.errors, project.errors
    return project


def _hosts(project: Project) -> list[Host]:
    return sorted(project.inventory.clients["acme"].hosts.values(), key=lambda h: h.name)


def _answer(stdout_of: dict[str, str]) -> FakeTransport:
    def outcome(host: Host, command: str) -> tuple[int, str, ErrorKind | None]:
        return 0, stdout_of[host.name], None

    return FakeTransport(outcome)


def test_a_scan_decides_records_and_builds_the_install_play(tmp_path: Path) -> None:
    project = _project(tmp_path / "p")
    hosts = _hosts(project)
    store = EvidenceStore(f"sqlite:///{tmp_path / 'e.db'}")
    transport = _answer({h.name: PLANTED for h in hosts})
    report = scan_client(project, "acme", hosts, transport, store, now=NOW)
    assert [u.name for u in report.approved("acme-01")] == [
        "lab-kernel",
        "lab-openssl",
        "lab-webserver",
    ]
    # First detection is recorded now and carried into the next scan.
    seen = first_detections(store, "acme", ["acme-01"])
    assert seen["acme-01"]["lab-editor"] == NOW
    later = scan_client(project, "acme", hosts, transport, store, now=NOW.replace(day=5))
    (editor,) = [f for f in later.scan.hosts[0].findings if f.subject == "lab-editor"]
    assert editor.detail["decision"]["first_detected"] == NOW.isoformat()
    store.close()

    play = install_play(report, hosts, lock_timeout=30)
    # Both hosts install the same: one group of tasks for both, pins around the install.
    assert [t["name"] for t in play] == [
        "group 1: pin what is not approved (2)",
        "group 1: install 3 approved updates",
        "group 1: remove the pins",
    ]
    assert {t["when"] for t in play} == {"inventory_hostname in ['acme-01', 'acme-02']"}
    pin = play[0]["ansible.builtin.command"]
    folder = pin["argv"][-1]
    assert folder.startswith("/var/tmp/mspauto-patch-")
    # The deferred and the held package stay at their installed versions.
    assert pin["stdin"] == (
        "Package: lab-editor\nPin: version 9.0.1-1\nPin-Priority: 1001\n\n"
        "Package: lab-tools\nPin: version 2.0-1\nPin-Priority: 1001\n"
    )
    argv = play[1]["ansible.builtin.command"]["argv"]
    assert argv[:2] == ["apt-get", "install"] and "DPkg::Lock::Timeout=30" in argv
    assert f"Dir::Etc::PreferencesParts={folder}" in argv
    assert argv[-3:] == [
        "lab-kernel=6.1.85-1",
        "lab-openssl=3.0.11-1+deb12u2",
        "lab-webserver=2.4.57-2+deb12u1",
    ]
    assert play[1]["environment"]["NEEDRESTART_MODE"] == "l"
    assert play[2]["ansible.builtin.command"]["argv"] == ["rm", "-rf", "--", folder]
    retry = install_play(report, hosts, lock_timeout=30, one_by_one=True)
    assert [t["name"] for t in retry][1:4] == [
        "group 1: install lab-kernel=6.1.85-1",
        "group 1: install lab-openssl=3.0.11-1+deb12u2",
        "group 1: install lab-webserver=2.4.57-2+deb12u1",
    ]


def test_a_host_reporting_impossible_package_names_is_not_installed_from(tmp_path: Path) -> None:
    project = _project(tmp_path / "p")
    hosts = _hosts(project)
    hostile = PLANTED.replace(
        "Inst lab-tools [2.0-1]", "Inst lab-tools;touch${IFS}/tmp/pwned [2.0-1]"
    )
    report = scan_client(
        project, "acme", hosts, _answer({"acme-01": hostile, "acme-02": PLANTED}), None, now=NOW
    )
    first, _second = report.scan.hosts
    assert first.unchecked is not None
    assert first.unchecked.startswith(
        "the host reported an update whose name or version is not valid apt syntax"
    )
    assert report.approved("acme-01") == []
    assert len(report.approved("acme-02")) == 3
    assert next(t["when"] for t in install_play(report, hosts[1:])) == (
        "inventory_hostname in ['acme-02']"
    )


def test_severity_sources_rate_a_scan(tmp_path: Path) -> None:
    from mspauto.patching.severity import SeveritySources

    # A constructed tracker entry for the lab's package (its real fix in the lab
    # repository), naming a CVE that the real KEV excerpt lists (CVE-2014-0160).
    tracker = tmp_path / "tracker.json"
    tracker.write_text(
        '{"lab-openssl": {"CVE-2014-0160": {"releases": {"bookworm": {"status": "resolved",'
        ' "fixed_version": "3.0.11-1+deb12u2", "urgency": "high", "repositories":'
        ' {"bookworm": "3.0.11-1"}}}}}}'
    )
    kev = FIXTURES.parent / "severity" / "kev" / "known_exploited_vulnerabilities.json"
    settings = Settings.load(
        tmp_path, env={"MSPAUTO_DEBIAN_TRACKER": str(tracker), "MSPAUTO_KEV_CATALOG": str(kev)}
    )
    sources = SeveritySources.from_settings(settings)
    project = _project(tmp_path / "p")
    hosts = _hosts(project)[:1]
    report = scan_client(
        project, "acme", hosts, _answer({"acme-01": PLANTED}), None, now=NOW, sources=sources
    )
    (findings,) = report.scan.hosts
    openssl = next(f for f in findings.findings if f.subject == "lab-openssl").detail["update"]
    assert (openssl["severity"], openssl["severity_source"]) == ("high", "debian-security-tracker")
    assert openssl["known_exploited"] and openssl["exploited_due"] == "2022-05-25"
    assert openssl["cves"] == ["CVE-2014-0160"]
    kernel = next(f for f in findings.findings if f.subject == "lab-kernel").detail["update"]
    assert kernel["severity"] == "unrated" and not kernel["known_exploited"]
    reboot = next(f for f in findings.findings if f.subject == "reboot")
    assert [s["source"] for s in reboot.detail["severity_sources"]] == [
        "debian-security-tracker",
        "cisa-kev",
    ]


def test_nothing_is_installed_when_the_scan_left_no_evidence(tmp_path: Path) -> None:
    from mspauto.evidence.store import EvidenceError, NewRecord, StoredRecord
    from mspauto.patching.apply import patch_client

    class FullDisk(EvidenceStore):
        def append(self, new: Sequence[NewRecord]) -> list[StoredRecord]:
            raise EvidenceError("database or disk is full")

    project = _project(tmp_path / "p")
    hosts = _hosts(project)
    store = FullDisk(f"sqlite:///{tmp_path / 'e.db'}")
    untouchable = FakeTransport(lambda host, command: (99, "", ErrorKind.INTERNAL))
    report = patch_client(
        project, "acme", hosts, _answer({h.name: PLANTED for h in hosts}), untouchable, store
    )
    store.close()
    assert report.scan.evidence_error is not None
    assert report.rounds == [] and untouchable.calls == []
    assert report.refused is not None and "could not be recorded" in report.refused


def test_a_release_time_that_moves_forward_does_not_restart_the_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Windows moves LastDeploymentChangeTime with each revision of an update; the
    # deadline must keep counting from the earliest release any scan saw. Here the
    # host reports lab-openssl released on Nov 1, then (a new revision) on Nov 20.
    from mspauto.patching import check as patch_check
    from mspauto.patching.facts import HostPatchFacts

    reported = [datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 20, tzinfo=UTC)]
    parse_apt = patch_check._PARSERS["apt"]

    def revised(stdout: str, stderr: str, rc: int | None) -> HostPatchFacts:
        facts = parse_apt(stdout, stderr, rc)
        when = reported.pop(0)
        return replace(facts, updates=tuple(replace(u, released=when) for u in facts.updates))

    monkeypatch.setitem(patch_check._PARSERS, "apt", revised)
    project = _project(tmp_path / "p")
    hosts = _hosts(project)[:1]
    store = EvidenceStore(f"sqlite:///{tmp_path / 'e.db'}")
    released = []
    for when in (NOW, NOW.replace(day=10)):
        report = scan_client(project, "acme", hosts, _answer({"acme-01": PLANTED}), store, now=when)
        (findings,) = report.scan.hosts
        openssl = next(f for f in findings.findings if f.subject == "lab-openssl")
        released.append(openssl.detail["update"]["released"])
    store.close()
    assert released == ["2026-11-01T00:00:00+00:00"] * 2
