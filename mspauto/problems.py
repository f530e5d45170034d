"""Problems found in a user's files, each pointing at a file, a line and a key path.

Every configuration error the user can make ends up as one :class:`Problem`, printed
as one line: ``inventory/acme.yaml:14 hosts.web01.port: must be 1..65535``. Control
characters in it (a newline in a file name or key) are printed escaped, so one problem
is always one line.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

__all__ = [
    "ConfigError",
    "Location",
    "Problem",
    "Severity",
    "display_path",
    "format_key_path",
    "one_line",
]

Severity = Literal["error", "warning"]


@dataclass(frozen=True, order=True)
class Location:
    """Where something was written: a file (relative to the project) and a 1-based line."""

    file: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclass(frozen=True)
class Problem:
    """One thing wrong (or worth a warning) in the user's files."""

    location: Location
    key_path: str
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        message = self.message if self.severity == "error" else f"warning: {self.message}"
        line = (
            f"{self.location} {self.key_path}: {message}"
            if self.key_path
            else f"{self.location}: {message}"
        )
        # File names, keys and the values quoted in messages are whoever wrote the files':
        # a line break or terminal control in them must not print as a second, forged line.
        return one_line(line)

    def as_dict(self) -> dict[str, object]:
        """Machine-readable form for ``--format json``."""
        return {
            "severity": self.severity,
            "file": self.location.file,
            "line": self.location.line,
            "key_path": self.key_path,
            "message": self.message,
        }


class ConfigError(Exception):
    """Raised when user files cannot be used; carries every problem found."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def format_key_path(path: Iterable[str | int]) -> str:
    """``("hosts", "web01", "tags", 2)`` -> ``hosts.web01.tags[2]``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


def display_path(root: Path, path: Path) -> PurePosixPath:
    """``path`` as shown to the user: relative to the project root when inside it.

    A link is shown as the link, where it is written, not as the file it leads to.
    """
    written, base = Path(os.path.abspath(path)), Path(os.path.abspath(root))
    if written.is_relative_to(base):
        return PurePosixPath(written.relative_to(base).as_posix())
    # The root itself may be reached through a link (a folder moved by MSPAUTO_*).
    folder = Path(os.path.realpath(written.parent)) / written.name
    real_root = Path(os.path.realpath(base))
    if folder.is_relative_to(real_root):
        return PurePosixPath(folder.relative_to(real_root).as_posix())
    return PurePosixPath(written.as_posix())


def one_line(text: str) -> str:
    """``text`` with every character a terminal would act on (line breaks, escapes,
    bidirectional controls) written as its escape sequence: text from the user's files
    or the evidence never prints as a second, forged line."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
