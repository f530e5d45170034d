"""Remediation of drifted lab hosts: mspauto's change run against plain ansible-playbook.

    sudo .venv/bin/python bench/remediation.py [--hosts 20] [--rounds 2]

Brings up a lab whose drifted hosts fail every Debian rule, audits them, and plans the
fix (one task per failed rule, limited to the hosts where it failed). Then, on a fresh
lab each time (the fix changes the hosts), it runs the same play:
  * mspauto: the change run through the engine (one ansible-runner run for every host,
    host records and evidence included);
  * ansible-playbook: the same tasks and inventory settings, run from the command line.
Rounds alternate which goes first. Prints each wall time and the ratio (target: within
1.2x of ansible-playbook, issue 8).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

from mspauto.baseline.check import BaselineCheck
from mspauto.checks import RunOptions, run_checks, scope_client
from mspauto.checks.pipeline import change_play, plan_changes
from mspauto.config import Settings
from mspauto.engine import RunSpec, run_command
from mspauto.evidence.store import EvidenceStore
from mspauto.lab.fleet import Lab
from mspauto.project import load_project
from mspauto.transport import transport_for

ADDRESS = "127.0.171.10"


def drifted_lab(work: Path, hosts: int) -> Lab:
    """A fresh lab with ``hosts`` drifted hosts (and as many compliant ones)."""
    lab = Lab(work / "lab")
    lab.up(2 * hosts, ["acme"], faults=False, first_address=ADDRESS, say=lambda _: None)
    return lab


def plan_play(lab: Lab) -> tuple[list[dict[str, object]], list[str]]:
    project = load_project(Settings.load(lab.directory))
    client = project.inventory.clients["acme"]
    drifted = [h for h in client.hosts.values() if "drifted" in h.tags]
    scope = scope_client(project, client, drifted, "baseline", datetime.now(UTC).date())
    check = BaselineCheck.for_project(project)
    before = run_checks(check, scope, transport_for(client, lab.directory), None, RunOptions())
    tasks, _ = plan_changes(check, scope, before)
    return change_play(tasks), [h.name for h in drifted]


def with_mspauto(lab: Lab, play: list[dict[str, object]], work: Path) -> float:
    project = load_project(Settings.load(lab.directory))
    client = project.inventory.clients["acme"]
    hosts = [h for h in client.hosts.values() if "drifted" in h.tags]
    store = EvidenceStore(f"sqlite:///{work / 'evidence.db'}")
    start = time.perf_counter()
    outcome = run_command(
        RunSpec(client=client, hosts=hosts, command="bench", play=play, sudo=True, timeout=600),
        transport_for(client, lab.directory, via="ansible", forks=50),
        store,
    )
    elapsed = time.perf_counter() - start
    store.close()
    assert outcome.ok, [r.summary() for r in outcome.results if not r.ok]
    return elapsed


def with_ansible_playbook(lab: Lab, play: list[dict[str, object]], work: Path) -> float:
    """The same play with the connection settings of mspauto's ansible transport (and
    OpenSSH's usual connection sharing, which mspauto keeps inside one run)."""
    known = lab.inventory_dir / "known_hosts" / "acme"
    inventory = {
        "all": {
            "hosts": {
                p.name: {"ansible_host": p.address} for p in lab.plans() if p.baseline == "drifted"
            },
            "vars": {
                "ansible_user": "mspauto",
                "ansible_ssh_private_key_file": str(lab.key),
                "ansible_ssh_common_args": (
                    f"-o UserKnownHostsFile={known} -o GlobalKnownHostsFile=/dev/null "
                    "-o StrictHostKeyChecking=yes -o BatchMode=yes"
                ),
                "ansible_python_interpreter": "auto_silent",
            },
        }
    }
    (work / "inventory.yaml").write_text(yaml.safe_dump(inventory))
    playbook = [{"hosts": "all", "gather_facts": False, "become": True, "tasks": play}]
    (work / "fix.yaml").write_text(json.dumps(playbook))
    env = {
        **os.environ,
        "ANSIBLE_FORKS": "50",
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        # mspauto's transport pipelines too: compare like with like.
        "ANSIBLE_PIPELINING": "True",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    start = time.perf_counter()
    subprocess.run(
        ["ansible-playbook", "-i", str(work / "inventory.yaml"), str(work / "fix.yaml")],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", type=int, default=20, help="drifted hosts to fix")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"mspauto": [], "ansible-playbook": []}
    tasks = 0
    for round_number in range(args.rounds):
        order = ["mspauto", "ansible-playbook"]
        if round_number % 2:
            order.reverse()
        for who in order:
            with tempfile.TemporaryDirectory(prefix="bench-remediation-") as work_dir:
                work = Path(work_dir)
                lab = drifted_lab(work, args.hosts)
                try:
                    play, _ = plan_play(lab)
                    tasks = len(play)
                    run = with_mspauto if who == "mspauto" else with_ansible_playbook
                    times[who].append(run(lab, play, work))
                finally:
                    lab.down(say=lambda _: None)
    ours, theirs = min(times["mspauto"]), min(times["ansible-playbook"])
    print(f"{args.hosts} drifted hosts, one play of {tasks} tasks, best of {args.rounds}")
    print(
        f"ansible-playbook (CLI):      {theirs:7.2f} s  (baseline)  "
        f"all: {times['ansible-playbook']}"
    )
    print(
        f"mspauto change run:          {ours:7.2f} s  {ours / theirs:5.2f}x ansible-playbook "
        f"(target <= 1.2x)  all: {times['mspauto']}"
    )


if __name__ == "__main__":
    main()
