"""Project settings: where the inventory, policies and state live.

The project root is ``--project``, else ``$MSPAUTO_PROJECT``, else the current folder.
Each folder can be moved with an environment variable (``MSPAUTO_INVENTORY``,
``MSPAUTO_POLICIES``, ``MSPAUTO_STATE_DIR``), relative to the root or absolute; the
evidence store with ``MSPAUTO_EVIDENCE_URL`` (e.g. ``postgresql+psycopg://...``).
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
        )
