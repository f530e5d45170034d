"""Rings and pre-checks on a lab of its own (client wayne: a canary, a pilot and a broad
host). A canary whose install fails stops the rollout; a ring's wait holds the next
ring back and says until when; a host failing its pre-checks is not patched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from mspauto.evidence.records import RecordKind
from mspauto.evidence.store import EvidenceStore
from mspauto.lab.fleet import Lab
from mspauto.lab.packages import LAB_PACKAGES
from mspauto.lab.plan import HostPlan
from mspauto.lab.testing import lab_unavailable, mspauto_cli, running_lab, ssh

pytestmark = pytest.mark.integration

CLIENT = "wayne"
RINGS = ("canary", "pilot", "broad")
INSTALLED = {p.name: p.installed for p in LAB_PACKAGES}
SECURITY = {p.name for p in LAB_PACKAGES if p.suite.endswith("-security")}


@pytest.fixture(scope="module")
def ring_lab(
    tmp_path_factory: pytest.TempPathFactory, address_block: Callable[[int], str]
) -> Iterator[Lab]:
    if reason := lab_unavailable():
        pytest.skip(f"lab unavailable: {reason}")
    directory = tmp_path_factory.mktemp("ring-lab") / "fleet"
    with running_lab(directory, 3, [CLIENT], faults=False, first_address=address_block(7)) as lab:
        inventory = lab.inventory_dir / f"{CLIENT}.yaml"
        document = yaml.safe_load(inventory.read_text())
        for host, ring in zip(sorted(document["hosts"]), RINGS, strict=True):
            document["hosts"][host]["ring"] = ring
        inventory.write_text(yaml.safe_dump(document))
        yield lab


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ring-state")


def _policy(lab: Lab, extra: str) -> None:
    (lab.directory / "policies" / "patch.yaml").write_text(
        "kind: patch\nname: wayne-patch\ntargets: {clients: [wayne]}\n"
        "schedule: {cron: '0 1 * * *', timezone: client}\n"
        "approvals:\n  - match: {classifications: [security]}\n    action: auto\n"
        "  - action: reject\nreboot: {policy: never}\n" + extra
    )


def mspauto(lab: Lab, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return mspauto_cli(lab.directory, state, *args)


def _hosts(lab: Lab) -> list[HostPlan]:
    return sorted(lab.plans(), key=lambda p: p.name)  # canary, pilot, broad


def _versions(lab: Lab, host: HostPlan) -> dict[str, str]:
    done = ssh(lab, host, "dpkg-query -W 'lab-*'")
    assert done.returncode == 0, done.stderr
    return dict(line.split("\t") for line in done.stdout.splitlines())


def _patch(
    lab: Lab, state: Path, *args: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    done = mspauto(lab, state, "patch", "--client", CLIENT, "--format", "json", *args)
    report: dict[str, Any] = json.loads(done.stdout)
    return done, report


@contextmanager
def dpkg_lock_held(lab: Lab, host: HostPlan) -> Iterator[None]:
    """Another process holds the dpkg frontend lock on ``host`` (as unattended-upgrades
    does while it installs); the package lists stay free, so a scan still works."""
    holder = subprocess.Popen(
        [
            "ssh",
            "-i",
            str(lab.key),
            "-o",
            f"UserKnownHostsFile={lab.inventory_dir / 'known_hosts' / host.client}",
            "-o",
            "BatchMode=yes",
            f"mspauto@{host.address}",
            # Held until its input ends (the lock must not outlive the test's need).
            'sudo python3 -c \'import fcntl, sys; f = open("/var/lib/dpkg/lock-frontend", '
            '"w"); fcntl.lockf(f, fcntl.LOCK_EX); print("locked", flush=True); '
            "sys.stdin.read()'",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        try:
            holder.wait(timeout=30)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.wait()


def test_a_failed_canary_stops_the_rollout(ring_lab: Lab, state: Path) -> None:
    canary, pilot, broad = _hosts(ring_lab)
    _policy(
        ring_lab,
        "retries: 1\nrollout:\n  - {ring: canary, stop_if_failed_percent: 0}\n"
        "  - {ring: pilot, stop_if_failed_percent: 10}\n  - {ring: broad}\n",
    )
    assert mspauto(ring_lab, state, "keys", "init").returncode == 0  # signed evidence
    with dpkg_lock_held(ring_lab, canary):  # the canary's install cannot start
        done, report = _patch(ring_lab, state, "--lock-timeout", "3")
    assert done.returncode == 2, done.stderr
    (stage,) = report["stages"]
    assert stage["ring"] == "canary" and stage["failed"] == [canary.name]
    assert stage["stopped"] == (
        "ring canary: 1 of 1 hosts failed (100% > 0%): the rollout of wayne-patch stops here"
    )
    assert len(report["install_run_ids"]) == 2  # the try and one retry
    (canary_report,) = [h for h in report["hosts"] if h["host"] == canary.name]
    assert {o["status"] for o in canary_report["installed"]} == {"failed"}
    assert "dpkg frontend lock" in canary_report["installed"][0]["message"]
    for host in (pilot, broad):
        assert _versions(ring_lab, host) == INSTALLED  # never reached
    store = EvidenceStore(f"sqlite:///{state / 'evidence.db'}")
    try:
        (record,) = store.records(chain=CLIENT, kind=RecordKind.PATCH_ROLLOUT)
        assert record.payload["stopped"] == stage["stopped"]
    finally:
        store.close()
    # The stop holds in later runs, even with the canary healthy again, until a person
    # resumes the rollout.
    again, held = _patch(ring_lab, state)
    assert again.returncode == 2, again.stderr
    assert held["install_run_ids"] == []
    (reason,) = held["held_rollouts"]
    assert reason.startswith("wayne-patch: the rollout stopped earlier (ring canary: 1 of 1")
    assert _versions(ring_lab, canary) == INSTALLED
    # Every record of the run, the rollout's included, is under a signed checkpoint.
    verified = mspauto(ring_lab, state, "evidence", "verify")
    assert verified.returncode == 0, verified.stderr
    assert "no checkpoint covers them" not in verified.stderr + verified.stdout


def test_a_rings_wait_holds_the_next_ring_back(ring_lab: Lab, state: Path) -> None:
    canary, pilot, _ = _hosts(ring_lab)
    _policy(
        ring_lab,
        "rollout:\n  - {ring: canary, stop_if_failed_percent: 0, wait: 2h}\n"
        "  - {ring: pilot}\n  - {ring: broad}\n",
    )
    done, report = _patch(
        ring_lab, state, "--resume-rollout", "--reason", "canary's dpkg lock was a stuck job"
    )
    assert done.returncode == 0, done.stderr + done.stdout
    (stage,) = report["stages"]
    assert (stage["ring"], stage["failed"]) == ("canary", [])
    (waiting,) = report["waiting"]
    assert waiting.startswith("wayne-patch: ring pilot may go after ")
    assert waiting.endswith("(ring canary waits 2h)")
    assert {n for n, v in _versions(ring_lab, canary).items() if v != INSTALLED[n]} == SECURITY
    assert _versions(ring_lab, pilot) == INSTALLED
    # A second run still waits: the canary's install is in the evidence.
    again = mspauto(ring_lab, state, "patch", "--client", CLIENT)
    assert "waiting: wayne-patch: ring pilot may go after" in again.stdout
    assert _versions(ring_lab, pilot) == INSTALLED


def test_a_host_failing_its_pre_checks_is_not_patched(ring_lab: Lab, state: Path) -> None:
    _, pilot, broad = _hosts(ring_lab)
    # Broad runs cron; the pilot does not (the lab starts no cron), so it fails.
    assert ssh(ring_lab, broad, "sudo service cron start").returncode == 0
    _policy(ring_lab, "pre_checks: {min_free_disk_mb: 50, services: [ssh, cron]}\n")
    done = mspauto(ring_lab, state, "patch", "--client", CLIENT)
    assert done.returncode == 2, done.stderr
    assert (
        f"{pilot.name}: NOT PATCHED: pre-checks failed: service cron active: inactive"
        in done.stdout
    )
    assert _versions(ring_lab, pilot) == INSTALLED
    assert {n for n, v in _versions(ring_lab, broad).items() if v != INSTALLED[n]} == SECURITY


def test_a_host_going_down_mid_install_is_reported_and_the_others_finish(
    ring_lab: Lab, state: Path
) -> None:
    canary, pilot, broad = _hosts(ring_lab)
    _policy(ring_lab, "retries: 1\n")
    with dpkg_lock_held(ring_lab, pilot):  # the pilot's install waits for the lock...
        run = subprocess.Popen(
            [
                *(sys.executable, "-m", "mspauto", "--project", str(ring_lab.directory)),
                *("patch", "--client", CLIENT, "--format", "json", "--lock-timeout", "120"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "MSPAUTO_STATE_DIR": str(state)},
        )
        try:
            deadline = time.monotonic() + 120
            # (The bracket keeps pgrep from finding the shell that runs it.)
            while ssh(ring_lab, pilot, "pgrep -f 'apt-get instal[l]'").returncode != 0:
                assert run.poll() is None and time.monotonic() < deadline, "no install began"
            ring_lab.stop_host(pilot.name)  # ...and the host goes down meanwhile
            stdout, stderr = run.communicate(timeout=600)
        finally:
            run.kill()
            ring_lab.start_host(pilot.name)
    assert run.returncode == 2, stderr
    report = json.loads(stdout)
    assert report["failed_hosts"] == [pilot.name]
    (pilot_report,) = [h for h in report["hosts"] if h["host"] == pilot.name]
    # Lost mid-install: reported as failed with why, never retried blindly.
    assert {o["status"] for o in pilot_report["installed"]} == {"failed"}
    assert len(report["install_run_ids"]) == 1
    for host in (canary, broad):
        assert {n for n, v in _versions(ring_lab, host).items() if v != INSTALLED[n]} == SECURITY
