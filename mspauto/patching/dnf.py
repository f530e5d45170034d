"""dnf 4 (RHEL family): what a host's dnf says is pending, in one round trip.

:func:`probe_script` is one POSIX sh script, run as root, that changes no package: it
refreshes the repository metadata once (``dnf makecache --refresh``) and then asks dnf,
from that cache only, for

- the pending updates: ``dnf check-update`` (exit code 100 when there are some). It is
  the one listing that applies the host's own holds (``excludepkgs``, versionlock);
  ``dnf repoquery --upgrades`` does not;
- the installed versions of those packages (``rpm -q --qf``);
- their advisories: ``dnf updateinfo list`` (advisory id, type/severity, the package
  NEVRA it ships) and ``dnf updateinfo info`` (type, severity, date, CVEs, title);
- each advisory's *issue* date from the ``updateinfo.xml`` dnf downloaded: dnf 4 itself
  shows only one date, the ``updated`` one, which moves each time Red Hat revises an
  advisory;
- whether a reboot is pending (``dnf needs-restarting -r``: exit code 1 means yes);
- what the host holds (``dnf versionlock list``, ``excludepkgs``).

dnf prints other chatter, so every command's output is framed by marker lines carrying a
random nonce the script draws when it starts: nothing a repository says (a package name,
an advisory text) can fake a section. Every dnf command runs with ``exit_on_lock``, and
is retried while another process holds dnf's lock, up to ``lock_timeout`` seconds in
all; then the facts say so in :attr:`HostPatchFacts.problem` instead of waiting forever
as dnf does by default.

:func:`parse` turns the output into :class:`HostPatchFacts`; it does no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from mspauto.patching.facts import (
    HostPatchFacts,
    PendingUpdate,
    parse_time,
    severity_from_vendor,
)
from mspauto.policy.models import Classification, Severity

__all__ = ["SEVERITY_SOURCE", "compare_evr", "parse", "probe_script", "rpmvercmp"]

SEVERITY_SOURCE = "dnf updateinfo"
PROBE_VERSION = "1"
_MARK = "@@mspauto-dnf"

_PROBE = r"""# mspauto dnf probe: read-only for packages (it refreshes repository metadata).
export LC_ALL=C LANG=C TZ=UTC
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
set -f
lock_timeout=__LOCK_TIMEOUT__
nonce=$(cat /proc/sys/kernel/random/uuid 2>/dev/null || echo "$$-$(date +%s)")
mark() { printf '%s %s %s\n' '__MARK__' "$nonce" "$*"; }
mark probe __VERSION__ "lock_timeout=$lock_timeout"
work=$(mktemp -d "${TMPDIR:-/tmp}/mspauto-dnf.XXXXXX") || { mark fatal mktemp; exit 0; }
trap 'rm -rf "$work"' EXIT
deadline=$(( $(date +%s) + lock_timeout ))
dnf_() { dnf -q --color=never --setopt=exit_on_lock=True "$@"; }
# section NAME COMMAND...: run it (again while dnf says its lock is busy: exit code 200,
# until the deadline) and print its output, its errors and its exit code between markers.
section() {
    name=$1; shift
    while :; do
        "$@" >"$work/out" 2>"$work/err"; rc=$?
        [ "$rc" -eq 200 ] && [ "$(date +%s)" -lt "$deadline" ] || break
        sleep 1
    done
    mark begin "$name"; awk '{ print }' "$work/out"
    mark stderr "$name"; awk '{ print }' "$work/err"
    mark end "$name" "$rc"
    return "$rc"
}
main_config() {
    dnf_ -C config-manager --dump >"$work/config" || return
    grep -E '^(cachedir|excludepkgs) = ' "$work/config"
    return 0
}
if ! command -v dnf >/dev/null 2>&1; then mark missing dnf; exit 0; fi
section version dnf --version
case $(head -n 1 "$work/out") in dnf5*) mark done; exit 0 ;; esac
section makecache dnf_ makecache --refresh --setopt=skip_if_unavailable=False || {
    mark done; exit 0; }
