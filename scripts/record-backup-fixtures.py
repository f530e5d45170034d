"""Record restic, borg and file-age probe outputs from the lab's Debian 12 image, per state.

    sudo .venv/bin/python scripts/record-backup-fixtures.py [--out DIR]

Runs the real restic 0.14.0, borg 1.2.4, GNU stat and find of the lab base image (built
first if missing) in a chroot on a scratch overlay of it: the cached image is never
written to, nothing goes over the network. It makes one repository (or path) per state,
starts the processes that hold locks, then runs *one probe* built exactly as mspauto
builds it (:data:`mspauto.backup.probe.CAPTURE_FUNCTION` and each provider's
``commands``) with the secrets in its environment, and writes:

- ``DIR/probe.txt``: the probe's raw standard output, every job of every tool;
- ``DIR/<tool>/<version>/<state>.json``: one job's commands and what each printed
  (exit code, stdout, stderr), decoded from that output with ``read_captures``;
- ``DIR/<tool>/<version>/README.md``: how each state was made.

States that need another probe (the tool removed from the image, the probe run as an
unprivileged user) are recorded in a second and third run, also written per state.
Then it prints what the parsers make of every state, so a change shows before it is
committed. Outputs of restic 0.17/0.18 and borg 1.4, which the image does not have,
are not made here: see ``sourced/`` next to the recorded ones.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mspauto.backup import borg, fileage, restic
from mspauto.backup.facts import JobFacts
from mspauto.backup.probe import CAPTURE_FUNCTION, Captured, capture, read_captures
from mspauto.lab.base import default_cache_dir, ensure_base
from mspauto.lab.system import mount, unmount_all_under

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "tests" / "fixtures" / "backup"

# The lab's secrets (not real ones), handed to the probe in its environment.
SECRETS = {
    "MSPAUTO_RESTIC_PASSWORD": "lab-restic-password",
    "MSPAUTO_BORG_PASSPHRASE": "lab-borg-passphrase",
    "MSPAUTO_WRONG_SECRET": "not-the-password",
    "MSPAUTO_EMPTY_SECRET": "",
}
RIGHT_RESTIC, RIGHT_BORG = "MSPAUTO_RESTIC_PASSWORD", "MSPAUTO_BORG_PASSPHRASE"
WRONG, EMPTY = "MSPAUTO_WRONG_SECRET", "MSPAUTO_EMPTY_SECRET"
# Run as code, either would leave a file "pwned" in the probe's directory (/).
HOSTILE = "/t/{tool}/it's a $(touch pwned) `touch pwned` repo"

# Snapshot and archive times: fixed, so the fixtures read the same every time. The
# newest restic snapshot is made in Auckland's zone (NZST, +12:00): it is 02:00 UTC.
SETUP = r"""
set -e
export TZ=UTC RESTIC_PASSWORD=lab-restic-password BORG_PASSPHRASE=lab-borg-passphrase
mkdir -p /t/restic /t/borg /t/file-age
restic_repo() {
  restic init --quiet --repo "$1"
  restic backup --quiet --no-cache --repo "$1" --host lab --time '2025-05-29 03:00:00' \
    /etc/hostname /etc/os-release
  TZ=Pacific/Auckland restic backup --quiet --no-cache --repo "$1" --host lab \
    --time '2025-06-01 14:00:00' /etc/apt
}
restic_repo /t/restic/healthy
restic init --quiet --repo /t/restic/empty
mkdir /t/restic/not-a-repository
for state in damaged-config corrupt-tree corrupt-data locked backup-running; do
  cp -a /t/restic/healthy "/t/restic/$state"
done
echo damaged > /t/restic/damaged-config/config
# Enough data that `check --read-data` runs long enough to be stopped while it holds
# its exclusive lock.
restic backup --quiet --no-cache --repo /t/restic/locked --host lab \
  --time '2025-05-30 03:00:00' /usr/lib
