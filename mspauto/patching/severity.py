"""Severity for apt updates from offline copies of Debian's security tracker and CISA's KEV.

apt carries no severity, so an apt update is ``unrated`` unless the MSP supplies one of
two files, each downloaded on a machine with internet and copied to the control node
(docs/patching-severity.md):

- the Debian security tracker's JSON (``https://security-tracker.debian.org/tracker/data/json``):
  source package -> CVE -> release codename -> status, fixed version and urgency.
  :class:`DebianTracker` rates an update by the CVEs it fixes on the host's release.
- CISA's Known Exploited Vulnerabilities catalogue (``known_exploited_vulnerabilities.json``).
  :class:`KevCatalog` marks an update whose CVEs are in it as known-exploited, with the
  earliest due date among them; it does not change the severity (a KEV entry says a flaw
  is exploited, not how bad it is; approval rules and deadlines read the flag and the
  date).

Both are read locally, never fetched. Each records what was read as a :class:`Snapshot`
(path, SHA-256 of the file, when it was taken and on what basis), so evidence can say
which copy rated an update and how old it was. A file that cannot be used stops the load
with :class:`SeveritySourceError`: one line naming the file, what is wrong and what to do.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import re
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple

from debian.debian_support import Version

from mspauto.patching.facts import PendingUpdate
from mspauto.policy.models import Severity

if TYPE_CHECKING:
    from mspauto.config import Settings

__all__ = [
    "KEV_SOURCE",
    "TRACKER_SOURCE",
    "DebianTracker",
    "KevCatalog",
    "SeveritySourceError",
    "SeveritySources",
    "Snapshot",
    "severity_from_urgency",
]

TRACKER_SOURCE = "debian-security-tracker"
"""``severity_source`` of an update rated by the tracker."""
KEV_SOURCE = "cisa-kev"
"""Name of the KEV catalogue in snapshots."""

TRACKER_URL = "https://security-tracker.debian.org/tracker/data/json"
KEV_URL = "https://www.cisa.gov/sites/default/files/feeds/known_exploited_vulnerabilities.json"

# The tracker's urgencies that are Debian's own assessment. Anything else is unassessed:
# "not yet assigned", "end-of-life", "unknown", empty, and the NVD-derived "low**",
# "medium**", "high**" the tracker fills in when Debian has not assigned one (its own
# page: 'If a "**" is included, the urgency field was automatically assigned by the
# NVD'). Those are NVD's rating, not Debian's, so they are not reported as the tracker's.
_URGENCIES: Mapping[str, Severity] = {
    "high": "high",
    "medium": "medium",
    "low": "low",
    "unimportant": "low",
}
_ORDER: Mapping[Severity, int] = {"critical": 4, "high": 3, "medium": 2, "low": 1, "unrated": 0}

# Source packages whose security issues the tracker files under another name. Debian's
# signed kernels (and the linux-image-<arch> metapackages) are built from
# linux-signed-<arch>, with the kernel's own version; the tracker tracks them as "linux".
_TRACKER_NAME_PREFIXES: tuple[tuple[str, str], ...] = (("linux-signed-", "linux"),)

_CVE_ID = re.compile(r"CVE-\d{4}-\d{4,}")
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_CHUNK = 1 << 20


def severity_from_urgency(urgency: str | None) -> Severity:
    """mspauto's severity for one tracker urgency: ``high``, ``medium``, ``low`` as
    they are, ``unimportant`` -> ``low``; anything else (``not yet assigned``,
    ``end-of-life``, NVD-derived ``high**``...) -> ``unrated``."""
    return _URGENCIES.get((urgency or "").strip().lower(), "unrated")


class SeveritySourceError(Exception):
    """A severity source file that cannot be used. ``str()`` is one line: the file, what
    is wrong with it, what to do."""

    def __init__(self, path: Path, problem: str, action: str) -> None:
        self.path = path
        self.problem = problem
        self.action = action
        super().__init__(f"{path}: {problem}; {action}")


@dataclass(frozen=True)
class Snapshot:
    """Which copy of a severity source was read: enough for evidence to name it."""

    source: str
    """``debian-security-tracker`` or ``cisa-kev``."""
    path: Path
    sha256: str
    """SHA-256 of the file as read, hex."""
    taken_at: datetime | None
    """When the data was published (UTC), as far as the file tells."""
    taken_at_basis: str
    """How :attr:`taken_at` was found: ``dateReleased`` (KEV, in the file) or ``file
    modification time`` (the tracker's JSON carries no date; ``curl -R`` sets the time
    to the server's Last-Modified)."""
    version: str | None = None
    """The source's own version (KEV ``catalogVersion``)."""
    entries: int = 0
    """Source packages (tracker) or vulnerabilities (KEV) read."""

    def age(self, now: datetime) -> timedelta | None:
        """How old the data was at ``now`` (None when the date is unknown)."""
        return None if self.taken_at is None else now - self.taken_at

    def as_dict(self) -> dict[str, Any]:
        """Evidence form (times as ISO 8601 UTC)."""
        return {
            "source": self.source,
            "path": str(self.path),
            "sha256": self.sha256,
            "taken_at": self.taken_at.isoformat() if self.taken_at else None,
            "taken_at_basis": self.taken_at_basis,
            "version": self.version,
            "entries": self.entries,
        }


class _Fix(NamedTuple):
    """One CVE a release's package fixes, and at which version."""

    cve: str
    fixed_version: str
    urgency: str


@lru_cache(maxsize=65536)
def _version(text: str) -> Version | None:
    """A Debian version, None when the text is not one (parsing is cached: the same
    versions recur across hosts)."""
    try:
        return Version(text)
    except ValueError:
        return None


def _tracker_name(update: PendingUpdate) -> str:
    """The source package the tracker files the update under."""
    # "openssl (3.0.11-1~deb12u2)" is how apt-cache shows a source whose version differs.
    name = (update.source_package or update.name).split(" ", 1)[0].split(":", 1)[0]
    for prefix, tracked in _TRACKER_NAME_PREFIXES:
        if name.startswith(prefix):
            return tracked
    return name


def _combine(ratings: Iterable[Severity]) -> Severity:
    """The severity of an update fixing CVEs rated ``ratings``.

    The highest rating, except that an unassessed CVE makes the update ``unrated`` unless
    another is ``high`` (the top of Debian's scale): rating it lower would let a fix whose
    worst part nobody has assessed wait for a low-severity deadline.
    """
    seen = set(ratings)
    if "high" in seen:
        return "high"
    if "unrated" in seen:
        return "unrated"
    return max(seen, key=_ORDER.__getitem__, default="unrated")


def _read_error(path: Path, exc: OSError, setting: str) -> SeveritySourceError:
    if isinstance(exc, FileNotFoundError):
        return SeveritySourceError(
            path, "no such file", f"download it (docs/patching-severity.md) or unset {setting}"
        )
    if isinstance(exc, IsADirectoryError):
        return SeveritySourceError(path, "is a folder, not a file", f"point {setting} at the file")
    reason = exc.strerror or type(exc).__name__
    return SeveritySourceError(path, f"cannot be read ({reason})", "check the file and its rights")


def _file_time(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)


class _ObjectStream:
    """The members of a JSON file's top-level object, one at a time.

    The tracker's JSON is about 70 MB on one line; ``json.load`` would hold all of it as
    Python objects at once. This reads 1 MiB at a time and decodes one member (a source
    package and its CVEs) with the standard decoder, so memory follows the largest
    package, not the file. It also hashes every byte read.
    """

    def __init__(self, handle: IO[bytes], path: Path, what: str) -> None:
        self._handle = handle
        self._path = path
        self._what = what
        self._decoder = json.JSONDecoder()
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self.digest = hashlib.sha256()
        self._buffer = ""
        self._pos = 0
        self._offset = 0
        self._eof = False

    def _fill(self) -> bool:
        """Read more; False at the end of the file."""
        if self._eof:
            return False
        if self._pos:
            self._offset += self._pos
            self._buffer = self._buffer[self._pos :]
            self._pos = 0
        size = max(_CHUNK, len(self._buffer))
        data = self._handle.read(size)
        self.digest.update(data)
        try:
            text = self._utf8.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            raise SeveritySourceError(
                self._path, f"is not UTF-8 text ({exc.reason})", f"download {self._what} again"
            ) from None
        self._buffer += text
        if not data:
            self._eof = True
        return True

    def _bad(self, message: str) -> SeveritySourceError:
        return SeveritySourceError(
            self._path,
            f"is not valid JSON at character {self._offset + self._pos + 1}: "
            + message.removesuffix(" at"),
            f"the copy is damaged or cut short: download {self._what} again",
        )

    def _peek(self) -> str:
        """The next character that is not white space ('' at the end of the file)."""
        while True:
            match = _WHITESPACE.match(self._buffer, self._pos)
            self._pos = match.end() if match else self._pos
            if self._pos < len(self._buffer) or not self._fill():
                return self._buffer[self._pos : self._pos + 1]

    def _expect(self, allowed: str) -> str:
        char = self._peek()
        if not char or char not in allowed:
            found = repr(char) if char else "the end of the file"
            raise self._bad(f"expected {' or '.join(repr(c) for c in allowed)}, found {found}")
        self._pos += 1
        return char

    def _value(self) -> Any:
        self._peek()
        while True:
            try:
                value, end = self._decoder.raw_decode(self._buffer, self._pos)
            except json.JSONDecodeError as exc:
                if self._fill():
                    continue
                self._pos = exc.pos
                raise self._bad(exc.msg) from None
            # A number could go on past the buffer; objects and strings cannot.
            if end < len(self._buffer) or not self._fill():
                self._pos = end
                return value

    def members(self) -> Iterator[tuple[str, Any]]:
        """Each ``key, value`` of the top-level object, then a check that nothing follows."""
        first = self._peek()
        if first and first in '["-0123456789tfn':
            kind = "list" if first == "[" else "value"
            raise SeveritySourceError(
                self._path, f"holds a JSON {kind}, not an object", f"is this {self._what}?"
            )
        self._expect("{")
        if self._peek() == "}":
            self._pos += 1
        else:
            while True:
                if self._peek() != '"':
                    raise self._bad("expected a quoted name")
                key = self._value()
                self._expect(":")
                yield key, self._value()
                if self._expect(",}") == "}":
                    break
        if self._peek():
            raise self._bad("unexpected data after the end")


class DebianTracker:
    """An offline copy of the Debian security tracker's JSON, indexed for rating."""

    def __init__(self, fixes: Mapping[str, Mapping[str, tuple[_Fix, ...]]], snapshot: Snapshot):
        self._fixes = fixes
        self._ordered: dict[tuple[str, str], tuple[list[Version], list[_Fix]]] = {}
        self.snapshot = snapshot
        """Which file was read, and when it was published."""

    @classmethod
    def load(cls, path: Path) -> DebianTracker:
        """Read the tracker's JSON at ``path``; :class:`SeveritySourceError` when it
        cannot be used."""
        what = f"the tracker's JSON ({TRACKER_URL})"
        fixes: dict[str, dict[str, list[_Fix]]] = {}
        strings: dict[str, str] = {}
        packages = 0
        try:
            with path.open("rb") as handle:
                stream = _ObjectStream(handle, path, what)
                for package, cves in stream.members():
                    packages += 1
                    _index_package(path, what, package, cves, fixes, strings)
                modified = _file_time(path)
        except OSError as exc:
            raise _read_error(path, exc, "MSPAUTO_DEBIAN_TRACKER") from None
        if not packages:
            raise SeveritySourceError(
                path, "holds no source packages", f"the download failed: download {what} again"
            )
        snapshot = Snapshot(
            source=TRACKER_SOURCE,
            path=path,
            sha256=stream.digest.hexdigest(),
            taken_at=modified,
            taken_at_basis="file modification time",
            entries=packages,
        )
        frozen = {
            codename: {package: tuple(found) for package, found in by_package.items()}
            for codename, by_package in fixes.items()
        }
        return cls(frozen, snapshot)

    @property
    def codenames(self) -> frozenset[str]:
        """Releases the copy has fixed versions for (``bookworm``, ``trixie``...)."""
        return frozenset(self._fixes)

    def rate(self, update: PendingUpdate, codename: str) -> PendingUpdate:
        """``update`` with the CVEs it fixes on ``codename`` and their severity.

        A CVE counts when the tracker lists it as resolved on that release at a version
        newer than the installed one and not newer than the candidate (Debian version
        order). The update gains those CVEs, and a severity from their urgencies (see
        :func:`severity_from_urgency`) when that gives a rating; an unrated result keeps
        whatever severity the update had. An update that fixes none, installs something
        new (no installed version) or has a version that is not a Debian version comes
        back unchanged. The classification is never changed.
        """
        if update.installed is None:
            return update
        versions, fixes = self._in_order(codename, _tracker_name(update))
        installed, candidate = _version(update.installed), _version(update.candidate)
        if not fixes or installed is None or candidate is None:
            return update
        fixed = fixes[bisect_right(versions, installed) : bisect_right(versions, candidate)]
        if not fixed:
            return update
        cves = tuple(dict.fromkeys((*update.cves, *sorted({fix.cve for fix in fixed}))))
        severity = _combine(severity_from_urgency(fix.urgency) for fix in fixed)
        rated = replace(update, cves=cves)
        return rated if severity == "unrated" else rated.with_severity(severity, TRACKER_SOURCE)

    def _in_order(self, codename: str, package: str) -> tuple[list[Version], list[_Fix]]:
        """A package's fixes on a release sorted by fixed version (sorted on first use:
        the kernel has thousands), and their versions for bisecting."""
        key = (codename, package)
        ordered = self._ordered.get(key)
        if ordered is None:
            parsed = [
                (version, fix)
                for fix in self._fixes.get(codename, {}).get(package, ())
                if (version := _version(fix.fixed_version)) is not None
            ]
            parsed.sort(key=lambda pair: pair[0])
            ordered = [version for version, _ in parsed], [fix for _, fix in parsed]
            self._ordered[key] = ordered
        return ordered


def _index_package(
    path: Path,
    what: str,
    package: str,
    cves: Any,
    fixes: dict[str, dict[str, list[_Fix]]],
    strings: dict[str, str],
) -> None:
    """Add one source package's resolved CVEs to ``fixes`` (codename -> package)."""

    def wrong(where: str, found: Any, expected: str) -> SeveritySourceError:
        return SeveritySourceError(
            path,
            f"{where} is {_json_type(found)}, expected {expected}",
            f"this is not the tracker's JSON: download {what}",
        )

    def shared(text: str) -> str:
        return strings.setdefault(text, text)

    if not isinstance(cves, dict):
        raise wrong(f"package {package!r}", cves, "an object of CVEs")
    for cve, entry in cves.items():
        if not isinstance(entry, dict):
            raise wrong(f"package {package!r}, {cve}", entry, "an object")
        releases = entry.get("releases", {})
        if not isinstance(releases, dict):
            raise wrong(f"package {package!r}, {cve}: 'releases'", releases, "an object")
        # TEMP-... ids are the tracker's own, not CVEs a report or KEV can name.
        is_cve = _CVE_ID.fullmatch(cve) is not None
        for codename, release in releases.items():
            if not isinstance(release, dict):
                raise wrong(f"package {package!r}, {cve}, {codename}", release, "an object")
            fixed_version = release.get("fixed_version")
            urgency = release.get("urgency", "")
            if not isinstance(urgency, str) or not isinstance(fixed_version, str | None):
                raise wrong(
                    f"package {package!r}, {cve}, {codename}: 'urgency' or 'fixed_version'",
                    urgency if not isinstance(urgency, str) else fixed_version,
                    "a string",
                )
            # "0" means the release was never affected; an open issue has no fixed version.
            if not is_cve or release.get("status") != "resolved":
                continue
            if not fixed_version or fixed_version == "0":
                continue
            by_package = fixes.setdefault(shared(codename), {})
            by_package.setdefault(shared(package), []).append(
                _Fix(shared(cve), shared(fixed_version), shared(urgency))
            )


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "true/false"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")


class KevCatalog:
    """An offline copy of CISA's Known Exploited Vulnerabilities catalogue."""

    def __init__(self, due: Mapping[str, date], snapshot: Snapshot) -> None:
        self._due = due
        self.snapshot = snapshot
        """Which file was read, and the catalogue's release date and version."""

    @classmethod
    def load(cls, path: Path) -> KevCatalog:
        """Read ``known_exploited_vulnerabilities.json`` at ``path``;
        :class:`SeveritySourceError` when it cannot be used."""
        what = f"the KEV catalogue ({KEV_URL})"

        def wrong(problem: str) -> SeveritySourceError:
            return SeveritySourceError(
                path, problem, f"this is not CISA's KEV JSON: download {what}"
            )

        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise _read_error(path, exc, "MSPAUTO_KEV_CATALOG") from None
        try:
            data = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise SeveritySourceError(
                path, f"is not UTF-8 text ({exc.reason})", f"download {what} again"
            ) from None
        except json.JSONDecodeError as exc:
            raise SeveritySourceError(
                path,
                f"is not valid JSON at line {exc.lineno} column {exc.colno}: "
                + exc.msg.removesuffix(" at"),
                f"the copy is damaged or cut short: download {what} again",
            ) from None
        if not isinstance(data, dict):
            raise wrong(f"holds {_json_type(data)}, expected an object with 'vulnerabilities'")
        entries = data.get("vulnerabilities")
        if not isinstance(entries, list):
            raise wrong(f"'vulnerabilities' is {_json_type(entries)}, expected a list")
        due: dict[str, date] = {}
        for index, entry in enumerate(entries):
            where = f"vulnerabilities[{index}]"
            if not isinstance(entry, dict):
                raise wrong(f"{where} is {_json_type(entry)}, expected an object")
            cve, due_text = entry.get("cveID"), entry.get("dueDate")
            if not isinstance(cve, str) or not _CVE_ID.fullmatch(cve.strip().upper()):
                raise wrong(f"{where}.cveID is {cve!r}, expected a CVE id")
            try:
                when = date.fromisoformat(due_text) if isinstance(due_text, str) else None
            except ValueError:
                when = None
            if when is None:
                raise wrong(f"{where}.dueDate ({cve}) is {due_text!r}, expected YYYY-MM-DD")
            key = cve.strip().upper()
            due[key] = min(when, due.get(key, when))
        released = data.get("dateReleased")
        taken_at = _kev_time(released)
        version = data.get("catalogVersion")
        snapshot = Snapshot(
            source=KEV_SOURCE,
            path=path,
            sha256=hashlib.sha256(raw).hexdigest(),
            taken_at=taken_at or _file_time(path),
            taken_at_basis="dateReleased" if taken_at else "file modification time",
            version=version if isinstance(version, str) else None,
            entries=len(due),
        )
        return cls(due, snapshot)

    def due(self, cve: str) -> date | None:
        """The catalogue's due date for ``cve``, None when it is not in the catalogue."""
        return self._due.get(cve.strip().upper())

    def mark(self, update: PendingUpdate) -> PendingUpdate:
        """``update`` marked known-exploited, with the earliest due date among its CVEs
        in the catalogue (kept if it already had an earlier one); unchanged when none
        is. The severity stays as rated: see the module docstring."""
        dates = [when for when in map(self.due, update.cves) if when is not None]
        if not dates:
            return update
        earliest = min(dates)
        if update.exploited_due is not None:
            earliest = min(earliest, update.exploited_due)
        return replace(update, known_exploited=True, exploited_due=earliest)


def _kev_time(text: object) -> datetime | None:
    """``dateReleased`` ("2025-08-25T17:04:19.9796Z") as UTC, None when unusable."""
    if not isinstance(text, str):
        return None
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class SeveritySources:
    """The severity sources the MSP configured; either or both may be absent."""

    tracker: DebianTracker | None = None
    kev: KevCatalog | None = None
    snapshots: tuple[Snapshot, ...] = field(init=False)
    """What each configured source read, for the run's evidence."""

    def __post_init__(self) -> None:
        found = (self.tracker, self.kev)
        object.__setattr__(self, "snapshots", tuple(s.snapshot for s in found if s is not None))

    @classmethod
    def from_settings(cls, settings: Settings) -> SeveritySources:
        """Load the files ``settings`` names (``debian_tracker``, ``kev_catalog``);
        :class:`SeveritySourceError` for the first that cannot be used."""
        tracker = DebianTracker.load(settings.debian_tracker) if settings.debian_tracker else None
        kev = KevCatalog.load(settings.kev_catalog) if settings.kev_catalog else None
        return cls(tracker=tracker, kev=kev)

    def apply(
        self, updates: Iterable[PendingUpdate], codename: str | None
    ) -> tuple[PendingUpdate, ...]:
        """Rate ``updates`` from the tracker for a Debian host on ``codename`` (pass None
        for other hosts), then mark known-exploited ones from the KEV catalogue, which
        then also sees the CVEs the tracker added."""
        result = []
        for update in updates:
            rated = update
            if self.tracker is not None and codename:
                rated = self.tracker.rate(rated, codename)
            if self.kev is not None:
                rated = self.kev.mark(rated)
            result.append(rated)
        return tuple(result)

    def stale(self, now: datetime, max_age: timedelta) -> tuple[str, ...]:
        """One warning per snapshot older than ``max_age`` at ``now`` (or of unknown age)."""
        warnings = []
        for snapshot in self.snapshots:
            age = snapshot.age(now)
            if age is None:
                warnings.append(f"{snapshot.path}: the {snapshot.source} copy has no date")
            elif age > max_age:
                taken = snapshot.taken_at.date().isoformat() if snapshot.taken_at else "?"
                warnings.append(
                    f"{snapshot.path}: the {snapshot.source} copy is from {taken}, "
                    f"{age.days} days old; fetch a new one"
                )
        return tuple(warnings)