section check-update dnf_ -C check-update
case $rc in 0|100) ;; *) mark done; exit 0 ;; esac
cp "$work/out" "$work/rows"
# The same with the host's own holds lifted, so a held package's update is seen too
# (and judged as held), as apt's simulation sees it.
section check-update-all dnf_ -C --disableexcludes=all --disableplugin=versionlock check-update
case $rc in 0|100) cp "$work/out" "$work/rows" ;; esac
# The package names of the pending updates ("name.arch evr repo" triples, which dnf
# wraps over lines when a column overflows), one per line.
awk '/^Obsoleting Packages/ { exit } { for (i = 1; i <= NF; i++) print $i }' "$work/rows" |
    awk 'NR % 3 == 1 { sub(/\.[^.]*$/, ""); print }' | sort -u >"$work/names"
installed_format='installed %{NAME} %{EPOCHNUM}:%{VERSION}-%{RELEASE} %{ARCH}\n'
set --
while IFS= read -r name; do set -- "$@" "$name"; done <"$work/names"
if [ "$#" -gt 0 ]; then
    section installed rpm -q --qf "$installed_format" -- "$@"
    lifted="--disableexcludes=all --disableplugin=versionlock"
    # shellcheck disable=SC2086  # two fixed options
    section updateinfo-list dnf_ -C $lifted updateinfo list --available -- "$@"
    awk '{ print $1 }' "$work/out" | sort -u >"$work/ids"
    # shellcheck disable=SC2086
    section updateinfo-info dnf_ -C $lifted updateinfo info --available -- "$@"
fi
section config main_config
cachedir=$(sed -n 's/^cachedir = //p' "$work/out")
section versionlock dnf_ -C versionlock list
section needs-restarting dnf_ -C needs-restarting -r
if [ -s "$work/ids" ] && [ -n "$cachedir" ]; then
    python=$(sed -n '1s/^#![[:space:]]*//p' "$(command -v dnf)")
    section issued $python - "$cachedir" "$work/ids" <<'PYTHON'
# Each advisory's issue date, from the updateinfo.xml of every repository in dnf's cache.
import bz2, glob, gzip, lzma, os, sys
import xml.etree.ElementTree as ET
cachedir, ids_file = sys.argv[1], sys.argv[2]
wanted = set(open(ids_file).read().split())
opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open, ".xml": open}
for repomd in sorted(glob.glob(os.path.join(glob.escape(cachedir), "*", "repodata", "repomd.xml"))):
    repo = os.path.dirname(os.path.dirname(repomd))
    ns = "{http://linux.duke.edu/metadata/repo}"
    for data in ET.parse(repomd).getroot().iter(ns + "data"):
        if data.get("type") != "updateinfo":
            continue
        href = data.find(ns + "location").get("href")
        path = os.path.join(repo, href)
        open_ = opener.get(os.path.splitext(path)[1])
        if open_ is None or not os.path.exists(path):
            print("unreadable", os.path.basename(path))
            continue
        with open_(path, "rb") as stream:
            for _, element in ET.iterparse(stream):
                if element.tag != "update":
                    continue
                advisory = (element.findtext("id") or "").strip()
                issued = element.find("issued")
                if advisory in wanted and issued is not None and issued.get("date"):
                    print("issued", advisory, issued.get("date").replace(" ", "T"))
                element.clear()
