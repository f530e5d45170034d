"""A command on a ``connection: local`` host cannot read the control process's secrets.

Local commands run as mspauto's own user, next to a control process whose environment
and memory hold every client's ``env:`` secrets. A process with CAP_SYS_PTRACE reads any
other, so when the tests run as root they run mspauto with every capability dropped
(setpriv): the same user, as on a real control node, but without root's powers. The
local command then looks for a planted secret in the environ and the stack of every
process above it, as an attacker on the control node would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc")

SECRET_NAME = "OTHER_CLIENT_PASSWORD"
SECRET = "planted-other-client-secret-5c1e"

# Walks up from its parent to pid 1. For each process: its command line, then what
# follows NAME= in its environ and in its stack, or why that could not be read.
PROBE = r"""
import os, re, sys

name = sys.argv[1].encode() + b"="
pid = os.getppid()
while pid > 1:
    with open(f"/proc/{pid}/cmdline", "rb") as handle:
        print(f"pid {pid}:", handle.read().replace(b"\0", b" ").decode(errors="replace"))
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            found = [i for i in handle.read().split(b"\0") if i.startswith(name)]
        print("  environ read:", b" ".join(found).decode(errors="replace"))
    except OSError as exc:
        print("  environ refused:", exc.strerror)
    try:
        with open(f"/proc/{pid}/maps") as handle:
            stacks = [line.split()[0] for line in handle if "[stack]" in line]
        with open(f"/proc/{pid}/mem", "rb") as memory:
            for span in stacks:
                start, end = (int(part, 16) for part in span.split("-"))
                memory.seek(start)
                for match in re.finditer(re.escape(name) + rb"[^\0]*", memory.read(end - start)):
                    print("  memory read:", match.group().decode(errors="replace"))
        print("  memory read done")
    except OSError as exc:
        print("  memory refused:", exc.strerror)
    with open(f"/proc/{pid}/status") as handle:
        pid = int(next(line.split()[1] for line in handle if line.startswith("PPid:")))
"""


@pytest.fixture
def unprivileged() -> list[str]:
    """The command prefix that runs a program without root's capabilities.

    It keeps the user, so the test's own virtualenv (which tox makes in a folder only
    its owner can enter) stays usable, and the setting is the real one: mspauto and
    its local commands run as one user.
    """
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and setpriv (util-linux) is not installed")
    prefix = [setpriv, "--bounding-set=-all", "--inh-caps=-all", "--ambient-caps=-all"]
    check = subprocess.run(
        [*prefix, sys.executable, "-c", "import mspauto"],
        capture_output=True,
        check=False,
        cwd="/",
    )
    if check.returncode != 0:
        pytest.skip(f"cannot run this Python without capabilities: {check.stderr.decode()[-200:]}")
    return prefix


@pytest.fixture
def shared_project() -> Iterator[Path]:
    """Client ``tenant`` has a local host; client ``other`` has a password in an
    environment variable."""
    root = Path(tempfile.mkdtemp(prefix="mspauto-local-"))
    try:
        (root / "inventory").mkdir()
        (root / "policies").mkdir()
        (root / "policies" / "contract.yaml").write_text("kind: contract\nname: std\n")
        tenant = _client("tenant", {"tenant-ctl": {}}, connection="local")
        other = _client(
            "other",
            {"other-web01": {"address": "192.0.2.10"}},
            credential="admin",
            credentials={"admin": {"user": "root", "password": {"env": SECRET_NAME}}},
        )
        for document in (tenant, other):
            path = root / "inventory" / f"{document['client']['name']}.yaml"
            path.write_text(yaml.safe_dump(document))
        (root / "probe.py").write_text(PROBE)
        yield root
    finally:
        shutil.rmtree(root)


def _client(name: str, hosts: dict[str, Any], **settings: Any) -> dict[str, Any]:
    return {
        "client": {
            "name": name,
            "display_name": name,
            "timezone": "UTC",
            "contract": "std",
            "platform": "debian",
            **settings,
        },
        "hosts": hosts,
    }


def _environment(root: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(root),
        "MSPAUTO_STATE_DIR": str(root / "state"),
        SECRET_NAME: SECRET,
    }


def test_the_probe_finds_a_secret_in_a_parent_that_does_not_protect_itself(
    unprivileged: list[str], shared_project: Path
) -> None:
    """The probe works here: without the protection it reads the parent's secret."""
    parent = "import subprocess, sys; subprocess.run(sys.argv[1:])"
    probe = [sys.executable, str(shared_project / "probe.py"), SECRET_NAME]
    done = subprocess.run(
        [*unprivileged, sys.executable, "-c", parent, *probe],
        env=_environment(shared_project),
        capture_output=True,
        text=True,
        check=False,
        cwd=shared_project,
    )
    assert done.returncode == 0, done.stderr
    assert f"environ read: {SECRET_NAME}={SECRET}" in done.stdout, done.stdout


