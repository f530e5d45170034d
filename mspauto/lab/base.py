"""The lab's base root filesystem: built once with debootstrap, cached by its recipe.

Every lab host is an overlay on this tree, so it is never written to after the build.
The cache key covers everything the build depends on (suite, mirror, package list, the
lab packages and this recipe's version): change any of them and a new base is built
next to the old one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from mspauto.lab.packages import LAB_PACKAGES, build_debs, build_repository
from mspauto.lab.system import LabError, run

__all__ = ["BASE_PACKAGES", "Base", "default_cache_dir", "ensure_base"]

SUITE = "bookworm"
MIRROR = os.environ.get("MSPAUTO_LAB_MIRROR", "http://deb.debian.org/debian")
# What baselines, patching and backups need to find on a real Debian server.
BASE_PACKAGES = (
    "openssh-server",
    "sudo",
    "python3",
    "python3-apt",
    "apt-utils",
    "procps",
    "iproute2",
    "cron",
    "ufw",
    "auditd",
    "apparmor",
    "unattended-upgrades",
    "libpam-pwquality",
    "restic",
    "borgbackup",
    "less",
    "ca-certificates",
)
# Bump when the customisation below changes, so caches rebuild.
RECIPE_VERSION = 1
LAB_USER = "mspauto"


class Base:
    """A built base: its root filesystem and its apt repository of lab updates."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.rootfs = directory / "rootfs"
        self.repository = directory / "repo"


def default_cache_dir() -> Path:
    """``$MSPAUTO_LAB_CACHE``, else ``~/.cache/mspauto/lab``."""
    configured = os.environ.get("MSPAUTO_LAB_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "mspauto" / "lab"


def recipe_key() -> str:
    """Short hash of everything the base is built from."""
    recipe = {
        "suite": SUITE,
        "mirror": MIRROR,
        "packages": BASE_PACKAGES,
        "lab_packages": [asdict(p) for p in LAB_PACKAGES],
        "version": RECIPE_VERSION,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def ensure_base(cache_dir: Path, say: Callable[[str], None]) -> Base:
    """The cached base for the current recipe, built first if missing."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    base = Base(cache_dir / f"base-{recipe_key()}")
    if (base.directory / ".complete").exists():
        return base
    with (cache_dir / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another `lab up` may be building it right now
        if (base.directory / ".complete").exists():
            return base
        say(
            f"building the lab base image (debootstrap {SUITE}, about a minute, cached in "
            f"{cache_dir})"
        )
        scratch = Path(tempfile.mkdtemp(prefix="base-", dir=cache_dir))
        try:
            _build(Base(scratch))
            (scratch / ".complete").write_text(recipe_key() + "\n")
            if base.directory.exists():
                shutil.rmtree(base.directory)
            scratch.rename(base.directory)
        finally:
            if scratch.exists():
                shutil.rmtree(scratch, ignore_errors=True)
    return base


def _build(base: Base) -> None:
    run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(BASE_PACKAGES)}",
            SUITE,
            base.rootfs,
            MIRROR,
        ],
        timeout=1800,
    )
    debs = build_debs(base.directory / "debs", base.directory / "deb-build")
    build_repository(base.repository, debs)
    shutil.rmtree(base.directory / "deb-build")

    root = base.rootfs
    staging = root / "tmp" / "lab-debs"
    staging.mkdir()
    installed = [debs[(p.name, p.installed)] for p in LAB_PACKAGES]
    for deb in installed:
        shutil.copy(deb, staging)
    chroot: list[str | Path] = ["chroot", root]
    run([*chroot, "sh", "-c", "dpkg -i /tmp/lab-debs/*.deb"])
    shutil.rmtree(staging)
    shutil.rmtree(base.directory / "debs")

    run([*chroot, "useradd", "--create-home", "--shell", "/bin/bash", LAB_USER])
    sudoers = root / "etc" / "sudoers.d" / LAB_USER
    sudoers.write_text(f"{LAB_USER} ALL=(ALL) NOPASSWD: ALL\n")
    sudoers.chmod(0o440)
    # Each host gets its own host key; none may be shared through the base.
    for key in (root / "etc" / "ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc" / "ssh" / "sshd_config.d" / "00-lab.conf").write_text(
        "# mspauto lab: one host key per host, no DNS lookups on connect.\n"
        "HostKey /etc/ssh/ssh_host_ed25519_key\n"
        "UseDNS no\n"
    )
    # Hosts point only at the lab's own repository (written per host at `lab up`).
    (root / "etc" / "apt" / "sources.list").unlink(missing_ok=True)
    run([*chroot, "apt-get", "clean"])
    for lists in (root / "var" / "lib" / "apt" / "lists").glob("*"):
        if lists.is_file():
            lists.unlink()
    if not (root / "usr" / "sbin" / "sshd").exists():
        raise LabError("the base image has no sshd; the debootstrap output was incomplete")