PYTHON
fi
mark done
exit 0
"""


def probe_script(lock_timeout: int = 120) -> str:
    """The probe: one POSIX sh script to run as root; read-only for packages.

    ``lock_timeout`` is how long, in seconds, it waits in all for dnf's lock when
    another dnf (dnf-automatic, a tech's ``dnf install``) holds it."""
    if not isinstance(lock_timeout, int) or isinstance(lock_timeout, bool) or lock_timeout < 0:
        raise ValueError("lock_timeout is a whole number of seconds, 0 or more")
    return (
        _PROBE.replace("__LOCK_TIMEOUT__", str(lock_timeout))
        .replace("__MARK__", _MARK)
        .replace("__VERSION__", PROBE_VERSION)
    )


# --- parsing -------------------------------------------------------------------------


@dataclass
class _Section:
    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)
    rc: int | None = None

    @property
    def error(self) -> str:
        """dnf's own one-line reason, for a problem message."""
        lines = [line.strip() for line in self.err if line.strip()]
        errors = [line for line in lines if line.startswith("Error:")]
        chosen = errors[0] if errors else (lines[-1] if lines else f"exit code {self.rc}")
        return chosen.removeprefix("Error:").strip()


@dataclass(frozen=True)
class _Probe:
    header: dict[str, str]
    sections: dict[str, _Section]
    flags: frozenset[str]


_HEADER = re.compile(rf"^{re.escape(_MARK)} (\S+) probe (\S+)(.*)$")


def _read_probe(stdout: str) -> _Probe | None:
    """The sections of the probe's output, or None when it has no probe header."""
    lines = stdout.splitlines()
    headers = ((index, _HEADER.match(line)) for index, line in enumerate(lines))
    index, header = next(((i, h) for i, h in headers if h), (0, None))
    if header is None:
        return None
    prefix = f"{_MARK} {header.group(1)} "
    options = dict(word.split("=", 1) for word in header.group(3).split() if "=" in word)
    sections: dict[str, _Section] = {}
    flags: set[str] = set()
    current: _Section | None = None
    target: list[str] | None = None
    for line in lines[index + 1 :]:
        if not line.startswith(prefix):
            if target is not None:
                target.append(line)
            continue
        words = line[len(prefix) :].split()
        if len(words) >= 2 and words[0] == "begin":
            current = sections.setdefault(words[1], _Section())
            target = current.out
        elif len(words) >= 2 and words[0] == "stderr" and current is not None:
            target = current.err
        elif len(words) >= 3 and words[0] == "end" and current is not None:
            current.rc = int(words[2]) if words[2].lstrip("-").isdigit() else None
            current, target = None, None
        elif words:
            flags.add(" ".join(words))
            current, target = None, None
    return _Probe(options, sections, frozenset(flags))


@dataclass(frozen=True)
class _Advisory:
    id: str
    type: str = ""
    severity: str = ""
    title: str | None = None
    updated: datetime | None = None
    cves: tuple[str, ...] = ()


_SEVERITY_RANK = {"critical": 4, "high": 3, "medium": 2, "low": 1, "unrated": 0}
_TYPE_RANK = {"security": 3, "bugfix": 2, "enhancement": 1}
_CLASSIFICATIONS: Mapping[str, Classification] = {
    "security": "security",
    "bugfix": "bugfix",
    "enhancement": "enhancement",
}
_SEPARATOR = re.compile(r"^={20,}$")
_FIELD = re.compile(r"^\s*([A-Za-z][A-Za-z ]*?)?\s*: ?(.*)$")
_LOCK = re.compile(r"already locked by (\d+)")


