"""A ticket per SLA breach in the MSP's PSA: ConnectWise Manage, Autotask or HaloPSA.

What a tech expects: one ticket per problem. The first failing run of a breach opens a
ticket; each later failing run of the same breach adds a note to it; a breach that
goes on after a tech closed its ticket opens a new one (and so does a new breach).

A ticket's row is stamped before the PSA is asked, and every ticket carries a tag in
its summary (``[mspauto 1a2b3c4d5e-1]``): when an answer is lost (a timeout after the
PSA made the ticket), the retry looks for the tag before it asks again, so a retry
never makes a second ticket. Calls that fail are retried with growing pauses and
logged; nothing here raises into the scheduler.
"""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError

from mspauto.evidence.schema import psa_tickets
from mspauto.fields import SecretRef
from mspauto.policy.models import AutotaskPsa, ConnectWisePsa, HaloPsa
from mspauto.schedule.state import ATTEMPTS, claim, failure_text, retry_at, stamp
from mspauto.secrets import resolve_secret

__all__ = ["PsaError", "PsaRoute", "TicketDesk", "psa_client"]

_SUMMARY = 100
"""ConnectWise's longest summary; the others take more, mspauto never needs it."""


class PsaError(Exception):
    """The PSA did not do what was asked; one line saying why."""


class PsaClient(Protocol):
    def find(self, company: str, tag: str) -> str | None:
        """The ticket whose summary holds ``tag``, if the PSA has one."""
        ...

    def create(self, company: str, summary: str, text: str) -> str:
        """A new ticket; its id."""
        ...

    def closed(self, ticket: str) -> bool: ...

    def note(self, ticket: str, text: str) -> None: ...


@dataclass(frozen=True)
class PsaRoute:
    """Where a client's tickets go."""

    system: str
    company: str
    """The PSA's id of the client's company."""
    connect: Callable[[], PsaClient]
    """The API client (secrets are resolved here, when a call is due)."""


@dataclass
class TicketDesk:
    """Opens, notes and reopens the tickets of SLA breaches."""

    engine: Engine
    route: Callable[[str], PsaRoute | None]
    """mspauto client -> where its tickets go, or None (no PSA takes them)."""
    log: Callable[..., object] = field(default=lambda event, **fields: None)

    def breach(
        self, key: str, client: str, summary: str, text: str, tick: str, now: datetime
    ) -> None:
        """A failing run ``tick`` of the breach ``key``: a ticket, or a note on it."""
        route = self.route(client)
        if route is None:
            return  # no PSA takes this client's tickets
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    psa_tickets.insert().values(
                        breach=key,
                        client=client,
                        system=route.system,
                        generation=1,
                        ticket=None,
                        summary=summary,
                        pending_note=text,
                        pending_tick=tick,
                        last_tick=None,
                        attempts=0,
                        next_try=stamp(now),
                        last_error="",
                        updated_at=stamp(now),
                    )
                )
        except IntegrityError:  # the breach has a row: a note, unless this run had one
            with self.engine.begin() as conn:
                conn.execute(
                    update(psa_tickets)
                    .where(
                        psa_tickets.c.breach == key,
                        (psa_tickets.c.last_tick.is_(None)) | (psa_tickets.c.last_tick != tick),
                    )
                    # a new failing run is a new chance, even after calls gave up
                    .values(pending_note=text, pending_tick=tick, next_try=stamp(now), attempts=0)
                )

    def work(self, now: datetime) -> None:
        """Do what is due: open tickets, add notes (each retried when it fails)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(psa_tickets).where(
                    psa_tickets.c.pending_tick.is_not(None),
                    psa_tickets.c.next_try <= stamp(now),
                    psa_tickets.c.attempts < ATTEMPTS,
                )
            ).all()
        for row in rows:
            taken = claim(
                self.engine,
                psa_tickets,
                psa_tickets.c.breach == row.breach,
                psa_tickets.c.next_try == row.next_try,
                psa_tickets.c.attempts == row.attempts,
                now=now,
            )
            if taken:
                self._work(row._mapping, now)

    def _work(self, row: Any, now: datetime) -> None:
        route = self.route(row["client"])
        if route is None:
            return
        breach, ticket, generation = row["breach"], row["ticket"], row["generation"]
        try:
            psa, company = route.connect(), route.company
            if ticket is not None and psa.closed(ticket):
                # Closed by a tech while the breach goes on: a new ticket, a new tag.
                ticket, generation = None, generation + 1
            opened = ticket is None
            if opened:
                ticket = self._open(psa, company, row, generation)
            else:
                psa.note(ticket, row["pending_note"])
        except Exception as exc:  # a PSA hiccup is retried, never raised
            self._failed(row, now, exc)
            return
        self._set(
            breach,
            ticket=ticket,
            generation=generation,
            last_tick=row["pending_tick"],
            pending_note=None,
            pending_tick=None,
            attempts=0,
            last_error="",
            updated_at=stamp(now),
        )
        event = "psa.ticket_opened" if opened else "psa.ticket_noted"
        self.log(event, breach=breach, ticket=ticket, generation=generation)

    def _open(self, psa: PsaClient, company: str, row: Any, generation: int) -> str:
        tag = _tag(row["breach"], generation)
        # Stamped before the call: a lost answer must not become a second ticket.
        self._set(row["breach"], generation=generation, ticket=None)
        found = psa.find(company, tag)
        if found is not None:
            return found
        room = _SUMMARY - len(tag) - 1
        summary = (
            row["summary"] if len(row["summary"]) <= room else row["summary"][: room - 1] + "…"
        )
        return psa.create(company, f"{summary} {tag}", row["pending_note"])

    def _failed(self, row: Any, now: datetime, exc: Exception) -> None:
        attempts = row["attempts"] + 1
        error = failure_text(exc, PsaError)[:500]
        retry = retry_at(attempts, now)
        self._set(
            row["breach"],
            attempts=attempts,
            next_try=stamp(retry or now),
            last_error=error,
            updated_at=stamp(now),
        )
        self.log(
            "psa.failed",
            breach=row["breach"],
            attempt=attempts,
            error=error,
            retry=None if retry is None else stamp(retry),
        )

    def _set(self, breach: str, **values: object) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(psa_tickets).where(psa_tickets.c.breach == breach).values(**values))


def _tag(breach: str, generation: int) -> str:
    return f"[mspauto {hashlib.sha256(breach.encode()).hexdigest()[:10]}-{generation}]"


# --- the three PSAs, as their documented REST APIs -----------------------------------


def psa_client(config: ConnectWisePsa | AutotaskPsa | HaloPsa, project_root: Path) -> PsaClient:
    """The client for a notification policy's ``psa:`` (secrets resolved now)."""

    def secret(ref: SecretRef) -> str:
        return resolve_secret(ref, project_root)

    if isinstance(config, ConnectWisePsa):
        return ConnectWise(config, secret(config.private_key))
    if isinstance(config, AutotaskPsa):
        return Autotask(config, secret(config.integration_code), secret(config.secret))
    return Halo(config, secret(config.client_secret))


