"""`mspauto exec` on 100 real lab hosts against a bare paramiko thread pool, same run.

    sudo .venv/bin/python bench/exec_fleet.py [--hosts 100] [--rounds 3]

Brings up a lab (no faults), then alternates, round after round:
  * bare: the floor. A ThreadPoolExecutor with one thread per host; each thread opens a
    TCP socket with TCP_NODELAY, runs paramiko's handshake and key auth (host key
    checked against the lab's known_hosts), runs `true`, closes.
  * mspauto: the engine as `mspauto exec` uses it (run_command: nornir fan-out,
    strict host keys, classification, progress off, evidence written to SQLite);
  * the CLI: `python -m mspauto exec --forks N --format json -- true` as a subprocess
    (adds interpreter start-up, imports and loading the project), against
  * the bare script: this file's bare pool run as its own process (`--bare-script`), so
    both pay for starting Python.
Prints the medians and the ratios. Target (issue 4): within 1.25x.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paramiko
from bare_ssh import connect

from mspauto.config import Settings
from mspauto.engine import RunSpec, run_command
from mspauto.evidence.store import EvidenceStore
from mspauto.lab.fleet import Lab
from mspauto.project import load_project
from mspauto.transport import transport_for


def bare(addresses: list[str], key: paramiko.PKey, known: paramiko.HostKeys) -> float:
    def one(address: str) -> int:
        client = connect(address, key, known)
        _, stdout, _ = client.exec_command("true")
        status = stdout.channel.recv_exit_status()
        client.close()
        return status

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(addresses)) as pool:
        statuses = list(pool.map(one, addresses))
    assert statuses == [0] * len(addresses)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bare-script", metavar="LAB_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_script:
        lab_dir = Path(args.bare_script)
        known = paramiko.HostKeys(str(lab_dir / "inventory" / "known_hosts" / "acme"))
        bare(list(known.keys()), paramiko.PKey.from_path(lab_dir / "keys" / "lab_ed25519"), known)
        return
    with tempfile.TemporaryDirectory(prefix="bench-exec-") as work:
        lab = Lab(Path(work) / "lab")
        lab.up(args.hosts, ["acme"], faults=False, first_address="127.0.160.10", say=lambda _: None)
        try:
            project = load_project(Settings.load(lab.directory))
            client = project.inventory.clients["acme"]
            hosts = list(client.hosts.values())
            key = paramiko.PKey.from_path(lab.key)
            known = paramiko.HostKeys(str(lab.inventory_dir / "known_hosts" / "acme"))
            bare_times, engine_times, cli_times, script_times = [], [], [], []
            for round_number in range(args.rounds):
                bare_times.append(bare([h.address for h in hosts], key, known))
                store = EvidenceStore(f"sqlite:///{Path(work) / f'evidence{round_number}.db'}")
                spec = RunSpec(client=client, hosts=hosts, command="true", forks=len(hosts))
                start = time.perf_counter()
                outcome = run_command(spec, transport_for(client, lab.directory), store)
                engine_times.append(time.perf_counter() - start)
                store.close()
                assert outcome.ok, [r.summary() for r in outcome.results if not r.ok][:3]
                start = time.perf_counter()
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "mspauto",
                        "--project",
                        str(lab.directory),
                        "exec",
                        "--client",
                        "acme",
                        "--forks",
                        str(len(hosts)),
                        "--format",
                        "json",
                        "--",
                        "true",
                    ],
                    check=True,
                    capture_output=True,
                    env={**os.environ, "MSPAUTO_STATE_DIR": str(Path(work) / "cli-state")},
                )
                cli_times.append(time.perf_counter() - start)
                start = time.perf_counter()
                subprocess.run(
                    [sys.executable, __file__, "--bare-script", str(lab.directory)], check=True
                )
                script_times.append(time.perf_counter() - start)
        finally:
            lab.down(say=lambda _: None)
    bare_s, engine_s = statistics.median(bare_times), statistics.median(engine_times)
    print(
        f"bare paramiko thread pool, {args.hosts} hosts: {bare_s:5.2f} s "
        f"(rounds: {', '.join(f'{t:.2f}' for t in bare_times)})"
    )
    print(
        f"mspauto engine + evidence, {args.hosts} hosts: {engine_s:5.2f} s "
        f"(rounds: {', '.join(f'{t:.2f}' for t in engine_times)})"
    )
    cli_s, script_s = statistics.median(cli_times), statistics.median(script_times)
    print(
        f"bare paramiko script (own process), {args.hosts} hosts: {script_s:5.2f} s "
        f"(rounds: {', '.join(f'{t:.2f}' for t in script_times)})"
    )
    print(
        f"mspauto exec (CLI process), {args.hosts} hosts: {cli_s:5.2f} s "
        f"(rounds: {', '.join(f'{t:.2f}' for t in cli_times)})"
    )
    print(
        f"ratio engine/bare pool: {engine_s / bare_s:4.2f}x, "
        f"CLI/bare script: {cli_s / script_s:4.2f}x   "
        "target <= 1.25x"
    )


if __name__ == "__main__":
    main()
