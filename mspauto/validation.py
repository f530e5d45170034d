"""Turn pydantic validation errors into one-line problems with file, line and key path."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from mspauto.problems import Problem, format_key_path
from mspauto.yamlsource import KeyPath, YamlDocument

__all__ = ["problems_from_validation_error", "validate_document"]

ModelT = typing.TypeVar("ModelT", bound=BaseModel)


def validate_document(
    model: type[ModelT], data: Any, doc: YamlDocument, base: KeyPath = ()
) -> tuple[ModelT | None, list[Problem]]:
    """Validate ``data`` (found at ``base`` inside ``doc``) as ``model``."""
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        return None, problems_from_validation_error(exc, doc, model, base)


def problems_from_validation_error(
    exc: ValidationError, doc: YamlDocument, model: type[BaseModel], base: KeyPath = ()
) -> list[Problem]:
    """One :class:`Problem` per pydantic error, positioned in ``doc``."""
    problems = []
    for error in exc.errors():
        inner = _clean_loc(error)
        loc: KeyPath = (*base, *inner)
        problems.append(
            Problem(doc.location(loc), format_key_path(loc), _message(error, model, inner))
        )
    return problems


def _clean_loc(error: ErrorDetails) -> KeyPath:
    """The key path as the user wrote it.

    Drops pydantic's markers (``[key]`` for a bad mapping key) and appends the entry an
    :func:`~mspauto.fields.item_error` names.
    """
    loc = tuple(part for part in error["loc"] if part != "[key]")
    at = error.get("ctx", {}).get("at") if error["type"] == "item_error" else None
    if at is None:
        return loc
    return (*loc, *at) if isinstance(at, tuple | list) else (*loc, at)


def _message(error: ErrorDetails, model: type[BaseModel], loc: KeyPath) -> str:
    kind = error["type"]
    ctx = error.get("ctx", {})
    got = _show(error.get("input"))
    if kind == "item_error":
        return str(ctx["reason"])
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        return _unknown_key_message(model, loc)
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')} (got {got})"
    if kind in {"value_error", "assertion_error"}:
        text = str(ctx.get("error", error["msg"]))
        return text.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind in {"int_parsing", "int_type", "int_from_float"}:
        return f"must be a whole number (got {got})"
    if kind in {"float_parsing", "float_type"}:
        return f"must be a number (got {got})"
    if kind in {"bool_parsing", "bool_type"}:
        return f"must be true or false (got {got})"
    if kind == "string_type":
        return f"must be text (got {got})"
    if kind in {"dict_type", "model_type", "model_attributes_type", "mapping_type"}:
        return f"must be a mapping of keys to values (got {got})"
    if kind in {"list_type", "tuple_type", "set_type"}:
        return f"must be a list (got {got})"
    if kind in {"date_parsing", "date_type", "date_from_datetime_parsing"}:
        return f"must be a date like 2026-12-31 (got {got})"
    if kind in {"time_parsing", "time_type"}:
        return f"must be a time of day like 02:30 (got {got})"
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')} (got {got})"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le')} (got {got})"
    if kind == "greater_than":
        return f"must be more than {ctx.get('gt')} (got {got})"
    if kind == "less_than":
        return f"must be less than {ctx.get('lt')} (got {got})"
    if kind == "too_short":
        return "must not be empty"
    if kind == "string_too_short":
        return "must not be empty"
    msg = error["msg"]
    return msg[:1].lower() + msg[1:]


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _unknown_key_message(model: type[BaseModel], loc: KeyPath) -> str:
    key = str(loc[-1]) if loc else ""
    allowed = _allowed_keys(model, loc[:-1])
    if not allowed:
        return "unknown key"
    close = difflib.get_close_matches(key, allowed, n=1)
    if close:
        return f"unknown key (did you mean '{close[0]}'?)"
    return "unknown key; allowed here: " + ", ".join(sorted(allowed))


def _allowed_keys(model: type[BaseModel], loc: KeyPath) -> list[str]:
    """Field names of the model found at ``loc`` under ``model`` (empty if not a model)."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return []
            current = field.annotation
        elif typing.get_origin(current) is dict:
            current = typing.get_args(current)[1]
        elif typing.get_origin(current) in {list, tuple, set, frozenset}:
            current = typing.get_args(current)[0]
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated[...]`` and ``X | None`` down to ``X``."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in {typing.Union, types.UnionType}:
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation
