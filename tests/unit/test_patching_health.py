"""Pre- and post-checks: the script quotes what the policy says, the reader judges
what the host answered (answers as the lab's hosts print them)."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

from mspauto.patching.health import checks_script, read_checks
from mspauto.policy.models import HealthChecks


def test_nothing_configured_runs_nothing() -> None:
    assert checks_script(HealthChecks()) == ""
    assert read_checks("@@mspauto checks\ndisk / 10\n", HealthChecks()) == []


def test_each_check_is_judged() -> None:
    checks = HealthChecks(min_free_disk_mb=100, services=["ssh", "cron"], commands=["true"])
    answer = (
        "@@mspauto end\n@@mspauto checks\ndisk / 251\ndisk /var 40\n"
        "service 0 active\nservice 1 inactive\ncommand 0 0\n"
    )
    results = {r.what: (r.ok, r.observed) for r in read_checks(answer, checks)}
    assert results == {
        "free disk on / >= 100 MB": (True, "251 MB free"),
        "free disk on /var >= 100 MB": (False, "40 MB free"),
        "service ssh active": (True, "active"),
        "service cron active": (False, "inactive"),
        "command 'true' exits 0": (True, "exit 0"),
    }


def test_a_check_the_host_did_not_answer_fails() -> None:
    checks = HealthChecks(min_free_disk_mb=1, services=["ssh"], commands=["true"])
    results = read_checks("@@mspauto checks\n", checks)
    assert [(r.ok, r.observed) for r in results] == [
        (False, "df gave no answer"),
        (False, "no answer"),
        (False, "exit no answer"),
    ]


def test_policy_values_reach_the_host_as_one_word_each(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    hostile = f"x; touch {marker}"
    script = checks_script(HealthChecks(services=[hostile], commands=["exit 3"]))
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False)
    assert not marker.exists()
    results = read_checks(done.stdout, HealthChecks(services=[hostile], commands=["exit 3"]))
    assert [(r.what, r.ok) for r in results] == [
        (f"service {hostile} active", False),
        ("command 'exit 3' exits 0", False),
    ]


def test_checks_run_after_the_dnf_probe_too(tmp_path: Path) -> None:
    """The dnf probe ends with an exit of its own: the checks still run after it."""
    import os

    from mspauto.patching.check import PatchCheck, PatchPlan
    from mspauto.policy.models import PatchPolicy

    policy = PatchPolicy.model_validate(
        {
            "kind": "patch",
            "name": "p",
            "targets": {"clients": ["*"]},
            "schedule": {"cron": "0 1 * * *", "timezone": "client"},
            "pre_checks": {"commands": ["true"]},
        }
    )
    check = PatchCheck(now=datetime.now(UTC), contract=None, first_detected={})
    script = check.probe(None, PatchPlan(policy, "dnf", ()))  # type: ignore[arg-type]
    assert script is not None
    stub = tmp_path / "bin"
    stub.mkdir()
    for name in ("dnf", "rpm"):
        (stub / name).write_text("#!/bin/sh\nexit 1\n")
        (stub / name).chmod(0o755)
    done = subprocess.run(
        ["sh", "-c", script],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PATH": f"{stub}:{os.environ['PATH']}"},
    )
    results = read_checks(done.stdout, policy.pre_checks)
    assert [(r.what, r.ok) for r in results] == [("command 'true' exits 0", True)]


def test_windows_checks_quote_what_the_policy_says() -> None:
    """No PowerShell runs here: this pins the quoting, and the simulated Windows host of
    the integration tests answers what the script asks."""
    import base64

    from mspauto.patching.health import windows_checks_script

    assert windows_checks_script(HealthChecks()) == ""
    hostile = "Spooler' ; Remove-Item C:\\ ; 'x\u2019y*"
    script = windows_checks_script(
        HealthChecks(min_free_disk_mb=500, services=[hostile], commands=["Test-Path C:\\ok"])
    )
    # Every quote PowerShell reads as one, doubled: the name stays one string, and it
    # is compared, never given to -Name (where '*' would be a wildcard).
    assert "$_.Name -eq 'Spooler'' ; Remove-Item C:\\ ; ''x\u2019\u2019y*' }" in script
    assert "Get-Service -Name" not in script
    encoded = base64.b64encode("Test-Path C:\\ok".encode("utf-16-le")).decode()
    assert f"-EncodedCommand {encoded} 2>&1" in script
    assert script.startswith("$ErrorActionPreference = 'Continue'\n'@@mspauto checks'\n")
    answer = "{}\r\n@@mspauto checks\r\ndisk C: 320\r\nservice 0 active\r\ncommand 0 1\r\n"
    checks = HealthChecks(min_free_disk_mb=500, services=[hostile], commands=["x"])
    assert [(r.what, r.ok) for r in read_checks(answer, checks)] == [
        ("free disk on C: >= 500 MB", False),
        (f"service {hostile} active", True),
        ("command 'x' exits 0", False),
    ]
