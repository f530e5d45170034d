"""Baselines on stock hosts: every rule gets a verdict, and a missing file, package or
setting is judged with its reason, never an error.

Stock lab hosts are Debian 12 minbase with openssh-server, sudo and python3 and nothing
planted: what hosts in the field look like before anyone hardens them.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from mspauto.lab.fleet import Lab
from mspauto.lab.testing import baseline_json, ssh

pytestmark = pytest.mark.integration

EXPECTED = Path(__file__).resolve().parent.parent / "fixtures" / "baseline" / "debian-cis"


def baseline(lab: Lab, state: Path, *args: str) -> tuple[int, dict[str, Any]]:
    return baseline_json(lab.directory, state, "--client", "hooli", *args)


def results_of(report: dict[str, Any], host: str) -> dict[str, dict[str, Any]]:
    (audited,) = [h for h in report["hosts"] if h["host"] == host]
    assert audited["unaudited"] is None
    return {r["rule_id"]: r for r in audited["results"]}


def test_a_stock_host_gets_a_verdict_and_a_reason_for_every_rule(
    stock_lab: Lab, tmp_path: Path, debian_rules: set[str]
) -> None:
    host = stock_lab.plans()[0]
    _, report = baseline(stock_lab, tmp_path / "state", "--hosts", host.name)
    results = results_of(report, host.name)
    assert set(results) == debian_rules
    errors = {rule: r["reason"] for rule, r in results.items() if r["status"] == "error"}
    assert errors == {}
    for rule, result in results.items():
        if result["status"] != "pass":
            assert result["reason"] or result["observed"], rule
    # The lab's stock hosts are what the recorded fixtures say they are.
    expected = yaml.safe_load((EXPECTED / "expected.yaml").read_text())
    assert {rule: r["status"] for rule, r in results.items()} == {
        rule: statuses[0] for rule, statuses in expected.items()
    }
    seen = {rule: (r["status"], r["observed"], r["reason"]) for rule, r in results.items()}
    assert seen["ufw-enabled"] == ("fail", "", "ufw is not installed")
    assert seen["password-min-length"] == ("fail", "", "pam_pwquality is not installed")
    assert seen["crontab-permissions"] == (
        "pass",
        "",
        "cron is not installed: nothing reads /etc/crontab",
    )
    assert seen["icmp-redirects-not-accepted"] == (
        "fail",
        "1",
        "not set: the kernel's default applies",
    )
    assert seen["ssh-root-login-disabled"] == ("fail", "without-password", "")


def test_sysctl_settings_are_read_as_the_host_applies_them_at_boot(
    stock_lab: Lab, tmp_path: Path
) -> None:
    host = stock_lab.plans()[1]
    files = {
        # Same file name in /etc hides the vendor's; the key may be written with slashes.
        "/usr/lib/sysctl.d/60-vendor.conf": "kernel.randomize_va_space = 0\n",
        "/etc/sysctl.d/60-vendor.conf": "kernel/randomize_va_space = 2\n",
        # /etc/sysctl.conf comes last of all.
        "/run/sysctl.d/10-forward.conf": "net.ipv4.ip_forward = 1\n",
        # Sorted by file name across directories: 90-vendor after 80-site.
        "/etc/sysctl.d/80-site.conf": "net.ipv4.conf.all.send_redirects = 0\n",
        "/usr/lib/sysctl.d/90-vendor.conf": "net.ipv4.conf.all.send_redirects=1\n",
        # systemd's style: a glob over existing keys, and "-key" keeping one out of it.
        "/usr/lib/sysctl.d/50-default.conf": "net.ipv4.conf.default.rp_filter = 2\n"
        "net.ipv4.conf.*.rp_filter = 2\n-net.ipv4.conf.all.rp_filter\n"
        "net.ipv4.conf.*.log_martians = 1\n",
        "/usr/lib/sysctl.d/95-ra.conf": "net.ipv6.conf.all.accept_ra = 0\n",
        # Comments are not settings; blanks around key and value do not count; "-key =
        # value" is an assignment whose failure is ignored.
        "/etc/sysctl.d/20-odd.conf": "# net.ipv4.tcp_syncookies = 0\n"
        "; net.ipv4.tcp_syncookies = 0\n"
        "   net.ipv4.conf.all.accept_redirects   =   0  \n"
        "-fs.suid_dumpable = 2\n",
    }
    commands = ["mkdir -p /run/sysctl.d"]
    for path, text in files.items():
        commands.append(f"printf '%s' '{text}' > {path}")
    commands += [
        "echo 'net.ipv4.ip_forward = 0' >> /etc/sysctl.conf",
        "ln -s /dev/null /etc/sysctl.d/95-ra.conf",  # masks the vendor's file
    ]
    planted = ssh(stock_lab, host, "sudo sh -ec " + shlex.quote("; ".join(commands)))
    assert planted.returncode == 0, planted.stderr

    _, report = baseline(stock_lab, tmp_path / "state", "--hosts", host.name)
    results = results_of(report, host.name)
    seen = {rule: (r["status"], r["observed"]) for rule, r in results.items()}
    assert seen["aslr-enabled"] == ("pass", "2")
    assert seen["ip-forwarding-disabled"] == ("pass", "0")
    assert seen["send-redirects-disabled"] == ("fail", "1")
    assert seen["reverse-path-filtering"] == ("fail", "0")  # excluded: the kernel's default
    assert results["reverse-path-filtering"]["reason"] == "not set: the kernel's default applies"
    assert seen["log-martians-enabled"] == ("pass", "1")
    assert seen["ipv6-router-advertisements-ignored"] == ("fail", "1")  # masked: default
    assert seen["tcp-syn-cookies-enabled"] == ("pass", "1")
    assert results["tcp-syn-cookies-enabled"]["reason"] == "not set: the kernel's default applies"
    assert seen["icmp-redirects-not-accepted"] == ("pass", "0")
    assert seen["core-dumps-restricted"] == ("fail", "2")
    assert "error" not in {r["status"] for r in results.values()}


def test_remediation_runs_on_a_stock_host(stock_lab: Lab, tmp_path: Path) -> None:
    # Ansible's modules need python3 on the host: the one package stock hosts get for it.
    host = stock_lab.plans()[0]
    _, report = baseline(
        stock_lab, tmp_path / "state", "--hosts", host.name, "--remediate", "--dry-run"
    )
    outcomes = {o["task"].split(" ")[0]: o for o in report["outcomes"][host.name]}
    assert outcomes["ssh-root-login-disabled"]["status"] == "changed"
    failed = {rule for rule, o in outcomes.items() if o["status"] == "failed"}
    # ufw's settings cannot be written where ufw is not installed; everything else can.
    assert "ufw-enabled" in failed
    assert failed <= {"ufw-enabled", "ufw-default-deny-incoming"}
    assert "does not exist" in outcomes["ufw-enabled"]["message"]