restic_repo "$HOSTILE_RESTIC"

# Each borg state is a repository of its own (borg init): borg's security directory
# remembers where it saw a repository ID, and a copy at another path is "relocated".
borg_repo() {
  borg init --encryption=repokey "$1" >/dev/null 2>&1
  borg create --timestamp 2025-05-29T03:00:00 "$1::lab-2025-05-29" /etc/hostname /etc/os-release
  borg create --timestamp 2025-06-01T02:00:00 "$1::lab-2025-06-01" /etc/apt
}
for state in healthy locked corrupt-segment damaged-config moved-from; do
  borg_repo "/t/borg/$state"
done
borg_repo "$HOSTILE_BORG"
borg init --encryption=repokey /t/borg/empty 2>/dev/null
mkdir /t/borg/not-a-repository
echo damaged > /t/borg/damaged-config/config
mv /t/borg/moved-from /t/borg/relocated

mkdir -p /t/file-age/snapshots/daily.0/localhost/etc /t/file-age/dumps /t/file-age/empty
echo lab > /t/file-age/snapshots/daily.0/localhost/etc/hostname
touch -d '2025-06-01 02:00:00' /t/file-age/snapshots/daily.0/localhost/etc/hostname \
  /t/file-age/snapshots/daily.0/localhost/etc /t/file-age/snapshots/daily.0/localhost
touch -d '2025-06-01 04:30:00' /t/file-age/snapshots/daily.0
echo dump > /t/file-age/dumps/db.sql.gz
touch -d '2025-06-02 01:15:00' /t/file-age/dumps/db.sql.gz
touch -d '2025-05-01 00:00:00' /t/file-age/dumps
echo dump > /t/file-age/db.sql.gz
touch -d '2025-06-01 01:00:00' /t/file-age/db.sql.gz
touch -d '2025-04-01 00:00:00' /t/file-age/empty
mkdir -p '/t/file-age/odd
name'
touch -d '2025-06-03 00:00:00' '/t/file-age/odd
name'
chmod 700 /t/file-age/dumps
"""


@dataclass(frozen=True)
class Job:
    """One job of a probe: a state of one tool, how it was made, the lines that run it."""

    tool: str
    state: str
    how: str
    lines: Callable[[int], str]
    parse: Callable[[dict[str, Captured]], JobFacts]


def restic_job(state: str, how: str, secret: str = RIGHT_RESTIC, **options: object) -> Job:
    repository = str(options.pop("repository", f"/t/restic/{state}"))
    subset = options.pop("subset", None)
    return Job(
        "restic",
        state,
        how,
        lambda job: restic.commands(
            job,
            repository,
            secret=secret,
            check=True,
            read_data_subset=str(subset) if subset else None,
        ),
        restic.parse,
    )


def borg_job(state: str, how: str, secret: str = RIGHT_BORG, path: str = "") -> Job:
    repository = path or f"/t/borg/{state}"
    return Job(
        "borg",
        state,
        how,
        lambda job: borg.commands(job, repository, secret=secret, check=True),
        borg.parse,
    )


def file_job(state: str, how: str, path: str) -> Job:
    return Job("file-age", state, how, lambda job: fileage.commands(job, path), fileage.parse)


def auckland_listing(job: int) -> str:
    """borg list as it would run without the probe's TZ=UTC, on a host in Auckland."""
    environment = {**borg.ENVIRONMENT, "TZ": "Pacific/Auckland"}
    argv = ["borg", "list", "--json", "--log-json", "--bypass-lock", "--", "/t/borg/healthy"]
    return capture(
        job, "list", argv, environment=environment, secrets={"BORG_PASSPHRASE": RIGHT_BORG}
    )


HOSTILE_RESTIC = HOSTILE.format(tool="restic")
HOSTILE_BORG = HOSTILE.format(tool="borg")