def _call(
    method: str,
    url: str,
    headers: dict[str, str],
    body: Any = None,
    *,
    timeout: float,
    form: dict[str, str] | None = None,
) -> Any:
    """One API call; its JSON answer. Any failure is one :class:`PsaError` line."""
    if form is not None:
        data: bytes | None = urllib.parse.urlencode(form).encode()
        kind = "application/x-www-form-urlencoded"
    else:
        data = None if body is None else json.dumps(body).encode()
        kind = "application/json"
    request = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Content-Type": kind, "Accept": "application/json", **headers},
    )
    where = urllib.parse.urlsplit(url).path
    try:
        # Only http(s) URLs pass validation: urlopen never reads a file: URL here.
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            raw = answer.read(1 << 20)
    except urllib.error.HTTPError as exc:
        raise PsaError(f"{method} {where}: {exc.code} {exc.reason}") from None
    except (OSError, ValueError) as exc:
        raise PsaError(f"{method} {where}: {exc}") from None
    try:
        return json.loads(raw) if raw.strip() else None
    except ValueError:
        raise PsaError(f"{method} {where}: the answer is not JSON") from None


class ConnectWise:
    def __init__(self, config: ConnectWisePsa, private_key: str) -> None:
        self.config = config
        login = f"{config.company}+{config.public_key}:{private_key}"
        self.headers = {
            "Authorization": "Basic " + base64.b64encode(login.encode()).decode(),
            "clientId": config.client_id,
        }

    def _url(self, path: str, **query: str) -> str:
        base = self.config.url.rstrip("/")
        return f"{base}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")

    def find(self, company: str, tag: str) -> str | None:
        # The condition language quotes with double quotes; the tag holds none.
        if '"' in company or "\\" in company:
            raise PsaError(f"company identifier {company!r} cannot be searched for")
        conditions = f'summary contains "{tag}" and company/identifier = "{company}"'
        found = _call(
            "GET",
            self._url("/service/tickets", conditions=conditions),
            self.headers,
            timeout=self.config.timeout,
        )
        return str(found[0]["id"]) if found else None

    def create(self, company: str, summary: str, text: str) -> str:
        made = _call(
            "POST",
            self._url("/service/tickets"),
            self.headers,
            {
                "summary": summary,
                "company": {"identifier": company},
                "board": {"name": self.config.board},
                "initialDescription": text,
            },
            timeout=self.config.timeout,
        )
        return str(made["id"])

    def closed(self, ticket: str) -> bool:
        got = _call(
            "GET",
            self._url(f"/service/tickets/{int(ticket)}"),
            self.headers,
            timeout=self.config.timeout,
        )
        return bool(got.get("closedFlag"))

    def note(self, ticket: str, text: str) -> None:
        _call(
            "POST",
            self._url(f"/service/tickets/{int(ticket)}/notes"),
            self.headers,
            {"text": text, "detailDescriptionFlag": True},
            timeout=self.config.timeout,
        )


