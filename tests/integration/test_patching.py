"""Patching on a lab of its own (client umbrella, three planted hosts), in order: a dry
run lists exactly what apt lists; a held package lock is one clear reason; outside the
window nothing is installed unless forced with a reason; a forced run installs what
the policy approves and nothing else, while a host that is down is reported and the
others finish."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mspauto.evidence.records import RecordKind, read_change_result
from mspauto.evidence.store import EvidenceStore
from mspauto.lab.fleet import Lab
from mspauto.lab.packages import LAB_PACKAGES, SECURITY_SUITE
from mspauto.lab.plan import HostPlan
from mspauto.lab.testing import lab_unavailable, mspauto_cli, running_lab, ssh

pytestmark = pytest.mark.integration

CLIENT = "umbrella"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
POLICY = """\
kind: patch
name: umbrella-patch
targets: {{clients: [umbrella]}}
schedule: {{cron: '0 1 * * *', timezone: client}}
{window}
approvals:
  - match: {{classifications: [security]}}
    action: auto
  - match: {{names: ['^lab-editor$']}}
    action: defer
    defer: 14d
  - action: manual
holds: [lab-tools]
reboot: {{policy: never}}
"""


@pytest.fixture(scope="module")
def patch_lab(
    tmp_path_factory: pytest.TempPathFactory, address_block: Callable[[int], str]
) -> Iterator[Lab]:
    if reason := lab_unavailable():
        pytest.skip(f"lab unavailable: {reason}")
    directory = tmp_path_factory.mktemp("patch-lab") / "fleet"
    with running_lab(directory, 3, [CLIENT], faults=False, first_address=address_block(6)) as lab:
        yield lab


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("patch-state")


def _policy(lab: Lab, window: str = "") -> None:
    (lab.directory / "policies" / "patch.yaml").write_text(POLICY.format(window=window))


def _closed_window() -> str:
    # A one-hour window three days from now (in UTC: the lab's clients are in UTC).
    day = WEEKDAYS[(datetime.now(UTC) + timedelta(days=3)).weekday()]
    return f"window: {{days: [{day}], start: '03:00', duration: 1h}}"


def mspauto(lab: Lab, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return mspauto_cli(lab.directory, state, *args)


def _hosts(lab: Lab) -> list[HostPlan]:
    return sorted(lab.plans(), key=lambda p: p.name)


def _versions(lab: Lab, host: HostPlan) -> dict[str, str]:
    done = ssh(lab, host, "dpkg-query -W 'lab-*'")
    assert done.returncode == 0, done.stderr
    return dict(line.split("\t") for line in done.stdout.splitlines())


INSTALLED = {p.name: p.installed for p in LAB_PACKAGES}
UPDATED = {p.name: p.update for p in LAB_PACKAGES}


def test_a_dry_run_lists_exactly_what_apt_lists(patch_lab: Lab, state: Path) -> None:
    _policy(patch_lab)
    done = mspauto(patch_lab, state, "patch", "--client", CLIENT, "--dry-run", "--format", "json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["dry_run"] and report["install_run_ids"] == []
    listed = {h["host"]: h for h in report["hosts"]}
    for host in _hosts(patch_lab):
        upgradable = ssh(patch_lab, host, "apt list --upgradable 2>/dev/null")
        # lab-openssl/bookworm-security 3.0.11-1+deb12u2 all [upgradable from: 3.0.11-1]
        expected = {
            m[1]: (m[4], m[3], m[2] == SECURITY_SUITE)
            for m in re.finditer(
                r"^(\S+)/(\S+) (\S+) \S+ \[upgradable from: ([^\]]+)\]",
                upgradable.stdout,
                re.MULTILINE,
            )
        }
        assert len(expected) == len(LAB_PACKAGES), upgradable.stdout
        seen = {
            u["name"]: (u["installed"], u["candidate"], u["classification"] == "security")
            for u in listed[host.name]["updates"]
        }
        assert seen == expected
        decisions = {u["name"]: u["decision"]["action"] for u in listed[host.name]["updates"]}
        assert decisions == {
            "lab-openssl": "install",
            "lab-webserver": "install",
            "lab-kernel": "install",
            "lab-editor": "defer",
            "lab-tools": "hold",
        }
        assert _versions(patch_lab, host) == INSTALLED  # a dry run changes nothing


def test_a_held_package_lock_is_one_clear_reason(patch_lab: Lab, state: Path) -> None:
    first = _hosts(patch_lab)[0]
    holder = subprocess.Popen(
        [
            "ssh",
            "-i",
            str(patch_lab.key),
            "-o",
            f"UserKnownHostsFile={patch_lab.inventory_dir / 'known_hosts' / CLIENT}",
            "-o",
            "BatchMode=yes",
            f"mspauto@{first.address}",
            'sudo python3 -c \'import fcntl, time; f = open("/var/lib/apt/lists/lock", "w"); '
            'fcntl.lockf(f, fcntl.LOCK_EX); print("locked", flush=True); time.sleep(30)\'',
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        done = mspauto(
            patch_lab, state, "patch", "--client", CLIENT, "--dry-run", "--lock-timeout", "3"
        )
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 2, done.stderr
    (line,) = [line for line in done.stdout.splitlines() if line.startswith(first.name)]
    assert line.startswith(
        f"{first.name}: NOT SCANNED (the package lock /var/lib/apt/lists/lock stayed held by "
        "process"
    ), line
    others = [h.name for h in _hosts(patch_lab)[1:]]
    assert all(f"{name}: 1 defer, 1 hold, 3 install" in done.stdout for name in others)


def test_outside_the_window_nothing_is_installed_unless_forced_with_a_reason(
    patch_lab: Lab, state: Path
) -> None:
    _policy(patch_lab, _closed_window())
    done = mspauto(patch_lab, state, "patch", "--client", CLIENT)
    assert done.returncode == 0, done.stderr
    assert "outside the maintenance window" in done.stdout
    assert f"{CLIENT}: nothing installed: 3 host(s) outside the maintenance window" in done.stdout
    for host in _hosts(patch_lab):
        assert _versions(patch_lab, host) == INSTALLED
    refused = mspauto(patch_lab, state, "patch", "--client", CLIENT, "--force-window")
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        "error: --force-window needs --reason 'why' (it is recorded with the run)"
    )


def test_a_forced_run_installs_the_approved_and_nothing_else(patch_lab: Lab, state: Path) -> None:
    _policy(patch_lab, _closed_window())
    hosts = _hosts(patch_lab)
    down = hosts[-1]
    patch_lab.stop_host(down.name)
    done = mspauto(
        patch_lab,
        state,
        "patch",
        "--client",
        CLIENT,
        "--force-window",
        "--reason",
        "emergency: CVE fix ordered by the client",
        "--format",
        "json",
    )
    assert done.returncode == 2, done.stderr  # the down host was not patched
    report = json.loads(done.stdout)
    by_host = {h["host"]: h for h in report["hosts"]}
    assert by_host[down.name]["unchecked"].startswith("unreachable")
    for host in hosts[:-1]:
        versions = _versions(patch_lab, host)
        for name in ("lab-openssl", "lab-webserver", "lab-kernel"):
            assert versions[name] == UPDATED[name]
        # Deferred and held stay where they were; the temporary holds are released.
        assert versions["lab-editor"] == INSTALLED["lab-editor"]
        assert versions["lab-tools"] == INSTALLED["lab-tools"]
        assert ssh(patch_lab, host, "apt-mark showhold").stdout.strip() == ""
        assert {o["subject"]: o["status"] for o in by_host[host.name]["installed"]} == {
            "lab-openssl": "installed",
            "lab-webserver": "installed",
            "lab-kernel": "installed",
        }
        assert sorted(by_host[host.name]["pending_after"]) == ["lab-editor", "lab-tools"]
        # lab-kernel asks for a reboot; the policy says never, and the run says so.
        assert by_host[host.name]["reboot_done"] == "pending: the policy says never"
    # The evidence: the forced reason in the install run, versions per update.
    store = EvidenceStore(f"sqlite:///{state / 'evidence.db'}")
    try:
        started = next(
            r
            for r in store.records(chain=CLIENT, run_id=report["install_run_ids"][0])
            if r.kind == RecordKind.RUN_STARTED
        )
        assert started.payload["command"].endswith(
            "(outside the maintenance window, forced: emergency: CVE fix ordered by the client)"
        )
        changes = [
            read_change_result(r.kind, r.payload)
            for r in store.records(chain=CLIENT, kind=RecordKind.CHANGE_RESULT)
        ]
        assert sorted(c.host for c in changes) == [h.name for h in hosts[:-1]]
        openssl = next(o for o in changes[0].changes if o.subject == "lab-openssl")
        assert openssl.message == "3.0.11-1 -> 3.0.11-1+deb12u2"
    finally:
        store.close()


def test_patch_status_reads_the_evidence_alone(patch_lab: Lab, state: Path) -> None:
    hosts = _hosts(patch_lab)
    done = mspauto(patch_lab, state, "patch", "status", "--client", CLIENT, "--format", "json")
    assert done.returncode == 3, done.stderr  # the down host's last scan failed
    statuses = {s["host"]: s for s in json.loads(done.stdout)["hosts"]}
    assert statuses[hosts[-1].name]["unchecked"].startswith("unreachable")
    for host in hosts[:-1]:
        pending = {p["name"]: p for p in statuses[host.name]["pending"]}
        assert sorted(pending) == ["lab-editor", "lab-tools"]
        editor = pending["lab-editor"]
        # First seen by the first dry run, carried through every scan since.
        assert editor["clock"] == "detection" and editor["action"] == "defer"
        assert editor["first_detected"] < statuses[host.name]["scanned_at"]
        assert not editor["overdue"]