MAIN_PROBE = [
    restic_job(
        "healthy",
        "two snapshots: 2025-05-29 03:00 made in UTC, 2025-06-01 14:00 made with "
        "TZ=Pacific/Auckland (02:00 UTC)",
    ),
    restic_job("empty", "`restic init`, no backup yet"),
    restic_job(
        "wrong-password",
        "the healthy repository, a wrong password",
        WRONG,
        repository="/t/restic/healthy",
    ),
    restic_job(
        "empty-password",
        "the healthy repository, the password variable empty",
        EMPTY,
        repository="/t/restic/healthy",
    ),
    restic_job("missing", "a path where nothing exists"),
    restic_job(
        "not-a-repository",
        "an empty directory (what an unmounted backup disk's mount point looks like)",
    ),
    restic_job(
        "locked",
        "a copy of healthy plus a /usr/lib snapshot, while `restic check --read-data` holds "
        "its exclusive lock (stopped with SIGSTOP after `load indexes`)",
    ),
    restic_job(
        "backup-running",
        "a copy of healthy while `restic backup --stdin` runs (its stdin held open), "
        "holding a non-exclusive lock",
    ),
    restic_job(
        "damaged-config",
        "a copy of healthy with `echo damaged > config` (the lab's restic-failing)",
    ),
    restic_job(
        "corrupt-tree", "a copy of healthy with one byte flipped inside a tree blob of a pack"
    ),
    restic_job(
        "corrupt-data",
        "a copy of healthy with one byte flipped inside a data blob of a pack; plain "
        "`check` reads no file data",
    ),
    restic_job(
        "corrupt-data-read",
        "the corrupt-data repository checked with --read-data-subset=100%",
        repository="/t/restic/corrupt-data",
        subset="100%",
    ),
    restic_job(
        "hostile-path", f"the healthy layout at {HOSTILE_RESTIC!r}", repository=HOSTILE_RESTIC
    ),
    borg_job(
        "healthy",
        "two archives: lab-2025-05-29 (--timestamp 2025-05-29T03:00:00) and lab-2025-06-01 "
        "(--timestamp 2025-06-01T02:00:00); borg reads --timestamp as UTC",
    ),
    Job(
        "borg",
        "healthy-auckland",
        "the healthy repository listed with TZ=Pacific/Auckland instead of the probe's "
        "TZ=UTC: the same archives, 12 hours later on the clock",
        auckland_listing,
        borg.parse,
    ),
    borg_job("empty", "`borg init`, no archive yet"),
    borg_job(
        "wrong-password", "the healthy repository, a wrong passphrase", WRONG, "/t/borg/healthy"
    ),
    borg_job("missing", "a path where nothing exists"),
    borg_job("not-a-repository", "an empty directory (an unmounted backup disk's mount point)"),
    borg_job(
        "locked",
        "while `borg with-lock REPO sleep 600` holds the exclusive lock: list (with "
        "--bypass-lock) still answers, check waits 1 s and gives up",
    ),
    borg_job("corrupt-segment", "one byte flipped in the middle of the largest segment file"),
    borg_job("damaged-config", "`echo damaged > config`"),
    borg_job(
        "relocated",
        "made (and so known to root's security directory) at /t/borg/moved-from, then "
        "moved: borg asks whether the relocation is OK and the probe's environment says no",
    ),
    borg_job("hostile-path", f"the healthy layout at {HOSTILE_BORG!r}", path=HOSTILE_BORG),
    file_job(
        "rsnapshot-daily",
        "an rsnapshot-like daily.0 (mtime 2025-06-01 04:30 UTC, as rsnapshot sets it), "
        "its entries older",
        "/t/file-age/snapshots/daily.0",
    ),
    file_job(
        "rewritten-in-place",
        "a folder last changed 2025-05-01 holding db.sql.gz rewritten 2025-06-02 01:15 UTC",
        "/t/file-age/dumps",
    ),
    file_job("file", "a file, mtime 2025-06-01 01:00 UTC", "/t/file-age/db.sql.gz"),
    file_job("empty-folder", "an empty folder, mtime 2025-04-01", "/t/file-age/empty"),
    file_job(
        "newline-in-name",
        "a folder whose name has a newline in it, mtime 2025-06-03",
        "/t/file-age/odd\nname",
    ),
    file_job("missing", "a path where nothing exists", "/t/file-age/nothing-here"),
]
NOT_INSTALLED_PROBE = [
    restic_job(
        "tool-missing",
        "restic removed from the image (dash: `restic: not found`)",
        repository="/t/restic/healthy",
    ),
    borg_job("tool-missing", "borg removed from the image", path="/t/borg/healthy"),
]
UNPRIVILEGED_PROBE = [
    restic_job(
        "permission-denied",
        "the healthy repository read by user nobody",
        repository="/t/restic/healthy",
    ),
    borg_job(
        "permission-denied",
        "the healthy repository read by user nobody (HOME=/tmp)",
        path="/t/borg/healthy",
    ),
    file_job(
        "permission-denied",
        "a file in a folder of mode 0700 owned by root, read by user nobody",
        "/t/file-age/dumps/db.sql.gz",
    ),
    file_job(
        "unlistable-folder",
        "that folder of mode 0700 itself, read by user nobody: its own time, not its entries",
        "/t/file-age/dumps",
    ),
]


