"""Backup repositories for lab hosts, made with the real restic and borg.

Making a restic repository costs seconds of key derivation, so each state is made once
per ``lab up`` (in a scratch overlay of the base) and copied into the hosts that want
it. Snapshot times are set relative to now: fresh is 2 hours old, stale 3 days old,
both past a 24 h RPO and well within it. "Failing" is a repository restic cannot open
(its config is damaged), as after a failed write or a disk fault.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mspauto.lab.system import mount, run, unmount_all_under

__all__ = ["BORG_PASSPHRASE", "FRESH_AGE", "RESTIC_PASSWORD", "STALE_AGE", "make_templates"]

FRESH_AGE = timedelta(hours=2)
STALE_AGE = timedelta(days=3)
RESTIC_PASSWORD = "lab-restic-password"
BORG_PASSPHRASE = "lab-borg-passphrase"

_SCRIPT = r"""
set -e
export TZ=UTC
mkdir -p /t
export RESTIC_PASSWORD_FILE=/etc/mspauto-lab/restic.pass
export BORG_PASSCOMMAND="cat /etc/mspauto-lab/borg.pass"
restic init --quiet --repo /t/restic
restic backup --quiet --repo /t/restic --host lab --time "$1" /etc
cp -a /t/restic /t/restic-stale
restic backup --quiet --repo /t/restic --host lab --time "$2" /etc
mv /t/restic /t/restic-fresh
cp -a /t/restic-fresh /t/restic-failing
echo damaged > /t/restic-failing/config
borg init --encryption=repokey /t/borg
borg create --timestamp "$3" /t/borg::lab-stale /etc
cp -a /t/borg /t/borg-stale
borg create --timestamp "$4" /t/borg::lab-fresh /etc
mv /t/borg /t/borg-fresh
"""


def make_templates(
    base_rootfs: Path, scratch: Path, out: Path, now: datetime | None = None
) -> None:
    """Make every backup state once under ``out`` (one folder per state)."""
    now = now or datetime.now(UTC)
    stale, fresh = now - STALE_AGE, now - FRESH_AGE
    scratch.mkdir(parents=True, exist_ok=True)
    mount("-t", "tmpfs", "-o", "size=512m,mode=0700", "lab-backup-builder", scratch)
    try:
        for part in ("upper", "work", "root"):
            (scratch / part).mkdir()
        mount(
            "-t",
            "overlay",
            "overlay",
            "-o",
            f"lowerdir={base_rootfs},upperdir={scratch / 'upper'},workdir={scratch / 'work'}",
            scratch / "root",
        )
        # Written here, not passed to the script: no password in any process's arguments.
        secrets = scratch / "root" / "etc" / "mspauto-lab"
        secrets.mkdir(parents=True)
        (secrets / "restic.pass").write_text(RESTIC_PASSWORD + "\n")
        (secrets / "borg.pass").write_text(BORG_PASSPHRASE + "\n")
        run(
            [
                "chroot",
                scratch / "root",
                "/bin/sh",
                "-c",
                _SCRIPT,
                "lab-backups",
                f"{stale:%Y-%m-%d %H:%M:%S}",
                f"{fresh:%Y-%m-%d %H:%M:%S}",
                f"{stale:%Y-%m-%dT%H:%M:%S}",
                f"{fresh:%Y-%m-%dT%H:%M:%S}",
            ]
        )
        out.mkdir(parents=True, exist_ok=True)
        for state in ("restic-fresh", "restic-stale", "restic-failing", "borg-fresh", "borg-stale"):
            shutil.copytree(scratch / "root" / "t" / state, out / state, symlinks=True)
    finally:
        unmount_all_under(scratch)
        shutil.rmtree(scratch, ignore_errors=True)
