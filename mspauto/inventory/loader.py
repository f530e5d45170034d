"""Read the inventory folder: ``defaults.yaml`` plus one file or folder per client.

Which names are read, and what an odd name or link means, is decided by
:mod:`mspauto.projectfiles`; this module maps what it finds to clients.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mspauto.inventory.models import Defaults
from mspauto.inventory.resolve import Inventory, build_inventory
from mspauto.problems import ConfigError, Location, Problem
from mspauto.projectfiles import EntryKind, ProjectTree, scan, yaml_files
from mspauto.validation import validate_document
from mspauto.yamlsource import YamlDocument, load_yaml_documents

__all__ = ["DEFAULTS_FILE", "KNOWN_HOSTS_FOLDER", "load_inventory"]

DEFAULTS_FILE = "defaults"
KNOWN_HOSTS_FOLDER = "known_hosts"
"""``inventory/known_hosts/``: the clients' host keys, never a client."""


@dataclass(frozen=True)
class _Source:
    """A client's file, or its folder and the YAML files in it."""

    path: Path
    files: list[Path]
    folder: bool
    unreadable: bool


def load_inventory(
    tree: ProjectTree, inventory_dir: Path
) -> tuple[Inventory, list[Problem], set[str]]:
    """Load and resolve every client under ``inventory_dir``.

    Returns the inventory of the clients that loaded cleanly, every problem found, and
    the names of the clients that did not load.
    """
    problems: list[Problem] = []
    defaults = Defaults()
    display_dir = tree.show(inventory_dir)

    if not inventory_dir.is_dir():
        problems.append(
            Problem(
                Location(display_dir),
                "",
                "inventory folder not found; create it with one YAML file "
                "per client (see inventory/acme.yaml in the examples)",
            )
        )
        return build_inventory(defaults, {}, PurePosixPath(display_dir))[0], problems, set()

    sources: dict[str, list[_Source]] = {}
    broken: set[str] = set()
    for entry in scan(inventory_dir, tree):
        if entry.problem is not None:
            problems.append(entry.problem)
            if entry.problem.severity == "error" and entry.stem != DEFAULTS_FILE:
                broken.add(entry.stem)  # so no policy naming it is told it does not exist
        elif entry.kind is EntryKind.YAML:
            sources.setdefault(entry.stem, []).append(
                _Source(entry.path, [entry.path], folder=False, unreadable=False)
            )
        elif entry.kind is EntryKind.FOLDER and entry.path.name != KNOWN_HOSTS_FOLDER:
            found = yaml_files(entry.path, tree)
            problems.extend(found.problems)
            if found.files or found.unreadable:
                sources.setdefault(entry.stem, []).append(
                    _Source(entry.path, found.files, folder=True, unreadable=found.unreadable)
                )

    client_docs: dict[str, list[YamlDocument]] = {}
    for name, found_sources in sources.items():
        if len(found_sources) > 1:
            problems.append(_defined_twice(name, found_sources, tree))
            broken.add(name)
            continue
        (source,) = found_sources
        docs: list[YamlDocument] = []
        unreadable = source.unreadable
        for path in source.files:
            more, doc_problems = _read_single_document(tree, path)
            docs += more
            problems.extend(doc_problems)
            unreadable = unreadable or bool(doc_problems)
        if name == DEFAULTS_FILE and not source.folder:
            if docs and docs[0].data is not None:
                model, errors = validate_document(Defaults, docs[0].data, docs[0])
                problems.extend(errors)
                defaults = model or defaults
        elif unreadable:
            broken.add(name)
        else:
            client_docs[name] = docs

    inventory, resolve_problems, unresolved = build_inventory(
        defaults, client_docs, PurePosixPath(display_dir)
    )
    return inventory, problems + resolve_problems, broken | unresolved


def _defined_twice(name: str, sources: list[_Source], tree: ProjectTree) -> Problem:
    """One problem, at the first file, naming every file and folder that defines ``name``."""
    files = [s for s in sources if not s.folder] or sources
    at = files[0]
    others = [s for s in sources if s is not at]
    named = " and ".join(
        f"the folder {tree.show(s.path, folder=True)}" if s.folder else tree.show(s.path)
        for s in others
    )
    return Problem(
        Location(tree.show(at.path, folder=at.folder)),
        "",
        f"client '{name}' is also defined by {named}; keep one file or one folder per "
        "client (move the hosts of one into the other)",
    )


def _read_single_document(
    tree: ProjectTree, path: Path
) -> tuple[list[YamlDocument], list[Problem]]:
    display = tree.show(path)
    try:
        docs = load_yaml_documents(path, display)
    except ConfigError as exc:
        return [], exc.problems
    if len(docs) > 1:
        return [], [
            Problem(
                Location(display, docs[1].start_line),
                "",
                "an inventory file holds one YAML document; move the part "
                "after '---' into its own file",
            )
        ]
    if not docs:
        docs = [YamlDocument(display, None, {})]
    return docs, []
