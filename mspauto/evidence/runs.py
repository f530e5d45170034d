"""Runs as recorded in the evidence: what was asked, what each host did, how it ended.

A run whose ``run_finished`` record is missing either is still going (its process is
alive on this control node) or was interrupted (the control node died or was killed).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any

from mspauto.evidence.store import EvidenceStore, StoredRecord

__all__ = ["RunDetail", "RunSummary", "list_runs", "run_detail"]


@dataclass(frozen=True)
class RunSummary:
    """One run at a glance."""

    run_id: str
    client: str
    kind: str
    command: str
    started: str
    finished: str | None
    status: str
    hosts: int
    counts: dict[str, int]
    requested_by: str

    def as_dict(self) -> dict[str, Any]:
        """Machine-readable form."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class RunDetail:
    """A run and its per-host records."""

    summary: RunSummary
    results: list[StoredRecord] = field(default_factory=list)


def _summary(
    started: StoredRecord, results: list[StoredRecord], finished: StoredRecord | None
) -> RunSummary:
    payload = started.payload
    if finished is not None:
        status = str(finished.payload["status"])
        counts = dict(finished.payload["counts"])
    else:
        counts = {}
        for record in results:
            key = (
                "ok"
                if record.payload.get("rc") == 0 and not record.payload.get("error")
                else str(record.payload.get("error"))
            )
            counts[key] = counts.get(key, 0) + 1
        alive = payload.get("node") == socket.gethostname() and _alive(payload.get("pid"))
        status = "running" if alive else "interrupted"
    return RunSummary(
        run_id=started.run_id,
        client=started.chain,
        kind=str(payload.get("kind", "")),
        command=str(payload.get("command", "")),
        started=started.recorded_at,
        finished=finished.recorded_at if finished else None,
        status=status,
        hosts=len(payload.get("hosts", [])),
        counts=counts,
        requested_by=str(payload.get("requested_by", "")),
    )


def list_runs(store: EvidenceStore, client: str | None = None) -> list[RunSummary]:
    """Every run, oldest first."""
    by_run: dict[str, dict[str, Any]] = {}
    for record in store.records(chain=client):
        entry = by_run.setdefault(record.run_id, {"started": None, "results": [], "finished": None})
        if record.kind == "run_started":
            entry["started"] = record
        elif record.kind == "run_finished":
            entry["finished"] = record
        elif record.kind == "host_result":
            entry["results"].append(record)
    runs = [
        _summary(e["started"], e["results"], e["finished"])
        for e in by_run.values()
        if e["started"] is not None
    ]
    return sorted(runs, key=lambda r: r.started)


def run_detail(store: EvidenceStore, run_id: str) -> RunDetail | None:
    """One run with its host records, or ``None``."""
    started, finished, results = None, None, []
    for record in store.records(run_id=run_id):
        if record.kind == "run_started":
            started = record
        elif record.kind == "run_finished":
            finished = record
        elif record.kind == "host_result":
            results.append(record)
    if started is None:
        return None
    return RunDetail(_summary(started, results, finished), results)


def _alive(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
