"""The line-aware YAML loader: positions, duplicate keys, syntax errors, hostile input."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from mspauto.cli import cli
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


def test_aliases_point_at_their_anchor(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 4):
        refs = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"a{level}: &a{level} [{refs}]")
    (doc,) = _load(tmp_path, "\n".join(lines) + "\n")
    assert len(doc.data["a3"][9][9]) == 10
    assert doc.line_of(("a3",)) == 4
    assert doc.line_of(("a3", 3, 2)) == 3  # inside an alias: the anchor's line


def _problem_lines(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)
    return [str(p) for p in caught.value.problems]


def test_an_alias_bomb_is_refused(tmp_path: Path) -> None:
    # Ten references per level, nine levels: a billion values once expanded.
    lines = ["hosts:", "  a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 10):
        refs = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"  a{level}: &a{level} [{refs}]")
    assert _problem_lines(tmp_path, "\n".join(lines) + "\n") == [
        "f.yaml:6 hosts.a4: aliases expand this to more than 100,000 values; "
        "write it out with fewer nested aliases"
    ]


@pytest.mark.parametrize("loop", ["a: &x [*x]", "a: &x {b: [c, *x]}"])
def test_an_alias_inside_its_own_anchor_is_refused(tmp_path: Path, loop: str) -> None:
    (line,) = _problem_lines(tmp_path, "ok: 1\n" + loop + "\n")
    assert line.startswith("f.yaml:2 a")
    assert line.endswith(
        ": alias refers to the anchor it is inside (a loop without end); remove the alias"
    )


def test_deep_nesting_is_refused_before_it_recurses(tmp_path: Path) -> None:
    assert _problem_lines(tmp_path, "ok: 1\nvars:\n  x: " + "[" * 5000 + "]" * 5000) == [
        "f.yaml:3 vars.x: nested deeper than 64 levels; flatten it"
    ]
    (doc,) = _load(tmp_path, "[" * 60 + "]" * 60)
    assert str(doc.data) == "[" * 60 + "]" * 60


def test_nesting_deepened_through_aliases_is_refused(tmp_path: Path) -> None:
    text = "a: &a " + "[" * 40 + "]" * 40 + "\nb: " + "[" * 30 + "*a" + "]" * 30 + "\n"
    assert _problem_lines(tmp_path, text) == [
        "f.yaml:1 b: nested deeper than 64 levels; flatten it"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "a: 1\nb: x\x00y\n",
            "f.yaml:2: control character U+0000 is not allowed in YAML; remove it",
        ),
        (
            "a: 1\r\n\r\n# \x7f\n",
            "f.yaml:3: control character U+007F is not allowed in YAML; remove it",
        ),
        ("a: \ufffe\n", "f.yaml:1: character U+FFFE is not allowed in YAML; remove it"),
    ],
)
def test_characters_yaml_forbids_name_their_line(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "f.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    with pytest.raises(ConfigError) as caught:
        load_yaml_documents(path, "f.yaml")
    assert [str(p) for p in caught.value.problems] == [expected]


def test_impossible_dates_are_problems_not_crashes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, "approved_on: 2026-01-01\nexpires: 2026-13-01\n")
    assert [str(p) for p in caught.value.problems] == [
        "f.yaml:2 expires: '2026-13-01' is not a real date or time (month must be in 1..12)"
    ]


# Where a host is reached is read by the same loader; its spellings must not hide a
# machine that already belongs to another client.
_CLIENT = """client:
  name: {name}
  display_name: {name}
  timezone: Europe/London
  contract: base-contract
  platform: debian
  credential: admin
  credentials:
    admin:
      user: admin
      private_key: {{file: keys/{name}}}
hosts:
  {name}-web01:
    address: '{address}'
"""


@pytest.mark.parametrize("spelling", ["127.1", "2130706433", "0x7f.0.0.1", "0177.0.0.1"])
def test_one_address_spelled_differently_is_still_one_client(tmp_path: Path, spelling: str) -> None:
    project = tmp_path / "project"
    shutil.copytree(Path(__file__).parent.parent / "corpus" / "base", project)
    (project / "inventory" / "alpha.yaml").write_text(
        _CLIENT.format(name="alpha", address="127.0.0.1")
    )
    (project / "inventory" / "beta.yaml").write_text(_CLIENT.format(name="beta", address=spelling))

    result = CliRunner().invoke(cli, ["--project", str(project), "validate"])

    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("inventory/")]
    assert [e for e in errors if "warning:" not in e] == [
        "inventory/beta.yaml:13 hosts.beta-web01: address 127.0.0.1:22 is already host "
        "'alpha-web01' of client 'alpha' (inventory/alpha.yaml:13); a host belongs to one "
        "client only"
    ]
