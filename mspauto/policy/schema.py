"""JSON Schema of policy and inventory files (for editors and external validators)."""

from __future__ import annotations

from typing import Any

from mspauto.inventory.models import ClientFile
from mspauto.policy.registry import any_policy_adapter, policy_kinds

__all__ = ["inventory_schema", "policy_schema"]

_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def policy_schema(kind: str | None = None) -> dict[str, Any]:
    """Schema of any policy document, or of one ``kind``."""
    if kind is None:
        schema = any_policy_adapter().json_schema(mode="validation")
        title = "mspauto policy"
    else:
        schema = policy_kinds()[kind].model.model_json_schema(mode="validation")
        title = f"mspauto {kind} policy"
    return {**schema, "$schema": _DIALECT, "title": title}


def inventory_schema() -> dict[str, Any]:
    """Schema of one inventory client file."""
    schema = ClientFile.model_json_schema(mode="validation")
    return {**schema, "$schema": _DIALECT, "title": "mspauto inventory client file"}
