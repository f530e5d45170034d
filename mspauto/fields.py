"""Field types shared by the inventory and policy models, each with a clear error message."""

from __future__ import annotations

import difflib
import ipaddress
import re
import socket
import zoneinfo
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "Address",
    "CronExpression",
    "Duration",
    "Name",
    "Port",
    "ScheduleZone",
    "SecretRef",
    "StrictModel",
    "TimeOfDay",
    "TimeZoneName",
    "Vars",
    "WholeNumber",
    "format_duration",
    "item_error",
    "parse_duration",
    "secret_in",
    "secret_variable",
]


def item_error(
    reason: str, at: str | int | tuple[str | int, ...] | None = None
) -> PydanticCustomError:
    """A validation error about one entry of a mapping or list, or one key of a model.

    Validators of a whole mapping, list or model raise this to name the entry at fault:
    :mod:`mspauto.validation` appends ``at`` to the key path, so the error points at
    that entry's own line.
    """
    return PydanticCustomError("item_error", "{reason}", {"reason": reason, "at": at})


class StrictModel(BaseModel):
    """Base of every model read from YAML: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _check_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            f"'{value}' is not a valid name: start with a letter or digit, then use only "
            "letters, digits, '.', '_' or '-' (at most 128 characters)"
        )
    return value


Name = Annotated[
    str,
    AfterValidator(_check_name),
    WithJsonSchema({"type": "string", "pattern": _NAME.pattern}),
]
"""Name of a client, site, group, host, credential, ring or policy."""


def _refuse_bool(value: Any) -> Any:
    # pydantic reads true as 1 and false as 0: a YAML slip, never a number meant.
    if isinstance(value, bool):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


WholeNumber = Annotated[int, BeforeValidator(_refuse_bool)]
"""An integer written as one: ``true`` and ``false`` are not 1 and 0."""


def _check_port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError(f"must be 1..65535 (got {value})")
    return value


Port = Annotated[
    WholeNumber,
    AfterValidator(_check_port),
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": 65535}),
]


_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
    r"(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*$"
)


# What inet_aton reads as IPv4: one to four parts, each decimal, octal or hex.
_IPV4_SHORTHAND = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}$", re.IGNORECASE)


def _ip_literal(text: str) -> str | None:
    """``text`` as a canonical IP address, or None when it is not one.

    The resolver reads ``127.1``, ``2130706433`` and ``0x7f.0.0.1`` as 127.0.0.1, and
    ``::ffff:127.0.0.1`` is that address too, so they become the dotted quad: one
    machine, one spelling.
    """
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        # ::ffff:127.0.0.1 is the IPv4 host 127.0.0.1 reached over an IPv6 socket.
        mapped = getattr(address, "ipv4_mapped", None)
        return str(mapped or address)
    if not _IPV4_SHORTHAND.match(text):
        return None
    try:
        return str(ipaddress.IPv4Address(socket.inet_aton(text)))
    except OSError:
        return None


def _check_address(value: str) -> str:
    """An IP address (canonical form) or a DNS name (lowercase, no trailing dot)."""
    text = value.strip()
    literal = _ip_literal(text)
    if literal:
        return literal
    name = text.rstrip(".").lower()
    if not _HOSTNAME.match(name):
        raise ValueError(f"'{value}' is not an IP address or a DNS host name")
    return name


Address = Annotated[
    str,
    AfterValidator(_check_address),
    WithJsonSchema({"type": "string", "description": "IP address or DNS name"}),
]
"""Where a host is reached, normalised so the same machine always compares equal."""


def _check_time_of_day(value: Any) -> Any:
    # YAML 1.1 reads an unquoted 22:00 as the number 1320 (base 60): refuse, don't guess.
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(
            "write times of day in quotes, e.g. '22:00' (unquoted, YAML reads "
            "22:00 as the number 1320)"
        )
    return value


TimeOfDay = Annotated[
    time,
    BeforeValidator(_check_time_of_day),
    WithJsonSchema({"type": "string", "pattern": r"^\d{2}:\d{2}$", "examples": ["02:00"]}),
]


def _check_zone(value: str) -> str:
    if value not in _known_zones():
        close = [z for z in _known_zones() if z.lower() == value.lower()] or (
            difflib.get_close_matches(value, sorted(_known_zones()), n=1, cutoff=0.8)
        )
        hint = f" (did you mean '{close[0]}'?)" if close else " such as Europe/Berlin"
        raise ValueError(f"'{value}' is not an IANA time zone{hint}")
    return value


_zones: set[str] = set()


def _known_zones() -> set[str]:
    if not _zones:
        _zones.update(zoneinfo.available_timezones())
    return _zones


TimeZoneName = Annotated[
    str,
    AfterValidator(_check_zone),
    WithJsonSchema({"type": "string", "description": "IANA time zone, e.g. America/New_York"}),
]


def _check_schedule_zone(value: str) -> str:
    return value if value == "client" else _check_zone(value)


ScheduleZone = Annotated[
    str,
    AfterValidator(_check_schedule_zone),
    WithJsonSchema(
        {
            "type": "string",
            "description": "IANA time zone, or 'client' for each targeted client's own zone",
        }
    ),
]

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> timedelta:
    """``"90m"``, ``"24h"``, ``"14d"``, ``"2w"`` -> :class:`timedelta`."""
    if isinstance(value, timedelta):
        return value
    match = _DURATION.match(value) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"must be a duration like 30m, 24h, 14d or 2w (got {value!r})")
    try:
        return timedelta(seconds=int(match[1]) * _UNIT_SECONDS[match[2]])
    except OverflowError:
        raise ValueError(f"{value!r} is too long a duration") from None


def format_duration(value: timedelta) -> str:
    """Inverse of :func:`parse_duration`: the largest exact unit among d, h, m, s."""
    seconds = int(value.total_seconds())
    for unit in ("d", "h", "m"):
        if seconds and seconds % _UNIT_SECONDS[unit] == 0:
            return f"{seconds // _UNIT_SECONDS[unit]}{unit}"
    return f"{seconds}s"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^\d+[smhdw]$", "examples": ["24h", "14d"]}),
]


_CRON_FIELDS = "(minute hour day month weekday), e.g. '0 2 * * sat'"


def _check_cron(value: str) -> str:
    from croniter import CroniterBadDateError, croniter

    if len(value.split()) != 5:
        raise ValueError(f"'{value}' must have 5 fields {_CRON_FIELDS}")
    if not croniter.is_valid(value):
        raise ValueError(f"'{value}' is not a valid 5-field cron expression {_CRON_FIELDS}")
    try:
        # A day that no month has (30 February, 31 April) is valid cron that never runs.
        croniter(value, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterBadDateError:
        raise ValueError(
            f"'{value}' never fires (no month has that day); pick a day that exists"
        ) from None
    return value


CronExpression = Annotated[
    str,
    AfterValidator(_check_cron),
    WithJsonSchema({"type": "string", "description": "5-field cron, e.g. '0 2 * * sat'"}),
]

_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Variable names that hold secrets (Ansible's ansible_password, ansible_ssh_pass,
# ansible_become_pass, ansible_sudo_pass, ansible_enable_pass, and anything *_password,
# *_token, ...): a value there would be a secret in plain text.
_SECRET_VAR = re.compile(
    r"(^|_)(pass|password|passwd|pwd|passphrase|secret|token|api_?key|"
    r"private_?key(_data|_content|_pem)?|secret_?key|access_?key|secret_access_key)$",
    re.IGNORECASE,
)
# A URL with a password in it (rest:https://user:pw@host/, postgresql://u:pw@db/).
_URL_WITH_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.IGNORECASE)


def _plain(value: str) -> bool:
    """Text that is a value, not a Jinja reference to one (``{{ vault_db_password }}``)."""
    return bool(value.strip()) and not value.strip().startswith("{{")


def secret_in(name: str, value: Any) -> tuple[str | int, ...] | None:
    """Where a secret is written in plain text inside the variable ``name``, as a key
    path below it (``()`` for the value itself), or None.

    Looks at the name (``db_password``), at nested mappings and lists (``db: {password:
    ...}``), and at URLs carrying a password. A Jinja reference is not a secret itself;
    neither are empty values, booleans or null.
    """
    if isinstance(value, dict):
        for key, item in value.items():
            found = secret_in(str(key), item)
            if found is not None:
                return (str(key), *found)
        return None
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = secret_in(name, item)
            if found is not None:
                return (index, *found)
        return None
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        if not _plain(value):
            return None
        return () if _SECRET_VAR.search(name) or _URL_WITH_PASSWORD.search(value) else None
    return () if _SECRET_VAR.search(name) else None


def secret_variable(name: str, value: Any) -> bool:
    """True when the variable ``name`` holds a secret in plain text (see :func:`secret_in`)."""
    return secret_in(name, value) is not None


def _check_vars(value: dict[str, Any]) -> dict[str, Any]:
    for name, item in value.items():
        if not _VAR_NAME.match(name):
            raise item_error(
                f"'{name}' is not a valid variable name (letters, digits and '_', "
                "not starting with a digit)",
                at=name,
            )
        found = secret_in(name, item)
        if found is not None:
            leaf: Any = item
            for part in found:
                leaf = leaf[part]
            shown = ".".join(str(part) for part in (name, *found))
            what = (
                "holds a URL with a password in it"
                if isinstance(leaf, str) and _URL_WITH_PASSWORD.search(leaf)
                else "looks like a secret written in plain text"
            )
            raise item_error(
                f"'{shown}' {what}; define it as a client credential referenced by env:, "
                "file:, vault: or keyring:",
                at=(name, *found),
            )
    return value


Vars = Annotated[dict[str, Any], AfterValidator(_check_vars)]
"""Free-form variables passed to playbooks; names are Ansible-valid, no plain secrets."""


class SecretRef(StrictModel):
    """Where a secret lives. The secret itself is never written in our files.

    Exactly one of: ``env`` (an environment variable of the control node), ``file``
    (a file readable only by the control node's user), ``vault`` (an ansible-vault
    encrypted YAML file, optionally with ``vault_key`` naming the key inside it), or
    ``keyring`` (``service/username`` in the OS keyring).
    """

    env: str | None = None
    file: Path | None = None
    vault: Path | None = None
    vault_key: str | None = None
    keyring: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _refuse_plain_secret(cls, data: Any) -> Any:
        # Anything but a mapping may be the secret itself: never echo it back.
        if not isinstance(data, dict):
            raise ValueError(
                "secrets are never written in inventory or policy files; reference one "
                "instead: {env: VAR}, {file: PATH}, {vault: FILE} or {keyring: SERVICE/USER}"
            )
        return data

    @model_validator(mode="after")
    def _exactly_one_source(self) -> SecretRef:
        sources = [s for s in ("env", "file", "vault", "keyring") if getattr(self, s)]
        if len(sources) != 1:
            raise ValueError(
                "give exactly one of env, file, vault or keyring"
                + (f" (got {', '.join(sources)})" if sources else "")
            )
        if self.vault_key and not self.vault:
            raise ValueError("vault_key only goes with vault")
        if self.keyring and "/" not in self.keyring:
            raise ValueError("keyring must be SERVICE/USERNAME")
        return self

    def describe(self) -> str:
        """A safe, human-readable description (never the secret itself)."""
        if self.env:
            return f"env:{self.env}"
        if self.file:
            return f"file:{self.file}"
        if self.vault:
            return f"vault:{self.vault}" + (f"#{self.vault_key}" if self.vault_key else "")
        return f"keyring:{self.keyring}"
