"""Runs as recorded in the evidence: what was asked, what each host did, how it ended.

A run whose ``run_finished`` record is missing either is still going (its process is
alive on this control node) or was interrupted (the control node died or was killed).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any

from mspauto.evidence.records import HostResult, RecordKind, RunFinished, RunStarted
from mspauto.evidence.store import EvidenceStore, StoredRecord

__all__ = ["HostEntry", "RunDetail", "RunSummary", "list_runs", "run_detail"]


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
class HostEntry:
    """One host's record in a run, read back, with its outputs when asked for."""

    record: StoredRecord
    result: HostResult
    stdout: str | None = None
    stderr: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Machine-readable form: the stored payload, its place in the chain, outputs."""
        data: dict[str, Any] = {
            **self.record.payload,
            "seq": self.record.seq,
            "hash": self.record.hash,
        }
        if self.stdout is not None:
            data["stdout_text"] = self.stdout
            data["stderr_text"] = self.stderr
        return data


@dataclass(frozen=True)
class RunDetail:
    """A run and its per-host records."""

    summary: RunSummary
    results: list[HostEntry] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Machine-readable form (``runs show --format json``)."""
        return {**self.summary.as_dict(), "results": [r.as_dict() for r in self.results]}


_UNREADABLE = (KeyError, ValueError, TypeError, AttributeError)
"""What reading a record mspauto did not write can raise ('evidence verify' names it)."""


def _summary(
    started: StoredRecord, results: list[StoredRecord], finished: StoredRecord | None
) -> RunSummary:
    try:
        return _read_summary(started, results, finished)
    except _UNREADABLE:
        return RunSummary(
            run_id=started.run_id,
            client=started.chain,
            kind="?",
            command="(records not as mspauto writes them: run 'mspauto evidence verify')",
            started=started.recorded_at,
            finished=finished.recorded_at if finished else None,
            status="unreadable",
            hosts=len(results),
            counts={},
            requested_by="?",
        )


def _read_summary(
    started: StoredRecord, results: list[StoredRecord], finished: StoredRecord | None
) -> RunSummary:
    payload = started.payload
    asked = RunStarted.read(payload)
    if finished is not None:
        ended = RunFinished.read(finished.payload)
        status, counts = str(ended.status), dict(ended.counts)
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
        kind=asked.kind,
        command=asked.command,
        started=started.recorded_at,
        finished=finished.recorded_at if finished else None,
        status=status,
        hosts=len(asked.hosts),
        counts=counts,
        requested_by=asked.requested_by,
    )


def list_runs(store: EvidenceStore, client: str | None = None) -> list[RunSummary]:
    """Every run, oldest first."""
    by_run: dict[str, dict[str, Any]] = {}
    for record in store.records(chain=client):
        if not isinstance(record.chain, str):
            continue  # not written by mspauto: 'evidence verify' names it
        entry = by_run.setdefault(record.run_id, {"started": None, "results": [], "finished": None})
        if record.kind == RecordKind.RUN_STARTED:
            entry["started"] = record
        elif record.kind == RecordKind.RUN_FINISHED:
            entry["finished"] = record
        elif record.kind == RecordKind.HOST_RESULT:
            entry["results"].append(record)
    runs = [
        _summary(e["started"], e["results"], e["finished"])
        for e in by_run.values()
        if e["started"] is not None
    ]
    return sorted(runs, key=lambda r: r.started)


def run_detail(store: EvidenceStore, run_id: str, *, outputs: bool = False) -> RunDetail | None:
    """One run with its host records (and their outputs, if asked), or ``None``."""
    started, finished, results = None, None, []
    for record in store.records(run_id=run_id):
        if record.kind == RecordKind.RUN_STARTED:
            started = record
        elif record.kind == RecordKind.RUN_FINISHED:
            finished = record
        elif record.kind == RecordKind.HOST_RESULT:
            results.append(record)
    if started is None:
        return None
    entries = []
    for record in results:
        try:
            result = HostResult.read(record.payload)
        except _UNREADABLE:
            continue  # not as mspauto writes it: 'evidence verify' names it

        texts: tuple[str | None, str | None] = (None, None)
        if outputs:
            texts = (
                (store.output(result.stdout.sha256) or b"").decode(errors="replace"),
                (store.output(result.stderr.sha256) or b"").decode(errors="replace"),
            )
        entries.append(HostEntry(record, result, *texts))
    return RunDetail(_summary(started, results, finished), entries)


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
