"""`mspauto backups` on lab hosts with real restic (0.14) and borg (1.2) repositories:
one host per state (fresh, stale, failing, missing) plus a stock host with no backup
tool, each reported as it is; a wrong password, a held lock and a host far from UTC;
the password never seen in any process's arguments, the output or the evidence."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mspauto.lab.backups import RESTIC_PASSWORD
from mspauto.lab.fleet import Lab
from mspauto.lab.plan import HostPlan
from mspauto.lab.testing import copy_project, lab_unavailable, mspauto_cli, running_lab, ssh

pytestmark = pytest.mark.integration

CLIENT = "initech"


@pytest.fixture(scope="module")
def backup_lab(
    tmp_path_factory: pytest.TempPathFactory, address_block: Callable[[int], str]
) -> Iterator[Lab]:
    if reason := lab_unavailable():
        pytest.skip(f"lab unavailable: {reason}")
    directory = tmp_path_factory.mktemp("backup-lab") / "fleet"
    # Six planted hosts: one per backup state; one stock host with no backup tool.
    with running_lab(
        directory, 6, [CLIENT], faults=False, stock=1, first_address=address_block(8)
    ) as lab:
        yield lab


def _host(lab: Lab, state: str) -> HostPlan:
    return next(p for p in lab.plans() if p.backup == state)


def _backups(lab: Lab, state: Path, *args: str) -> tuple[int, dict[str, dict[str, Any]]]:
    done = mspauto_cli(
        lab.directory, state, "backups", "--client", CLIENT, "--format", "json", *args
    )
    assert done.stdout, done.stderr
    jobs = {job["host"]: job for job in json.loads(done.stdout)["jobs"]}
    return done.returncode, jobs


def test_each_backup_state_is_reported_as_it_is(backup_lab: Lab, tmp_path: Path) -> None:
    rc, jobs = _backups(backup_lab, tmp_path)
    assert rc == 2  # stale, failing and missing hosts
    states = {plan.backup: jobs[plan.name]["state"] for plan in backup_lab.plans() if plan.backup}
    assert states == {
        "restic-fresh": "ok",
        "restic-stale": "stale",
        "borg-fresh": "ok",
        "borg-stale": "stale",
        "restic-failing": "failed",
        "none": "missing",
    }
    fresh = jobs[_host(backup_lab, "restic-fresh").name]
    # The age is the snapshot's (taken 2 h before lab up), and its integrity was
    # checked on this first run (none recorded before).
    assert 2 * 3600 <= fresh["age_seconds"] < 3 * 3600, fresh
    assert fresh["integrity"]["ok"] is True and fresh["count"] == 2
    assert fresh["integrity"]["at"]  # when, carried forward by later checks
    assert "past the RPO of 1d" in jobs[_host(backup_lab, "borg-stale").name]["reason"]
    # Nothing was planted on the stock host: no policy selects it (no backup tag).
    stock = next(p for p in backup_lab.plans() if p.backup is None)
    assert stock.name not in jobs


def test_a_borg_host_far_from_utc_reports_the_true_age(backup_lab: Lab, tmp_path: Path) -> None:
    """borg prints naive local times; the probe runs it with TZ=UTC, so a host set to
    Auckland time (UTC+13 in December) still reports its backup as 2 hours old."""
    host = _host(backup_lab, "borg-fresh")
    zone = "sudo ln -sf /usr/share/zoneinfo/Pacific/Auckland /etc/localtime && date +%z"
    done = ssh(backup_lab, host, zone)
    assert done.returncode == 0 and done.stdout.strip() == "+1300", done.stdout + done.stderr
    try:
        _, jobs = _backups(backup_lab, tmp_path, "--hosts", host.name)
    finally:
        ssh(backup_lab, host, "sudo ln -sf /usr/share/zoneinfo/Etc/UTC /etc/localtime")
    job = jobs[host.name]
    assert job["state"] == "ok" and 2 * 3600 <= job["age_seconds"] < 3 * 3600, job


@pytest.mark.parametrize(("state", "secret"), [("restic-fresh", "restic"), ("borg-fresh", "borg")])
def test_a_wrong_password_is_unchecked_not_failed(
    backup_lab: Lab, tmp_path: Path, state: str, secret: str
) -> None:
    project = copy_project(backup_lab, tmp_path / "project")
    shutil.copytree(backup_lab.directory / "secrets", project / "secrets")
    (project / "secrets" / f"{secret}.pass").write_text("not-the-password\n")
    host = _host(backup_lab, state)
    done = mspauto_cli(
        project,
        tmp_path / "state",
        *("backups", "--client", CLIENT, "--hosts", host.name, "--format", "json"),
    )
    (job,) = json.loads(done.stdout)["jobs"]
    assert done.returncode == 2
    assert job["state"] == "unchecked" and job["status"] == "error", job
    assert job["problem"]["kind"] == "wrong-password", job


def test_a_running_restic_backup_skips_only_the_integrity_check(
    backup_lab: Lab, tmp_path: Path
) -> None:
    """restic 0.14's check wants the repository to itself; a backup still running (here
    one reading stdin that never ends) holds a lock, the listing still answers."""
    host = _host(backup_lab, "restic-fresh")
    holder = subprocess.Popen(
        [
            *("ssh", "-i", str(backup_lab.key), "-o", "BatchMode=yes"),
            *("-o", f"UserKnownHostsFile={backup_lab.inventory_dir / 'known_hosts' / CLIENT}"),
            f"mspauto@{host.address}",
            "sudo env RESTIC_PASSWORD_FILE=/etc/mspauto-lab/restic.pass "
            "restic -r /var/backups/restic --no-cache backup --stdin --stdin-filename held",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while ssh(backup_lab, host, "sudo ls /var/backups/restic/locks").stdout.strip() == "":
            assert time.monotonic() < deadline, "the backup never took its lock"
        _, jobs = _backups(backup_lab, tmp_path, "--hosts", host.name, "--check-integrity")
    finally:
        holder.kill()
        holder.wait()
        unlock = "sudo env RESTIC_PASSWORD_FILE=/etc/mspauto-lab/restic.pass restic"
        ssh(backup_lab, host, f"{unlock} -r /var/backups/restic --no-cache unlock --remove-all")
    job = jobs[host.name]
    assert job["state"] == "ok" and job["problem"]["kind"] == "locked", job
    assert "(integrity check skipped: " in job["reason"]


def test_no_password_in_arguments_output_or_evidence(backup_lab: Lab, tmp_path: Path) -> None:
    state = tmp_path / "state"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mspauto",
            "--project",
            str(backup_lab.directory),
            "backups",
            "--client",
            CLIENT,
            "--check-integrity",
            "--format",
            "json",
        ],
        env={**os.environ, "MSPAUTO_STATE_DIR": str(state)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = []
    while process.poll() is None:
        ps = subprocess.run(
            ["ps", "-eww", "-o", "args"], capture_output=True, text=True, check=True
        )
        seen.append(ps.stdout)
        time.sleep(0.1)
    stdout, stderr = process.communicate()
    assert json.loads(stdout)["jobs"], stderr
    assert any("restic" in args for args in seen)  # the sampling saw the tools run
    leaks = [line for args in seen for line in args.splitlines() if RESTIC_PASSWORD in line]
    assert not leaks
    assert RESTIC_PASSWORD not in stdout + stderr
    for path in state.rglob("*"):
        assert not path.is_file() or RESTIC_PASSWORD.encode() not in path.read_bytes(), path


def test_a_restore_drill_proves_an_intact_repository(backup_lab: Lab, tmp_path: Path) -> None:
    hosts = [_host(backup_lab, s) for s in ("restic-fresh", "borg-fresh")]
    assert mspauto_cli(backup_lab.directory, tmp_path, "keys", "init").returncode == 0
    done = mspauto_cli(
        backup_lab.directory,
        tmp_path,
        "backups",
        "restore-test",
        "--client",
        CLIENT,
        *(f"--hosts={h.name}" for h in hosts),
        "--format",
        "json",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    drills = {h["host"]: h["drills"] for h in json.loads(done.stdout)["hosts"]}
    for host in hosts:
        (drill,) = drills[host.name]
        detail = drill["detail"]
        assert drill["status"] == "pass", drill
        assert detail["files"] >= 3 and detail["bytes"] > 0 and detail["wrong"] == []
        # The host's own hostname file differs from the backed-up one: changed since.
        assert "/etc/hostname" in detail["changed_since"]
        assert detail["verified"] >= 1 and len(detail["hashes"]["/etc/debian_version"]) == 64
        assert detail["cleanup_ok"] is True
    # Nothing is left in /var/tmp, and the next check shows the drill.
    left = ssh(backup_lab, hosts[0], "ls /var/tmp | grep -c mspauto-drill || true")
    assert left.stdout.strip() == "0"
    _, jobs = _backups(backup_lab, tmp_path, "--hosts", hosts[0].name)
    assert jobs[hosts[0].name]["restore_drill"]["status"] == "pass"
    assert jobs[hosts[0].name]["restore_drill_due"] is False
    # What the control node runs with every check: nothing, until 'every' has passed.
    again = mspauto_cli(
        backup_lab.directory,
        tmp_path,
        *("backups", "restore-test", "--client", CLIENT, "--due"),
        *(f"--hosts={h.name}" for h in hosts),
    )
    assert (again.returncode, again.stdout) == (0, f"no restore drill of {CLIENT} is due\n")
    verified = mspauto_cli(backup_lab.directory, tmp_path, "evidence", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_restore_drill_fails_on_a_corrupted_repository(backup_lab: Lab, tmp_path: Path) -> None:
    host = _host(backup_lab, "restic-stale")
    # Flip bytes in every data pack of the host's repository.
    corrupt = (
        "sudo find /var/backups/restic/data -type f -exec "
        "sh -c 'printf XXXXXXXXXXXXXXXX | dd of=\"$1\" bs=1 seek=64 conv=notrunc 2>/dev/null'"
        " sh {} \\;"
    )
    assert ssh(backup_lab, host, corrupt).returncode == 0
    done = mspauto_cli(
        backup_lab.directory,
        tmp_path,
        "backups",
        "restore-test",
        "--client",
        CLIENT,
        "--hosts",
        host.name,
        "--format",
        "json",
    )
    assert done.returncode == 2, done.stdout + done.stderr
    ((drill,),) = [h["drills"] for h in json.loads(done.stdout)["hosts"]]
    assert drill["status"] == "fail", drill
    # restic 0.14 restores damaged data without a word (exit 0); the listing and the
    # hashes are what catch it.
    assert "ciphertext verification failed" in drill["reason"], drill


def test_a_held_lock_skips_only_the_integrity_check(backup_lab: Lab, tmp_path: Path) -> None:
    """A running borg (here `borg with-lock`) holds the repository: the listing still
    answers, the integrity check cannot run, and the report says so."""
    host = _host(backup_lab, "borg-fresh")
    holder = subprocess.Popen(
        [
            *("ssh", "-i", str(backup_lab.key), "-o", "BatchMode=yes"),
            *("-o", f"UserKnownHostsFile={backup_lab.inventory_dir / 'known_hosts' / CLIENT}"),
            f"mspauto@{host.address}",
            "sudo env BORG_PASSCOMMAND='cat /etc/mspauto-lab/borg.pass' "
            "borg with-lock /var/backups/borg sh -c 'echo locked; sleep 120'",
        ],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        _, jobs = _backups(backup_lab, tmp_path, "--hosts", host.name, "--check-integrity")
    finally:
        holder.kill()
        holder.wait()
        ssh(
            backup_lab,
            host,
            "sudo pkill -f 'borg with-lock'; sudo borg break-lock /var/backups/borg",
        )
    job = jobs[host.name]
    assert job["state"] == "ok", job
    assert job["problem"]["kind"] == "locked"
    assert "(integrity check skipped: " in job["reason"]


def test_a_stock_host_without_the_tool_is_unchecked(backup_lab: Lab, tmp_path: Path) -> None:
    stock = next(p for p in backup_lab.plans() if p.backup is None)
    project = copy_project(backup_lab, tmp_path / "project")
    shutil.copytree(backup_lab.directory / "secrets", project / "secrets")
    (project / "policies" / "backup.yaml").write_text(
        "kind: backup\nname: stock\n"
        f"targets: {{hosts: [{stock.name}]}}\n"
        "schedule: {cron: '0 7 * * *', timezone: client}\n"
        "jobs:\n  - name: etc\n    provider: restic\n    repository: /var/backups/restic\n"
        "    password: {file: secrets/restic.pass}\n"
        "  - name: dumps\n    provider: file-age\n    path: /var/backups/db\n"
    )
    done = mspauto_cli(
        project, tmp_path / "state", "backups", "--client", CLIENT, "--format", "json"
    )
    assert done.returncode == 2, done.stdout + done.stderr
    jobs = {job["job"]: job for job in json.loads(done.stdout)["jobs"]}
    assert jobs["etc"]["state"] == "unchecked" and jobs["etc"]["problem"]["kind"] == "tool-missing"
    assert jobs["dumps"]["state"] == "missing"  # nothing at the path: no backup there


def test_under_a_sudo_password_secrets_go_only_to_the_script(
    backup_lab: Lab, tmp_path: Path
) -> None:
    """With a become password, the repository password is sent only once the script runs
    as root: a sudo that refuses the become password never reads it as a retry."""
    host = _host(backup_lab, "restic-fresh")
    sudoers = "/etc/sudoers.d/mspauto"
    setup = (
        "echo 'mspauto:Right-pw-1' | sudo chpasswd && "
        f"echo 'mspauto ALL=(ALL) ALL' | sudo tee {sudoers}.pw >/dev/null && "
        f"sudo mv {sudoers}.pw {sudoers}"
    )
    assert ssh(backup_lab, host, setup).returncode == 0
    project = copy_project(backup_lab, tmp_path / "project")
    shutil.copytree(backup_lab.directory / "secrets", project / "secrets")
    inventory = project / "inventory" / f"{CLIENT}.yaml"
    inventory.write_text(
        inventory.read_text().replace(
            "      private_key:",
            "      become_password:\n        env: LAB_BECOME\n      private_key:",
        )
    )
    try:
        results = {}
        for become in ("Right-pw-1", "Wrong-pw-2"):
            done = mspauto_cli(
                project,
                tmp_path / "state",
                *("backups", "--client", CLIENT, "--hosts", host.name, "--format", "json"),
                env={"LAB_BECOME": become},
            )
            (job,) = json.loads(done.stdout)["jobs"]
            results[become] = job
    finally:
        back = f"echo 'mspauto ALL=(ALL) NOPASSWD: ALL' > {sudoers}"
        ssh(backup_lab, host, f'echo Right-pw-1 | sudo -S sh -c "{back}"')
    assert results["Right-pw-1"]["state"] == "ok", results["Right-pw-1"]
    wrong = results["Wrong-pw-2"]
    assert wrong["state"] == "unchecked", wrong


def test_own_backups_only_ignores_other_hosts_backups(backup_lab: Lab, tmp_path: Path) -> None:
    """The lab's repositories hold backups made by a host named 'lab': counted for the
    repository, they are no backup of these hosts when only their own count."""
    project = copy_project(backup_lab, tmp_path / "project")
    shutil.copytree(backup_lab.directory / "secrets", project / "secrets")
    policies = project / "policies" / "backup.yaml"
    policies.write_text(
        policies.read_text().replace("  provider:", "  own_backups_only: true\n  provider:")
    )
    assert policies.read_text().count("own_backups_only: true") == 2
    hosts = [_host(backup_lab, s) for s in ("restic-fresh", "borg-fresh")]
    done = mspauto_cli(
        project,
        tmp_path / "state",
        *("backups", "--client", CLIENT, "--format", "json"),
        *(f"--hosts={h.name}" for h in hosts),
    )
    jobs = {job["host"]: job for job in json.loads(done.stdout)["jobs"]}
    for host in hosts:
        assert jobs[host.name]["state"] == "missing", jobs[host.name]
        assert jobs[host.name]["reason"].startswith("the repository holds no backup")


def test_the_monthly_report_of_real_backup_checks(backup_lab: Lab, tmp_path: Path) -> None:
    """The report reads what the lab's checks recorded, is signed, and verifies offline
    (stock minisign, then ``report verify`` against the evidence store)."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from mspauto.config import Settings
    from mspauto.project import load_project

    assert mspauto_cli(backup_lab.directory, tmp_path, "keys", "init").returncode == 0
    _backups(backup_lab, tmp_path)
    project = load_project(Settings.load(backup_lab.directory))
    zone = project.inventory.clients[CLIENT].spec.timezone
    month = datetime.now(UTC).astimezone(ZoneInfo(zone)).strftime("%Y-%m")
    out = tmp_path / "reports"
    done = mspauto_cli(
        backup_lab.directory,
        tmp_path,
        "report",
        "--client",
        CLIENT,
        "--month",
        month,
        "--out",
        str(out),
        "--format",
        "json",
    )
    assert done.returncode == 0, done.stderr
    # The month is still running: its report is named for the day it covers up to.
    folder = Path(json.loads(done.stdout)["reports"][0]["folder"])
    assert folder.parent == out / CLIENT and folder.name.startswith(f"{month}-to-")
    report = json.loads((folder / "report.json").read_text())
    states = {a["host"]: a["state"] for a in report["backups"]["assets"]}
    assert states[_host(backup_lab, "restic-fresh").name] == "ok"
    assert states[_host(backup_lab, "borg-stale").name] == "stale"
    assert states[_host(backup_lab, "none").name] == "missing"
    assert report["backups"]["breaches"], "stale and missing jobs are in breach"
    public = tmp_path / "keys" / "evidence.key.pub"
    stock = subprocess.run(
        ["minisign", "-Vm", str(folder / "manifest.json"), "-p", str(public)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert stock.returncode == 0, stock.stderr
    verified = mspauto_cli(
        backup_lab.directory,
        tmp_path,
        "report",
        "verify",
        str(folder),
        "--public-key",
        str(public),
        "--evidence",
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