def parse(stdout: str, stderr: str, rc: int | None) -> HostPatchFacts:
    """The facts in the probe's output (``rc`` is the script's exit code, None when the
    transport could not run it)."""
    probe = _read_probe(stdout)
    if probe is None:
        why = _last_line(stderr) or (f"exit code {rc}" if rc is not None else "no output")
        return _problem(f"the dnf probe did not run: {why}")
    if "missing dnf" in probe.flags:
        return _problem("dnf is not installed on this host")
    if "fatal mktemp" in probe.flags:
        return _problem("the dnf probe could not make a temporary folder on the host")
    version = probe.sections.get("version")
    if version is not None and version.out and version.out[0].startswith("dnf5"):
        return _problem(
            f"this host runs dnf 5 ({version.out[0].strip()}); mspauto reads dnf 4 only"
        )
    timeout = probe.header.get("lock_timeout", "?")
    for name in ("makecache", "check-update"):
        section = probe.sections.get(name)
        if section is None:
            return _problem(f"the dnf probe stopped before '{name}' ({_ended(probe, rc)})")
        if section.rc == 200:
            return _problem(_lock_problem(section, timeout))
        if name == "makecache" and section.rc != 0:
            return _problem(f"dnf could not refresh the repository metadata: {section.error}")
        if name == "check-update" and section.rc not in (0, 100):
            return _problem(f"dnf check-update failed: {section.error}")
    if "done" not in probe.flags:
        return _problem(f"the dnf probe stopped before it finished ({_ended(probe, rc)})")
    for section in probe.sections.values():
        if section.rc == 200:
            return _problem(_lock_problem(section, timeout))

    warnings: list[str] = []
    check_update = probe.sections["check-update"]
    candidates = _check_update_rows(check_update.out)
    if (check_update.rc == 100) != bool(candidates):
        warnings.append(
            f"dnf check-update exited {check_update.rc} but listed {len(candidates)} updates"
        )
    # Updates the host's holds hide from check-update, seen with the holds lifted.
    lifted = probe.sections.get("check-update-all")
    if lifted is not None and lifted.rc in (0, 100):
        pending = {(name, arch) for name, arch, _, _ in candidates}
        candidates += [
            row for row in _check_update_rows(lifted.out) if (row[0], row[1]) not in pending
        ]
    installed = _installed(probe.sections.get("installed"))
    advisories = _advisory_details(probe.sections.get("updateinfo-info"))
    issued, unreadable = _issued_dates(probe.sections.get("issued"))
    issued_section = probe.sections.get("issued")
    if issued_section is not None and issued_section.rc != 0:
        warnings.append(
            f"could not read the advisories' issue dates ({issued_section.error}): "
            "dates are dnf's 'Updated' dates"
        )
    if unreadable:
        warnings.append(
            f"could not read {', '.join(unreadable)}: dates are dnf's 'Updated' dates there"
        )
    shipped = _advisory_packages(probe.sections.get("updateinfo-list"))

    updates = []
    for name, arch, evr, repo in candidates:
        found = [
            advisories.get(row.id, _Advisory(row.id, type=row.type, severity=row.severity))
            for row in shipped
            if row.name == name and row.arch == arch and compare_evr(row.evr, evr) <= 0
        ]
        updates.append(
            _update(name, evr, _newest(installed, name, arch), repo, _unique(found), issued)
        )
    undated = sorted({u.advisory for u in updates if u.advisory and u.advisory not in issued})
    if undated and not unreadable:
        warnings.append(
            f"no issue date found for {', '.join(undated)}: dnf's 'Updated' date is used"
        )
    reboot_pending, reboot_reason = _reboot(probe.sections.get("needs-restarting"), warnings)
    return HostPatchFacts(
        manager="dnf",
        updates=tuple(updates),
        reboot_pending=reboot_pending,
        reboot_reason=reboot_reason,
        held=_held(probe.sections, warnings),
        warnings=tuple(warnings),
    )


def _problem(reason: str) -> HostPatchFacts:
    return HostPatchFacts(manager="dnf", problem=reason)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _ended(probe: _Probe, rc: int | None) -> str:
    if rc is None:
        return "the connection ended"
    return f"exit code {rc}" if rc else "its output was cut short"


def _lock_problem(section: _Section, timeout: str) -> str:
    holder = next((m.group(1) for m in map(_LOCK.search, section.err) if m), None)
    by = f" (process {holder})" if holder else ""
    return (
        f"another dnf{by} held dnf's lock for more than the {timeout} s the probe "
        "waits; nothing was read"
    )