def chroot(
    root: Path, command: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``sh -c command`` in the chroot, as root, with a plain environment plus ``env``."""
    environment = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
    return subprocess.run(
        ["chroot", str(root), "/bin/sh", "-c", command],
        env=environment | (env or {}),
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def corrupt(root: Path) -> None:
    """Flip one byte inside a tree blob (corrupt-tree) and a data blob (corrupt-data),
    found through the repositories' own indexes; and one in the middle of a borg
    segment."""
    for state, kind in (("corrupt-tree", "tree"), ("corrupt-data", "data")):
        listed = chroot(
            root,
            'for i in $(restic list index); do restic cat index "$i"; echo; done',
            env={
                "RESTIC_REPOSITORY": f"/t/restic/{state}",
                "RESTIC_PASSWORD": SECRETS[RIGHT_RESTIC],
                "RESTIC_CACHE_DIR": "/tmp/restic-cache",
            },
        )
        packs = [
            pack
            for line in listed.stdout.splitlines()
            if line.strip()
            for pack in json.loads(line)["packs"]
        ]
        pack = next(p for p in packs if all(b["type"] == kind for b in p["blobs"]))
        blob = pack["blobs"][0]
        name = pack["id"]
        flip_byte(
            root / "t" / "restic" / state / "data" / name[:2] / name,
            blob["offset"] + blob["length"] // 2,
        )
    segments = sorted(
        (root / "t" / "borg" / "corrupt-segment" / "data").rglob("*"),
        key=lambda p: p.stat().st_size,
    )
    largest = segments[-1]
    flip_byte(largest, largest.stat().st_size // 2)


@contextmanager
def lock_holders(root: Path) -> Iterator[None]:
    """A stopped `restic check --read-data` (exclusive lock), a running `restic backup
    --stdin` (non-exclusive lock) and `borg with-lock ... sleep 600`, each in a session
    of its own, ended (with everything they started) when the probe is done."""
    environment = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "RESTIC_PASSWORD": SECRETS[RIGHT_RESTIC],
        "BORG_PASSPHRASE": SECRETS[RIGHT_BORG],
    }
    started: list[subprocess.Popen[str]] = []
    try:
        check = subprocess.Popen(
            [
                "chroot",
                str(root),
                "restic",
                "--repo=/t/restic/locked",
                "--no-cache",
                "check",
                "--read-data",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=environment,
            start_new_session=True,
        )
        started.append(check)
        wait_for_line(check, "load indexes")
        os.kill(check.pid, signal.SIGSTOP)
        backup = subprocess.Popen(
            [
                "chroot",
                str(root),
                "restic",
                "--repo=/t/restic/backup-running",
                "--no-cache",
                "-v",
                "backup",
                "--stdin",
                "--stdin-filename",
                "dump.sql",
                "--host",
                "lab",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=environment,
            start_new_session=True,
        )
        started.append(backup)
        wait_for_line(backup, "load index files")
        borg_lock = subprocess.Popen(
            ["chroot", str(root), "borg", "with-lock", "/t/borg/locked", "sleep", "600"],
            env=environment,
            start_new_session=True,
            text=True,
        )
        started.append(borg_lock)
        exclusive = root / "t" / "borg" / "locked" / "lock.exclusive"
        deadline = time.monotonic() + 30
        while not (exclusive.is_dir() and any(exclusive.iterdir())):
            if time.monotonic() > deadline:
                raise SystemExit("borg with-lock did not take the lock in 30 s")
            time.sleep(0.05)
        yield
    finally:
        for process in started:
            try:
                os.killpg(process.pid, signal.SIGCONT)
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for process in started:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def wait_for_line(process: subprocess.Popen[str], text: str) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        if text in line:
            return
    raise SystemExit(f"{process.args!r} ended before printing {text!r}")


def run_probe(root: Path, jobs: list[Job], user: str = "") -> tuple[str, str]:
    """The probe's script and its raw standard output, run as root (or ``user``)."""
    script = CAPTURE_FUNCTION + "".join(job.lines(number) for number, job in enumerate(jobs, 1))
    environment = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/tmp" if user else "/root",
        **SECRETS,
    }
    argv = ["chroot", *([f"--userspec={user}"] if user else []), str(root), "/bin/sh", "-c", script]
    done = subprocess.run(
        argv, env=environment, capture_output=True, text=True, check=False, cwd="/"
    )
    if done.returncode != 0 or done.stderr:
        raise SystemExit(f"the probe exited {done.returncode}: {done.stderr}")
    return script, done.stdout


