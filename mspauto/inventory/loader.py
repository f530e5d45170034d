"""Read the inventory folder: ``defaults.yaml`` plus one file or folder per client."""

from __future__ import annotations

from pathlib import Path

from mspauto.inventory.models import Defaults
from mspauto.inventory.resolve import Inventory, build_inventory
from mspauto.problems import ConfigError, Location, Problem, display_path
from mspauto.validation import validate_document
from mspauto.yamlsource import YAML_SUFFIXES, YamlDocument, load_yaml_documents, yaml_files

__all__ = ["load_inventory"]

DEFAULTS_FILE = "defaults"


def load_inventory(root: Path, inventory_dir: Path) -> tuple[Inventory, list[Problem], set[str]]:
    """Load and resolve every client under ``inventory_dir``.

    Returns the inventory of the clients that loaded cleanly, every problem found, and
    the names of the clients that did not load.
    """
    problems: list[Problem] = []
    defaults = Defaults()
    client_docs: dict[str, list[YamlDocument]] = {}
    first_source: dict[str, str] = {}
    display_dir = display_path(root, inventory_dir)

    if not inventory_dir.is_dir():
        problems.append(
            Problem(
                Location(str(display_dir)),
                "",
                "inventory folder not found; create it with one YAML file "
                "per client (see inventory/acme.yaml in the examples)",
            )
        )
        return build_inventory(defaults, {}, display_dir)[0], problems, set()

    for entry in sorted(inventory_dir.iterdir()):
        if entry.name.startswith((".", "_")):
            continue
        if entry.is_file() and entry.suffix in YAML_SUFFIXES:
            docs, doc_problems = _read_single_document(root, entry)
            problems.extend(doc_problems)
            unreadable = bool(doc_problems)
            if entry.stem == DEFAULTS_FILE:
                if docs and docs[0].data is not None:
                    model, errors = validate_document(Defaults, docs[0].data, docs[0])
                    problems.extend(errors)
                    defaults = model or defaults
                continue
            name = entry.stem
        elif entry.is_dir():
            files = yaml_files(entry)
            if not files:
                continue  # e.g. inventory/known_hosts/
            docs, unreadable = [], False
            for path in files:
                more, doc_problems = _read_single_document(root, path)
                docs += more
                problems.extend(doc_problems)
                unreadable = unreadable or bool(doc_problems)
            name = entry.name
        else:
            continue
        shown = str(display_path(root, entry))
        if name in first_source:
            problems.append(
                Problem(
                    Location(shown),
                    "",
                    f"client '{name}' is also defined by {first_source[name]}; "
                    "keep one file or one folder per client",
                )
            )
            continue
        first_source[name] = shown
        if not unreadable:
            client_docs[name] = docs

    inventory, resolve_problems, broken = build_inventory(defaults, client_docs, display_dir)
    broken |= set(first_source) - set(client_docs)
    return inventory, problems + resolve_problems, broken


def _read_single_document(root: Path, path: Path) -> tuple[list[YamlDocument], list[Problem]]:
    display = str(display_path(root, path))
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
