"""Line-aware YAML loading: every value keeps the line it was written on.

PyYAML's composer already knows where each node starts; this module keeps that
knowledge next to the plain Python data, so that a validation error found later
(by pydantic, or by a cross-file check) can name the file and the line.
Duplicate keys, which PyYAML silently overwrites, are reported as problems.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from mspauto.problems import ConfigError, Location, Problem, format_key_path

__all__ = ["YAML_SUFFIXES", "KeyPath", "YamlDocument", "load_yaml_documents", "yaml_files"]

YAML_SUFFIXES = (".yaml", ".yml")


def yaml_files(folder: Path) -> list[Path]:
    """YAML files below ``folder``, sorted; anything under a name starting with ``.`` or
    ``_`` (``.git/``, ``_archive/``, ``_draft.yaml``) is left out."""
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file()
        and path.suffix in YAML_SUFFIXES
        and not any(part.startswith((".", "_")) for part in path.relative_to(folder).parts)
    )


KeyPath = tuple[str | int, ...]

# Deeper than any inventory or policy needs; stops alias loops (a: &x [*x]).
_MAX_DEPTH = 64


@dataclass(frozen=True)
class YamlDocument:
    """One YAML document: its data and the line of every key path in it."""

    file: str
    data: Any
    lines: dict[KeyPath, int] = field(repr=False)
    start_line: int = 1

    def line_of(self, path: KeyPath) -> int:
        """Line of ``path``, or of its nearest written ancestor (a missing key's parent)."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return self.start_line

    def location(self, path: KeyPath = ()) -> Location:
        """:class:`Location` of ``path`` in this document."""
        return Location(self.file, self.line_of(path))


class _Loader(yaml.SafeLoader):
    """Safe loader (no arbitrary Python objects), composed and constructed in two steps."""


def load_yaml_documents(path: Path, display_name: str) -> list[YamlDocument]:
    """Read every document of a YAML file; raise :class:`ConfigError` on bad YAML."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [Problem(Location(display_name), "", f"not UTF-8 text ({exc.reason})")]
        ) from None
    except OSError as exc:
        raise ConfigError(
            [Problem(Location(display_name), "", f"cannot read: {exc.strerror}")]
        ) from None

    loader = _Loader(text)
    documents: list[YamlDocument] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:  # pragma: no cover - check_node() said there is one
                break
            lines: dict[KeyPath, int] = {}
            problems = _index(node, display_name, lines)
            if problems:
                raise ConfigError(problems)
            data = loader.construct_document(node)
            documents.append(
                YamlDocument(display_name, data, lines, start_line=node.start_mark.line + 1)
            )
    except yaml.MarkedYAMLError as exc:
        line, what = _explain(exc)
        raise ConfigError(
            [Problem(Location(display_name, line), "", f"YAML syntax error: {what}")]
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(Location(display_name), "", f"YAML error: {exc}")]) from None
    finally:
        loader.dispose()
    return documents


# Constructs whose error shows up far from where they began: report where they began.
_UNCLOSED = {
    "while parsing a flow sequence": "'[' is never closed",
    "while parsing a flow mapping": "'{' is never closed",
}


def _explain(exc: yaml.MarkedYAMLError) -> tuple[int | None, str]:
    """PyYAML's error as (line, message) a person can act on."""
    problem = exc.problem or exc.context or "invalid YAML"
    mark, context = exc.problem_mark or exc.context_mark, exc.context_mark
    line = mark.line + 1 if mark else None
    if context is not None and mark is not None and context.line != mark.line:
        opened = _UNCLOSED.get(exc.context or "")
        if exc.context == "while scanning a quoted scalar" and context.buffer:
            opened = f"'{context.buffer[context.pointer]}' is never closed"
        if opened:
            return context.line + 1, f"{opened} ({problem} at line {line})"
    if "'\\t'" in problem:
        return line, "a tab character; YAML is indented with spaces only"
    if problem.startswith("expected <block end>"):
        return line, "indentation: this line does not line up with the keys above it"
    return line, problem


_TIMESTAMP = "tag:yaml.org,2002:timestamp"


def _index(node: Node, file: str, lines: dict[KeyPath, int]) -> list[Problem]:
    """Record the line of every key path; report duplicate keys and impossible dates.

    A node reached again through an alias is not walked again, so a file of nested
    aliases (a "billion laughs") costs no more than its size.
    """
    problems: list[Problem] = []
    walked: set[int] = set()
    pending: list[tuple[Node, KeyPath, int]] = [(node, (), 0)]
    while pending:
        current, path, depth = pending.pop()
        lines.setdefault(path, current.start_mark.line + 1)
        if id(current) in walked:
            continue
        walked.add(id(current))
        if depth > _MAX_DEPTH:
            problems.append(
                Problem(Location(file, current.start_mark.line + 1), "", "nested too deeply")
            )
            continue
        if isinstance(current, ScalarNode) and current.tag == _TIMESTAMP:
            try:
                yaml.SafeLoader.construct_yaml_timestamp(_Loader(""), current)
            except ValueError as exc:
                problems.append(
                    Problem(
                        Location(file, current.start_mark.line + 1),
                        format_key_path(path),
                        f"'{current.value}' is not a real date or time ({exc})",
                    )
                )
        elif isinstance(current, MappingNode):
            first_seen: dict[str, int] = {}
            for key_node, value_node in current.value:
                key_line = key_node.start_mark.line + 1
                if not isinstance(key_node, ScalarNode):
                    problems.append(
                        Problem(
                            Location(file, key_line),
                            format_key_path(path),
                            "keys must be plain words, not lists or mappings",
                        )
                    )
                    continue
                key = key_node.value
                if key in first_seen and key != "<<":
                    problems.append(
                        Problem(
                            Location(file, key_line),
                            format_key_path((*path, key)),
                            f"duplicate key (first written at line {first_seen[key]})",
                        )
                    )
                    continue
                first_seen[key] = key_line
                lines[(*path, key)] = key_line
                pending.append((value_node, (*path, key), depth + 1))
        elif isinstance(current, SequenceNode):
            pending.extend(
                (item, (*path, index), depth + 1) for index, item in enumerate(current.value)
            )
    return sorted(problems, key=lambda p: p.location.line or 0)
