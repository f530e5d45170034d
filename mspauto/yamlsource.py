"""Line-aware YAML loading: every value keeps the line it was written on.

PyYAML's composer already knows where each node starts; this module keeps that
knowledge next to the plain Python data, so that a validation error found later
(by pydantic, or by a cross-file check) can name the file and the line.
Duplicate keys, which PyYAML silently overwrites, are reported as problems.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.reader import Reader

from mspauto.problems import ConfigError, Location, Problem, format_key_path

__all__ = ["KeyPath", "YamlDocument", "load_yaml_documents"]

KeyPath = tuple[str | int, ...]

# Deeper than any inventory or policy needs; PyYAML's composer recurses once per level,
# so a few hundred nested brackets would otherwise end in a RecursionError.
_MAX_DEPTH = 64
# Values in one document once every alias is expanded: far more than any inventory or
# policy needs, far less than a "billion laughs" that exhausts memory when written out.
_MAX_EXPANDED = 100_000


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


class _TooDeepError(Exception):
    """Raised by the composer at the first node nested deeper than ``_MAX_DEPTH``."""

    def __init__(self, line: int, path: KeyPath) -> None:
        super().__init__(line, path)
        self.line = line
        self.path = path


class _Loader(yaml.SafeLoader):
    """Safe loader (no arbitrary Python objects), composed and constructed in two steps.

    The composer keeps the key path it is in, so that nesting too deep is refused
    before it recurses too deep.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._path: list[str | int | None] = []

    def compose_node(self, parent: Node | None, index: object) -> Node | None:
        if parent is None:
            step: str | int | None = None
        elif isinstance(index, ScalarNode):
            step = index.value
        elif isinstance(index, int):
            step = index
        else:  # a mapping key: its nesting counts, it names nothing
            step = None
        self._path.append(step)
        try:
            if len(self._path) > _MAX_DEPTH + 1:
                # peek_event is untyped in the stubs.
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                named = [s for s in self._path if s is not None]
                raise _TooDeepError(mark.line + 1, tuple(named))
            # The stubs say int; PyYAML passes a mapping value its key node.
            return super().compose_node(parent, index)  # type: ignore[arg-type]
        finally:
            self._path.pop()


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
    forbidden = Reader.NON_PRINTABLE.search(text)
    if forbidden:
        raise ConfigError([_forbidden_character(display_name, text, forbidden.start())])

    loader = _Loader(text)
    documents: list[YamlDocument] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:  # pragma: no cover - check_node() said there is one
                break
            lines: dict[KeyPath, int] = {}
            problems = _index(node, display_name, lines) or _expansion_problems(node, display_name)
            if problems:
                raise ConfigError(problems)
            data = loader.construct_document(node)
            documents.append(
                YamlDocument(display_name, data, lines, start_line=node.start_mark.line + 1)
            )
    except _TooDeepError as exc:
        raise ConfigError([_too_deep(display_name, exc.line, exc.path)]) from None
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

    A node reached again through an alias is not walked again, so this costs no more
    than the file's size, whatever its aliases expand to.
    """
    problems: list[Problem] = []
    walked: set[int] = set()
    pending: list[tuple[Node, KeyPath]] = [(node, ())]
    while pending:
        current, path = pending.pop()
        lines.setdefault(path, current.start_mark.line + 1)
        if id(current) in walked:
            continue
        walked.add(id(current))
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
                pending.append((value_node, (*path, key)))
        elif isinstance(current, SequenceNode):
            pending.extend((item, (*path, index)) for index, item in enumerate(current.value))
    return sorted(problems, key=lambda p: p.location.line or 0)


_LINE_BREAK = re.compile("\r\n|[\n\r\x85\u2028\u2029]")


def _forbidden_character(file: str, text: str, offset: int) -> Problem:
    """The character at ``offset``, which YAML does not allow anywhere, as a problem."""
    character = text[offset]
    kind = "control character" if unicodedata.category(character) == "Cc" else "character"
    line = len(_LINE_BREAK.findall(text, 0, offset)) + 1
    return Problem(
        Location(file, line),
        "",
        f"{kind} U+{ord(character):04X} is not allowed in YAML; remove it",
    )


def _too_deep(file: str, line: int, path: KeyPath) -> Problem:
    """Nesting past ``_MAX_DEPTH``, named by the last key written above it: a run of
    list indexes like ``[0][0][0]...`` would only make the line unreadable."""
    named = len(path)
    while named and isinstance(path[named - 1], int):
        named -= 1
    return Problem(
        Location(file, line),
        format_key_path(path[:named]),
        f"nested deeper than {_MAX_DEPTH} levels; flatten it",
    )


def _children(node: Node) -> list[tuple[Node, str | int | None]]:
    """Direct children of ``node``, each with the key path step that leads to it."""
    if isinstance(node, MappingNode):
        pairs: list[tuple[Node, str | int | None]] = []
        for key_node, value_node in node.value:
            pairs.append((key_node, None))
            pairs.append((value_node, key_node.value if isinstance(key_node, ScalarNode) else None))
        return pairs
    if isinstance(node, SequenceNode):
        return [(item, index) for index, item in enumerate(node.value)]
    return []


def _expansion_problems(root: Node, file: str) -> list[Problem]:
    """Refuse a document that aliases turn into a loop, an explosion, or too deep a nest.

    PyYAML builds such data without complaint (an alias shares its anchor's object), but
    anything that later walks it (JSON output, a deep copy, a printout) never ends or
    runs out of memory. Each node's expanded size and height are counted once, so the
    check costs no more than the file's size.
    """
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded nodes, height)
    open_nodes: set[int] = set()  # the nodes on the current path: meeting one is a loop
    pending: list[tuple[Node, KeyPath, int, bool]] = [(root, (), 0, False)]
    while pending:
        node, path, depth, children_done = pending.pop()
        line = node.start_mark.line + 1
        children = _children(node)
        if children_done:
            open_nodes.discard(id(node))
            counted = [sizes[id(child)] for child, _ in children]
            size = 1 + sum(s for s, _ in counted)
            height = 1 + max((h for _, h in counted), default=0) if children else 0
            if size > _MAX_EXPANDED:
                return [
                    Problem(
                        Location(file, line),
                        format_key_path(path),
                        f"aliases expand this to more than {_MAX_EXPANDED:,} values; "
                        "write it out with fewer nested aliases",
                    )
                ]
            sizes[id(node)] = (size, height)
            continue
        if id(node) in open_nodes:
            return [
                Problem(
                    Location(file, line),
                    format_key_path(path),
                    "alias refers to the anchor it is inside (a loop without end); "
                    "remove the alias",
                )
            ]
        known = sizes.get(id(node))
        if depth + (known[1] if known else 0) > _MAX_DEPTH:
            return [_too_deep(file, line, path)]
        if known:
            continue
        open_nodes.add(id(node))
        pending.append((node, path, depth, True))
        pending.extend(
            (child, path if step is None else (*path, step), depth + 1, False)
            for child, step in reversed(children)
        )
    return []
