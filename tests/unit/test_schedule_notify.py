"""Notifications (issue 13) against a real SMTP server on loopback (aiosmtpd) and a local
HTTP receiver: each event once per channel, failed deliveries retried then kept with
their error, never an exception out of the notifier; and which events a tick makes."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from mspauto.evidence.schema import notifications
from mspauto.evidence.store import EvidenceStore
from mspauto.policy.models import NotificationPolicy
from mspauto.schedule.jobs import Job
from mspauto.schedule.notify import Event, Notifier, tick_events
from mspauto.schedule.state import ATTEMPTS, ScheduleState, TickState

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    with socket.socket() as probe:  # aiosmtpd checks its server by connecting: no port 0
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


class Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []
    status: ClassVar[int] = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append({"type": self.headers["Content-Type"], "body": json.loads(body)})
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[type[Receiver]]:
    handler = type("Hook", (Receiver,), {"received": [], "status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}/hook"  # type: ignore[attr-defined]
    try:
        yield handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EvidenceStore]:
    opened = EvidenceStore(f"sqlite:///{tmp_path / 'evidence.db'}")
    yield opened
    opened.close()


def policy(**fields: Any) -> NotificationPolicy:
    return NotificationPolicy.model_validate(
        {"kind": "notification", "name": "ops", "clients": ["acme"], **fields}
    )


def event(key: str = "run-failed:acme/linux/backup@2026-12-03T09:00Z") -> Event:
    return Event(key, "run-failed", "acme", "[mspauto] acme: backup run failed", "It failed.")


def rows(store: EvidenceStore) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(notifications))]


def test_an_event_reaches_email_and_webhook_once(
    store: EvidenceStore, smtp: tuple[Inbox, int], webhook: Any, tmp_path: Path
) -> None:
    inbox, port = smtp
    ops = policy(
        email={
            "to": ["ops@msp.example"],
            "from": "mspauto@msp.example",
            "server": "127.0.0.1",
            "port": port,
        },
        webhook={"url": webhook.url},
    )
    notifier = Notifier(store.engine, tmp_path, [ops])
    notifier.notify(event(), NOW)
    notifier.notify(event(), NOW)  # the same happening seen again (next pass)
    notifier.deliver(NOW)
    notifier.deliver(NOW + timedelta(minutes=5))
    notifier.notify(event(), NOW + timedelta(minutes=6))
    notifier.deliver(NOW + timedelta(minutes=6))
    [(recipients, mail)] = inbox.messages
    assert recipients == ["ops@msp.example"]
    assert mail["Subject"] == "[mspauto] acme: backup run failed"
    assert mail["From"] == "mspauto@msp.example"
    assert mail.get_payload().strip() == "It failed."
    [posted] = webhook.received
    assert posted["type"] == "application/json"
    assert posted["body"]["text"] == "[mspauto] acme: backup run failed\nIt failed."
    assert posted["body"]["mspauto"] == {"event": "run-failed", "client": "acme"}
    assert sorted((r["channel"], r["state"], r["attempts"]) for r in rows(store)) == [
        ("ops:email", "sent", 1),
        ("ops:webhook", "sent", 1),
    ]


def test_another_clients_event_or_an_unwanted_kind_is_not_sent(
    store: EvidenceStore, webhook: Any, tmp_path: Path
) -> None:
    notifier = Notifier(
        store.engine, tmp_path, [policy(webhook={"url": webhook.url}, events=["report-ready"])]
    )
    notifier.notify(event(), NOW)  # run-failed: not wanted
    notifier.notify(Event("report-ready:x", "report-ready", "globex", "s", "t"), NOW)
    notifier.deliver(NOW)
    assert webhook.received == [] and rows(store) == []


def test_a_failed_delivery_is_retried_then_kept_with_its_error(
    store: EvidenceStore, webhook: Any, tmp_path: Path
) -> None:
    webhook.status = 503
    logged: list[tuple[str, dict[str, Any]]] = []
    notifier = Notifier(
        store.engine,
        tmp_path,
        [policy(webhook={"url": webhook.url})],
        log=lambda name, **fields: logged.append((name, fields)),
    )
    notifier.notify(event(), NOW)
    at = NOW
    for _ in range(10):  # well past every retry
        notifier.deliver(at)
        at += timedelta(hours=1)
    [row] = rows(store)
    assert (row["state"], row["attempts"]) == ("failed", ATTEMPTS)
    assert row["last_error"] == "the webhook answered 503 Service Unavailable"
    assert len(webhook.received) == ATTEMPTS
    failures = [f for name, f in logged if name == "notification.failed"]
    assert [f["attempt"] for f in failures] == list(range(1, ATTEMPTS + 1))
    assert failures[-1]["retry"] is None


def test_a_retry_waits_and_a_recovered_receiver_gets_it(
    store: EvidenceStore, webhook: Any, tmp_path: Path
) -> None:
    notifier = Notifier(store.engine, tmp_path, [policy(webhook={"url": webhook.url})])
    webhook.status = 500
    notifier.notify(event(), NOW)
    notifier.deliver(NOW)
    notifier.deliver(NOW + timedelta(seconds=30))  # before the pause is over: not tried
    assert len(webhook.received) == 1
    webhook.status = 200
    notifier.deliver(NOW + timedelta(minutes=1))
    assert len(webhook.received) == 2
    assert rows(store)[0]["state"] == "sent"


def test_an_unreachable_mail_server_never_raises(store: EvidenceStore, tmp_path: Path) -> None:
    closed = policy(
        email={"to": ["a@b.example"], "from": "m@b.example", "server": "127.0.0.1", "port": 9}
    )
    notifier = Notifier(store.engine, tmp_path, [closed])
    notifier.notify(event(), NOW)
    notifier.deliver(NOW)
    [row] = rows(store)
    assert row["state"] == "pending" and row["last_error"].startswith("127.0.0.1:9: ")


def test_a_header_cannot_be_injected_through_an_event(
    store: EvidenceStore, smtp: tuple[Inbox, int], tmp_path: Path
) -> None:
    inbox, port = smtp
    notifier = Notifier(
        store.engine,
        tmp_path,
        [
            policy(
                email={
                    "to": ["o@m.example"],
                    "from": "m@m.example",
                    "server": "127.0.0.1",
                    "port": port,
                }
            )
        ],
    )
    hostile = Event("k", "run-failed", "acme", "subject\r\nBcc: victim@evil.example", "x")
    notifier.notify(hostile, NOW)
    notifier.deliver(NOW)
    [(recipients, mail)] = inbox.messages
    assert recipients == ["o@m.example"] and mail["Bcc"] is None
    assert mail["Subject"] == "subject Bcc: victim@evil.example"


def backup_job() -> Job:
    return Job("acme", "nightly", "backup", "0 9 * * *", "UTC", True)


def test_a_breach_is_one_event_from_its_first_failed_run_until_a_run_passes(
    store: EvidenceStore,
) -> None:
    job, state = backup_job(), ScheduleState(store.engine)
    keys = []
    for day, code in enumerate([2, 2, 2, 0, 2], start=1):
        due = datetime(2026, 12, day, 9, tzinfo=UTC)
        assert state.claim(job, due, due)
        tick = TickState.OK if code == 0 else TickState.FAILED
        state.finish(job.run_key(due), tick, due, "", code)
        since = state.failing_since(job, due) if tick is TickState.FAILED else None
        keys.append([e.key for e in tick_events(job, due, tick, code, "", since, "")])
    assert keys == [
        ["sla-breached:acme/nightly/backup@2026-12-01T09:00Z"],
        ["sla-breached:acme/nightly/backup@2026-12-01T09:00Z"],
        ["sla-breached:acme/nightly/backup@2026-12-01T09:00Z"],
        [],
        ["sla-breached:acme/nightly/backup@2026-12-05T09:00Z"],
    ]


def test_a_failed_run_and_a_ready_report_say_what_happened() -> None:
    due = datetime(2026, 12, 3, 9, tzinfo=UTC)
    [failed] = tick_events(
        backup_job(), due, TickState.FAILED, 1, "error: the evidence store is full", None, ""
    )
    assert (
        failed.kind == "run-failed"
        and failed.key == "run-failed:acme/nightly/backup@2026-12-03T09:00Z"
    )
    assert "exit code 1: error: the evidence store is full" in failed.text
    report = Job("acme", "standard", "report", "0 6 1 * *", "UTC", True)
    output = json.dumps({"reports": [{"folder": "/srv/reports/acme/2026-11"}], "failed": 0})
    [ready] = tick_events(report, due, TickState.OK, 0, "", None, output)
    assert ready.kind == "report-ready" and "/srv/reports/acme/2026-11" in ready.text
    assert tick_events(backup_job(), due, TickState.OK, 0, "", None, "") == []


def test_two_schedulers_delivering_at_once_send_once(
    store: EvidenceStore, webhook: Any, tmp_path: Path
) -> None:
    ops = [policy(webhook={"url": webhook.url})]
    first = Notifier(store.engine, tmp_path, ops)
    second = Notifier(store.engine, tmp_path, ops)
    for n in range(5):
        first.notify(event(f"run-failed:acme/linux/backup@2026-12-03T0{n}:00Z"), NOW)
    threads = [threading.Thread(target=n.deliver, args=(NOW,)) for n in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(webhook.received) == 5
    assert {r["state"] for r in rows(store)} == {"sent"}
