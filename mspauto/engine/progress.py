"""Progress of a run: a rich bar on a terminal, one plain line per host otherwise."""

from __future__ import annotations

import sys
import threading
from typing import Protocol, TextIO

from mspauto.transport.base import CommandResult

__all__ = ["LineProgress", "Progress", "RichProgress", "SilentProgress", "progress_for"]


class Progress(Protocol):
    """Told about a run as it goes (from worker threads: implementations lock)."""

    def started(self, total: int) -> None:
        """The run begins with ``total`` hosts."""
        ...

    def host_done(self, result: CommandResult) -> None:
        """One host finished (or failed, or was not started)."""
        ...

    def note(self, message: str) -> None:
        """Something the user should see now (e.g. "stopping after Ctrl-C")."""
        ...

    def finished(self) -> None:
        """The run is over."""
        ...


class SilentProgress:
    """Reports nothing (library use, JSON output, benchmarks)."""

    def started(self, total: int) -> None:
        """Nothing to do."""

    def host_done(self, result: CommandResult) -> None:
        """Nothing to do."""

    def note(self, message: str) -> None:
        """Nothing to do."""

    def finished(self) -> None:
        """Nothing to do."""


class LineProgress:
    """One line per finished host, for logs and pipes."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._done = 0
        self._total = 0

    def started(self, total: int) -> None:
        """Remember the total for ``[done/total]`` (a new run starts counting anew)."""
        with self._lock:
            self._total, self._done = total, 0

    def host_done(self, result: CommandResult) -> None:
        """Print ``[n/total] host summary``."""
        with self._lock:
            self._done += 1
            print(
                f"[{self._done}/{self._total}] {result.host} {result.summary()}",
                file=self._stream,
                flush=True,
            )

    def note(self, message: str) -> None:
        """Print the message."""
        with self._lock:
            print(message, file=self._stream, flush=True)

    def finished(self) -> None:
        """Nothing left to print."""


class RichProgress:
    """A live bar with ok / failed counts."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bar

        self._bar = Bar(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            console=Console(file=stream),
            transient=True,
        )
        self._lock = threading.Lock()
        self._task = self._bar.add_task("running", total=0, counts="")
        self._ok = 0
        self._failed = 0

    def started(self, total: int) -> None:
        """Show the bar (a new run, e.g. the re-check after changes, starts from zero)."""
        with self._lock:
            self._ok = self._failed = 0
            self._bar.reset(self._task, total=total, counts="")
        self._bar.start()

    def host_done(self, result: CommandResult) -> None:
        """Advance the bar."""
        with self._lock:
            if result.ok:
                self._ok += 1
            else:
                self._failed += 1
            self._bar.update(self._task, advance=1, counts=f"{self._ok} ok, {self._failed} failed")

    def note(self, message: str) -> None:
        """Print above the bar."""
        self._bar.console.print(message)

    def finished(self) -> None:
        """Remove the bar."""
        self._bar.stop()


def progress_for(stream: TextIO = sys.stderr) -> Progress:
    """A rich bar when ``stream`` is a terminal, plain lines otherwise."""
    return RichProgress(stream) if stream.isatty() else LineProgress(stream)
