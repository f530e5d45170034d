"""The lab fleet: real hosts, reachable the way production hosts are, with planted state.

Everything here goes through the real OpenSSH client with strict host-key checking and
the key, inventory and known_hosts files that ``lab up`` wrote.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from mspauto.lab.fleet import Lab, ssh_banner
from mspauto.lab.host import LabHost
from mspauto.lab.plan import HostPlan
from mspauto.lab.system import LabError, alive, mounts_under
from mspauto.lab.testing import lab_unavailable, running_lab, ssh

pytestmark = pytest.mark.integration


def _hosts(lab: Lab, **wanted: object) -> list[HostPlan]:
    found = [p for p in lab.plans() if all(getattr(p, k) == v for k, v in wanted.items())]
    assert found, f"the lab has no host with {wanted}"
    return found


def _pick(lab: Lab, **wanted: object) -> HostPlan:
    return _hosts(lab, **wanted)[0]


def test_every_healthy_host_answers_with_the_written_files(lab: Lab) -> None:
    for plan in _hosts(lab, fault=None):
        result = ssh(lab, plan, "hostname")
        assert result.returncode == 0, (plan.name, result.stderr)
        assert result.stdout.strip() == plan.name


def test_root_login_follows_the_planted_baseline(lab: Lab) -> None:
    compliant = ssh(lab, _pick(lab, baseline="compliant", fault=None), "id -u", user="root")
    drifted = ssh(lab, _pick(lab, baseline="drifted", fault=None), "id -u", user="root")
    assert compliant.returncode == 255 and "Permission denied" in compliant.stderr
    assert drifted.returncode == 0 and drifted.stdout.strip() == "0"


def test_access_faults_are_real(lab: Lab) -> None:
    down = ssh(lab, _pick(lab, fault="sshd-down"), "true")
    assert "Connection refused" in down.stderr
    changed = ssh(lab, _pick(lab, fault="changed-key"), "true")
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in changed.stderr
    rejected = ssh(lab, _pick(lab, fault="rejects-key"), "true")
    assert "Permission denied (publickey" in rejected.stderr


def test_a_host_sees_only_itself(lab: Lab) -> None:
    plan = _pick(lab, fault=None)
    result = ssh(
        lab,
        plan,
        "cat /proc/1/comm; ps -e --no-headers | wc -l; "
        "awk '{print $2}' /proc/mounts; df --output=size -B1M / | tail -1",
    )
    comm, processes, *mounts, disk_mb = result.stdout.split()
    assert comm == "sshd"
    assert int(processes) < 10  # sshd, this session, ps: none of the control node's
    assert "/" in mounts and not any(m.startswith(("/work", "/tmp/")) for m in mounts)
    assert 200 <= int(disk_mb) <= 300  # its own small disk, not the control node's


def test_apt_offers_security_and_regular_updates(lab: Lab) -> None:
    plan = _pick(lab, fault=None)
    result = ssh(lab, plan, "sudo apt-get update -qq && apt list --upgradable 2>/dev/null")
    assert result.returncode == 0, result.stderr
    upgradable = {
        line.split("/")[0]: line.split("/")[1].split()[0]
        for line in result.stdout.splitlines()
        if "/" in line
    }
    assert upgradable == {
        "lab-openssl": "bookworm-security",
        "lab-webserver": "bookworm-security",
        "lab-kernel": "bookworm-security",
        "lab-tools": "bookworm",
        "lab-editor": "bookworm",
    }
    sources = ssh(
        lab,
        plan,
        "cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null | grep -i uris",
    )
    assert sources.stdout.split() == ["URIs:", lab.state()["repo"]["url"]]  # type: ignore[index]


@pytest.mark.parametrize(
    ("baseline", "root_login", "max_tries", "shadow", "aslr", "uid0"),
    [
        ("compliant", "no", "4", "640", "2", "root"),
        ("drifted", "yes", "10", "644", "0", "root toor"),
    ],
)
def test_planted_baseline_is_effective(
    lab: Lab, baseline: str, root_login: str, max_tries: str, shadow: str, aslr: str, uid0: str
) -> None:
    plan = _pick(lab, baseline=baseline, fault=None)
    result = ssh(
        lab,
        plan,
        "sudo sshd -T | grep -E '^(permitrootlogin|maxauthtries) '; "
        "stat -c %a /etc/shadow; "
        "grep randomize /etc/sysctl.d/60-lab-baseline.conf; "
        "awk -F: '$3 == 0 {print $1}' /etc/passwd | xargs",
    )
    lines = result.stdout.splitlines()
    assert f"permitrootlogin {root_login}" in lines
    assert f"maxauthtries {max_tries}" in lines
    assert shadow in lines
    assert f"kernel.randomize_va_space = {aslr}" in lines
    assert lines[-1] == uid0


def _restic(lab: Lab, plan: HostPlan) -> subprocess.CompletedProcess[str]:
    return ssh(
        lab,
        plan,
        "sudo restic snapshots --json --latest 1 --no-lock "
        "-r /var/backups/restic --password-file /etc/mspauto-lab/restic.pass",
    )


def _borg(lab: Lab, plan: HostPlan) -> subprocess.CompletedProcess[str]:
    return ssh(
        lab,
        plan,
        "sudo BORG_PASSCOMMAND='cat /etc/mspauto-lab/borg.pass' "
        "borg list --json --last 1 /var/backups/borg",
    )


def test_backup_states_are_real(lab: Lab) -> None:
    now = datetime.now(UTC)
    fresh = json.loads(_restic(lab, _pick(lab, backup="restic-fresh", fault=None)).stdout)
    stale = json.loads(_restic(lab, _pick(lab, backup="restic-stale", fault=None)).stdout)
    fresh_age = now - datetime.fromisoformat(fresh[0]["time"])
    stale_age = now - datetime.fromisoformat(stale[0]["time"])
    assert timedelta(hours=1) < fresh_age < timedelta(hours=6)
    assert timedelta(days=2) < stale_age < timedelta(days=4)

    failing = _restic(lab, _pick(lab, backup="restic-failing", fault=None))
    assert failing.returncode != 0 and "config" in failing.stderr
    absent = _restic(lab, _pick(lab, backup="none", fault=None))
    assert absent.returncode != 0

    borg_fresh = json.loads(_borg(lab, _pick(lab, backup="borg-fresh", fault=None)).stdout)
    borg_stale = json.loads(_borg(lab, _pick(lab, backup="borg-stale", fault=None)).stdout)
    # borg reports local time without a zone; lab hosts run in UTC.
    borg_fresh_age = now - datetime.fromisoformat(borg_fresh["archives"][0]["time"]).replace(
        tzinfo=UTC
    )
    borg_stale_age = now - datetime.fromisoformat(borg_stale["archives"][0]["time"]).replace(
        tzinfo=UTC
    )
    assert timedelta(hours=1) < borg_fresh_age < timedelta(hours=6)
    assert timedelta(days=2) < borg_stale_age < timedelta(days=4)


def test_stop_and_start_a_host(lab: Lab) -> None:
    plan = _pick(lab, fault=None)
    lab.stop_host(plan.name)
    try:
        assert ssh_banner(plan.address) is None
        assert "Connection refused" in ssh(lab, plan, "true").stderr
    finally:
        lab.start_host(plan.name)
    assert ssh(lab, plan, "hostname").stdout.strip() == plan.name


def test_a_frozen_host_accepts_connections_but_never_answers(lab: Lab) -> None:
    plan = _pick(lab, fault=None, baseline="drifted")
    lab.freeze_host(plan.name)
    try:
        started = time.monotonic()
        assert ssh_banner(plan.address, timeout=1.5) is None
        assert time.monotonic() - started >= 1.4  # it hung: not refused
    finally:
        lab.thaw_host(plan.name)
    assert ssh_banner(plan.address) is not None


def test_fill_and_free_a_hosts_disk(lab: Lab) -> None:
    plan = _pick(lab, fault=None)
    lab.fill_disk(plan.name)
    try:
        full = ssh(lab, plan, "df --output=avail -B1 / | tail -1; echo x > /tmp/probe")
        assert full.stdout.split()[0] == "0"
        assert "No space left on device" in full.stderr
    finally:
        lab.free_disk(plan.name)
    assert ssh(lab, plan, "echo x > /tmp/probe && echo written").stdout.strip() == "written"


def test_the_written_project_validates(lab: Lab) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mspauto",
            "--project",
            str(lab.directory),
            "validate",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert sum(c["hosts"] for c in report["clients"]) == len(lab.plans())
    for client in ("acme", "globex"):
        known = (lab.inventory_dir / "known_hosts" / client).read_text().splitlines()
        assert len(known) == len(_hosts(lab, client=client))


def test_second_up_reuses_the_running_fleet(lab: Lab) -> None:
    before = {h["name"]: h["pid"] for h in lab.state()["hosts"]}  # type: ignore[index]
    plans = lab.plans()
    lab.up(
        len(plans),
        ["acme", "globex"],
        faults=True,
        first_address=plans[0].address,
        say=lambda _: None,
    )
    after = {h["name"]: h["pid"] for h in lab.state()["hosts"]}  # type: ignore[index]
    assert after == before


def test_up_refuses_a_different_fleet_in_the_same_folder(lab: Lab) -> None:
    with pytest.raises(LabError, match="a different lab is up"):
        lab.up(3, ["acme"], faults=False, first_address=lab.plans()[0].address, say=lambda _: None)


def test_down_leaves_no_mount_process_or_file(
    tmp_path: Path, address_block: Callable[[int], str]
) -> None:
    if reason := lab_unavailable():
        pytest.skip(f"lab unavailable: {reason}")
    directory = tmp_path / "small-lab"
    with running_lab(
        directory, 2, ["initech"], faults=False, first_address=address_block(1)
    ) as fleet:
        pids = [h["pid"] for h in fleet.state()["hosts"]]  # type: ignore[index]
        repo_pid = fleet.state()["repo"]["pid"]  # type: ignore[index]
        assert mounts_under(directory)
    assert not mounts_under(directory)
    assert not any(alive(pid) for pid in [*pids, repo_pid])
    leftovers = [
        p
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and str(directory) in _cmdline(p) and alive(int(p.name))
    ]
    assert leftovers == []
    assert not directory.exists()


def _cmdline(process: Path) -> str:
    try:
        return (process / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_a_failed_up_says_why_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, address_block: Callable[[int], str]
) -> None:
    if reason := lab_unavailable():
        pytest.skip(f"lab unavailable: {reason}")
    start = LabHost.start
    first = address_block(2)
    second = str(ipaddress.IPv4Address(first) + 1)

    def sshd_dies_on_the_second_host(host: LabHost) -> int:
        if host.plan.name != "initech-lab02":
            return start(host)
        host.log.write_text(f"sshd: Bind to port 22 on {second} failed.\n")
        return subprocess.Popen(["sh", "-c", "exit 1"]).pid

    monkeypatch.setattr(LabHost, "start", sshd_dies_on_the_second_host)
    directory = tmp_path / "doomed-lab"
    with pytest.raises(
        LabError,
        match=rf"initech-lab02 \({re.escape(second)}\) did not start sshd: sshd: Bind to port 22",
    ):
        Lab(directory).up(2, ["initech"], faults=False, first_address=first, say=lambda _: None)
    assert not mounts_under(directory)
    assert not directory.exists()
    assert ssh_banner(first) is None  # the first host was stopped again


def test_a_host_cannot_change_the_machine(lab: Lab) -> None:
    plan = _pick(lab, fault=None)
    before = Path("/proc/sys/kernel/randomize_va_space").read_text()
    result = ssh(
        lab,
        plan,
        "sudo sh -c 'echo 0 > /proc/sys/kernel/randomize_va_space'; "
        "echo rc=$?; sudo iptables -S >/dev/null 2>&1; echo rc=$?; "
        "sudo mount -t tmpfs x /mnt 2>/dev/null; echo rc=$?",
    )
    codes = result.stdout.split()
    assert len(codes) == 3 and "rc=0" not in codes, codes
    assert Path("/proc/sys/kernel/randomize_va_space").read_text() == before


def test_fault_commands_ignore_a_pid_that_is_not_the_labs(lab: Lab) -> None:
    stranger = subprocess.Popen(["sleep", "60"])
    state_before = lab.state_file.read_text()
    try:
        state = json.loads(state_before)
        plan = _pick(lab, fault=None)
        for entry in state["hosts"]:
            if entry["name"] == plan.name:
                original = entry["pid"]
                entry["pid"] = stranger.pid  # as after a reboot, when PIDs are reused
        lab.state_file.write_text(json.dumps(state))
        with pytest.raises(LabError, match="is not running"):
            lab.freeze_host(plan.name)
        lab.stop_host(plan.name)
        assert stranger.poll() is None  # untouched
    finally:
        stranger.kill()
        stranger.wait()
        state = json.loads(state_before)
        lab.state_file.write_text(json.dumps(state))
    assert original and alive(original)


def test_up_refuses_a_folder_that_holds_other_things(
    tmp_path: Path, address_block: Callable[[int], str]
) -> None:
    if reason := lab_unavailable():
        pytest.skip(f"lab unavailable: {reason}")
    (tmp_path / "inventory").mkdir()
    (tmp_path / "inventory" / "acme.yaml").write_text("precious")
    with pytest.raises(LabError, match="is not empty and holds no lab"):
        Lab(tmp_path).up(
            2, ["acme"], faults=False, first_address=address_block(3), say=lambda _: None
        )
    assert (tmp_path / "inventory" / "acme.yaml").read_text() == "precious"


def test_up_refuses_an_address_another_lab_holds(lab: Lab, tmp_path: Path) -> None:
    taken = lab.plans()[0].address
    with pytest.raises(LabError, match=f"{taken}:22 is already in use"):
        Lab(tmp_path / "second").up(
            1, ["acme"], faults=False, first_address=taken, say=lambda _: None
        )
    assert not mounts_under(tmp_path)


# --- rebooting a lab host ---------------------------------------------------------------
# A small lab of its own (block 41): one planted host and one dnf host of 'initech'.

REBOOT_CLIENT = "initech"
BOOT_ID = "cat /proc/sys/kernel/random/boot_id"


@pytest.fixture(scope="module")
def reboot_lab(
    tmp_path_factory: pytest.TempPathFactory, address_block: Callable[[int], str]
) -> Iterator[Lab]:
    from mspauto.lab.rpm import rpm_tools_missing

    if reason := lab_unavailable() or rpm_tools_missing():
        pytest.skip(f"lab unavailable: {reason}")
    directory = tmp_path_factory.mktemp("reboot-lab") / "fleet"
    with running_lab(
        directory, 1, [REBOOT_CLIENT], faults=False, first_address=address_block(41), dnf=1
    ) as fleet:
        yield fleet
    assert not mounts_under(directory), "lab down left mounts behind"


def _boot_id(lab: Lab, plan: HostPlan) -> str:
    result = ssh(lab, plan, BOOT_ID)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _wait_for_new_boot(lab: Lab, plan: HostPlan, old: str, within: float = 90) -> str:
    """The host's boot id once it differs from ``old`` (polling over SSH, as Ansible's
    reboot module does); fails if the host is not back within ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = ssh(lab, plan, BOOT_ID, timeout=15)
        if result.returncode == 0 and result.stdout.strip() != old:
            return result.stdout.strip()
        time.sleep(0.5)
    raise AssertionError(f"{plan.name} did not come back with a new boot id")


