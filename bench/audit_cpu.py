"""CPU the Debian audit costs on the host: the script before shared facts against now.

    sudo .venv/bin/python bench/audit_cpu.py [--runs 10]

Brings up a lab of three hosts (stock, compliant, drifted; no faults) and runs on each,
alternately, the audit script as it was at commit BEFORE (that commit's debian-cis pack,
read with `git show`, in the script form of that commit, copied below) and the script
mspauto generates now. What is measured is the audit's own CPU time on the host: user +
system time of the script and of every process it started, as the shell's `times`
builtin reports it for its reaped children (`sh -c 'sh -c "$1" >/dev/null; times'`), so
neither SSH nor sudo is counted. Prints the mean per run for each profile and in all,
and the ratio new/old. Target (issue 'shared facts'): new <= 0.5 x old.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import yaml

from mspauto.baseline.rules import RulePack
from mspauto.baseline.script import audit_script
from mspauto.lab.fleet import Lab
from mspauto.lab.plan import HostPlan
from mspauto.lab.testing import running_lab, ssh

REPO = Path(__file__).resolve().parent.parent
# The last commit whose audit ran one `bash -c` and one `sshd -T` per rule.
BEFORE = "9132a43c8ed7dd7a4af37af00adc661386350b61"
PACK = "mspauto/baseline/packs/debian-cis.yaml"
_TIMES = re.compile(r"(\d+)m([\d.]+)s\s+(\d+)m([\d.]+)s")


def old_linux_script(audits: Sequence[tuple[str, str]]) -> str:
    """``linux_script`` as it was at BEFORE (mspauto/baseline/script.py), verbatim."""
    mark = "::mspauto-audit::"
    lines = [
        "#!/bin/sh",
        "# mspauto baseline audit: one block per rule, read back by the markers.",
        "errors=$(mktemp) || exit 1",
        "trap 'rm -f \"$errors\"' EXIT",
        "audit() {",
        f'  printf "%s BEGIN %s\\n" "{mark}" "$1"',
        '  out=$(LC_ALL=C bash -o pipefail -c "$2" 2>"$errors" </dev/null); rc=$?',
        '  [ -n "$out" ] && printf "%s\\n" "$out"',
        f'  if [ -s "$errors" ]; then printf "%s STDERR %s\\n" "{mark}" "$1"; cat "$errors"; fi',
        f'  printf "%s END %s %s\\n" "{mark}" "$1" "$rc"',
        "}",
    ]
    lines += [f"audit {shlex.quote(rule_id)} {shlex.quote(command)}" for rule_id, command in audits]
    return "\n".join(lines) + "\n"


def scripts() -> tuple[str, str, int]:
    """(old script, new script, number of rules)."""
    old_pack = yaml.safe_load(
        subprocess.run(
            ["git", "-C", str(REPO), "show", f"{BEFORE}:{PACK}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    old = old_linux_script([(r["id"], r["audit"]["linux"]) for r in old_pack["rules"]])
    pack = RulePack.model_validate(yaml.safe_load((REPO / PACK).read_text()))
    new = audit_script("linux", [(pack, rule) for rule in pack.rules])
    assert len(old_pack["rules"]) == len(pack.rules)
    return old, new, len(pack.rules)


def cpu_seconds(lab: Lab, host: HostPlan, script: str) -> float:
    """User + system seconds the script and its children used on ``host``."""
    wrapped = "sh -c 'sh -c \"$1\" >/dev/null 2>&1; times' audit " + shlex.quote(script)
    result = ssh(lab, host, "sudo -n -- sh -c " + shlex.quote(wrapped), timeout=120)
    if result.returncode != 0:
        raise SystemExit(f"{host.name}: {result.stderr.strip()}")
    children = _TIMES.findall(result.stdout)[-1]  # the second line: reaped children
    minutes_user, user, minutes_sys, system = children
    return 60 * (int(minutes_user) + int(minutes_sys)) + float(user) + float(system)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10, help="runs of each script per host")
    parser.add_argument("--first-address", default="127.0.171.10")
    args = parser.parse_args()
    old, new, rules = scripts()
    totals: dict[str, dict[str, float]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-audit-cpu-") as work,
        running_lab(
            Path(work) / "lab",
            2,
            ["bench"],
            faults=False,
            first_address=args.first_address,
            stock=1,
        ) as lab,
    ):
        for host in lab.plans():
            for script in (old, new):  # once each first: page cache, sshd's first start
                cpu_seconds(lab, host, script)
            spent = {"old": 0.0, "new": 0.0}
            for _ in range(args.runs):
                spent["old"] += cpu_seconds(lab, host, old)
                spent["new"] += cpu_seconds(lab, host, new)
            totals[host.baseline] = spent
    print(f"audit CPU on the host per run ({rules} rules, mean of {args.runs} runs per host)")
    print(f"{'profile':<10} {'old ms':>8} {'new ms':>8} {'new/old':>8}")
    for profile, spent in totals.items():
        print(
            f"{profile:<10} {1000 * spent['old'] / args.runs:8.1f} "
            f"{1000 * spent['new'] / args.runs:8.1f} {spent['new'] / spent['old']:8.2f}"
        )
    old_all = sum(s["old"] for s in totals.values()) / (args.runs * len(totals))
    new_all = sum(s["new"] for s in totals.values()) / (args.runs * len(totals))
    print(
        f"{'all':<10} {1000 * old_all:8.1f} {1000 * new_all:8.1f} {new_all / old_all:8.2f}"
        f"  (target <= 0.50)"
    )


if __name__ == "__main__":
    main()