_AUTOTASK_NEW, _AUTOTASK_COMPLETE = 1, 5
"""Autotask's built-in ticket statuses: New, Complete."""


class Autotask:
    def __init__(self, config: AutotaskPsa, integration_code: str, secret: str) -> None:
        self.config = config
        self.headers = {
            "ApiIntegrationCode": integration_code,
            "UserName": config.username,
            "Secret": secret,
        }

    def _url(self, path: str) -> str:
        return self.config.url.rstrip("/") + path

    def find(self, company: str, tag: str) -> str | None:
        query = {
            "filter": [
                {"op": "contains", "field": "title", "value": tag},
                {"op": "eq", "field": "companyID", "value": int(company)},
            ]
        }
        found = _call(
            "POST", self._url("/Tickets/query"), self.headers, query, timeout=self.config.timeout
        )
        items = (found or {}).get("items") or []
        return str(items[0]["id"]) if items else None

    def create(self, company: str, summary: str, text: str) -> str:
        ticket: dict[str, Any] = {
            "companyID": int(company),
            "title": summary,
            "description": text,
            "status": _AUTOTASK_NEW,
            "priority": self.config.priority,
        }
        if self.config.queue_id is not None:
            ticket["queueID"] = self.config.queue_id
        made = _call(
            "POST", self._url("/Tickets"), self.headers, ticket, timeout=self.config.timeout
        )
        return str(made["itemId"])

    def closed(self, ticket: str) -> bool:
        got = _call(
            "GET", self._url(f"/Tickets/{int(ticket)}"), self.headers, timeout=self.config.timeout
        )
        return int(got["item"]["status"]) == _AUTOTASK_COMPLETE

    def note(self, ticket: str, text: str) -> None:
        _call(
            "POST",
            self._url(f"/Tickets/{int(ticket)}/Notes"),
            self.headers,
            {"title": "mspauto", "description": text, "noteType": 1, "publish": 1},
            timeout=self.config.timeout,
        )


class Halo:
    def __init__(self, config: HaloPsa, client_secret: str) -> None:
        self.config = config
        self.client_secret = client_secret
        self._token: str | None = None

    def _headers(self) -> dict[str, str]:
        if self._token is None:
            got = _call(
                "POST",
                self.config.auth_url,
                {},
                form={
                    "grant_type": "client_credentials",
                    "client_id": self.config.client_id,
                    "client_secret": self.client_secret,
                    "scope": "all",
                },
                timeout=self.config.timeout,
            )
            self._token = str(got["access_token"])
        return {"Authorization": f"Bearer {self._token}"}

    def _url(self, path: str, **query: str) -> str:
        base = self.config.url.rstrip("/")
        return f"{base}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")

    def find(self, company: str, tag: str) -> str | None:
        found = _call(
            "GET",
            self._url("/api/Tickets", search=tag, client_id=company),
            self._headers(),
            timeout=self.config.timeout,
        )
        tickets = [t for t in (found or {}).get("tickets", []) if tag in str(t.get("summary"))]
        return str(tickets[0]["id"]) if tickets else None

    def create(self, company: str, summary: str, text: str) -> str:
        ticket: dict[str, Any] = {"summary": summary, "details": text, "client_id": int(company)}
        if self.config.ticket_type_id is not None:
            ticket["tickettype_id"] = self.config.ticket_type_id
        made = _call(
            "POST",
            self._url("/api/Tickets"),
            self._headers(),
            [ticket],
            timeout=self.config.timeout,
        )
        first = made[0] if isinstance(made, list) else made
        return str(first["id"])

    def closed(self, ticket: str) -> bool:
        got = _call(
            "GET",
            self._url(f"/api/Tickets/{int(ticket)}"),
            self._headers(),
            timeout=self.config.timeout,
        )
        return int(got.get("status_id", 0)) == _HALO_CLOSED

    def note(self, ticket: str, text: str) -> None:
        _call(
            "POST",
            self._url("/api/Actions"),
            self._headers(),
            [{"ticket_id": int(ticket), "note": text, "outcome": "mspauto"}],
            timeout=self.config.timeout,
        )


_HALO_CLOSED = 9
"""HaloPSA's built-in Closed status."""