def _unshare_pid(lab: Lab, plan: HostPlan) -> int:
    state = lab.state()
    assert state is not None
    pid: int = next(h["pid"] for h in state["hosts"] if h["name"] == plan.name)
    return pid


def _lab_host(lab: Lab, plan: HostPlan) -> LabHost:
    return LabHost(plan, lab.directory / "hosts" / plan.name, lab.directory / "logs" / "x.log")


def test_shutdown_r_reboots_a_lab_host(reboot_lab: Lab) -> None:
    plan = _pick(reboot_lab, baseline="compliant")
    unshare_pid = _unshare_pid(reboot_lab, plan)
    # A real update that asks for a reboot (lab-kernel's postinst writes
    # /run/reboot-required), files in /tmp and /var/tmp, and a stray process.
    prepared = ssh(
        reboot_lab,
        plan,
        "sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive "
        "apt-get install -y -qq lab-kernel >/dev/null && test -f /run/reboot-required && "
        "touch /tmp/lab-probe /var/tmp/lab-probe && "
        "(setsid sleep 100000 </dev/null >/dev/null 2>&1 &) && "
        "dpkg-query -W -f '${Version}' lab-kernel",
        timeout=180,
    )
    assert prepared.returncode == 0, prepared.stderr
    kernel = prepared.stdout.strip()
    before = _boot_id(reboot_lab, plan)
    assert before == _lab_host(reboot_lab, plan).boot_id()

    reboot = ssh(reboot_lab, plan, 'sudo shutdown -r 0 "test"')
    assert reboot.returncode == 0, reboot.stderr  # it returned, and the session ended cleanly

    # The same host key: ssh() checks it strictly against what lab up recorded.
    after = _wait_for_new_boot(reboot_lab, plan, before)
    assert after == _lab_host(reboot_lab, plan).boot_id()
    state = ssh(
        reboot_lab,
        plan,
        "cat /proc/1/comm; hostname; "
        "ls /run/reboot-required /run/reboot-required.pkgs /tmp/lab-probe 2>/dev/null | wc -l; "
        "ls /var/tmp/lab-probe; ps -e -o comm= | grep -cx sleep; "
        "dpkg-query -W -f '${Version}\\n' lab-kernel",
    )
    assert state.returncode == 0, state.stderr
    assert state.stdout.split() == [
        "sshd",  # PID 1 of the host: its fresh sshd
        plan.name,
        "0",  # /run/reboot-required{,.pkgs} and the file in /tmp are gone
        "/var/tmp/lab-probe",  # the disk persists
        "0",  # the stray process is gone
        kernel,
    ]
    # The lab did not restart the host: its supervisor booted it again.
    assert _unshare_pid(reboot_lab, plan) == unshare_pid
    assert all(s.running and s.answers for s in reboot_lab.status())


