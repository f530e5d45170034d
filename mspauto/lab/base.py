"""The lab's base root filesystems: built once with debootstrap, cached by their recipe.

Every lab host is an overlay on one of these trees, so they are never written to after
the build. There are three: the *lab* base (what baselines, patching and backups need
to find, plus the lab's update packages and their apt repository) for compliant and
drifted hosts, the *stock* base (``debootstrap --variant=minbase`` with only
openssh-server, sudo and python3) for stock hosts, and the *dnf* base (minbase with
Debian's dnf 4, rpm and dnf-plugins-core, an RPM database holding the older version of
the lab's RPMs, and their dnf repositories) for dnf hosts. Each cache key covers
everything its build depends on (suite, mirror, package list, the lab packages and the
recipe's version): change any of them and a new base is built next to the old one.
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
from mspauto.lab.rpm import (
    ADVISORIES,
    LAB_RPMS,
    RELEASE_RPM,
    RPM_REPOSITORIES,
    SPEC_TEMPLATE,
    build_rpm_repositories,
    build_rpms,
    nevr,
    rpm_tools_missing,
)
from mspauto.lab.system import LabError, run

__all__ = [
    "BASE_PACKAGES",
    "DNF_PACKAGES",
    "STOCK_PACKAGES",
    "Base",
    "default_cache_dir",
    "ensure_base",
    "ensure_dnf_base",
    "ensure_stock_base",
]

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
# A stock host: minbase plus the SSH server, and only what mspauto needs to work on it
# as on any managed server: sudo to become root, python3 for Ansible's modules (without
# it every remediation task fails with "/usr/bin/python3: not found"; see docs/lab.md).
STOCK_PACKAGES = ("openssh-server", "sudo", "python3")
# A dnf host: the stock host's packages plus Debian's dnf 4 (python3-dnf comes with it,
# which Ansible's dnf module needs), rpm, and dnf-plugins-core for needs-restarting,
# versionlock and config-manager; procps so a tech finds ps.
DNF_PACKAGES = (*STOCK_PACKAGES, "dnf", "dnf-plugins-core", "rpm", "procps")
# Bump when the customisation below changes, so caches rebuild.
RECIPE_VERSION = 1
STOCK_RECIPE_VERSION = 1
DNF_RECIPE_VERSION = 1
# RHEL 9's /etc/dnf/dnf.conf (Debian's differs: skip_if_unavailable=True, best=False).
_DNF_CONF = """\
# mspauto lab: RHEL 9's defaults, not Debian's.
[main]
gpgcheck=1
installonly_limit=3
clean_requirements_on_remove=True
best=True
skip_if_unavailable=False
"""
LAB_USER = "mspauto"


class Base:
    """A built base: its root filesystem and (lab and dnf bases) the repository its
    hosts get their updates from (apt for the lab base, dnf for the dnf base)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.rootfs = directory / "rootfs"
        self.repository = directory / "repo"


def default_cache_dir() -> Path:
    """``$MSPAUTO_LAB_CACHE``, else ``~/.cache/mspauto/lab``."""
    configured = os.environ.get("MSPAUTO_LAB_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "mspauto" / "lab"


def recipe_key() -> str:
    """Short hash of everything the lab base is built from."""
    recipe = {
        "suite": SUITE,
        "mirror": MIRROR,
        "packages": BASE_PACKAGES,
        "lab_packages": [asdict(p) for p in LAB_PACKAGES],
        "version": RECIPE_VERSION,
    }
    return _digest(recipe)


def stock_recipe_key() -> str:
    """Short hash of everything the stock base is built from."""
    recipe = {
        "suite": SUITE,
        "mirror": MIRROR,
        "packages": STOCK_PACKAGES,
        "stock": True,
        "version": STOCK_RECIPE_VERSION,
    }
    return _digest(recipe)


def dnf_recipe_key() -> str:
    """Short hash of everything the dnf base is built from."""
    recipe = {
        "suite": SUITE,
        "mirror": MIRROR,
        "packages": DNF_PACKAGES,
        "rpms": [asdict(p) for p in (RELEASE_RPM, *LAB_RPMS)],
        "advisories": [asdict(a) for a in ADVISORIES],
        "spec": SPEC_TEMPLATE,
        "dnf_conf": _DNF_CONF,
        "version": DNF_RECIPE_VERSION,
    }
    return _digest(recipe)


def _digest(recipe: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def ensure_base(cache_dir: Path, say: Callable[[str], None]) -> Base:
    """The cached lab base for the current recipe, built first if missing."""
    return _ensure(cache_dir / f"base-{recipe_key()}", "lab", _build, say)


def ensure_stock_base(cache_dir: Path, say: Callable[[str], None]) -> Base:
    """The cached stock base for the current recipe, built first if missing."""
    return _ensure(cache_dir / f"stock-{stock_recipe_key()}", "stock", _build_stock, say)


def ensure_dnf_base(cache_dir: Path, say: Callable[[str], None]) -> Base:
    """The cached dnf base for the current recipe, built first if missing."""
    return _ensure(cache_dir / f"dnf-{dnf_recipe_key()}", "dnf", _build_dnf, say)


def _ensure(
    directory: Path, kind: str, build: Callable[[Base], None], say: Callable[[str], None]
) -> Base:
    cache_dir = directory.parent
    cache_dir.mkdir(parents=True, exist_ok=True)
    base = Base(directory)
    if (base.directory / ".complete").exists():
        return base
    with (cache_dir / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another `lab up` may be building it right now
        if (base.directory / ".complete").exists():
            return base
        say(
            f"building the {kind} base image (debootstrap {SUITE}, about a minute, cached in "
            f"{cache_dir})"
        )
        scratch = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=cache_dir))
        try:
            build(Base(scratch))
            (scratch / ".complete").write_text(directory.name + "\n")
            if base.directory.exists():
                shutil.rmtree(base.directory)
            scratch.rename(base.directory)
        finally:
            if scratch.exists():
                shutil.rmtree(scratch, ignore_errors=True)
    return base


def _debootstrap(root: Path, packages: tuple[str, ...]) -> None:
    run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(packages)}",
            SUITE,
            root,
            MIRROR,
        ],
        timeout=1800,
    )