def tool_version(root: Path, tool: str) -> str:
    return chroot(root, f"{tool} --version 2>/dev/null || {tool} version").stdout.strip()


def write(
    out: Path, jobs: list[Job], script: str, stdout: str, versions: dict[str, str], probe: str
) -> None:
    captures = read_captures(stdout)
    recorded = datetime.now(UTC).strftime("%Y-%m-%d")
    for number, job in enumerate(jobs, 1):
        folder = out / job.tool / VERSION_FOLDERS[job.tool]
        folder.mkdir(parents=True, exist_ok=True)
        mine = {name: c for (n, name), c in captures.items() if n == number}
        if not mine:
            raise SystemExit(f"job {number} ({job.tool} {job.state}) printed no record")
        document = {
            "origin": "recorded",
            "tool": versions[job.tool],
            "recorded": f"{recorded}, lab base image (Debian 12), record-backup-fixtures.py",
            "state": job.how,
            "probe": probe,
            "job": number,
            "script": job.lines(number),
            "captures": {
                name: {"rc": c.rc, "stdout": c.stdout, "stderr": c.stderr}
                for name, c in sorted(mine.items())
            },
        }
        (folder / f"{job.state}.json").write_text(
            json.dumps(document, indent=2, ensure_ascii=False) + "\n"
        )
        print(f"{job.tool:8} {job.state:20} {summary(job.parse(mine))}")
    if probe == "main":
        (out / "probe.txt").write_text(stdout)


VERSION_FOLDERS = {"restic": "0.14", "borg": "1.2", "file-age": "gnu"}


def summary(facts: JobFacts) -> str:
    parts = []
    if facts.latest:
        parts.append(f"latest {facts.latest.name} {facts.latest.time.isoformat()}")
    if facts.count is not None:
        parts.append(f"count {facts.count}")
    if facts.integrity:
        parts.append(
            f"integrity {'ok' if facts.integrity.ok else 'FAILED'}: {facts.integrity.message[:80]}"
        )
    if facts.problem:
        parts.append(f"problem {facts.problem.kind}: {facts.problem.message[:100]}")
    return "; ".join(parts) or "nothing"


