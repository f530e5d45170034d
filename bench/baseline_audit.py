"""The Debian baseline on N lab hosts: mspauto against bare paramiko and against Ansible.

    sudo .venv/bin/python bench/baseline_audit.py [--hosts 100] [--skip-ansible]

Brings up a lab (no faults) and audits every host against the full debian-cis pack:
  * bare: a paramiko thread pool, one connection per host running the same one-script
    audit mspauto generates (the floor for "one round trip per host");
  * mspauto: audit_client (engine, evidence, parsing, judging, recording results);
  * ansible: an ansible-playbook with one task per rule (forks 50, pipelining on), the
    way an audit is commonly written in Ansible.
Prints each wall time and the ratios. Targets (issue 5): >= 30x faster than the
Ansible playbook, within 1.5x of bare.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import paramiko
import yaml
from bare_ssh import connect

from mspauto.baseline.check import BaselineCheck
from mspauto.baseline.report import audit_client
from mspauto.baseline.script import audit_script
from mspauto.checks import scope_client
from mspauto.config import Settings
from mspauto.evidence.store import EvidenceStore
from mspauto.lab.fleet import Lab
from mspauto.project import load_project
from mspauto.transport import transport_for


def bare(addresses: list[str], script: str, key: paramiko.PKey, known: paramiko.HostKeys) -> float:
    def one(address: str) -> int:
        client = connect(address, key, known)
        stdin, stdout, _ = client.exec_command("sudo -n sh")
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


def ansible(lab: Lab, hosts: list[str], audits: list[tuple[str, str]], work: Path) -> float:
    inventory = {
        "all": {
            "hosts": {},
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
    for plan in lab.plans():
        if plan.name in hosts:
            inventory["all"]["hosts"][plan.name] = {"ansible_host": plan.address}
    playbook = [
        {
            "hosts": "all",
            "gather_facts": False,
            "become": True,
            "tasks": [
                {
                    "name": rule_id,
                    "ansible.builtin.shell": command,
                    "register": rule_id.replace("-", "_"),
                    "changed_when": False,
                    "failed_when": False,
                }
                for rule_id, command in audits
            ],
        }
    ]
    (work / "inventory.yaml").write_text(yaml.safe_dump(inventory))
    (work / "audit.yaml").write_text(yaml.safe_dump(playbook))
    env = {
        **os.environ,
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_FORKS": "50",
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    start = time.perf_counter()
    subprocess.run(
        ["ansible-playbook", "-i", str(work / "inventory.yaml"), str(work / "audit.yaml")],
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
    parser.add_argument("--skip-ansible", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as work_dir:
        work = Path(work_dir)
        lab = Lab(work / "lab")
        lab.up(args.hosts, ["acme"], faults=False, first_address="127.0.170.10", say=lambda _: None)
        try:
            project = load_project(Settings.load(lab.directory))
            client = project.inventory.clients["acme"]
            hosts = list(client.hosts.values())
            check = BaselineCheck.for_project(project)
            scope = scope_client(project, client, hosts[:1], "baseline", datetime.now(UTC).date())
            plan = check.plan(scope.hosts[0])
            assert plan is not None
            # Ansible runs each rule as a task of its own: the rule's audit with just the
            # facts it reads, as a standalone script.
            audits = [
                (p.rule.id, audit_script("linux", [(p.pack, p.rule)])) for p in plan if p.applicable
            ]
            script = check.probe(hosts[0], plan)
            assert script is not None
            key = paramiko.PKey.from_path(lab.key)
            known = paramiko.HostKeys(str(lab.inventory_dir / "known_hosts" / "acme"))
            bare_s = bare([h.address for h in hosts], script, key, known)
            store = EvidenceStore(f"sqlite:///{work / 'evidence.db'}")
            start = time.perf_counter()
            report = audit_client(
                project, "acme", hosts, transport_for(client, lab.directory), store
            )
            mspauto_s = time.perf_counter() - start
            store.close()
            assert all(not h.unchecked for h in report.hosts)
            ansible_s = (
                None if args.skip_ansible else ansible(lab, [h.name for h in hosts], audits, work)
            )
        finally:
            lab.down(say=lambda _: None)
    rules = len(audits)
    print(f"{args.hosts} hosts x {rules} rules")
    print(f"bare paramiko, one script per host:  {bare_s:7.2f} s  (baseline)")
    print(
        f"mspauto baseline audit + evidence:   {mspauto_s:7.2f} s  "
        f"{mspauto_s / bare_s:5.2f}x bare (target <= 1.5x)"
    )
    if ansible_s is not None:
        print(
            f"ansible-playbook, one task per rule: {ansible_s:7.2f} s  "
            f"mspauto is {ansible_s / mspauto_s:5.1f}x faster (target >= 30x)"
        )


if __name__ == "__main__":
    main()
