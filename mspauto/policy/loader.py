"""Read every policy document under ``policies/`` (recursively, several per file allowed)."""

from __future__ import annotations

from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path

from mspauto.policy.registry import PolicyDocument, policy_kinds
from mspauto.problems import ConfigError, Location, Problem, display_path
from mspauto.validation import validate_document
from mspauto.yamlsource import YamlDocument, load_yaml_documents, yaml_files

__all__ = ["BUILTIN_PACKS", "LoadedPolicy", "load_policies"]

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


def load_policies(root: Path, policies_dir: Path) -> tuple[list[LoadedPolicy], list[Problem]]:
    """Validate every policy document; collect one problem per mistake."""
    if not policies_dir.is_dir():
        return [], [
            Problem(
                Location(str(display_path(root, policies_dir))),
                "",
                "policies folder not found; create it and add at least one 'kind: contract' policy",
            )
        ]
    own, own_problems = _load_files(root, yaml_files(policies_dir))
    defined = {p.policy.name for p in own if p.policy.kind == "rulepack"}
    shipped, shipped_problems = _load_files(
        BUILTIN_PACKS, yaml_files(BUILTIN_PACKS), prefix="mspauto:"
    )
    # A project's own pack replaces the shipped pack of the same name.
    loaded = [p for p in shipped if p.policy.name not in defined] + own
    return loaded, shipped_problems + own_problems


def _load_files(
    root: Path, files: list[Path], prefix: str = ""
) -> tuple[list[LoadedPolicy], list[Problem]]:
    loaded: list[LoadedPolicy] = []
    problems: list[Problem] = []
    for path in files:
        try:
            docs = load_yaml_documents(path, prefix + str(display_path(root, path)))
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        if not any(doc.data is not None for doc in docs):
            problems.append(
                Problem(
                    Location(prefix + str(display_path(root, path)), 1),
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
    return loaded, problems


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