def _check_update_rows(lines: list[str]) -> list[tuple[str, str, str, str]]:
    """``dnf check-update`` rows as (name, arch, evr, repo). dnf pads its columns and
    moves the rest of a row to the next line when a column overflows, so the rows are
    read as a stream of (name.arch, evr, repo) words."""
    words: list[str] = []
    for line in lines:
        if line.startswith("Obsoleting Packages"):
            break
        words.extend(line.split())
    rows = []
    for index in range(0, len(words) - 2, 3):
        name_arch, evr, repo = words[index : index + 3]
        name, _, arch = name_arch.rpartition(".")
        rows.append((name, arch, _normal_evr(evr), repo))
    return rows


def _normal_evr(evr: str) -> str:
    """``[epoch:]version-release`` with a zero epoch left out, as dnf prints it."""
    epoch, _, rest = evr.rpartition(":")
    return rest if epoch in ("", "0") else evr


def _installed(section: _Section | None) -> dict[tuple[str, str], list[str]]:
    found: dict[tuple[str, str], list[str]] = {}
    for line in section.out if section else []:
        words = line.split()
        if len(words) == 4 and words[0] == "installed":
            found.setdefault((words[1], words[3]), []).append(_normal_evr(words[2]))
    return found


def _newest(installed: Mapping[tuple[str, str], list[str]], name: str, arch: str) -> str | None:
    """The newest installed version (a kernel is installed several times over); a
    package whose update changes its arch matches on the name alone."""
    versions = installed.get((name, arch)) or [
        v for (n, _), vs in installed.items() if n == name for v in vs
    ]
    newest = None
    for version in versions:
        if newest is None or compare_evr(version, newest) > 0:
            newest = version
    return newest


@dataclass(frozen=True)
class _Shipped:
    """One ``dnf updateinfo list`` row: an advisory and a package version it ships."""

    id: str
    type: str
    severity: str
    name: str
    arch: str
    evr: str


def _advisory_packages(section: _Section | None) -> list[_Shipped]:
    """``dnf updateinfo list`` rows: ``ID LABEL NEVRA``, the label being the type or,
    for a security advisory, ``Severity/Sec.``."""
    rows = []
    for line in section.out if section else []:
        words = line.split()
        if len(words) != 3:
            continue
        advisory_id, label, nevra = words
        name_evr, _, arch = nevra.rpartition(".")
        name, evr = _split_name_evr(name_evr)
        if not name:
            continue
        severity, security, _ = label.partition("/Sec")
        if security:
            kind, severity = "security", severity if severity != "Unknown" else ""
        else:
            kind, severity = label, ""
        rows.append(_Shipped(advisory_id, kind, severity, name, arch, _normal_evr(evr)))
    return rows


def _split_name_evr(text: str) -> tuple[str, str]:
    """``name-[epoch:]version-release`` as (name, evr); names may contain '-'."""
    parts = text.rsplit("-", 2)
    if len(parts) != 3:
        return "", ""
    return parts[0], f"{parts[1]}-{parts[2]}"


def _advisory_details(section: _Section | None) -> dict[str, _Advisory]:
    """``dnf updateinfo info`` blocks: a title between two rules of '=', then
    ``Label: value`` lines, a value going on in lines with an empty label."""
    lines = section.out if section else []
    blocks: list[tuple[str, list[str]]] = []
    index = 0
    while index < len(lines):
        if (
            _SEPARATOR.match(lines[index])
            and index + 2 < len(lines)
            and _SEPARATOR.match(lines[index + 2])
        ):
            blocks.append((lines[index + 1].strip(), []))
            index += 3
            continue
        if blocks:
            blocks[-1][1].append(lines[index])
        index += 1
    details: dict[str, _Advisory] = {}
    for title, body in blocks:
        values: dict[str, list[str]] = {}
        label = ""
        for line in body:
            match = _FIELD.match(line)
            if not match:
                continue
            label = match.group(1) or label
            values.setdefault(label, []).append(match.group(2).strip())
        advisory_id = " ".join(values.get("Update ID", [])).strip()
        if not advisory_id:
            continue
        details[advisory_id] = _Advisory(
            id=advisory_id,
            type=" ".join(values.get("Type", [])).strip().lower(),
            severity=" ".join(values.get("Severity", [])).strip(),
            title=title or None,
            updated=_time(" ".join(values.get("Updated", []))),
            cves=tuple(v for v in values.get("CVEs", []) if v),
        )
    return details


