"""What a host's package manager says is pending: the facts every patch decision reads.

Each manager (apt, dnf, Windows Update) has a probe script and a parser of its own in
this package; all of them produce :class:`HostPatchFacts`, so the planner, the evidence
and the monthly report never branch on the manager.

Severities are mspauto's five (``critical``, ``high``, ``medium``, ``low``,
``unrated``); each update says where its severity came from, and an update no source
rates is ``unrated`` (never ``low``, never "other": a contract deadline applies to it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any, Literal, get_args

from mspauto.policy.models import Classification, Severity

__all__ = [
    "MANAGERS",
    "HostPatchFacts",
    "Manager",
    "PendingUpdate",
    "parse_time",
    "severity_from_vendor",
]

Manager = Literal["apt", "dnf", "windows-update"]
MANAGERS: tuple[Manager, ...] = get_args(Manager)

# dnf updateinfo and Microsoft's MsrcSeverity use the same four words.
_VENDOR_SEVERITIES: Mapping[str, Severity] = {
    "critical": "critical",
    "important": "high",
    "high": "high",
    "moderate": "medium",
    "medium": "medium",
    "low": "low",
}


def severity_from_vendor(word: str | None) -> Severity:
    """mspauto's severity for a vendor's word (``Important`` -> ``high``); an empty,
    missing or unknown word is ``unrated``."""
    return _VENDOR_SEVERITIES.get((word or "").strip().lower(), "unrated")


def parse_time(text: str | None) -> datetime | None:
    """An ISO 8601 time (``2024-05-02``, ``2024-05-02 10:00:00``, with or without an
    offset) as UTC; a time without an offset is read as UTC. None for empty text."""
    if not text or not text.strip():
        return None
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class PendingUpdate:
    """One update a host could install now."""

    name: str
    """The package (``openssl``) or, on Windows, the KB (``KB5034441``)."""
    candidate: str
    """The version the update brings (on Windows: the update's identity revision)."""
    installed: str | None = None
    """The version installed now; None when the update installs something new."""
    source: str = ""
    """Where it comes from: apt origins (``Debian-Security:12/stable-security``), the
    dnf repository id, or ``Windows Update``."""
    classification: Classification = "other"
    severity: Severity = "unrated"
    severity_source: str | None = None
    """What rated it: ``dnf updateinfo``, ``MsrcSeverity``, ``debian-security-tracker``,
    ``cisa-kev``; None when nothing did."""
    released: datetime | None = None
    """When the vendor released it (UTC), where the manager knows."""
    advisory: str | None = None
    """The advisory naming it (``RHSA-2024:1234``, ``DSA-5678-1``, ``KB5034441``)."""
    title: str | None = None
    cves: tuple[str, ...] = ()
    known_exploited: bool = False
    """A CVE it fixes is in CISA's Known Exploited Vulnerabilities catalogue."""
    exploited_due: date | None = None
    """The earliest KEV due date among those CVEs."""
    source_package: str | None = None
    """The source package it was built from (Debian's security tracker is keyed by it)."""
    reboot_required: bool | None = None
    """Whether installing it needs a reboot, where the manager says so."""
    categories: tuple[str, ...] = ()
    """The manager's own categories (Windows Update: ``Security Updates``...)."""

    @property
    def security(self) -> bool:
        """A security update."""
        return self.classification == "security"

    def with_severity(self, severity: Severity, source: str) -> PendingUpdate:
        """The same update rated by another source."""
        return replace(self, severity=severity, severity_source=source)

    def as_dict(self) -> dict[str, Any]:
        """Evidence form (times as ISO 8601 UTC)."""
        return {
            "name": self.name,
            "candidate": self.candidate,
            "installed": self.installed,
            "source": self.source,
            "classification": self.classification,
            "severity": self.severity,
            "severity_source": self.severity_source,
            "released": self.released.isoformat() if self.released else None,
            "advisory": self.advisory,
            "title": self.title,
            "cves": list(self.cves),
            "known_exploited": self.known_exploited,
            "exploited_due": self.exploited_due.isoformat() if self.exploited_due else None,
            "source_package": self.source_package,
            "reboot_required": self.reboot_required,
            "categories": list(self.categories),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PendingUpdate:
        """Read the evidence form back."""
        due = data.get("exploited_due")
        return cls(
            name=str(data["name"]),
            candidate=str(data["candidate"]),
            installed=data.get("installed"),
            source=str(data.get("source") or ""),
            classification=data.get("classification", "other"),
            severity=data.get("severity", "unrated"),
            severity_source=data.get("severity_source"),
            released=parse_time(data.get("released")),
            advisory=data.get("advisory"),
            title=data.get("title"),
            cves=tuple(data.get("cves") or ()),
            known_exploited=bool(data.get("known_exploited")),
            exploited_due=date.fromisoformat(due) if due else None,
            source_package=data.get("source_package"),
            reboot_required=data.get("reboot_required"),
            categories=tuple(data.get("categories") or ()),
        )


@dataclass(frozen=True)
class HostPatchFacts:
    """Everything one host's probe said about its updates."""

    manager: Manager
    updates: tuple[PendingUpdate, ...] = ()
    reboot_pending: bool | None = None
    """A reboot is already pending (None: the host gave no way to tell)."""
    reboot_reason: str = ""
    """How that was decided (``/run/reboot-required``, ``running kernel 6.1.0-17 but
    6.1.0-18 installed``, ``needs-restarting -r``...)."""
    held: tuple[str, ...] = ()
    """Packages the host itself holds (``apt-mark showhold``, dnf versionlock)."""
    problem: str | None = None
    """Why the facts are incomplete or missing (the package lock stayed busy, the
    package lists could not be refreshed...), or None."""
    warnings: Sequence[str] = field(default_factory=tuple)
