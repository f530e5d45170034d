"""Which files a project is read from: the one place that walks ``inventory/`` and
``policies/``.

The rules (docs/inventory.md, "Which files are read"):

- a file is read as YAML when its name ends in ``.yaml`` or ``.yml``, in lower case;
  the same name with the extension in any other case (``NEWCO.YAML``) is an error
  asking for the rename, and a name that only contains it (``acme.yaml.bak``,
  ``acme.yaml~``) is a warning that the file is not read;
- anything under a name starting with ``.`` or ``_`` is left out, silently;
- a link is followed only when it resolves inside the project; a link that leads
  nowhere or in a circle, a folder or a pipe where a YAML file is expected, and a folder
  reached twice through links are errors naming the path.

Each odd entry becomes one :class:`~mspauto.problems.Problem` naming the path as it is
written (a link, not its target) and what to do about it.
"""

from __future__ import annotations

import enum
import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from mspauto.problems import Location, Problem, Severity, display_path

__all__ = [
    "YAML_SUFFIXES",
    "Entry",
    "EntryKind",
    "Found",
    "ProjectTree",
    "real_path",
    "scan",
    "yaml_files",
]

YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class ProjectTree:
    """The project's folders, each resolved (links followed): a link may lead anywhere
    inside them, nowhere outside."""

    root: Path
    """The project root as given (paths are shown relative to it)."""
    areas: tuple[Path, ...]
    """The resolved root, plus the inventory and policies folders when
    ``MSPAUTO_INVENTORY`` or ``MSPAUTO_POLICIES`` put them elsewhere."""

    @classmethod
    def of(cls, root: Path, *folders: Path) -> ProjectTree:
        """The tree of ``root`` and the project ``folders`` (inventory, policies)."""
        areas = dict.fromkeys(real_path(folder) for folder in (root, *folders))
        return cls(root, tuple(areas))

    def contains(self, real: Path) -> bool:
        """True when the resolved path ``real`` is inside the project."""
        return any(real.is_relative_to(area) for area in self.areas)

    def show(self, path: Path, *, folder: bool = False) -> str:
        """``path`` as written in a message (a trailing ``/`` marks a folder)."""
        shown = str(display_path(self.root, path))
        return f"{shown}/" if folder else shown


def real_path(path: Path) -> Path:
    """``path`` with every link followed as far as it goes (no error for a missing file,
    nor for a loop: the part that loops is kept as written)."""
    return Path(os.path.realpath(path))


class EntryKind(enum.Enum):
    """What one name in a walked folder is to the loaders."""

    YAML = "yaml"
    """A YAML file to read."""
    FOLDER = "folder"
    """A folder to look into."""
    IGNORED = "ignored"
    """Not ours to read (``known_hosts`` files, keys, notes)."""
    PROBLEM = "problem"
    """Meant to be read, but cannot be: :attr:`Entry.problem` says why."""


@dataclass(frozen=True)
class Entry:
    """One name found in a folder: where it is written and what it is."""

    path: Path
    kind: EntryKind
    problem: Problem | None = None

    @property
    def stem(self) -> str:
        """The name without a YAML extension in any case (a client's name)."""
        name = self.path.name
        for suffix in YAML_SUFFIXES:
            if name.lower().endswith(suffix) and len(name) > len(suffix):
                return name[: -len(suffix)]
        return name


@dataclass(frozen=True)
class Found:
    """The YAML files found under a folder, and the problems met on the way."""

    files: list[Path] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def unreadable(self) -> bool:
        """True when something meant to be read could not be (an error, not a warning)."""
        return any(p.severity == "error" for p in self.problems)


def scan(folder: Path, tree: ProjectTree) -> list[Entry]:
    """The names directly in ``folder``, sorted, without those starting with ``.`` or ``_``."""
    try:
        names = sorted(os.listdir(folder))
    except OSError as exc:
        return [_problem(folder, tree, f"cannot read this folder ({exc.strerror}); fix its mode")]
    return [_classify(folder / name, tree) for name in names if not name.startswith((".", "_"))]


