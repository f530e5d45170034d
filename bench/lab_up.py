"""How fast does the lab fleet come up, and what does an idle host cost?

    sudo .venv/bin/python bench/lab_up.py [--hosts 100] [--cold-base]

Measures, in one run on this machine:
  1. (with --cold-base) building the base image from scratch into a temporary cache;
  2. the bare recipe of ../shared/LAB.md as a plain script (overlay + ed25519 host key +
     unshare/chroot sshd per host, one after another) for N hosts: the baseline;
  3. `mspauto lab up` for the same N hosts (own disk per host, planted state, backup
     repositories, inventory and known_hosts written), then its memory cost per idle
     host (MemAvailable before and after) and `lab down`.
Prints each time and the ratio of `lab up` to the baseline and to the 60 s target.
"""

from __future__ import annotations

import argparse
import ipaddress
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from mspauto.lab.base import default_cache_dir, ensure_base
from mspauto.lab.fleet import Lab, ssh_banner
from mspauto.lab.system import check_can_run, kill_and_wait, unmount_all_under


def mem_available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def bare_recipe(rootfs: Path, work: Path, count: int, first: str) -> float:
    """LAB.md's recipe, host after host, timed until every sshd answers."""
    start = time.perf_counter()
    pids, addresses = [], []
    for index in range(count):
        host = work / f"h{index}"
        for part in ("upper", "work", "root"):
            (host / part).mkdir(parents=True)
        subprocess.run(
            [
                "mount",
                "-t",
                "overlay",
                "overlay",
                "-o",
                f"lowerdir={rootfs},upperdir={host}/upper,workdir={host}/work",
                host / "root",
            ],
            check=True,
        )
        subprocess.run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-f",
                host / "root/etc/ssh/ssh_host_ed25519_key",
            ],
            check=True,
        )
        (host / "root/run/sshd").mkdir(parents=True, exist_ok=True)
        address = str(ipaddress.IPv4Address(first) + index)
        script = (
            f"mount -t proc proc {host}/root/proc; mount --rbind /dev {host}/root/dev; "
            f"hostname bare{index}; exec chroot {host}/root /usr/sbin/sshd -D "
            f"-o ListenAddress={address}"
        )
        process = subprocess.Popen(
            ["unshare", "--mount", "--uts", "--pid", "--fork", "--kill-child", "sh", "-c", script],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        pids.append(process.pid)
        addresses.append(address)
    while any(ssh_banner(a, timeout=1) is None for a in addresses):
        time.sleep(0.05)
    elapsed = time.perf_counter() - start
    kill_and_wait(pids)
    unmount_all_under(work)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument(
        "--cold-base",
        action="store_true",
        help="also time a base build from scratch (about a minute)",
    )
    args = parser.parse_args()
    check_can_run()

    if args.cold_base:
        scratch_cache = Path(tempfile.mkdtemp(prefix="bench-base-"))
        start = time.perf_counter()
        ensure_base(scratch_cache, say=lambda _: None)
        print(
            f"base build (debootstrap + customisation): {time.perf_counter() - start:6.1f} s"
            f"   target < 180 s"
        )
        shutil.rmtree(scratch_cache)
    base = ensure_base(default_cache_dir(), say=print)

    with tempfile.TemporaryDirectory(prefix="bench-bare-") as work:
        bare = bare_recipe(base.rootfs, Path(work), args.hosts, "127.0.150.10")
    print(f"bare LAB.md recipe, {args.hosts} hosts:            {bare:6.1f} s   (baseline)")

    with tempfile.TemporaryDirectory(prefix="bench-lab-") as work:
        lab = Lab(Path(work) / "lab")
        before = mem_available_mb()
        start = time.perf_counter()
        lab.up(
            args.hosts,
            ["acme", "globex"],
            faults=False,
            first_address="127.0.151.10",
            say=lambda _: None,
        )
        up = time.perf_counter() - start
        time.sleep(2)  # let the hosts settle to idle
        per_host = (before - mem_available_mb()) / args.hosts
        answering = sum(status.answers for status in lab.status())
        start = time.perf_counter()
        lab.down(say=lambda _: None)
        down = time.perf_counter() - start
    print(
        f"mspauto lab up, {args.hosts} hosts ({answering} answer): {up:6.1f} s   "
        f"{up / bare:4.2f}x baseline, {up / 60:4.2f}x of the 60 s target"
    )
    print(
        f"memory per idle host:                     {per_host:6.1f} MB  "
        f"(200 hosts: {per_host * 200 / 1024:.1f} GB of {mem_available_mb() / 1024:.1f} GB "
        "available)"
    )
    print(f"mspauto lab down:                         {down:6.1f} s")


if __name__ == "__main__":
    main()
