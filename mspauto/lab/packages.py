"""The lab's own Debian packages and the apt repository that serves their updates.

Hosts start with the ``installed`` version of each package. The repository offers the
newer version in the suite Debian would ship it in: ``bookworm`` (a point release, a
regular update) or ``bookworm-security`` (labelled ``Debian-Security``, as the real
security archive is). Packages that stand in for a kernel ask for a reboot the way
real ones do, through ``/run/reboot-required``.
"""

from __future__ import annotations

import gzip
import shutil
from dataclasses import dataclass
from pathlib import Path

from mspauto.lab.system import run

__all__ = ["LAB_PACKAGES", "LabPackage", "build_debs", "build_repository"]

SUITE = "bookworm"
SECURITY_SUITE = "bookworm-security"

_REBOOT_POSTINST = """#!/bin/sh
set -e
if [ "$1" = configure ]; then
    mkdir -p /run
    echo "*** System restart required ***" > /run/reboot-required
    echo "{name}" >> /run/reboot-required.pkgs
fi
"""


@dataclass(frozen=True)
class LabPackage:
    """A small package installed on every lab host, with one pending update."""

    name: str
    installed: str
    update: str
    suite: str
    description: str
    needs_reboot: bool = False
    update_depends: str | None = None
    """What the update's version depends on (a ``Depends:`` line), so a held
    dependency can be seen to stop it."""


LAB_PACKAGES = (
    LabPackage(
        "lab-openssl",
        "3.0.11-1",
        "3.0.11-1+deb12u2",
        SECURITY_SUITE,
        "stand-in for a TLS library with a security fix",
    ),
    LabPackage(
        "lab-webserver",
        "2.4.57-2",
        "2.4.57-2+deb12u1",
        SECURITY_SUITE,
        "stand-in for a web server with a security fix",
        update_depends="lab-openssl (>= 3.0.11-1+deb12u2)",
    ),
    LabPackage(
        "lab-kernel",
        "6.1.76-1",
        "6.1.85-1",
        SECURITY_SUITE,
        "stand-in for a kernel image: its update needs a reboot",
        needs_reboot=True,
    ),
    LabPackage(
        "lab-tools",
        "2.0-1",
        "2.1-1",
        SUITE,
        "stand-in for a utility with a regular (point release) update",
    ),
    LabPackage(
        "lab-editor",
        "9.0.1-1",
        "9.0.2-1",
        SUITE,
        "stand-in for an editor with a regular (point release) update",
    ),
)


def _deb_name(package: LabPackage, version: str) -> str:
    return f"{package.name}_{version.replace(':', '%3a')}_all.deb"


def build_debs(out: Path, work: Path) -> dict[tuple[str, str], Path]:
    """Build every package at both versions; returns ``(name, version) -> .deb``."""
    built: dict[tuple[str, str], Path] = {}
    for package in LAB_PACKAGES:
        for version in (package.installed, package.update):
            root = work / f"{package.name}-{version}"
            (root / "DEBIAN").mkdir(parents=True)
            (root / "DEBIAN" / "control").write_text(
                f"Package: {package.name}\n"
                f"Version: {version}\n"
                "Architecture: all\n"
                "Maintainer: mspauto lab <lab@mspauto.invalid>\n"
                "Section: misc\n"
                "Priority: optional\n"
                f"Description: mspauto lab package: {package.description}\n"
                + (
                    f"Depends: {package.update_depends}\n"
                    if package.update_depends and version == package.update
                    else ""
                )
            )
            if package.needs_reboot:
                postinst = root / "DEBIAN" / "postinst"
                postinst.write_text(_REBOOT_POSTINST.format(name=package.name))
                postinst.chmod(0o755)
            doc = root / "usr" / "share" / "doc" / package.name
            doc.mkdir(parents=True)
            (doc / "VERSION").write_text(version + "\n")
            deb = out / _deb_name(package, version)
            out.mkdir(parents=True, exist_ok=True)
            run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-b", root, deb])
            built[(package.name, version)] = deb
    return built


def build_repository(repo: Path, debs: dict[tuple[str, str], Path]) -> None:
    """Lay out a two-suite apt repository (pool + dists) with apt-ftparchive."""
    pools = {SUITE: repo / "pool" / "main", SECURITY_SUITE: repo / "pool" / "updates"}
    for package in LAB_PACKAGES:
        for version, suite in ((package.installed, SUITE), (package.update, package.suite)):
            pools[suite].mkdir(parents=True, exist_ok=True)
            shutil.copy(debs[(package.name, version)], pools[suite])
    labels = {SUITE: "Debian", SECURITY_SUITE: "Debian-Security"}
    for suite, pool in pools.items():
        binary = repo / "dists" / suite / "main" / "binary-amd64"
        binary.mkdir(parents=True, exist_ok=True)
        packages = run(["apt-ftparchive", "packages", pool.relative_to(repo)], cwd=repo)
        (binary / "Packages").write_text(packages)
        with gzip.open(binary / "Packages.gz", "wt") as compressed:
            compressed.write(packages)
        release = run(
            [
                "apt-ftparchive",
                "-o",
                "APT::FTPArchive::Release::Origin=Debian",
                "-o",
                f"APT::FTPArchive::Release::Label={labels[suite]}",
                "-o",
                f"APT::FTPArchive::Release::Suite={suite}",
                "-o",
                f"APT::FTPArchive::Release::Codename={suite}",
                "-o",
                "APT::FTPArchive::Release::Architectures=amd64 all",
                "-o",
                "APT::FTPArchive::Release::Components=main",
                "release",
                ".",
            ],
            cwd=repo / "dists" / suite,
        )
        (repo / "dists" / suite / "Release").write_text(release)
