"""Record the Debian pack's real answers on a stock, a compliant and a drifted lab host.

    sudo .venv/bin/python scripts/record-baseline-fixtures.py [--out DIR]

Brings up a lab of three hosts (one per profile, no faults), runs the audit script
mspauto generates for the shipped debian-cis pack on each (as mspauto does: over SSH as
the lab user, through sudo), writes each host's raw output to DIR/<profile>.out, takes
the lab down, and prints every rule's verdict next to DIR/expected.yaml so a change
shows before it is committed. expected.yaml is never written here: it is the reviewed
statement of what each profile must get (see DIR/README.md).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

import yaml

from mspauto.baseline.rules import RulePack, judge_answer
from mspauto.baseline.script import audit_script, parse_answers
from mspauto.lab.fleet import Lab
from mspauto.lab.testing import lab_unavailable, running_lab, ssh

REPO = Path(__file__).resolve().parent.parent
PACK = REPO / "mspauto" / "baseline" / "packs" / "debian-cis.yaml"
DEFAULT_OUT = REPO / "tests" / "fixtures" / "baseline" / "debian-cis"
PROFILES = ("stock", "compliant", "drifted")


def record(lab: Lab, script: str, out: Path) -> dict[str, str]:
    """Run the script on one host of each profile; profile -> its raw output."""
    outputs: dict[str, str] = {}
    for plan in lab.plans():
        result = ssh(lab, plan, "sudo -n -- sh -c " + shlex.quote(script), timeout=120)
        if result.returncode != 0:
            raise SystemExit(f"{plan.name}: the audit exited {result.returncode}: {result.stderr}")
        outputs[plan.baseline] = result.stdout
        (out / f"{plan.baseline}.out").write_text(result.stdout)
    return outputs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--first-address", default="127.0.160.10")
    args = parser.parse_args()
    if reason := lab_unavailable():
        sys.exit(f"cannot record: {reason}")
    pack = RulePack.model_validate(yaml.safe_load(PACK.read_text()))
    script = audit_script("linux", [(pack, rule) for rule in pack.rules])
    args.out.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="record-fixtures-") as work,
        running_lab(
            Path(work) / "lab",
            2,
            ["fixtures"],
            faults=False,
            first_address=args.first_address,
            stock=1,
        ) as lab,
    ):
        outputs = record(lab, script, args.out)
    expected_file = args.out / "expected.yaml"
    expected = yaml.safe_load(expected_file.read_text()) if expected_file.exists() else {}
    for profile in PROFILES:
        answers = parse_answers(outputs[profile])
        print(f"== {profile}: {len(answers)} answers written to {args.out / profile}.out")
        for index, rule in enumerate(pack.rules):
            verdict = judge_answer(rule, rule.expect, answers.get(rule.id))
            want = expected.get(rule.id, ["?"] * 3)[PROFILES.index(profile)]
            flag = "" if verdict.status == want else f"   <-- expected.yaml says {want}"
            print(
                f"  {index + 1:2} {rule.id:38} {verdict.status:5} "
                f"{verdict.observed[:16]!r:18} {verdict.reason}{flag}"
            )


if __name__ == "__main__":
    main()
