"""The policy-kind registry: each kind of policy registers itself here.

A kind brings its model (the YAML it accepts, and so its JSON Schema), its cross-checks
for ``validate`` (references that need more than one document to see), and its one-line
summary for ``policy list``. Shared code asks the registry and never branches on kinds,
so a new kind is one module that calls :func:`register`, named in :data:`BUILTIN_KIND_MODULES`
or published by another package under the ``mspauto.policy_kinds`` entry point.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Annotated, Any, Protocol, Union

from pydantic import BaseModel, Field, TypeAdapter

if TYPE_CHECKING:
    from mspauto.inventory.resolve import Inventory
    from mspauto.policy.loader import LoadedPolicy
    from mspauto.problems import Problem

__all__ = [
    "BUILTIN_KIND_MODULES",
    "CheckContext",
    "CrossCheck",
    "PolicyDocument",
    "PolicyKind",
    "any_policy_adapter",
    "policy_kinds",
    "register",
]

BUILTIN_KIND_MODULES = ("mspauto.policy.kinds", "mspauto.baseline.policy")
"""Modules that register mspauto's own kinds when imported."""
ENTRY_POINT_GROUP = "mspauto.policy_kinds"


class PolicyDocument(Protocol):
    """What every policy model has: its ``kind:`` and its ``name:``."""

    @property
    def kind(self) -> str:
        """The kind it was loaded as."""
        ...

    @property
    def name(self) -> str:
        """Its name (unique within its kind)."""
        ...


@dataclass(frozen=True)
class CheckContext:
    """What a kind's cross-checks see: every loaded policy, the inventory, today, the
    clients whose files did not load (their hosts are missing from the inventory, so a
    check about hosts must not blame the policy for them) and what broken policy files
    may define."""

    policies: Sequence[LoadedPolicy]
    inventory: Inventory
    today: date
    broken_clients: frozenset[str] = frozenset()
    may_define: Callable[[str, str], bool] = lambda _kind, _name: False
    """Whether a policy file that could not be read or did not validate may define
    ``kind`` ``name``: a reference to it is then not unknown (that file's own problems
    say what to fix)."""


CrossCheck = Callable[[CheckContext], Iterable["Problem"]]
"""``context -> problems`` for ``validate``."""


def _no_checks(_context: CheckContext) -> list[Any]:
    return []


@dataclass(frozen=True)
class PolicyKind:
    """One kind of policy document and what shared code needs to know about it."""

    name: str
    """The ``kind:`` value."""
    model: type[BaseModel]
    describe: Callable[[Any], str]
    """One line for ``policy list`` (called with an instance of ``model``)."""
    cross_checks: CrossCheck = _no_checks
    help: str = ""


_KINDS: dict[str, PolicyKind] = {}
_LOADED = threading.Event()
_LOCK = threading.Lock()


def register(kind: PolicyKind) -> None:
    """Make ``kind`` known (a kind module calls this when imported)."""
    existing = _KINDS.get(kind.name)
    if existing is not None and existing.model is not kind.model:
        raise ValueError(f"two policy kinds are named '{kind.name}'")
    _KINDS[kind.name] = kind


def policy_kinds() -> Mapping[str, PolicyKind]:
    """Every registered kind, mspauto's own first (imported on first use)."""
    with _LOCK:
        if not _LOADED.is_set():
            for module in BUILTIN_KIND_MODULES:
                importlib.import_module(module)
            from importlib.metadata import entry_points

            for entry in entry_points(group=ENTRY_POINT_GROUP):
                entry.load()
            _LOADED.set()
    return dict(_KINDS)


def any_policy_adapter() -> TypeAdapter[Any]:
    """A validator of any policy document (kinds told apart by ``kind:``), for the
    JSON Schema editors use."""
    models = tuple(kind.model for kind in policy_kinds().values())
    union: Any = Union[models]  # noqa: UP007 - built from a runtime tuple of models
    return TypeAdapter(Annotated[union, Field(discriminator="kind")])