def _issued_dates(section: _Section | None) -> tuple[dict[str, datetime], list[str]]:
    """Advisory id -> its earliest issue date, and the files that could not be read."""
    issued: dict[str, datetime] = {}
    unreadable: list[str] = []
    for line in section.out if section else []:
        words = line.split()
        if len(words) == 2 and words[0] == "unreadable":
            unreadable.append(words[1])
        if len(words) != 3 or words[0] != "issued":
            continue
        when = _time(words[2])
        if when is not None and (words[1] not in issued or when < issued[words[1]]):
            issued[words[1]] = when
    return issued, unreadable


def _time(text: str) -> datetime | None:
    """An updateinfo date: ``2024-05-02 10:00:00`` (UTC: the probe runs dnf with
    TZ=UTC), a date alone, or seconds since the epoch (as some repositories write it)."""
    text = text.strip().replace("T", " ")
    try:
        if text.isdigit():
            return datetime.fromtimestamp(int(text), UTC)
        return parse_time(text)
    except (ValueError, OverflowError, OSError):
        return None  # a date no calendar holds: unknown, not a crash


def _unique(advisories: Iterable[_Advisory]) -> list[_Advisory]:
    seen: dict[str, _Advisory] = {}
    for advisory in advisories:
        seen.setdefault(advisory.id, advisory)
    return list(seen.values())


def _update(
    name: str,
    candidate: str,
    installed: str | None,
    repo: str,
    advisories: list[_Advisory],
    issued: Mapping[str, datetime],
) -> PendingUpdate:
    """One pending update; with several advisories (an update that skips versions),
    the most severe names it and every one's CVEs are listed."""
    if not advisories:
        return PendingUpdate(name=name, candidate=candidate, installed=installed, source=repo)

    def released(advisory: _Advisory) -> datetime | None:
        return issued.get(advisory.id, advisory.updated)

    def weight(advisory: _Advisory) -> tuple[int, int, float]:
        when = released(advisory)
        return (
            _TYPE_RANK.get(advisory.type, 0),
            _SEVERITY_RANK[_severity(advisory)],
            -when.timestamp() if when else float("-inf"),
        )

    primary = max(advisories, key=weight)
    cves = sorted({cve for advisory in advisories for cve in advisory.cves})
    severity = _severity(primary)
    return PendingUpdate(
        name=name,
        candidate=candidate,
        installed=installed,
        source=repo,
        classification=_CLASSIFICATIONS.get(primary.type, "other"),
        severity=severity,
        # An advisory without a severity rates nothing: the update stays unrated.
        severity_source=SEVERITY_SOURCE if severity != "unrated" else None,
        released=released(primary),
        advisory=primary.id,
        title=primary.title,
        cves=tuple(cves),
    )


def _severity(advisory: _Advisory) -> Severity:
    return severity_from_vendor(advisory.severity)


def _reboot(section: _Section | None, warnings: list[str]) -> tuple[bool | None, str]:
    """``dnf needs-restarting -r``: exit code 0 no reboot, 1 reboot (and the packages
    updated since boot), anything else (no such command: dnf-plugins-core missing) unknown."""
    if section is None:
        return None, ""
    text = "\n".join(section.out + section.err)
    if section.rc == 0:
        return False, "dnf needs-restarting -r: no core libraries or services updated since boot"
    if section.rc == 1 and "No such command" not in text:
        names = [line.strip()[2:] for line in section.out if line.strip().startswith("* ")]
        since = f" ({', '.join(names)} updated since boot)" if names else ""
        return True, f"dnf needs-restarting -r{since}"
    warnings.append(f"cannot tell whether a reboot is pending: {section.error}")
    return None, ""


