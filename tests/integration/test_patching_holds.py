"""A held package stays at its version even when an approved update depends on a newer
one (the lab's lab-webserver update needs lab-openssl's): the first try installs a
host's approved updates together and fails; the retry installs each alone, so the
update without the held dependency goes in and the other fails with apt's reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mspauto.lab.fleet import Lab
from mspauto.lab.packages import LAB_PACKAGES
from mspauto.lab.testing import lab_unavailable, running_lab, ssh

pytestmark = pytest.mark.integration

CLIENT = "hooli"
POLICY = """\
kind: patch
name: hooli-patch
targets: {clients: [hooli]}
schedule: {cron: '0 1 * * *', timezone: client}
approvals:
  - match: {classifications: [security]}
    action: auto
  - action: manual
holds: [lab-openssl]
retries: 1
reboot: {policy: never}
"""
INSTALLED = {p.name: p.installed for p in LAB_PACKAGES}
UPDATED = {p.name: p.update for p in LAB_PACKAGES}


@pytest.fixture(scope="module")
def hold_lab(
    tmp_path_factory: pytest.TempPathFactory, address_block: Callable[[int], str]
) -> Iterator[Lab]:
    if reason := lab_unavailable():
        pytest.skip(f"lab unavailable: {reason}")
    directory = tmp_path_factory.mktemp("hold-lab") / "fleet"
    with running_lab(directory, 1, [CLIENT], faults=False, first_address=address_block(43)) as lab:
        (lab.directory / "policies" / "patch.yaml").write_text(POLICY)
        yield lab


def test_a_held_dependency_stays_and_blocks_only_what_needs_it(
    hold_lab: Lab, tmp_path: Path
) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mspauto",
            "--project",
            str(hold_lab.directory),
            "patch",
            "--client",
            CLIENT,
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        env={**os.environ, "MSPAUTO_STATE_DIR": str(tmp_path)},
    )
    assert done.returncode == 2, done.stderr  # an approved update did not install
    report = json.loads(done.stdout)
    assert len(report["install_run_ids"]) == 2  # together, then one by one
    (host,) = report["hosts"]
    outcomes = {o["subject"]: o for o in host["installed"]}
    assert outcomes["lab-kernel"]["status"] == "installed"
    webserver = outcomes["lab-webserver"]
    assert webserver["status"] == "failed"
    assert "held broken packages" in webserver["message"], webserver["message"]
    (plan,) = hold_lab.plans()
    versions = dict(
        line.split("\t")
        for line in ssh(hold_lab, plan, "dpkg-query -W 'lab-*'").stdout.splitlines()
    )
    assert versions["lab-openssl"] == INSTALLED["lab-openssl"]  # held, whatever depended on it
    assert versions["lab-webserver"] == INSTALLED["lab-webserver"]
    assert versions["lab-kernel"] == UPDATED["lab-kernel"]
    assert ssh(hold_lab, plan, "apt-mark showhold").stdout.strip() == ""


REBOOT_POLICY = """\
kind: patch
name: hooli-patch
targets: {clients: [hooli]}
schedule: {cron: '0 1 * * *', timezone: client}
approvals:
  - action: auto
reboot: {policy: if-required, reconnect_wait: 2m}
"""


def test_a_host_that_needs_a_reboot_is_rebooted_and_checked_again(
    hold_lab: Lab, tmp_path: Path
) -> None:
    (plan,) = hold_lab.plans()
    # The earlier test left lab-kernel installed: its postinst asked for a reboot.
    assert ssh(hold_lab, plan, "test -e /run/reboot-required").returncode == 0
    boot_before = ssh(hold_lab, plan, "cat /proc/sys/kernel/random/boot_id").stdout
    (hold_lab.directory / "policies" / "patch.yaml").write_text(REBOOT_POLICY)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mspauto",
            "--project",
            str(hold_lab.directory),
            "patch",
            "--client",
            CLIENT,
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        env={**os.environ, "MSPAUTO_STATE_DIR": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr + done.stdout
    (host,) = json.loads(done.stdout)["hosts"]
    assert host["reboot_done"] == "rebooted"
    assert ssh(hold_lab, plan, "cat /proc/sys/kernel/random/boot_id").stdout != boot_before
    # Scanned again after the reboot: it answered, and the reboot it waited for is done.
    assert host["unchecked"] is None and host["pending_after"] == []
    assert ssh(hold_lab, plan, "test -e /run/reboot-required").returncode == 1
