"""Which lab hosts to make and what state each is in (pure: no I/O).

Hosts are spread round-robin over the clients. Within each client, host ``j`` gets a
baseline state and a backup state from fixed cycles, so every client has compliant and
drifted hosts and every backup state. With faults on, the last three of these hosts are
the unreachable ones: sshd down, a changed host key, the lab key rejected. Stock hosts,
if asked for, come after them: a stock Debian with nothing planted, as hosts in the
field are before anyone hardens them. dnf hosts come last: Debian whose packages dnf
manages (an RPM database and dnf repositories with advisories), which the inventory
calls ``platform: rhel`` so mspauto reads them with dnf. They are not RHEL.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "BACKUP_STATES",
    "CLIENT_DETAILS",
    "FAULTS",
    "HostPlan",
    "LabPlatform",
    "inventory_document",
    "plan_fleet",
]

Baseline = Literal["compliant", "drifted", "stock"]
Backup = Literal[
    "restic-fresh", "restic-stale", "borg-fresh", "borg-stale", "restic-failing", "none"
]
Fault = Literal["sshd-down", "changed-key", "rejects-key"]
LabPlatform = Literal["debian", "rhel"]

BACKUP_STATES: tuple[Backup, ...] = (
    "restic-fresh",
    "restic-stale",
    "borg-fresh",
    "borg-stale",
    "restic-failing",
    "none",
)
FAULTS: tuple[Fault, ...] = ("sshd-down", "changed-key", "rejects-key")
FIRST_ADDRESS = "127.0.0.10"
_CLIENT_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")

# Display name and time zone of the clients the examples use; others get UTC.
CLIENT_DETAILS = {
    "acme": ("ACME Corporation (lab)", "America/New_York"),
    "globex": ("Globex GmbH (lab)", "Europe/Berlin"),
}

RESTIC_REPOSITORY = "/var/backups/restic"
RESTIC_PASSWORD_FILE = "/etc/mspauto-lab/restic.pass"
BORG_REPOSITORY = "/var/backups/borg"
BORG_PASSPHRASE_FILE = "/etc/mspauto-lab/borg.pass"


@dataclass(frozen=True)
class HostPlan:
    """One lab host: where it listens and what was planted on it."""

    name: str
    client: str
    address: str
    baseline: Baseline
    backup: Backup | None
    """The backup state planted, or None on a stock host (nothing is planted there)."""
    fault: Fault | None = None
    platform: LabPlatform = "debian"
    """``rhel`` for a dnf host (Debian with dnf managing its packages: not RHEL)."""

    @property
    def tags(self) -> list[str]:
        """Inventory tags that say what the host was made to be."""
        if self.platform == "rhel":
            return ["lab", "dnf"]
        tags = ["lab", self.baseline]
        if self.backup is not None:
            tags.append(f"backup-{self.backup}")
        return [*tags, f"fault-{self.fault}"] if self.fault else tags

    @property
    def vars(self) -> dict[str, Any]:
        """Inventory variables locating the host's backup repository (none when stock)."""
        if self.backup is None:
            return {}
        if self.backup.startswith("restic") or self.backup == "none":
            return {
                "backup_tool": "restic",
                "restic_repository": RESTIC_REPOSITORY,
                "restic_password_file": RESTIC_PASSWORD_FILE,
            }
        return {
            "backup_tool": "borg",
            "borg_repository": BORG_REPOSITORY,
            "borg_passphrase_file": BORG_PASSPHRASE_FILE,
        }


def plan_fleet(
    count: int,
    clients: list[str],
    *,
    faults: bool,
    first_address: str = FIRST_ADDRESS,
    stock: int = 0,
    dnf: int = 0,
) -> list[HostPlan]:
    """``count`` planted hosts, then ``stock`` stock hosts, then ``dnf`` dnf hosts, over
    ``clients`` on consecutive loopback addresses."""
    if count < 0 or stock < 0 or dnf < 0:
        raise ValueError("a number of hosts cannot be negative")
    if count + stock + dnf < 1:
        raise ValueError("a lab has at least one host")
    if not clients:
        raise ValueError("a lab has at least one client")
    for client in clients:
        if not _CLIENT_NAME.match(client):
            raise ValueError(
                f"'{client}' is not a valid client name (lowercase letters, "
                "digits and '-', starting with a letter)"
            )
    try:
        first = ipaddress.IPv4Address(first_address)
        last = first + count + stock + dnf - 1
        repository = first - 1
    except (ValueError, ipaddress.AddressValueError):
        raise ValueError(f"'{first_address}' is not an IPv4 address") from None
    if not all(a.is_loopback for a in (repository, first, last)):
        raise ValueError(
            f"lab addresses must stay inside 127.0.0.0/8 (repository "
            f"{repository}, hosts {first}..{last})"
        )
    per_client: dict[str, int] = dict.fromkeys(clients, 0)
    hosts = []
    for index in range(count):
        client = clients[index % len(clients)]
        number = per_client[client]
        per_client[client] += 1
        fault: Fault | None = None
        if faults and index >= count - len(FAULTS):
            fault = FAULTS[index - (count - len(FAULTS))]
        hosts.append(
            HostPlan(
                name=f"{client}-lab{number + 1:02d}",
                client=client,
                address=str(first + index),
                baseline="compliant" if number % 2 == 0 else "drifted",
                backup=BACKUP_STATES[number % len(BACKUP_STATES)],
                fault=fault,
            )
        )
    stock_per_client: dict[str, int] = dict.fromkeys(clients, 0)
    for index in range(stock):
        client = clients[index % len(clients)]
        stock_per_client[client] += 1
        hosts.append(
            HostPlan(
                name=f"{client}-stock{stock_per_client[client]:02d}",
                client=client,
                address=str(first + count + index),
                baseline="stock",
                backup=None,
            )
        )
    dnf_per_client: dict[str, int] = dict.fromkeys(clients, 0)
    for index in range(dnf):
        client = clients[index % len(clients)]
        dnf_per_client[client] += 1
        hosts.append(
            HostPlan(
                name=f"{client}-dnf{dnf_per_client[client]:02d}",
                client=client,
                address=str(first + count + stock + index),
                # Nothing planted: its security settings are Debian's own.
                baseline="stock",
                backup=None,
                platform="rhel",
            )
        )
    return hosts


def inventory_document(
    client: str, hosts: list[HostPlan], private_key: str, contract: str
) -> dict[str, Any]:
    """The client file ``lab up`` writes, in the same format as ``inventory/``."""
    display_name, timezone = CLIENT_DETAILS.get(client, (f"{client} (lab)", "UTC"))
    return {
        "client": {
            "name": client,
            "display_name": display_name,
            "timezone": timezone,
            "contract": contract,
            "platform": "debian",
            "credential": "lab",
            "credentials": {"lab": {"user": "mspauto", "private_key": {"file": private_key}}},
        },
        "hosts": {host.name: _host_entry(host) for host in hosts if host.client == client},
    }


def _host_entry(host: HostPlan) -> dict[str, Any]:
    entry: dict[str, Any] = {"address": host.address, "tags": host.tags, "vars": host.vars}
    if host.platform != "debian":
        entry["platform"] = host.platform
    return entry
