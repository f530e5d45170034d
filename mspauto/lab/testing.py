"""Test helpers for suites that run against the lab (mspauto's own, or a user's).

``running_lab`` brings a fleet up, yields it, and always takes it down again, even
when the code inside fails. ``ssh`` runs a command on a lab host with the real OpenSSH
client, strict host-key checking and the files ``lab up`` wrote.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mspauto.lab.fleet import Lab
from mspauto.lab.plan import HostPlan
from mspauto.lab.system import LabError, check_can_run

__all__ = ["baseline_json", "copy_project", "lab_unavailable", "mspauto_cli", "running_lab", "ssh"]


def lab_unavailable() -> str | None:
    """Why the lab cannot run on this machine (one line), or ``None`` if it can."""
    try:
        check_can_run()
    except LabError as exc:
        return str(exc)
    return None


@contextmanager
def running_lab(
    directory: Path,
    count: int,
    clients: list[str],
    *,
    faults: bool = True,
    first_address: str = "127.0.100.10",
    stock: int = 0,
    dnf: int = 0,
) -> Iterator[Lab]:
    """A lab that is up inside the ``with`` block and gone after it (``count`` planted
    hosts, then ``stock`` stock hosts, then ``dnf`` dnf hosts)."""
    lab = Lab(directory)
    try:
        lab.up(
            count,
            clients,
            faults=faults,
            first_address=first_address,
            stock=stock,
            dnf=dnf,
            say=lambda _: None,
        )
        yield lab
    finally:
        lab.down(say=lambda _: None)


def copy_project(lab: Lab, root: Path) -> Path:
    """A copy of the lab's project at ``root`` (inventory, policies and the key the
    inventory names, which must be inside the project), for a test to change freely."""
    shutil.copytree(lab.inventory_dir, root / "inventory")
    shutil.copytree(lab.directory / "policies", root / "policies")
    shutil.copytree(lab.key.parent, root / lab.key.parent.relative_to(lab.directory))
    return root


def mspauto_cli(
    project: Path, state: Path, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``mspauto ARGS`` on ``project`` as a user runs it: its own process, evidence and
    keys under ``state``, ``env`` added to this process's environment, and /dev/null
    for stdin (Ansible refuses to start on a non-blocking stdin a parent may pass)."""
    return subprocess.run(
        [sys.executable, "-m", "mspauto", "--project", str(project), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {}), "MSPAUTO_STATE_DIR": str(state)},
    )


def baseline_json(project: Path, state: Path, *args: str) -> tuple[int, dict[str, Any]]:
    """``mspauto baseline ARGS --format json`` on ``project`` (see :func:`mspauto_cli`):
    the exit code and the report."""
    result = mspauto_cli(project, state, "baseline", "--format", "json", *args)
    assert result.stdout, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return result.returncode, report


def ssh(
    lab: Lab, host: HostPlan, command: str, *, user: str = "mspauto", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` on ``host`` as ``user``; never prompts, never trusts a new key."""
    return subprocess.run(
        [
            "ssh",
            "-i",
            str(lab.key),
            "-o",
            f"UserKnownHostsFile={lab.inventory_dir / 'known_hosts' / host.client}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=5",
            "-o",
            "LogLevel=ERROR",
            f"{user}@{host.address}",
            command,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
