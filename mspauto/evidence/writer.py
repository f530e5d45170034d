"""A background writer that appends evidence as results arrive, in group commits.

Worker threads hand records over and go on; one thread appends whatever has queued up
in a single transaction. A result is recorded once its transaction commits, so a
control node killed mid-run keeps every result committed before the kill.
"""

from __future__ import annotations

import queue
import threading

from mspauto.evidence.store import EvidenceStore, NewRecord

__all__ = ["EvidenceWriter"]

_STOP = object()


class EvidenceWriter:
    """Appends records to a store from a background thread."""

    def __init__(self, store: EvidenceStore, batch: int = 500) -> None:
        self._store = store
        self._batch = batch
        self._queue: queue.Queue[object] = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="evidence-writer", daemon=True)
        self._thread.start()

    def submit(self, record: NewRecord) -> None:
        """Queue a record. Never raises: a failed store is reported by :meth:`close`, so
        a worker thread's host result is never lost to a database error."""
        if self._error is None:
            self._queue.put(record)

    def close(self) -> None:
        """Write everything queued, then stop; re-raises a write failure."""
        self._queue.put(_STOP)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            pending: list[NewRecord] = []
            item = self._queue.get()
            while True:
                if item is _STOP:
                    stopping = True
                elif isinstance(item, NewRecord):
                    pending.append(item)
                if stopping or len(pending) >= self._batch:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if pending and self._error is None:
                try:
                    self._store.append(pending)
                except BaseException as exc:  # surfaced to the run by submit()/close()
                    self._error = exc
