"""PSA tickets on SLA breaches (issue 13), against local receivers that check each
API's request shapes and auth (see psa_receivers.py for what they do and do not
prove): one ticket per breach, a note per later failing run, a new ticket when a tech
closed the old one, and no second ticket when an answer was lost to a timeout."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from psa_receivers import AutotaskHandler, ConnectWiseHandler, HaloHandler, Psa, serve
from pydantic import TypeAdapter

from mspauto.evidence.store import EvidenceStore
from mspauto.policy.models import PsaChannel
from mspauto.schedule.psa import PsaRoute, TicketDesk, psa_client

NOW = datetime(2026, 12, 3, 10, tzinfo=UTC)
BREACH = "sla-breached:acme/nightly/backup@2026-12-01T09:00Z"


def config(system: str, base: str, **changes: Any) -> Any:
    every: dict[str, dict[str, Any]] = {
        "connectwise": {
            "url": f"{base}{ConnectWiseHandler.BASE}",
            "companies": {"acme": "AcmeCorp"},
            "company": "msp",
            "public_key": "PUBKEY",
            "private_key": {"env": "TEST_CW_PRIVATE"},
            "client_id": ConnectWiseHandler.CLIENT_ID,
            "board": "Managed Services",
        },
        "autotask": {
            "url": f"{base}{AutotaskHandler.BASE}",
            "companies": {"acme": "29683"},
            "integration_code": {"env": "TEST_AT_CODE"},
            "username": "api@msp.example",
            "secret": {"env": "TEST_AT_SECRET"},
            "queue_id": 8,
        },
        "halopsa": {
            "url": base,
            "companies": {"acme": "12"},
            "auth_url": f"{base}/auth/token",
            "client_id": "mspauto-app",
            "client_secret": {"env": "TEST_HALO_SECRET"},
        },
    }
    settings = every[system]
    return TypeAdapter(PsaChannel).validate_python(
        {"system": system, "timeout": 2, **settings, **changes}
    )


HANDLERS = {"connectwise": ConnectWiseHandler, "autotask": AutotaskHandler, "halopsa": HaloHandler}


@pytest.fixture(params=sorted(HANDLERS))
def psa(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[tuple[TicketDesk, Psa, list[tuple[str, dict[str, Any]]]]]:
    for name, value in {
        "TEST_CW_PRIVATE": "PRIVKEY",
        "TEST_AT_CODE": "INTEGRATION",
        "TEST_AT_SECRET": "SECRET",
        "TEST_HALO_SECRET": "HALO-SECRET",
    }.items():
        monkeypatch.setenv(name, value)
    server, state = serve(HANDLERS[request.param])
    base = f"http://127.0.0.1:{server.server_address[1]}"
    settings = config(request.param, base)
    client = psa_client(settings, tmp_path)
    store = EvidenceStore(f"sqlite:///{tmp_path / 'evidence.db'}")
    logged: list[tuple[str, dict[str, Any]]] = []
    desk = TicketDesk(
        store.engine,
        lambda name: (
            PsaRoute(request.param, settings.companies[name], lambda: client)
            if name in settings.companies
            else None
        ),
        log=lambda event, **fields: logged.append((event, fields)),
    )
    try:
        yield desk, state, logged
    finally:
        server.shutdown()
        server.server_close()
        store.close()


def desk_of(
    store: EvidenceStore, settings: Any, company: str, root: Path
) -> tuple[TicketDesk, list[tuple[str, dict[str, Any]]]]:
    """A desk sending every client's tickets to ``company``, its secrets read at each
    call; and its log."""
    logged: list[tuple[str, dict[str, Any]]] = []
    desk = TicketDesk(
        store.engine,
        lambda name: PsaRoute(settings.system, company, lambda: psa_client(settings, root)),
        log=lambda event, **fields: logged.append((event, fields)),
    )
    return desk, logged


def failing_run(desk: TicketDesk, day: int, at: datetime) -> None:
    desk.breach(
        BREACH,
        "acme",
        "[mspauto] acme: SLA breach, backups not proven within their RPO",
        f"Run of day {day}: db not proven within its RPO.",
        f"acme/nightly/backup@2026-12-0{day}T09:00Z",
        at,
    )
    desk.work(at)


def test_one_ticket_per_breach_and_a_note_per_later_failing_run(psa: Any) -> None:
    desk, state, _ = psa
    failing_run(desk, 1, NOW)
    failing_run(desk, 2, NOW + timedelta(days=1))
    failing_run(desk, 2, NOW + timedelta(days=1, minutes=1))  # the same run again: no note
    failing_run(desk, 3, NOW + timedelta(days=2))
    [ticket] = state.tickets.values()
    assert ticket["summary"].startswith("[mspauto] acme: SLA breach")
    assert ticket["summary"].endswith("-1]") and len(ticket["summary"]) <= 100
    assert ticket["company"] in ("AcmeCorp", "29683", "12")
    assert ticket["text"] == "Run of day 1: db not proven within its RPO."
    assert state.notes[ticket["id"]] == [
        "Run of day 2: db not proven within its RPO.",
        "Run of day 3: db not proven within its RPO.",
    ]


def test_a_breach_that_goes_on_after_the_ticket_was_closed_opens_a_new_one(psa: Any) -> None:
    desk, state, logged = psa
    failing_run(desk, 1, NOW)
    [first] = state.tickets.values()
    first["closed"] = True  # a tech closed it
    failing_run(desk, 2, NOW + timedelta(days=1))
    assert len(state.tickets) == 2
    second = state.tickets[max(state.tickets)]
    assert second["summary"].endswith("-2]")
    assert state.notes[first["id"]] == []
    failing_run(desk, 3, NOW + timedelta(days=2))
    assert state.notes[second["id"]] == ["Run of day 3: db not proven within its RPO."]
    assert [e for e, _ in logged] == ["psa.ticket_opened", "psa.ticket_opened", "psa.ticket_noted"]


def test_a_retry_after_a_timeout_finds_the_ticket_instead_of_making_another(psa: Any) -> None:
    desk, state, logged = psa
    state.hold_answer()  # the PSA makes the ticket but its answer comes too late
    failing_run(desk, 1, NOW)
    state.release()
    assert len(state.tickets) == 1
    [(event, fields)] = logged
    assert event == "psa.failed" and fields["attempt"] == 1 and fields["retry"]
    desk.work(NOW + timedelta(seconds=30))  # before the pause: nothing
    desk.work(NOW + timedelta(minutes=1))
    assert len(state.tickets) == 1
    assert logged[-1][0] == "psa.ticket_opened"
    failing_run(desk, 2, NOW + timedelta(days=1))
    [ticket] = state.tickets.values()
    assert state.notes[ticket["id"]] == ["Run of day 2: db not proven within its RPO."]


def test_wrong_credentials_are_retried_and_logged_never_raised(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TEST_HALO_SECRET", "wrong")
    server, state = serve(HaloHandler)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    store = EvidenceStore(f"sqlite:///{tmp_path / 'evidence.db'}")
    desk, logged = desk_of(store, config("halopsa", base), "12", tmp_path)
    try:
        at = NOW
        failing_run(desk, 1, at)
        for _ in range(8):
            at += timedelta(hours=1)
            desk.work(at)
    finally:
        server.shutdown()
        server.server_close()
        store.close()
    assert state.tickets == {}
    errors = [f["error"] for e, f in logged if e == "psa.failed"]
    assert len(errors) == 5 and errors[0] == "POST /auth/token: 401 Unauthorized"
    assert "wrong" not in repr(logged)  # a secret is never logged


def test_a_client_without_a_psa_company_gets_no_ticket(psa: Any) -> None:
    desk, state, _ = psa
    desk.breach(BREACH.replace("acme", "globex"), "globex", "s", "t", "tick", NOW)
    desk.work(NOW)
    assert state.tickets == {} and state.requests[-1:] != [("POST", "/api/Tickets")]


def test_a_secret_that_cannot_be_read_is_a_logged_retry(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("TEST_CW_PRIVATE", raising=False)
    store = EvidenceStore(f"sqlite:///{tmp_path / 'evidence.db'}")
    desk, logged = desk_of(store, config("connectwise", "http://127.0.0.1:9"), "AcmeCorp", tmp_path)
    try:
        failing_run(desk, 1, NOW)
    finally:
        store.close()
    [(event, fields)] = logged
    assert event == "psa.failed" and "TEST_CW_PRIVATE" in fields["error"]