def _held(sections: Mapping[str, _Section], warnings: list[str]) -> tuple[str, ...]:
    """Packages the host holds: versionlock entries (not its ``!`` exclusions) by name,
    and ``excludepkgs`` patterns as written."""
    held: list[str] = []
    config = sections.get("config")
    if config is not None and config.rc == 0:
        for line in config.out:
            if line.startswith("excludepkgs = "):
                held.extend(p.strip() for p in line.split("=", 1)[1].split(",") if p.strip())
    else:
        warnings.append(
            "could not read dnf's excludepkgs: "
            + (config.error if config else "dnf config-manager did not run")
        )
    versionlock = sections.get("versionlock")
    if versionlock is not None and versionlock.rc == 0:
        for line in versionlock.out:
            entry = line.strip()
            if not entry or entry.startswith(("#", "!")):
                continue
            name, _ = _split_name_evr(entry.removesuffix(".*"))
            held.append(name or entry)
    return tuple(dict.fromkeys(held))


# --- rpm version order -----------------------------------------------------------------


def rpmvercmp(one: str, two: str) -> int:
    """rpm's version comparison (rpmvercmp.c): -1, 0 or 1. Digits and letters are
    compared segment by segment, numbers as numbers; ``~`` sorts before everything,
    even the end of the string, and ``^`` after the end but before anything else."""
    if one == two:
        return 0
    i = j = 0
    while i < len(one) or j < len(two):
        while i < len(one) and not _alnum(one[i]) and one[i] not in "~^":
            i += 1
        while j < len(two) and not _alnum(two[j]) and two[j] not in "~^":
            j += 1
        a = one[i] if i < len(one) else ""
        b = two[j] if j < len(two) else ""
        if "~" in (a, b):
            if a != "~":
                return 1
            if b != "~":
                return -1
            i, j = i + 1, j + 1
            continue
        if "^" in (a, b):
            if not a:
                return -1
            if not b:
                return 1
            if a != "^":
                return 1
            if b != "^":
                return -1
            i, j = i + 1, j + 1
            continue
        if not (a and b):
            break
        numeric = a.isdigit()
        kind = _digit if numeric else _alpha
        start_i, start_j = i, j
        while i < len(one) and kind(one[i]):
            i += 1
        while j < len(two) and kind(two[j]):
            j += 1
        first, second = one[start_i:i], two[start_j:j]
        if not second:
            return 1 if numeric else -1
        if numeric:
            first, second = first.lstrip("0"), second.lstrip("0")
            if len(first) != len(second):
                return 1 if len(first) > len(second) else -1
        if first != second:
            return 1 if first > second else -1
    if i >= len(one) and j >= len(two):
        return 0
    return -1 if i >= len(one) else 1


def compare_evr(one: str, two: str) -> int:
    """Order two ``[epoch:]version-release`` strings as rpm does (a missing epoch is 0)."""
    for a, b in zip(_evr(one), _evr(two), strict=True):
        result = rpmvercmp(a, b)
        if result:
            return result
    return 0


def _evr(text: str) -> tuple[str, str, str]:
    epoch, _, rest = text.rpartition(":")
    version, _, release = rest.rpartition("-")
    if not version:
        version, release = rest, ""
    return str(int(epoch)) if epoch.isdigit() else "0", version, release


def _alnum(char: str) -> bool:
    return _digit(char) or _alpha(char)


def _digit(char: str) -> bool:
    return "0" <= char <= "9"


def _alpha(char: str) -> bool:
    return "a" <= char <= "z" or "A" <= char <= "Z"
