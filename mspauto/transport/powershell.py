"""Reading what a PowerShell probe prints: its one JSON line, its arrays, its errors.

The Windows probes (Windows Update, backups) each print one JSON document with a
``Probe`` key; these helpers are how every parser of theirs reads it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["as_list", "error_headline", "probe_document"]

_POSITION = re.compile(r"^At (line:\d+|.+:\d+) char:\d+$")


def probe_document(stdout: str) -> Mapping[str, Any] | None:
    """The probe's JSON line: the last line that is a JSON object with a ``Probe`` key
    (other lines, such as a profile's or a module's chatter, are skipped)."""
    for line in reversed(stdout.lstrip("\ufeff").splitlines()):
        text = line.strip().lstrip("\ufeff")
        if not text.startswith("{"):
            continue
        try:
            value = json.loads(text)
        except ValueError:
            continue
        if isinstance(value, dict) and "Probe" in value:
            return value
    return None


def as_list(value: object) -> list[Any]:
    """A JSON array as a list; one value alone (PowerShell unrolls a one-element
    array it pipes) as a list of one; null as empty."""
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def error_headline(stderr: str) -> str:
    """The first message line of a PowerShell error (not its position or "+" lines)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    messages = [line for line in lines if not (line.startswith("+") or _POSITION.match(line))]
    return (messages or lines or [""])[0][:200]
