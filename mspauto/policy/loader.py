"""Read every policy document under ``policies/`` (recursively, several per file allowed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path

from mspauto.policy.registry import PolicyDocument, policy_kinds
from mspauto.problems import ConfigError, Location, Problem
from mspauto.projectfiles import ProjectTree, yaml_files
from mspauto.validation import validate_document
from mspauto.yamlsource import YamlDocument, load_yaml_documents

__all__ = ["BUILTIN_PACKS", "InvalidPolicy", "LoadedPolicies", "LoadedPolicy", "load_policies"]

BUILTIN_PACKS = Path(__file__).resolve().parent.parent / "baseline" / "packs"
"""Rule packs shipped with mspauto (``debian-cis``, ``windows-cis``)."""


@dataclass(frozen=True)
class LoadedPolicy:
    """A validated policy and the document it came from."""

    policy: PolicyDocument
    doc: YamlDocument

    @property
    def location(self) -> Location:
        """Where the policy starts."""
        return self.doc.location()


@dataclass(frozen=True)
class InvalidPolicy:
    """A policy document that was read but did not validate, known only by what it
    says it is: its ``kind:`` if that is a known kind, its ``name:`` if that is text."""

    kind: str | None
    name: str | None

    def may_define(self, kind: str, name: str) -> bool:
        """Whether this document may be the one defining ``kind`` ``name`` (one that
        says neither what nor which it is is taken for neither: it would otherwise
        hide every misspelled reference)."""
        if self.kind is None and self.name is None:
            return False
        return self.kind in (None, kind) and self.name in (None, name)


@dataclass(frozen=True)
class LoadedPolicies:
    """Every policy that validated, every problem, and the files and documents that
    could not be used."""

    policies: list[LoadedPolicy]
    problems: list[Problem]
    unread: list[str] = field(default_factory=list)
    """The project's policy files (or links, or folders) that could not be read at all:
    whatever they define is unknown, so a reference to it cannot be called wrong."""
    invalid: list[InvalidPolicy] = field(default_factory=list)
    """The project's documents that were read but did not validate."""

    def may_define(self, kind: str, name: str) -> bool:
        """Whether a file or document that could not be used may define ``kind``
        ``name``: a reference to it is then not unknown, only broken where it is
        defined, and that file's own problems say how."""
        return bool(self.unread) or any(doc.may_define(kind, name) for doc in self.invalid)


def load_policies(tree: ProjectTree, policies_dir: Path) -> LoadedPolicies:
    """Validate every policy document; collect one problem per mistake."""
    if not policies_dir.is_dir():
        return LoadedPolicies(
            [],
            [
                Problem(
                    Location(tree.show(policies_dir)),
                    "",
                    "policies folder not found; create it and add at least one "
                    "'kind: contract' policy",
                )
            ],
        )
    found = yaml_files(policies_dir, tree)
    own = _load_files(tree, found.files)
    defined = {p.policy.name for p in own.policies if p.policy.kind == "rulepack"}
    packs = ProjectTree.of(BUILTIN_PACKS)
    shipped = _load_files(packs, yaml_files(BUILTIN_PACKS, packs).files, prefix="mspauto:")
    # A project's own pack replaces the shipped pack of the same name.
    loaded = [p for p in shipped.policies if p.policy.name not in defined] + own.policies
    unread = [p.location.file for p in found.problems if p.severity == "error"] + own.unread
    return LoadedPolicies(
        loaded, shipped.problems + found.problems + own.problems, unread, own.invalid
    )


def _load_files(tree: ProjectTree, files: list[Path], prefix: str = "") -> LoadedPolicies:
    loaded: list[LoadedPolicy] = []
    problems: list[Problem] = []
    unread: list[str] = []
    invalid: list[InvalidPolicy] = []
    for path in files:
        shown = prefix + tree.show(path)
        try:
            docs = load_yaml_documents(path, shown)
        except ConfigError as exc:
            problems.extend(exc.problems)
            unread.append(shown)
            continue
        if not any(doc.data is not None for doc in docs):
            problems.append(
                Problem(
                    Location(shown, 1),
                    "",
                    "file is empty; a policy file holds one or more "
                    "documents, each starting with 'kind:'",
                )
            )
        for doc in docs:
            if doc.data is None:
                continue
            policy, doc_problems = _validate(doc)
            problems.extend(doc_problems)
            if policy is not None:
                loaded.append(LoadedPolicy(policy, doc))
            else:
                invalid.append(_claimed(doc))
    return LoadedPolicies(loaded, problems, unread, invalid)


def _claimed(doc: YamlDocument) -> InvalidPolicy:
    """What a document that did not validate says it is, as far as that can be trusted."""
    data = doc.data if isinstance(doc.data, dict) else {}
    kind, name = data.get("kind"), data.get("name")
    return InvalidPolicy(
        kind if isinstance(kind, str) and kind in policy_kinds() else None,
        name if isinstance(name, str) else None,
    )


def _validate(doc: YamlDocument) -> tuple[PolicyDocument | None, list[Problem]]:
    known = policy_kinds()
    kinds = ", ".join(sorted(known))
    if not isinstance(doc.data, dict):
        return None, [
            Problem(doc.location(), "", f"a policy is a mapping starting with 'kind:' ({kinds})")
        ]
    kind = doc.data.get("kind")
    if kind is None:
        return None, [Problem(doc.location(), "kind", f"required key is missing; one of {kinds}")]
    registered = known.get(kind) if isinstance(kind, str) else None
    if registered is None:
        close = get_close_matches(str(kind), list(known), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else f"; one of {kinds}"
        return None, [Problem(doc.location(("kind",)), "kind", f"unknown kind '{kind}'{hint}")]
    policy, problems = validate_document(registered.model, doc.data, doc)
    return policy, problems  # type: ignore[return-value]  # every kind's model has kind and name
