"""The line-aware YAML loader: positions, duplicate keys, syntax errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from mspauto.problems import ConfigError
from mspauto.yamlsource import load_yaml_documents


def _load(tmp_path: Path, text: str) -> list:  # type: ignore[type-arg]
    path = tmp_path / "f.yaml"
    path.write_text(text)
    return load_yaml_documents(path, "f.yaml")


def test_every_key_path_knows_its_line(tmp_path: Path) -> None:
    (doc,) = _load(tmp_path, "# comment\nhosts:\n  web01:\n    tags:\n      - a\n      - b\n")
    assert doc.data == {"hosts": {"web01": {"tags": ["a", "b"]}}}
    assert doc.line_of(("hosts",)) == 2
    assert doc.line_of(("hosts", "web01", "tags")) == 4
    assert doc.line_of(("hosts", "web01", "tags", 1)) == 6


def test_missing_key_points_at_nearest_parent(tmp_path: Path) -> None:
    (doc,) = _load(tmp_path, "a: 1\nclient:\n  name: x\n")
    assert doc.line_of(("client", "timezone")) == 2


def test_documents_keep_their_own_lines(tmp_path: Path) -> None:
    docs = _load(tmp_path, "kind: a\n---\n# two\nkind: b\nname: n\n")
    assert [d.data["kind"] for d in docs] == ["a", "b"]
    assert docs[1].line_of(("name",)) == 5
    assert docs[1].start_line == 4


def test_duplicate_key_is_an_error_not_an_overwrite(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, "hosts:\n  web01: {}\n  web01: {port: 2}\n")
    assert [str(p) for p in caught.value.problems] == [
        "f.yaml:3 hosts.web01: duplicate key (first written at line 2)"
    ]


def test_syntax_error_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, "a: 1\nb: [1, 2\nc: 3\n")
    (problem,) = caught.value.problems
    assert str(problem) == (
        "f.yaml:2: YAML syntax error: '[' is never closed "
        "(expected ',' or ']', but got ':' at line 3)"
    )


def test_python_objects_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, "a: !!python/object/apply:os.system ['true']\n")
    assert "YAML" in caught.value.problems[0].message


def test_nested_aliases_are_walked_once(tmp_path: Path) -> None:
    # Ten references per level, eight levels: 10^8 paths if every alias were expanded.
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 9):
        refs = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"a{level}: &a{level} [{refs}]")
    (doc,) = _load(tmp_path, "\n".join(lines) + "\n")
    assert doc.line_of(("a8",)) == 9
    assert doc.line_of(("a8", 3, 2)) == 8  # inside an alias: the anchor's line


def test_impossible_dates_are_problems_not_crashes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, "approved_on: 2026-01-01\nexpires: 2026-13-01\n")
    assert [str(p) for p in caught.value.problems] == [
        "f.yaml:2 expires: '2026-13-01' is not a real date or time (month must be in 1..12)"
    ]
