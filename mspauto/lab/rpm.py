"""The lab's own RPM packages and the dnf repositories that serve their updates.

A dnf lab host is Debian with Debian's dnf 4 and rpm, not RHEL: what it proves is how
dnf itself reports and installs updates from repositories laid out as Red Hat lays
them out (``createrepo_c`` metadata, ``updateinfo.xml`` advisories added with
``modifyrepo_c``). Two repositories, ``lab-baseos`` and ``lab-appstream``, each hold
every package at both versions; hosts start with the older one of each.

The advisories cover what a RHEL fleet sees: security advisories rated Critical,
Important, Moderate, Low and unrated, one covering two packages, one revised after it
was issued (so its ``updated`` date differs from its ``issued`` date), a kernel with two
advisories at two versions, a bugfix, an enhancement, and an update with no advisory at
all. One package has a name longer than dnf's 80-column table, as many real ones have.
``kernel`` is named as the real one is, so dnf treats it as a kernel: installed
alongside the old one (``installonlypkgs``) and, once installed, reported by
``dnf needs-restarting -r`` as needing a reboot (its built-in list names ``kernel``).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mspauto.lab.system import LabError, run

if TYPE_CHECKING:
    from mspauto.lab.fleet import Lab
    from mspauto.lab.plan import HostPlan

__all__ = [
    "ADVISORIES",
    "LAB_RPMS",
    "RELEASE_RPM",
    "RPM_REPOSITORIES",
    "SPEC_TEMPLATE",
    "Advisory",
    "LabRpm",
    "build_rpm_repositories",
    "build_rpms",
    "holding_dnf_lock",
    "nevr",
    "rpm_tools_missing",
]

RPM_REPOSITORIES = ("lab-baseos", "lab-appstream")
REQUIRED_TOOLS = {
    "rpmbuild": "apt-get install rpm",
    "createrepo_c": "apt-get install createrepo-c",
    "modifyrepo_c": "apt-get install createrepo-c",
}


@dataclass(frozen=True)
class LabRpm:
    """A small noarch RPM installed on dnf lab hosts, with newer versions in a repository.

    Versions are ``[epoch:]version-release``; ``versions[0]`` is installed, the others
    are what the repository offers on top."""

    name: str
    versions: tuple[str, ...]
    repository: str
    summary: str
    requires: tuple[str, ...] = ()
    """What the newest version requires (the older ones require nothing)."""
    provides: tuple[str, ...] = ()

    @property
    def installed(self) -> str:
        """The version every dnf lab host starts with."""
        return self.versions[0]

    @property
    def newest(self) -> str:
        """The version ``dnf check-update`` offers."""
        return self.versions[-1]


@dataclass(frozen=True)
class Advisory:
    """An ``updateinfo.xml`` entry: what it fixes and which package versions fix it."""

    id: str
    type: str
    """security, bugfix or enhancement (updateinfo's ``type`` attribute)."""
    severity: str
    """Critical, Important, Moderate, Low, or empty (unrated)."""
    title: str
    issued: str
    updated: str
    cves: tuple[str, ...]
    packages: tuple[tuple[str, str], ...]
    """(name, [epoch:]version-release) of each package version the advisory ships."""


RELEASE_RPM = LabRpm(
    "lab-release",
    ("12-1.lab",),
    "lab-baseos",
    "mspauto lab release file: gives dnf its $releasever, as redhat-release does",
    provides=("system-release", "system-release(releasever) = 12"),
)

LAB_RPMS = (
    LabRpm(
        "kernel",
        ("5.14.0-362.8.1.lab", "5.14.0-362.13.1.lab", "5.14.0-362.24.1.lab"),
        "lab-baseos",
        "stand-in for the kernel: installed alongside the old one, needs a reboot",
    ),
    LabRpm(
        "lab-openssl",
        ("1:3.0.7-24.lab", "1:3.0.7-27.lab"),
        "lab-baseos",
        "stand-in for a TLS toolkit (with an epoch, as openssl has)",
        requires=("lab-openssl-libs = 1:3.0.7-27.lab",),
    ),
    LabRpm(
        "lab-openssl-libs",
        ("1:3.0.7-24.lab", "1:3.0.7-27.lab"),
        "lab-baseos",
        "stand-in for a TLS library, fixed by the same advisory as lab-openssl",
    ),
    LabRpm(
        "lab-webserver",
        ("2.4.57-5.lab", "2.4.57-8.lab"),
        "lab-appstream",
        "stand-in for a web server whose fix needs the fixed TLS library",
        requires=("lab-openssl-libs >= 1:3.0.7-27.lab",),
    ),
    LabRpm("lab-zlib", ("1.2.11-40.lab", "1.2.11-41.lab"), "lab-baseos", "stand-in for zlib"),
    LabRpm("lab-shell", ("5.1.8-6.lab", "5.1.8-9.lab"), "lab-baseos", "stand-in for a shell"),
    LabRpm("lab-tools", ("2.0-1.lab", "2.1-1.lab"), "lab-baseos", "stand-in for a utility"),
    LabRpm("lab-docs", ("1.0-1.lab", "1.1-1.lab"), "lab-appstream", "stand-in for documentation"),
    LabRpm(
        "lab-certificate-authority-bundle-with-legacy-cross-signed-roots",
        ("2024.2.62-1.lab", "2024.2.69-1.lab"),
        "lab-appstream",
        "a name longer than dnf's 80-column table",
    ),
    LabRpm(
        "lab-editor",
        ("9.0.1-1.lab", "9.0.2-1.lab"),
        "lab-appstream",
        "stand-in for an editor whose update has no advisory at all",
    ),
)

ADVISORIES = (
    Advisory(
        "LABSA-2024:1005",
        "security",
        "Important",
        "Important: kernel security update",
        "2024-01-25 09:00:00",
        "2024-01-25 09:00:00",
        ("CVE-2024-10005",),
        (("kernel", "5.14.0-362.13.1.lab"),),
    ),
    Advisory(
        "LABSA-2024:1010",
        "security",
        "Critical",
        "Critical: kernel security update",
        "2024-04-10 14:00:00",
        "2024-04-10 14:00:00",
        ("CVE-2024-10010", "CVE-2024-10011"),
        (("kernel", "5.14.0-362.24.1.lab"),),
    ),
    Advisory(
        "LABSA-2024:1020",
        "security",
        "Important",
        "Important: lab-openssl security update",
        "2024-05-02 10:00:00",
        # Revised later (a CVE added), as Red Hat revises advisories: dnf shows only
        # this date, the issue date stays in updateinfo.xml.
        "2024-05-20 08:30:00",
        ("CVE-2024-10020", "CVE-2024-10021"),
        (("lab-openssl", "1:3.0.7-27.lab"), ("lab-openssl-libs", "1:3.0.7-27.lab")),
    ),
    Advisory(
        "LABSA-2024:1030",
        "security",
        "Moderate",
        "Moderate: lab-webserver security update",
        "2024-03-15 12:00:00",
        "2024-03-15 12:00:00",
        ("CVE-2024-10030",),
        (("lab-webserver", "2.4.57-8.lab"),),
    ),
    Advisory(
        "LABSA-2024:1040",
        "security",
        "Low",
        "Low: lab-zlib security update",
        "2024-06-03 07:00:00",
        "2024-06-03 07:00:00",
        ("CVE-2024-10040",),
        (("lab-zlib", "1.2.11-41.lab"),),
    ),
    Advisory(
        "LABSA-2024:1050",
        "security",
        "",
        "lab-shell security update",
        "2024-06-10 16:00:00",
        "2024-06-10 16:00:00",
        ("CVE-2024-10050",),
        (("lab-shell", "5.1.8-9.lab"),),
    ),
    Advisory(
        "LABBA-2024:1060",
        "bugfix",
        "",
        "lab-tools bug fix update",
        "2024-02-20 11:00:00",
        "2024-02-20 11:00:00",
        (),
        (("lab-tools", "2.1-1.lab"),),
    ),
    Advisory(
        "LABEA-2024:1070",
        "enhancement",
        "",
        "lab-docs enhancement update",
        "2024-02-27 11:00:00",
        "2024-02-27 11:00:00",
        (),
        (
            ("lab-docs", "1.1-1.lab"),
            ("lab-certificate-authority-bundle-with-legacy-cross-signed-roots", "2024.2.69-1.lab"),
        ),
    ),
)


def split_evr(evr: str) -> tuple[str, str, str]:
    """``[epoch:]version-release`` as (epoch, version, release); epoch "0" if absent."""
    epoch, _, rest = evr.rpartition(":")
    version, _, release = rest.rpartition("-")
    return epoch or "0", version, release


def nevr(name: str, evr: str) -> str:
    """``name-[epoch:]version-release``, the form dnf installs by."""
    return f"{name}-{evr}"


def _rpm_file(name: str, evr: str) -> str:
    _, version, release = split_evr(evr)
    return f"{name}-{version}-{release}.noarch.rpm"


SPEC_TEMPLATE = """\
Name: {name}
{epoch}Version: {version}
Release: {release}
Summary: mspauto lab package: {summary}
License: MIT
BuildArch: noarch
{relations}
%description
mspauto lab package: {summary}. Installs one small text file, named
after its version (so two kernels can be installed side by side).

%install
mkdir -p %{{buildroot}}/usr/share/mspauto-lab
echo '{evr}' > %{{buildroot}}/usr/share/mspauto-lab/{name}-{version}-{release}

%files
/usr/share/mspauto-lab/{name}-{version}-{release}
"""


def rpm_tools_missing() -> str | None:
    """Why this machine cannot build the dnf hosts' packages (one line), or None."""
    for tool, install in REQUIRED_TOOLS.items():
        if shutil.which(tool) is None:
            return f"the dnf lab host needs {tool} on this machine: {install}"
    return None


def build_rpms(out: Path, work: Path) -> dict[tuple[str, str], Path]:
    """Build every lab RPM at every version with rpmbuild; ``(name, evr) -> .rpm``."""
    if missing := rpm_tools_missing():
        raise LabError(missing)
    built: dict[tuple[str, str], Path] = {}
    out.mkdir(parents=True, exist_ok=True)
    for package in (RELEASE_RPM, *LAB_RPMS):
        for evr in package.versions:
            epoch, version, release = split_evr(evr)
            relations = [f"Provides: {p}" for p in package.provides]
            if evr == package.newest:
                relations += [f"Requires: {r}" for r in package.requires]
            spec = work / f"{package.name}-{version}-{release}.spec"
            spec.parent.mkdir(parents=True, exist_ok=True)
            spec.write_text(
                SPEC_TEMPLATE.format(
                    name=package.name,
                    epoch=f"Epoch: {epoch}\n" if epoch != "0" else "",
                    version=version,
                    release=release,
                    summary=package.summary,
                    relations="\n".join(relations) + "\n" if relations else "",
                    evr=evr,
                )
            )
            top = work / "top"
            run(
                [
                    "rpmbuild",
                    "-bb",
                    "--quiet",
                    "--define",
                    f"_topdir {top}",
                    # Nothing of this machine in the packages: a fixed build host and time.
                    "--define",
                    "_buildhost mspauto-lab",
                    "--define",
                    "use_source_date_epoch_as_buildtime 1",
                    spec,
                ],
                env={"PATH": "/usr/bin:/bin", "SOURCE_DATE_EPOCH": "1704067200", "LC_ALL": "C"},
            )
            rpm = out / _rpm_file(package.name, evr)
            shutil.move(top / "RPMS" / "noarch" / rpm.name, rpm)
            built[(package.name, evr)] = rpm
    return built


def build_rpm_repositories(root: Path, rpms: dict[tuple[str, str], Path]) -> None:
    """One createrepo_c repository per name in :data:`RPM_REPOSITORIES` under ``root``,
    each with every version of its packages and its advisories as ``updateinfo``."""
    for repository in RPM_REPOSITORIES:
        packages = root / repository / "Packages"
        packages.mkdir(parents=True, exist_ok=True)
        mine = [p for p in (RELEASE_RPM, *LAB_RPMS) if p.repository == repository]
        for package in mine:
            for evr in package.versions:
                shutil.copy(rpms[(package.name, evr)], packages)
        run(["createrepo_c", "--quiet", root / repository])
        names = {p.name for p in mine}
        advisories = [a for a in ADVISORIES if {n for n, _ in a.packages} <= names]
        updateinfo = root / repository / "updateinfo.xml"
        updateinfo.write_bytes(_updateinfo(advisories))
        run(
            [
                "modifyrepo_c",
                "--mdtype=updateinfo",
                updateinfo,
                root / repository / "repodata",
            ]
        )
        updateinfo.unlink()


def _updateinfo(advisories: list[Advisory]) -> bytes:
    """``updateinfo.xml`` as Red Hat's repositories carry it."""
    updates = ET.Element("updates")
    for advisory in advisories:
        update = ET.SubElement(
            updates,
            "update",
            {
                "from": "lab@mspauto.invalid",
                "status": "final",
                "type": advisory.type,
                "version": "2",
            },
        )
        ET.SubElement(update, "id").text = advisory.id
        ET.SubElement(update, "title").text = advisory.title
        ET.SubElement(update, "issued", {"date": advisory.issued})
        ET.SubElement(update, "updated", {"date": advisory.updated})
        ET.SubElement(update, "rights").text = "mspauto lab"
        ET.SubElement(update, "release").text = "mspauto lab"
        if advisory.severity:
            ET.SubElement(update, "severity").text = advisory.severity
        ET.SubElement(update, "summary").text = advisory.title
        ET.SubElement(update, "description").text = (
            f"{advisory.title} for the mspauto lab.\n"
            "Not a real advisory: its packages are stand-ins."
        )
        references = ET.SubElement(update, "references")
        for cve in advisory.cves:
            ET.SubElement(
                references,
                "reference",
                {
                    "href": f"https://www.cve.org/CVERecord?id={cve}",
                    "id": cve,
                    "type": "cve",
                    "title": cve,
                },
            )
        collection = ET.SubElement(ET.SubElement(update, "pkglist"), "collection", short="lab")
        ET.SubElement(collection, "name").text = "mspauto lab"
        for name, evr in advisory.packages:
            epoch, version, release = split_evr(evr)
            package = ET.SubElement(
                collection,
                "package",
                {
                    "name": name,
                    "epoch": epoch,
                    "version": version,
                    "release": release,
                    "arch": "noarch",
                    "src": f"{name}-{version}-{release}.src.rpm",
                },
            )
            ET.SubElement(package, "filename").text = _rpm_file(name, evr)
    ET.indent(updates)
    text: bytes = ET.tostring(updates, encoding="UTF-8", xml_declaration=True)
    return text + b"\n"


# Holds dnf's metadata lock with dnf's own lock code (as a running `dnf makecache` or
# dnf-automatic holds it) until its standard input closes.
_HOLD_LOCK = """
import sys
import dnf.lock
lock = dnf.lock.build_metadata_lock("/var/cache/dnf", True)
with lock:
    print("held", flush=True)
    sys.stdin.read()
"""


@contextmanager
def holding_dnf_lock(lab: Lab, host: HostPlan) -> Iterator[None]:
    """Another dnf holds dnf's lock on ``host`` while the block runs (for tests)."""
    process = subprocess.Popen(
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
            "LogLevel=ERROR",
            f"mspauto@{host.address}",
            "sudo -n python3 -u -c " + shlex.quote(_HOLD_LOCK),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        if process.stdout.readline().strip() != "held":
            process.kill()
            raise LabError(f"could not take dnf's lock on {host.name}: {process.communicate()[1]}")
        yield
    finally:
        # End of input ends the holder, and with it the lock.
        process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