def _build(base: Base) -> None:
    _debootstrap(base.rootfs, BASE_PACKAGES)
    debs = build_debs(base.directory / "debs", base.directory / "deb-build")
    build_repository(base.repository, debs)
    shutil.rmtree(base.directory / "deb-build")

    root = base.rootfs
    staging = root / "tmp" / "lab-debs"
    staging.mkdir()
    installed = [debs[(p.name, p.installed)] for p in LAB_PACKAGES]
    for deb in installed:
        shutil.copy(deb, staging)
    run(["chroot", root, "sh", "-c", "dpkg -i /tmp/lab-debs/*.deb"])
    shutil.rmtree(staging)
    shutil.rmtree(base.directory / "debs")
    _make_reachable(root)


def _build_stock(base: Base) -> None:
    # Nothing of the lab's own is installed or written here beyond _make_reachable:
    # no lab packages, no hardening, no configuration a stock Debian would not have.
    _debootstrap(base.rootfs, STOCK_PACKAGES)
    _make_reachable(base.rootfs)


def _build_dnf(base: Base) -> None:
    if missing := rpm_tools_missing():
        raise LabError(missing)  # before a minute of debootstrap, not after
    _debootstrap(base.rootfs, DNF_PACKAGES)
    rpms = build_rpms(base.directory / "rpms", base.directory / "rpm-build")
    build_rpm_repositories(base.repository, rpms)
    shutil.rmtree(base.directory / "rpm-build")
    shutil.rmtree(base.directory / "rpms")

    root = base.rootfs
    # Debian's rpm keeps its database in ~/.rpmdb (so nobody mistakes it for the
    # system's); a dnf host keeps it where RHEL does, for every user alike.
    (root / "etc" / "rpm").mkdir(exist_ok=True)
    (root / "etc" / "rpm" / "macros.dbpath").write_text(
        "# mspauto lab: the RPM database where RHEL keeps it\n%_dbpath /var/lib/rpm\n"
    )
    (root / "etc" / "dnf" / "dnf.conf").write_text(_DNF_CONF)
    # Debian enables dnf-plugins-core's 'local' plugin (RHEL does not ship it): it adds a
    # repository of its own that would answer next to the lab's.
    (root / "etc" / "dnf" / "plugins" / "local.conf").write_text("[main]\nenabled = 0\n")
    (root / "etc" / "yum.repos.d").mkdir(exist_ok=True)
    run(["chroot", root, "rpm", "--initdb"])
    # The older version of each package, installed with dnf from the lab's own
    # repositories (so dnf records them as coming from there, as on a real host).
    staging = root / "tmp" / "lab-repos"
    shutil.copytree(base.repository, staging)
    repositories = []
    for repository in RPM_REPOSITORIES:
        repositories += [
            f"--repofrompath={repository},/tmp/lab-repos/{repository}",
            f"--setopt={repository}.gpgcheck=0",
        ]
    packages = [nevr(p.name, p.installed) for p in (RELEASE_RPM, *LAB_RPMS)]
    run(
        ["chroot", root, "dnf", "-y", "-q", "--disablerepo=*", *repositories, "install", *packages],
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "HOME": "/root"},
    )
    shutil.rmtree(staging)
    for cached in (root / "var" / "cache" / "dnf").glob("*"):
        if cached.is_dir():
            shutil.rmtree(cached)
        else:
            cached.unlink()
    _make_reachable(root)


def _make_reachable(root: Path) -> None:
    """What every lab host needs so mspauto reaches it as it reaches the others: the
    lab user with passwordless sudo, one host key per host, and no apt source but the
    lab's own (written per host at ``lab up``)."""
    run(["chroot", root, "useradd", "--create-home", "--shell", "/bin/bash", LAB_USER])
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
    (root / "etc" / "apt" / "sources.list").unlink(missing_ok=True)
    run(["chroot", root, "apt-get", "clean"])
    for lists in (root / "var" / "lib" / "apt" / "lists").glob("*"):
        if lists.is_file():
            lists.unlink()
    if not (root / "usr" / "sbin" / "sshd").exists():
        raise LabError("the base image has no sshd; the debootstrap output was incomplete")