def _ansible_reboot(lab: Lab, hosts: list[HostPlan], tmp_path: Path) -> str:
    """``ansible.builtin.reboot`` in a real ansible-playbook (become, strict host keys)."""
    inventory: dict[str, Any] = {"all": {"hosts": {}}}
    for plan in hosts:
        known_hosts = lab.inventory_dir / "known_hosts" / plan.client
        inventory["all"]["hosts"][plan.name] = {
            "ansible_host": plan.address,
            "ansible_user": "mspauto",
            "ansible_ssh_private_key_file": str(lab.key),
            "ansible_ssh_common_args": f"-o UserKnownHostsFile={known_hosts} "
            "-o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o BatchMode=yes",
            "ansible_python_interpreter": "/usr/bin/python3",
        }
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    play = [
        {
            "hosts": "all",
            "become": True,
            "gather_facts": False,
            "tasks": [
                {"ansible.builtin.reboot": {"msg": "mspauto lab test", "reboot_timeout": 120}}
            ],
        }
    ]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-v",
            "-i",
            "hosts.yml",
            "play.yml",
        ],
        # Ansible refuses a non-blocking stdin, which a parent may hand down.
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=tmp_path,
        env={
            **os.environ,
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_ansible_reboot_module_reboots_lab_hosts(reboot_lab: Lab, tmp_path: Path) -> None:
    hosts = reboot_lab.plans()  # a planted host and a dnf host
    before = {plan.name: _lab_host(reboot_lab, plan).boot_id() for plan in hosts}
    output = _ansible_reboot(reboot_lab, hosts, tmp_path)
    for plan in hosts:
        assert re.search(rf'changed: \[{plan.name}\] => .*"rebooted": true', output), output
        # Ansible saw the boot id change: the host's, not the machine's kernel's.
        assert _boot_id(reboot_lab, plan) != before[plan.name]
        assert ssh(reboot_lab, plan, "whoami").stdout.strip() == "mspauto"


def test_a_dnf_host_needs_no_reboot_once_rebooted(reboot_lab: Lab) -> None:
    plan = _pick(reboot_lab, platform="rhel")
    installed = ssh(
        reboot_lab,
        plan,
        "sudo dnf -y -q upgrade kernel >/dev/null 2>&1; sudo dnf -q needs-restarting -r",
        timeout=300,
    )
    assert installed.returncode == 1, installed.stdout + installed.stderr  # reboot required
    before = _boot_id(reboot_lab, plan)
    assert ssh(reboot_lab, plan, "sudo shutdown -r now").returncode == 0
    _wait_for_new_boot(reboot_lab, plan, before)
    # needs-restarting takes /proc/1 (the host's sshd, new at each boot) as the boot time.
    rebooted = ssh(reboot_lab, plan, "sudo dnf -q needs-restarting -r", timeout=300)
    assert rebooted.returncode == 0, rebooted.stdout + rebooted.stderr


def test_poweroff_stops_a_lab_host_until_started(reboot_lab: Lab) -> None:
    plan = _pick(reboot_lab, baseline="compliant")
    before = _boot_id(reboot_lab, plan)
    assert ssh(reboot_lab, plan, "sudo poweroff").returncode == 0
    deadline = time.monotonic() + 60
    while any(s.running for s in reboot_lab.status() if s.plan == plan):
        assert time.monotonic() < deadline, f"{plan.name} did not power off"
        time.sleep(0.2)
    assert "Connection refused" in ssh(reboot_lab, plan, "true").stderr
    reboot_lab.start_host(plan.name)
    assert _boot_id(reboot_lab, plan) != before


def test_down_after_a_reboot_leaves_no_mount_or_process(
    tmp_path: Path, address_block: Callable[[int], str]
) -> None:
    if reason := lab_unavailable():
        pytest.skip(f"lab unavailable: {reason}")
    directory = tmp_path / "rebooted-lab"
    with running_lab(
        directory, 1, [REBOOT_CLIENT], faults=False, first_address=address_block(44)
    ) as fleet:
        plan = fleet.plans()[0]
        before = _boot_id(fleet, plan)
        assert ssh(fleet, plan, "sudo reboot").returncode == 0
        _wait_for_new_boot(fleet, plan, before)
        unshare_pid = _unshare_pid(fleet, plan)
        processes = LabHost.processes(unshare_pid)
        assert len(processes) >= 3  # its supervisor, the boot's unshare, sshd
    assert not mounts_under(directory)
    assert not any(alive(pid) for pid in [unshare_pid, *processes])
    leftovers = [
        p
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and str(directory) in _cmdline(p) and alive(int(p.name))
    ]
    assert leftovers == []
    assert not directory.exists()
