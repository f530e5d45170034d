"""What the lab needs from the machine, and the few system calls it makes."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = [
    "LabError",
    "alive",
    "check_can_run",
    "children_of",
    "kill_and_wait",
    "mount",
    "mounts_under",
    "run",
    "send_signal",
    "unmount_all_under",
]


class LabError(Exception):
    """The lab cannot do what was asked; the message is one line saying why and what to do."""


REQUIRED_TOOLS = {
    "debootstrap": "apt-get install debootstrap",
    "apt-ftparchive": "apt-get install apt-utils",
    "dpkg-deb": "apt-get install dpkg",
    "unshare": "apt-get install util-linux",
    "ssh-keygen": "apt-get install openssh-client",
}


def check_can_run() -> None:
    """Raise :class:`LabError` with the first reason this machine cannot run the lab."""
    if not Path("/proc/self/ns/pid").exists() or os.uname().sysname != "Linux":
        raise LabError("the lab needs Linux with namespaces (mount, pid, uts)")
    if os.geteuid() != 0:
        raise LabError("the lab needs root (it mounts filesystems and creates namespaces)")
    for tool, install in REQUIRED_TOOLS.items():
        if shutil.which(tool) is None:
            raise LabError(f"the lab needs {tool}: {install}")
    if "overlay" not in Path("/proc/filesystems").read_text():
        raise LabError("the lab needs overlayfs (modprobe overlay)")
    probe = subprocess.run(
        ["unshare", "--mount", "--uts", "--pid", "--fork", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        reason = probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else "unknown"
        raise LabError(f"cannot create namespaces here ({reason})")


def run(
    args: Sequence[str | Path],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 900,
) -> str:
    """Run a command; on failure raise :class:`LabError` with its last line of output."""
    try:
        result = subprocess.run(
            [str(a) for a in args],
            capture_output=True,
            text=True,
            env=env,
            cwd=cwd,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise LabError(f"{Path(str(args[0])).name} did not finish in {timeout:.0f} s") from None
    if result.returncode != 0:
        output = (result.stderr.strip() or result.stdout.strip()).splitlines()
        last = output[-1] if output else f"exit code {result.returncode}"
        raise LabError(f"{Path(str(args[0])).name} failed: {last}")
    return result.stdout


def mount(*args: str | Path) -> None:
    """``mount ARGS``, with a one-line error."""
    run(["mount", *args])


def mounts_under(directory: Path) -> list[Path]:
    """Mount points at or below ``directory``, deepest first (the order to unmount them)."""
    prefix = str(directory.resolve())
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        point = line.split()[1].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def unmount_all_under(directory: Path) -> None:
    """Unmount everything at or below ``directory`` (lazily if still busy)."""
    for point in mounts_under(directory):
        if subprocess.run(["umount", str(point)], capture_output=True, check=False).returncode:
            subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid``."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def kill_and_wait(pids: Iterable[int], sig: int = signal.SIGTERM, timeout: float = 5.0) -> None:
    """Signal ``pids``; SIGKILL whatever is still alive after ``timeout`` seconds."""
    pending = [pid for pid in pids if alive(pid)]
    for pid in pending:
        send_signal(pid, sig)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        time.sleep(0.02)
        pending = [pid for pid in pending if alive(pid)]
    for pid in pending:
        send_signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        time.sleep(0.02)
        pending = [pid for pid in pending if alive(pid)]


def send_signal(pid: int, sig: int) -> None:
    """``kill(pid, sig)``, ignoring a process that is already gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