def yaml_files(folder: Path, tree: ProjectTree) -> Found:
    """Every YAML file under ``folder`` (sorted), and a problem per odd name on the way.

    Each real folder is walked once: a link back to a folder above it is a loop, and a
    second way into a folder already read would read its files twice.
    """
    found = Found()
    walked: dict[Path, Path] = {real_path(folder): folder}
    pending = [folder]
    while pending:
        current = pending.pop()
        for entry in scan(current, tree):
            if entry.problem is not None:
                found.problems.append(entry.problem)
            elif entry.kind is EntryKind.YAML:
                found.files.append(entry.path)
            elif entry.kind is EntryKind.FOLDER:
                real = real_path(entry.path)
                first = walked.get(real)
                if first is None:
                    walked[real] = entry.path
                    pending.append(entry.path)
                else:
                    found.problems.append(_folder_twice(entry.path, real, first, tree))
    found.files.sort()
    return found


def _classify(path: Path, tree: ProjectTree) -> Entry:
    name = path.name
    named_yaml = name.lower().endswith(YAML_SUFFIXES)
    try:
        link = path.is_symlink()
        real = Path(os.path.realpath(path, strict=True)) if link else path
        mode = path.stat().st_mode
    except OSError as exc:
        return _unreachable(path, tree, exc)
    if link and not tree.contains(real) and (named_yaml or stat.S_ISDIR(mode)):
        return _problem(
            path,
            tree,
            f"a link to {real}, outside the project; links are followed only inside the "
            "project folder: copy the file (or folder) in instead",
        )
    if stat.S_ISDIR(mode):
        if named_yaml:
            return _problem(
                path,
                tree,
                "a folder, where the name says a YAML file; replace it with the file, "
                f"or rename the folder without '{Path(name).suffix}'",
                folder=True,
            )
        return Entry(path, EntryKind.FOLDER)
    if not stat.S_ISREG(mode):
        if named_yaml:
            return _problem(
                path, tree, f"not a regular file ({_file_type(mode)}); replace it with a file"
            )
        return Entry(path, EntryKind.IGNORED)
    if named_yaml:
        if name.endswith(YAML_SUFFIXES):
            return Entry(path, EntryKind.YAML)
        suffix = Path(name).suffix
        return _problem(
            path,
            tree,
            f"not read: the extension must be lower-case .yaml or .yml; rename it to "
            f"{name[: -len(suffix)]}{suffix.lower()}",
        )
    if ".yaml" in name.lower() or ".yml" in name.lower():
        return _problem(
            path,
            tree,
            "not read (only names ending in .yaml or .yml are); rename it to end in .yaml "
            "to use it, or start its name with '_' (or move it out) to silence this",
            severity="warning",
        )
    return Entry(path, EntryKind.IGNORED)


def _unreachable(path: Path, tree: ProjectTree, exc: OSError) -> Entry:
    """A name whose link leads nowhere, in a circle, or that cannot be looked at."""
    try:
        target = os.readlink(path)
    except OSError:
        return _problem(path, tree, f"cannot be read ({exc.strerror}); fix its mode or remove it")
    if exc.errno == errno.ELOOP:
        return _problem(
            path,
            tree,
            f"a link to {target} that loops (its links lead back to themselves, never to a "
            "file); point it at a real file or folder, or remove it",
        )
    return _problem(
        path,
        tree,
        f"a link to {target}, which does not exist; point it at a real file or folder, "
        "or remove it",
    )


def _folder_twice(path: Path, real: Path, first: Path, tree: ProjectTree) -> Problem:
    if real_path(path.parent).is_relative_to(real):
        what = (
            f"a link back to {tree.show(first, folder=True)}, which contains it (a loop "
            "without end); remove the link"
        )
    else:
        what = (
            f"leads to {tree.show(real, folder=True)}, which is already read as "
            f"{tree.show(first, folder=True)}; "
            "link each folder once, or copy it"
        )
    return Problem(Location(tree.show(path, folder=True)), "", what)


def _problem(
    path: Path,
    tree: ProjectTree,
    message: str,
    *,
    severity: Severity = "error",
    folder: bool = False,
) -> Entry:
    problem = Problem(Location(tree.show(path, folder=folder)), "", message, severity)
    return Entry(path, EntryKind.PROBLEM, problem)


def _file_type(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a file"