def test_a_local_command_cannot_read_other_clients_secrets_from_mspauto(
    unprivileged: list[str], shared_project: Path
) -> None:
    command = [sys.executable, str(shared_project / "probe.py"), SECRET_NAME]
    done = subprocess.run(
        [
            *unprivileged,
            sys.executable,
            "-m",
            "mspauto",
            "--project",
            str(shared_project),
            "exec",
            "--client",
            "tenant",
            "--format",
            "json",
            "--",
            *command,
        ],
        env=_environment(shared_project),
        capture_output=True,
        text=True,
        check=False,
        cwd=shared_project,
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    (result,) = json.loads(done.stdout)["results"]
    report = result["stdout"]
    # The probe reached the mspauto process and was refused there.
    mspauto = report.split("-m mspauto --project", 1)
    assert len(mspauto) == 2, report
    assert mspauto[1].splitlines()[1] == "  environ refused: Permission denied", report
    assert mspauto[1].splitlines()[2] == "  memory refused: Permission denied", report
    assert SECRET not in done.stdout + done.stderr


def test_running_a_local_command_makes_the_process_non_dumpable(tmp_path: Path) -> None:
    script = (
        "from mspauto.transport.local import LocalTransport, control_process_dumpable\n"
        "from mspauto.inventory.resolve import Host\n"
        "from mspauto.problems import Location\n"
        "host = Host('h', 'c', 'h', None, 'debian', 'local', None, (), frozenset(), None,"
        " None, {}, {}, Location('x'))\n"
        "before = control_process_dumpable()\n"
        "result = LocalTransport().run(host, 'true', sudo=False, timeout=10)\n"
        "print(before, result.ok, control_process_dumpable())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert done.stdout.split() == ["True", "True", "False"]


def test_the_scheduler_daemon_keeps_its_secrets_from_processes_of_its_user(
    unprivileged: list[str], shared_project: Path
) -> None:
    """The control node's daemon holds every client's env: secrets for its whole life
    (its runs inherit them): a process of the same user cannot read its environ."""
    daemon = subprocess.Popen(
        [
            *unprivileged,
            sys.executable,
            "-m",
            "mspauto",
            "--project",
            str(shared_project),
            "scheduler",
            "run",
            "--every",
            "1",
        ],
        env=_environment(shared_project),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=shared_project,
    )
    try:
        assert daemon.stderr is not None
        first = json.loads(daemon.stderr.readline())  # written once it is private
        assert first["event"] == "scheduler.started", first
        reader = (
            "import sys\ntry:\n    open(f'/proc/{sys.argv[1]}/environ', 'rb').read()\n"
            "    print('read')\nexcept OSError as exc:\n    print('refused', exc.strerror)\n"
        )
        python = subprocess.run(
            [*unprivileged, sys.executable, "-c", reader, str(daemon.pid)],
            capture_output=True,
            text=True,
            check=True,
        )
        assert python.stdout.strip() == "refused Permission denied"
    finally:
        daemon.terminate()
        daemon.communicate(timeout=60)
    assert daemon.returncode == 0
