"""Project settings: where the inventory, policies and state live.

The project root is ``--project``, else ``$MSPAUTO_PROJECT``, else the current folder.
Each folder can be moved with an environment variable (``MSPAUTO_INVENTORY``,
``MSPAUTO_POLICIES``, ``MSPAUTO_STATE_DIR``), relative to the root or absolute; the
evidence store with ``MSPAUTO_EVIDENCE_URL`` (e.g. ``postgresql+psycopg://...``), the
evidence signing key with ``MSPAUTO_SIGNING_KEY`` and the witness folder with
``MSPAUTO_WITNESS_DIR``. The defaults keep both in the state folder, beside the store:
that works, but a witness proves most on another disk or host (docs/evidence.md). The
witness can also send each checkpoint to ``MSPAUTO_WITNESS_WEBHOOK`` (an http(s) URL;
its bearer token, if any, in the file ``MSPAUTO_WITNESS_WEBHOOK_TOKEN_FILE``, never in a
setting) and ``MSPAUTO_WITNESS_SYSLOG`` (``unix:/dev/log``, ``udp:HOST[:PORT]`` or
``tcp:HOST[:PORT]``); they are checked when a command writes evidence.

Severity sources for apt updates are offline files the MSP downloads (none by default):
``MSPAUTO_DEBIAN_TRACKER``, a copy of the Debian security tracker's JSON, and
``MSPAUTO_KEV_CATALOG``, a copy of CISA's ``known_exploited_vulnerabilities.json``; each
relative to the root or absolute (docs/patching-severity.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Settings"]


@dataclass(frozen=True)
class Settings:
    """Resolved locations of one mspauto project."""

    root: Path
    inventory_dir: Path
    policies_dir: Path
    state_dir: Path
    evidence_url: str
    """SQLAlchemy URL of the evidence store (``$MSPAUTO_EVIDENCE_URL``; default: a SQLite
    file in the state folder)."""
    signing_key: Path
    """The MSP's Ed25519 evidence signing key (secret; ``$MSPAUTO_SIGNING_KEY``); its
    public half is the same path with ``.pub`` appended."""
    witness_dir: Path
    """Folder of the append-only checkpoint log (``$MSPAUTO_WITNESS_DIR``)."""
    debian_tracker: Path | None = None
    """Offline copy of the Debian security tracker's JSON (``$MSPAUTO_DEBIAN_TRACKER``);
    None: apt updates are not rated from it."""
    kev_catalog: Path | None = None
    """Offline copy of CISA's Known Exploited Vulnerabilities catalogue JSON
    (``$MSPAUTO_KEV_CATALOG``); None: no update is marked known-exploited."""
    witness_webhook: str | None = None
    """URL every witnessed checkpoint is also POSTed to (``$MSPAUTO_WITNESS_WEBHOOK``)."""
    witness_webhook_token_file: Path | None = None
    """File holding the webhook's bearer token, read at each send
    (``$MSPAUTO_WITNESS_WEBHOOK_TOKEN_FILE``)."""
    witness_syslog: str | None = None
    """Syslog every witnessed checkpoint is also sent to (``$MSPAUTO_WITNESS_SYSLOG``:
    ``unix:PATH``, ``udp:HOST[:PORT]`` or ``tcp:HOST[:PORT]``)."""
    broker_url: str | None = None
    """The Celery broker workers take batches from (``$MSPAUTO_BROKER_URL``, e.g.
    ``amqp://mspauto@broker.msp.example//``); None: every run is in-process."""
    distributed: bool = False
    """Send runs' batches to the workers (``$MSPAUTO_DISTRIBUTED=1``, or ``--distributed``)."""
    claim_lease: float = 30.0
    """Seconds a worker's claim on a host holds without being renewed
    (``$MSPAUTO_CLAIM_LEASE``): after that its worker counts as lost. The same on every
    worker."""
    queue_wait: float = 600.0
    """Seconds a batch may wait for a worker beyond the time its hosts may take
    (``$MSPAUTO_QUEUE_WAIT``); then its hosts are recorded as not run."""
    worker_key: Path | None = None
    """A worker's own signing key (``$MSPAUTO_WORKER_KEY``), its certificate beside it
    (``.cert``): a worker holding it signs with it instead of the MSP's key."""

    @property
    def public_key(self) -> Path:
        """The public half of :attr:`signing_key`."""
        return self.signing_key.with_name(self.signing_key.name + ".pub")

    @classmethod
    def load(cls, root: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
        """Settings for ``root`` (or the environment's), with ``MSPAUTO_*`` overrides."""
        env = os.environ if env is None else env
        base = Path(root or env.get("MSPAUTO_PROJECT") or Path.cwd())

        def folder(variable: str, default: str) -> Path:
            return base / env.get(variable, default)

        state_dir = folder("MSPAUTO_STATE_DIR", ".state")
        return cls(
            root=base,
            inventory_dir=folder("MSPAUTO_INVENTORY", "inventory"),
            policies_dir=folder("MSPAUTO_POLICIES", "policies"),
            state_dir=state_dir,
            evidence_url=env.get("MSPAUTO_EVIDENCE_URL")
            or f"sqlite:///{state_dir.resolve() / 'evidence.db'}",
            signing_key=_path_setting(
                env, "MSPAUTO_SIGNING_KEY", base, state_dir / "keys" / "evidence.key"
            ),
            witness_dir=_path_setting(env, "MSPAUTO_WITNESS_DIR", base, state_dir / "witness"),
            debian_tracker=base / env["MSPAUTO_DEBIAN_TRACKER"]
            if env.get("MSPAUTO_DEBIAN_TRACKER")
            else None,
            kev_catalog=base / env["MSPAUTO_KEV_CATALOG"]
            if env.get("MSPAUTO_KEV_CATALOG")
            else None,
            witness_webhook=env.get("MSPAUTO_WITNESS_WEBHOOK") or None,
            witness_webhook_token_file=base / env["MSPAUTO_WITNESS_WEBHOOK_TOKEN_FILE"]
            if env.get("MSPAUTO_WITNESS_WEBHOOK_TOKEN_FILE")
            else None,
            witness_syslog=env.get("MSPAUTO_WITNESS_SYSLOG") or None,
            broker_url=env.get("MSPAUTO_BROKER_URL") or None,
            distributed=env.get("MSPAUTO_DISTRIBUTED", "") in ("1", "true", "yes"),
            queue_wait=_seconds(env, "MSPAUTO_QUEUE_WAIT", 600.0),
            claim_lease=_seconds(env, "MSPAUTO_CLAIM_LEASE", 30.0),
            worker_key=base / env["MSPAUTO_WORKER_KEY"] if env.get("MSPAUTO_WORKER_KEY") else None,
        )


def _path_setting(env: Mapping[str, str], variable: str, base: Path, default: Path) -> Path:
    """``$variable`` relative to the project root (or absolute), else ``default``."""
    return base / env[variable] if env.get(variable) else default


def _seconds(env: Mapping[str, str], variable: str, default: float) -> float:
    """``$variable`` as seconds (a number over 0); ``default`` when unset or not one
    (``validate`` names a value that is not one)."""
    try:
        value = float(env.get(variable, ""))
    except ValueError:
        return default
    return value if value > 0 else default
