"""apt facts (Debian, Ubuntu): what ``apt-get -s dist-upgrade`` would install, and why.

The probe refreshes the package lists (waiting for the lists lock up to a limit, since
unattended-upgrades and apt-daily hold it for minutes), then *simulates* a
dist-upgrade: nothing is installed or removed. Every ``Inst`` line names the package,
the version installed (absent for a package the upgrade would add), the candidate and
every origin that carries the candidate; an update is a security update when *any*
origin is a security archive (Ubuntu lists ``-updates`` and ``-security`` in one line).

apt knows no severity and no release time: updates are ``unrated`` with no release
time here, and :mod:`mspauto.patching.severity` rates them from offline sources.

A pending reboot is read three ways, the first that answers wins: Ubuntu's
``/run/reboot-required`` (update-notifier; Debian has it only with reboot-notifier),
``needrestart -b`` (``NEEDRESTART-KSTA`` 2 or 3: an newer kernel is installed), and
the running kernel against the newest ``/boot/vmlinuz-*``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from mspauto.patching.facts import HostPatchFacts, PendingUpdate

__all__ = ["is_security_origin", "parse", "probe_script"]

MARK = "@@mspauto"
FORMAT = "apt-facts 1"

# bash, run as root. Package names and versions are printed, never evaluated.
_SCRIPT = r"""export LC_ALL=C LANG=C DEBIAN_FRONTEND=noninteractive
echo "@@mspauto apt-facts 1"
deadline=$(( $(date +%s) + __LOCK_TIMEOUT__ ))
waited=0
while :; do
  update=$(apt-get -q update 2>&1); rc=$?
  case $update in
    *"Could not get lock"*)
      if [ "$(date +%s)" -lt "$deadline" ]; then waited=1; sleep 2; continue; fi ;;
  esac
  break
done
echo "@@mspauto update $rc $waited"
printf '%s\n' "$update" | grep -E '^(E|W|Err):' | head -n 20
# Holds ignored here so a held package's pending update is still seen (and judged
# as held); what is held is printed below.
simulated=$(apt-get -s -q -o APT::Ignore-Hold=true dist-upgrade 2>&1); rc=$?
echo "@@mspauto simulate $rc"
printf '%s\n' "$simulated" | grep -E '^(Inst|E:|W:)'
echo "@@mspauto sources"
names=$(printf '%s\n' "$simulated" | awk '$1 == "Inst" { print $2 }')
if [ -n "$names" ]; then
  # One word per name as apt printed it: no globbing, never an option.
  set -f
  # shellcheck disable=SC2086
  dpkg-query -W -f='${Package}\t${source:Package}\n' -- $names 2>/dev/null
  set +f
fi
echo "@@mspauto held"
apt-mark showhold 2>/dev/null
echo "@@mspauto os"
( . /etc/os-release 2>/dev/null && echo "${ID:-} ${VERSION_CODENAME:-}" )
echo "@@mspauto reboot"
if [ -e /run/reboot-required ]; then
  echo "file /run/reboot-required"
  sed 's/^/package /' /run/reboot-required.pkgs 2>/dev/null
fi
if command -v needrestart >/dev/null 2>&1; then
  NEEDRESTART_MODE=l needrestart -b 2>/dev/null | grep -E '^NEEDRESTART-K'
fi
echo "running $(uname -r)"
for kernel in /boot/vmlinuz-*; do
  [ -e "$kernel" ] && echo "installed ${kernel#/boot/vmlinuz-}"
done
echo "@@mspauto end"
"""


def probe_script(lock_timeout: int = 120) -> str:
    """The bash script that prints a host's apt facts (run as root; changes no package)."""
    return _SCRIPT.replace("__LOCK_TIMEOUT__", str(int(lock_timeout)))


# Inst NAME [INSTALLED] (CANDIDATE ORIGIN, ORIGIN [ARCH]) [...]
_INST = re.compile(
    r"^Inst (?P<name>\S+)(?: \[(?P<installed>[^\]]*)\])? "
    r"\((?P<candidate>\S+)(?: (?P<origins>.*?))? ?\[(?P<arch>[^\]]+)\]\)"
)
_LOCK_HOLDER = re.compile(r"Could not get lock (\S+?)\.? It is held by process (\d+) \(([^)]*)\)")


def is_security_origin(origin: str) -> bool:
    """True for a security archive: Debian's ``Debian-Security:12/stable-security``
    (Label ``Debian-Security``) or Ubuntu's ``Ubuntu:22.04/jammy-security`` pocket."""
    label, _, rest = origin.partition(":")
    if label.strip().lower() == "debian-security":
        return True
    return any(part.endswith("-security") for part in re.split(r"[:/]", rest))


def _sections(stdout: str) -> Iterator[tuple[str, list[str], list[str]]]:
    """(section, its header words, its lines) in the order printed."""
    name = ""
    words: list[str] = []
    lines: list[str] = []
    for line in stdout.splitlines():
        if line.startswith(MARK + " "):
            if name:
                yield name, words, lines
            name, *words = line[len(MARK) + 1 :].split()
            lines = []
        elif name:
            lines.append(line)
    if name:
        yield name, words, lines


