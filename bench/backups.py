"""Backup checks on lab hosts against a bare paramiko pool running the same commands.

    sudo .venv/bin/python bench/backups.py [--hosts 100]

Brings up a lab (no faults) whose hosts carry the lab's backup states in turn (restic
and borg repositories, fresh, stale, damaged, none) and the lab's backup policies, then:
  * a paramiko thread pool (50) runs, on every host, exactly the probe mspauto builds
    for it (every job's restic or borg commands, integrity checks included), through
    ``sudo sh`` with the repository password on stdin: the floor for "one round trip
    per host";
  * ``check_backups`` does the same through the engine (evidence, parsing, judging,
    findings recorded), integrity checks due on this first run as for the pool.
Target (issue 11): <= 1.1x. Prints each wall time and the ratio.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import paramiko
from bare_ssh import connect

from mspauto.backup.check import BackupCheck
from mspauto.backup.verify import check_backups
from mspauto.checks.pipeline import Probe, scope_client
from mspauto.checks.secrets import secret_input
from mspauto.config import Settings
from mspauto.evidence.store import EvidenceStore
from mspauto.lab.fleet import Lab
from mspauto.project import load_project
from mspauto.transport import transport_for


def bare(
    scripts: dict[str, tuple[str, bytes]], key: paramiko.PKey, known: paramiko.HostKeys
) -> float:
    def one(address: str) -> int:
        script, stdin_data = scripts[address]
        client = connect(address, key, known)
        # The script on the command line as mspauto sends it, its secrets on stdin.
        stdin, stdout, _ = client.exec_command(f"sudo -n sh -c {_quote(script)}")
        stdin.write(stdin_data)
        stdin.channel.shutdown_write()
        stdout.read()
        status = stdout.channel.recv_exit_status()
        client.close()
        return status

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=50) as pool:
        list(pool.map(one, scripts))
    return time.perf_counter() - start


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-backups-") as work_dir:
        work = Path(work_dir)
        lab = Lab(work / "lab")
        lab.up(args.hosts, ["acme"], faults=False, first_address="127.0.172.10", say=lambda _: None)
        try:
            project = load_project(Settings.load(lab.directory))
            client = project.inventory.clients["acme"]
            hosts = sorted(client.hosts.values(), key=lambda h: h.name)
            now = datetime.now(UTC)
            scope = scope_client(project, client, hosts, "backup", now.date())
            check = BackupCheck(lab.directory, now=now)
            scripts: dict[str, tuple[str, bytes]] = {}
            for host_scope in scope.hosts:
                plan = check.plan(host_scope)
                if plan is None:
                    continue
                probe = check.probe(host_scope.host, plan)
                assert isinstance(probe, Probe)
                given = secret_input(probe.secrets)
                scripts[host_scope.host.address] = (given.prelude + probe.script, given.stdin)
            key = paramiko.PKey.from_path(lab.key)
            known = paramiko.HostKeys(str(lab.inventory_dir / "known_hosts" / "acme"))
            bare_s = bare(scripts, key, known)
            store = EvidenceStore(f"sqlite:///{work / 'evidence.db'}")
            start = time.perf_counter()
            report = check_backups(
                project, "acme", hosts, transport_for(client, lab.directory), store, now=now
            )
            check_s = time.perf_counter() - start
            store.close()
            states = [r.state for r in report.rows]
            assert "unchecked" not in states, states
        finally:
            lab.down(say=lambda _: None)
    counts = {s: states.count(s) for s in sorted(set(states))}
    print(f"backup check: {len(scripts)} hosts, integrity checks included; states {counts}")
    print(f"  bare paramiko pool (50), the same probes:  {bare_s:7.2f} s  (baseline)")
    print(
        f"  mspauto backups (check_backups):           {check_s:7.2f} s  "
        f"{check_s / bare_s:5.2f}x bare (target <= 1.1x)"
    )


if __name__ == "__main__":
    main()