def readme(out: Path, tool: str, versions: dict[str, str]) -> None:
    folder = out / tool / VERSION_FOLDERS[tool]
    probes = (
        (MAIN_PROBE, "main"),
        (UNPRIVILEGED_PROBE, "as nobody"),
        (NOT_INSTALLED_PROBE, "tool removed"),
    )
    rows = [
        f"| `{job.state}.json` | {label} | {job.how} |"
        for jobs, label in probes
        for job in jobs
        if job.tool == tool
    ]
    (folder / "README.md").write_text(
        f"# {tool} outputs recorded from {versions[tool]}\n\n"
        "Made by `sudo .venv/bin/python scripts/record-backup-fixtures.py`: the real tools of\n"
        "the lab base image (Debian 12), in a chroot on a scratch overlay of it, each state a\n"
        "repository (or path) of its own, read by a probe built as mspauto builds it. The\n"
        "*main* probe read every state at once (`../../probe.txt` is its raw output); two\n"
        "more ran as user nobody and with the tools removed from the overlay. Each JSON file is\n"
        "one job: its commands (`script`) and what each printed (exit code, stdout, stderr),\n"
        "decoded with `read_captures`. Nothing was edited by hand; the secrets are the lab's,\n"
        "handed to the probe in its environment.\n\n"
        "| file | probe | state when recorded |\n| --- | --- | --- |\n" + "\n".join(rows) + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the recording mounts an overlay and uses chroot")
    base = ensure_base(default_cache_dir(), print)
    scratch = Path(tempfile.mkdtemp(prefix="mspauto-backup-fixtures-"))
    try:
        for part in ("upper", "work", "root"):
            (scratch / part).mkdir()
        mount(
            "-t",
            "overlay",
            "overlay",
            "-o",
            f"lowerdir={base.rootfs},upperdir={scratch / 'upper'},workdir={scratch / 'work'}",
            scratch / "root",
        )
        root = scratch / "root"
        mount("-t", "proc", "proc", root / "proc")
        versions = {
            "restic": tool_version(root, "restic"),
            "borg": tool_version(root, "borg"),
            "file-age": chroot(root, "stat --version | head -n 1; find --version | head -n 1")
            .stdout.strip()
            .replace("\n", ", "),
        }
        setup = chroot(
            root,
            SETUP,
            env={"HOSTILE_RESTIC": HOSTILE_RESTIC, "HOSTILE_BORG": HOSTILE_BORG},
            timeout=900,
        )
        if setup.returncode != 0:
            raise SystemExit(f"setup failed ({setup.returncode}): {setup.stderr}{setup.stdout}")
        corrupt(root)
        with lock_holders(root):
            script, stdout = run_probe(root, MAIN_PROBE)
        if (root / "pwned").exists():
            raise SystemExit("a repository path was run as a command")
        write(args.out, MAIN_PROBE, script, stdout, versions, "main")
        script, stdout = run_probe(root, UNPRIVILEGED_PROBE, user="nobody:nogroup")
        write(args.out, UNPRIVILEGED_PROBE, script, stdout, versions, "as nobody")
        (root / "usr" / "bin" / "restic").unlink()
        (root / "usr" / "bin" / "borg").unlink()
        script, stdout = run_probe(root, NOT_INSTALLED_PROBE)
        write(args.out, NOT_INSTALLED_PROBE, script, stdout, versions, "tool removed")
        for tool in VERSION_FOLDERS:
            readme(args.out, tool, versions)
    finally:
        unmount_all_under(scratch)
        subprocess.run(["rm", "-rf", "--one-file-system", str(scratch)], check=False)


if __name__ == "__main__":
    main()