def parse(stdout: str, stderr: str, rc: int | None) -> HostPatchFacts:
    """The facts the probe printed. A probe that did not run to its end, a lock that
    stayed busy, or a simulation apt refused gives ``problem`` with one reason."""
    sections = {name: (words, lines) for name, words, lines in _sections(stdout)}
    shapes = {"update": 2, "simulate": 1, "held": 0, "end": 0}
    whole = all(n in sections and len(sections[n][0]) >= k for n, k in shapes.items())
    if not stdout.startswith(f"{MARK} {FORMAT}") or not whole:
        last = (stderr.strip().splitlines() or ["no output"])[-1][:300]
        return HostPatchFacts("apt", problem=f"the apt probe did not finish (rc {rc}): {last}")
    warnings: list[str] = []
    (update_rc, waited, *_), update_lines = sections["update"]
    if update_rc != "0":
        holder = next((m for m in map(_LOCK_HOLDER.search, update_lines) if m), None)
        if holder is not None:
            path, pid, program = holder.groups()
            return HostPatchFacts(
                "apt",
                problem=f"the package lock {path} stayed held by process {pid} ({program}) "
                "past the lock timeout (unattended-upgrades or apt-daily?); try again later "
                "or raise the timeout",
            )
    failed = [line for line in update_lines if line.startswith(("E:", "W: Failed to fetch"))]
    if update_rc != "0" or failed:
        warnings.append(
            "the package lists could not be refreshed, so the facts may be stale: "
            + ("; ".join(failed[:3]) or f"apt-get update exited {update_rc}")
        )
    elif waited == "1":
        warnings.append("waited for the package lock (another apt run held it)")
    (simulate_rc, *_), simulated = sections["simulate"]
    if simulate_rc != "0":
        errors = [line for line in simulated if line.startswith("E:")]
        return HostPatchFacts(
            "apt",
            problem="apt refused to plan the upgrade: "
            + ("; ".join(errors[:3]) or f"apt-get -s exited {simulate_rc}"),
        )
    sources = dict(
        line.split("\t", 1) for line in sections.get("sources", ([], []))[1] if "\t" in line
    )
    updates = []
    for line in simulated:
        match = _INST.match(line)
        if match is None:
            continue
        name = match["name"]
        origins = [o.strip() for o in (match["origins"] or "").split(",") if o.strip()]
        base = name.split(":", 1)[0]
        source_package = sources.get(name) or sources.get(base)
        updates.append(
            PendingUpdate(
                name=name,
                candidate=match["candidate"],
                installed=match["installed"] or None,
                source=", ".join(origins),
                classification="security"
                if any(is_security_origin(o) for o in origins)
                else "other",
                source_package=source_package.split(" ", 1)[0] if source_package else None,
            )
        )
    reboot_pending, reboot_reason = _reboot(sections.get("reboot", ([], []))[1])
    return HostPatchFacts(
        "apt",
        updates=tuple(updates),
        reboot_pending=reboot_pending,
        reboot_reason=reboot_reason,
        held=tuple(line.strip() for line in sections["held"][1] if line.strip()),
        warnings=tuple(warnings),
    )


def release_of(stdout: str) -> tuple[str, str]:
    """The host's distribution and codename (``debian``, ``bookworm``) as the probe
    printed them; empty strings where /etc/os-release did not say."""
    for name, _, lines in _sections(stdout):
        if name == "os" and lines:
            distribution, _, codename = lines[0].partition(" ")
            return distribution.strip(), codename.strip()
    return "", ""


def _reboot(lines: list[str]) -> tuple[bool | None, str]:
    facts: dict[str, list[str]] = {}
    for line in lines:
        key, _, value = line.partition(" ")
        facts.setdefault(key, []).append(value.strip())
    if "file" in facts:
        packages = ", ".join(facts.get("package", [])) or "no package named"
        return True, f"/run/reboot-required exists ({packages})"
    for line in lines:
        if line.startswith("NEEDRESTART-KSTA:"):
            state = line.split(":", 1)[1].strip()
            if state in {"2", "3"}:
                return True, f"needrestart: a newer kernel is installed (KSTA {state})"
            if state == "1":
                return False, "needrestart: the running kernel is the newest"
    running = (facts.get("running") or [""])[0]
    installed = facts.get("installed", [])
    if not installed:
        return None, (
            f"cannot tell: no /run/reboot-required, no needrestart, and no kernel in /boot "
            f"to compare with the running {running or 'kernel'}"
        )
    newest = max(installed, key=_version_key)
    if newest != running:
        return True, f"running kernel {running}, newest installed {newest}"
    return False, f"running the newest installed kernel ({running})"


def _version_key(version: str) -> list[tuple[int, object]]:
    """A sort key like ``sort -V`` for kernel release strings (6.1.0-18-amd64)."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", version)]
