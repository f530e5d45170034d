"""Record the dnf probe's real output on a dnf lab host, in each state the parser reads.

    sudo .venv/bin/python scripts/record-dnf-fixtures.py [--out DIR]

Brings up a lab of one dnf host (Debian with Debian's dnf 4: not RHEL), runs the probe
mspauto generates on it as mspauto does (over SSH as the lab user, through sudo), and
writes its raw standard output to DIR/<state>.txt:

- ``pending``: as the lab makes it, every lab package with an update pending;
- ``held``: the same with lab-webserver versionlocked and lab-zlib in ``excludepkgs``;
- ``locked``: another process holds dnf's lock for longer than the probe waits (2 s);
- ``refresh-failed``: a configured repository does not answer (a closed loopback port);
- ``updated``: after ``dnf upgrade``: nothing pending, a reboot pending (new kernel).

Then it takes the lab down and prints what the parser makes of each file, so a change
shows before it is committed.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

from mspauto.lab.fleet import Lab
from mspauto.lab.plan import HostPlan
from mspauto.lab.rpm import holding_dnf_lock
from mspauto.lab.testing import lab_unavailable, ssh
from mspauto.patching.dnf import parse, probe_script

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "tests" / "fixtures" / "patching" / "dnf"
BROKEN_REPO = "/etc/yum.repos.d/lab-mirror.repo"


def root(lab: Lab, host: HostPlan, command: str) -> str:
    """Run ``command`` as root on the host; its output, or exit with its error."""
    result = ssh(lab, host, "sudo -n -- sh -c " + shlex.quote(command), timeout=300)
    if result.returncode != 0:
        raise SystemExit(f"{host.name}: '{command}' exited {result.returncode}: {result.stderr}")
    return result.stdout


def probe(lab: Lab, host: HostPlan, out: Path, state: str, lock_timeout: int = 120) -> None:
    result = ssh(
        lab, host, "sudo -n -- sh -c " + shlex.quote(probe_script(lock_timeout)), timeout=300
    )
    if result.returncode != 0 or result.stderr.strip():
        raise SystemExit(f"{host.name}: the probe exited {result.returncode}: {result.stderr}")
    (out / f"{state}.txt").write_text(result.stdout)


def record(lab: Lab, host: HostPlan, repository: str, out: Path) -> None:
    probe(lab, host, out, "pending")

    root(lab, host, "dnf -q versionlock add lab-webserver")
    root(
        lab,
        host,
        "cp /etc/dnf/dnf.conf /root/dnf.conf.lab && echo excludepkgs=lab-zlib >> /etc/dnf/dnf.conf",
    )
    probe(lab, host, out, "held")
    root(lab, host, "dnf -q versionlock clear && mv /root/dnf.conf.lab /etc/dnf/dnf.conf")

    with holding_dnf_lock(lab, host):
        probe(lab, host, out, "locked", lock_timeout=2)

    # A mirror on the repository's address but a port nothing listens on (loopback only).
    root(
        lab,
        host,
        f"printf '[lab-mirror]\\nname=mspauto lab mirror (down)\\nbaseurl=http://{repository}:9/\\n"
        f"gpgcheck=0\\n' > {BROKEN_REPO}",
    )
    probe(lab, host, out, "refresh-failed")
    root(lab, host, f"rm {BROKEN_REPO}")

    root(lab, host, "dnf -y -q upgrade")
    probe(lab, host, out, "updated")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--first-address", default="127.0.161.10")
    args = parser.parse_args()
    if reason := lab_unavailable():
        sys.exit(f"cannot record: {reason}")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="record-dnf-") as work:
        lab = Lab(Path(work) / "lab")
        try:
            lab.up(0, ["fixtures"], faults=False, first_address=args.first_address, dnf=1)
            state = lab.state()
            assert state is not None and state["rpm_repo"] is not None
            repository = state["rpm_repo"]["url"].split("/")[2].split(":")[0]
            record(lab, lab.plans()[0], repository, args.out)
        finally:
            lab.down(say=lambda _: None)
    for fixture in sorted(args.out.glob("*.txt")):
        facts = parse(fixture.read_text(), "", 0)
        print(f"== {fixture.name}: {len(facts.updates)} updates, problem {facts.problem!r}")
        print(f"   reboot {facts.reboot_pending} ({facts.reboot_reason}); held {facts.held}")
        for warning in facts.warnings:
            print(f"   warning: {warning}")
        for update in facts.updates:
            print(
                f"   {update.name:18} {update.installed or '-':20} -> {update.candidate:20} "
                f"{update.classification:11} {update.severity:8} {update.advisory or '-':16} "
                f"{update.released.date() if update.released else '-'}"
            )


if __name__ == "__main__":
    main()
