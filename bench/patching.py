"""Patching on lab hosts: the facts scan against bare paramiko, the install against a
plain ansible-playbook of the same play.

    sudo .venv/bin/python bench/patching.py [--hosts 100] [--install-hosts 50]

Brings up a lab (no faults; every host has the lab's five pending updates, three of
them security) with a policy approving the security updates and holding the rest:
  * scan, on every host: a paramiko thread pool (50) running the same apt probe through
    sudo (the floor for "one round trip per host"), then ``scan_client`` (engine,
    evidence, parsing, decisions, findings recorded). Target (issue 10): <= 1.1x.
  * install, on two disjoint halves in the same state: ``ansible-playbook`` of exactly
    the play mspauto generates (forks 50, pipelining on, strict host keys) on one half;
    ``patch_client`` on the other: its install run alone, and the whole patch (scan,
    install, scan after, evidence). Target: <= 1.2x.
Prints each wall time and the ratios.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import paramiko
import yaml
from bare_ssh import connect

from mspauto.config import Settings
from mspauto.evidence.records import RecordKind
from mspauto.evidence.store import EvidenceStore
from mspauto.inventory.resolve import Host
from mspauto.lab.fleet import Lab
from mspauto.patching import apt
from mspauto.patching.apply import install_play, patch_client, scan_client
from mspauto.project import load_project
from mspauto.transport import transport_for

POLICY = """\
kind: patch
name: bench
targets: {clients: ['*']}
schedule: {cron: '0 1 * * *', timezone: client}
approvals:
  - match: {classifications: [security]}
    action: auto
  - action: manual
reboot: {policy: never}  # the install is compared; a reboot of 50 hosts is another story
"""


def bare(addresses: list[str], script: str, key: paramiko.PKey, known: paramiko.HostKeys) -> float:
    def one(address: str) -> int:
        client = connect(address, key, known)
        stdin, stdout, _ = client.exec_command("sudo -n bash")
        stdin.write(script)
        stdin.channel.shutdown_write()
        stdout.read()
        status = stdout.channel.recv_exit_status()
        client.close()
        return status

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=50) as pool:
        assert set(pool.map(one, addresses)) == {0}
    return time.perf_counter() - start


def plain_playbook(lab: Lab, hosts: list[Host], play: list[dict[str, object]], work: Path) -> float:
    inventory = {
        "all": {
            "hosts": {h.name: {"ansible_host": h.address} for h in hosts},
            "vars": {
                "ansible_user": "mspauto",
                "ansible_ssh_private_key_file": str(lab.key),
                "ansible_ssh_common_args": (
                    f"-o UserKnownHostsFile={lab.inventory_dir / 'known_hosts' / 'acme'} "
                    "-o StrictHostKeyChecking=yes"
                ),
                "ansible_python_interpreter": "/usr/bin/python3",
            },
        }
    }
    playbook = [{"hosts": "all", "gather_facts": False, "become": True, "tasks": play}]
    (work / "inventory.yaml").write_text(yaml.safe_dump(inventory))
    (work / "patch.yaml").write_text(yaml.safe_dump(playbook))
    env = {
        **os.environ,
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_FORKS": "50",
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    start = time.perf_counter()
    subprocess.run(
        ["ansible-playbook", "-i", str(work / "inventory.yaml"), str(work / "patch.yaml")],
        env=env,
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--install-hosts", type=int, default=50)
    args = parser.parse_args()
    if args.hosts < 2 * args.install_hosts:
        parser.error("--hosts must be at least twice --install-hosts (two halves)")
    with tempfile.TemporaryDirectory(prefix="bench-patching-") as work_dir:
        work = Path(work_dir)
        lab = Lab(work / "lab")
        lab.up(args.hosts, ["acme"], faults=False, first_address="127.0.171.10", say=lambda _: None)
        try:
            (lab.directory / "policies" / "patch.yaml").write_text(POLICY)
            project = load_project(Settings.load(lab.directory))
            client = project.inventory.clients["acme"]
            hosts = sorted(client.hosts.values(), key=lambda h: h.name)
            key = paramiko.PKey.from_path(lab.key)
            known = paramiko.HostKeys(str(lab.inventory_dir / "known_hosts" / "acme"))
            bare_s = bare([h.address for h in hosts], apt.probe_script(), key, known)
            store = EvidenceStore(f"sqlite:///{work / 'evidence.db'}")
            transport = transport_for(client, lab.directory)
            start = time.perf_counter()
            scan = scan_client(project, "acme", hosts, transport, store)
            scan_s = time.perf_counter() - start
            assert all(not h.unchecked for h in scan.scan.hosts)
            assert all(len(scan.approved(h.name)) == 3 for h in hosts)

            ansible_half = hosts[: args.install_hosts]
            mspauto_half = hosts[args.install_hosts : 2 * args.install_hosts]
            play = install_play(scan, ansible_half)
            ansible_s = plain_playbook(lab, ansible_half, play, work)
            start = time.perf_counter()
            report = patch_client(
                project,
                "acme",
                mspauto_half,
                transport,
                transport_for(client, lab.directory, via="ansible", forks=50),
                store,
            )
            patch_s = time.perf_counter() - start
            (round_,) = report.rounds
            # The install run as recorded: from its run_started to its run_finished.
            stamps = {
                r.kind: datetime.fromisoformat(r.recorded_at)
                for r in store.records(chain="acme", run_id=round_.install.run_id)
                if r.kind in (RecordKind.RUN_STARTED, RecordKind.RUN_FINISHED)
            }
            install_s = (
                stamps[RecordKind.RUN_FINISHED] - stamps[RecordKind.RUN_STARTED]
            ).total_seconds()
            store.close()
            installed = [o for v in report.installed.values() for o in v]
            assert len(installed) == 3 * args.install_hosts, len(installed)
            assert {o.status for o in installed} == {"installed"}
        finally:
            lab.down(say=lambda _: None)
    print(f"scan: {args.hosts} hosts, 5 pending updates each")
    print(f"  bare paramiko pool (50), the same apt probe:  {bare_s:7.2f} s  (baseline)")
    print(
        f"  mspauto patch --dry-run (scan_client):        {scan_s:7.2f} s  "
        f"{scan_s / bare_s:5.2f}x bare (target <= 1.1x)"
    )
    print(f"install: {args.install_hosts} hosts per side, 3 updates each")
    print(f"  ansible-playbook of the same play (forks 50): {ansible_s:7.2f} s  (baseline)")
    print(
        f"  mspauto install run (engine, ansible-runner): {install_s:7.2f} s  "
        f"{install_s / ansible_s:5.2f}x (target <= 1.2x)"
    )
    print(
        f"  mspauto patch: scan, install, scan after:     {patch_s:7.2f} s  "
        f"{patch_s / ansible_s:5.2f}x"
    )


if __name__ == "__main__":
    main()
