"""Telling people: the control node's events to each notification policy's channels.

An event (a run failed, an SLA breached, a waiver about to expire, a report ready) has
a key; it is queued once per channel of every notification policy that wants it (the
key and channel are the row's key, so the same event seen again is never sent twice),
then delivered. A delivery that fails is retried with growing pauses, logged each
time, and after the last attempt kept as ``failed`` with its error: never lost without
a trace, and never a crash of the scheduler.
"""

from __future__ import annotations

import json
import smtplib
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError

from mspauto.evidence.schema import notifications
from mspauto.policy.models import EmailChannel, NotificationPolicy, Waiver, WebhookChannel
from mspauto.project import Project
from mspauto.schedule.jobs import Job
from mspauto.schedule.state import TickState, claim, failure_text, retry_at, stamp
from mspauto.secrets import SecretError, resolve_secret

__all__ = ["Event", "Notifier", "tick_events", "waiver_events"]

_TIMEOUT = 15.0
"""Seconds a mail server or webhook may take to answer."""


@dataclass(frozen=True)
class Event:
    """Something people should hear about once."""

    key: str
    """The same for the same happening, whoever sees it and however often."""
    kind: str
    """One of NOTIFICATION_EVENTS."""
    client: str
    subject: str
    text: str
    fields: dict[str, Any] = field(default_factory=dict)


class DeliveryError(Exception):
    """A channel did not take the message; the text says why in one line."""


@dataclass
class Notifier:
    """Queues events for the policies' channels and delivers what is due."""

    engine: Engine
    project_root: Path
    policies: Sequence[NotificationPolicy] = ()
    log: Callable[..., object] = field(default=lambda event, **fields: None)

    def notify(self, event: Event, now: datetime) -> None:
        for policy in self.policies:
            if not policy.covers(event.client) or event.kind not in policy.events:
                continue
            for channel in _channels(policy):
                self._queue(event, channel, now)

    def deliver(self, now: datetime) -> None:
        """Send every queued notification whose time has come."""
        with self.engine.connect() as conn:
            due = conn.execute(
                select(notifications).where(
                    notifications.c.state == "pending", notifications.c.next_try <= stamp(now)
                )
            ).all()
        for row in due:
            taken = claim(
                self.engine,
                notifications,
                notifications.c.event == row.event,
                notifications.c.channel == row.channel,
                notifications.c.state == "pending",
                notifications.c.next_try == row.next_try,
                now=now,
            )
            if taken:
                self._deliver(row._mapping, now)

    def _queue(self, event: Event, channel: str, now: datetime) -> None:
        message = {
            "subject": event.subject,
            "text": event.text,
            "fields": {"event": event.kind, "client": event.client, **event.fields},
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    notifications.insert().values(
                        event=event.key,
                        channel=channel,
                        client=event.client,
                        state="pending",
                        attempts=0,
                        next_try=stamp(now),
                        last_error="",
                        message=json.dumps(message, sort_keys=True),
                        created_at=stamp(now),
                    )
                )
        except IntegrityError:
            return  # queued before (this pass or an earlier one): once is enough
        self.log("notification.queued", notification=event.key, channel=channel)

    def _deliver(self, row: Any, now: datetime) -> None:
        channel, attempts = row["channel"], row["attempts"] + 1
        message = json.loads(row["message"])
        where = {"event": row["event"], "channel": channel}
        try:
            self._send(channel, message)
        except Exception as exc:  # a delivery never stops the scheduler; it is kept
            error = failure_text(exc, DeliveryError)
            retry = retry_at(attempts, now)
            self._update(
                where,
                state="failed" if retry is None else "pending",
                attempts=attempts,
                next_try=stamp(retry or now),
                last_error=error,
            )
            self.log(
                "notification.failed",
                notification=row["event"],
                channel=channel,
                attempt=attempts,
                error=error,
                retry=None if retry is None else stamp(retry),
            )
            return
        self._update(where, state="sent", attempts=attempts, sent_at=stamp(now))
        self.log("notification.sent", notification=row["event"], channel=channel)

    def _update(self, where: dict[str, str], **values: object) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(notifications)
                .where(
                    notifications.c.event == where["event"],
                    notifications.c.channel == where["channel"],
                )
                .values(**values)
            )

    def _send(self, channel: str, message: dict[str, Any]) -> None:
        policy_name, _, kind = channel.partition(":")
        policy = next((p for p in self.policies if p.name == policy_name), None)
        if policy is None:
            raise DeliveryError(f"notification policy '{policy_name}' is gone")
        if kind == "email" and policy.email is not None:
            send_email(policy.email, message, self.project_root)
        elif kind == "webhook" and policy.webhook is not None:
            post_webhook(policy.webhook, message)
        else:
            raise DeliveryError(f"notification policy '{policy_name}' has no {kind} any more")


def tick_events(
    job: Job,
    due: datetime,
    state: TickState,
    exit_code: int | None,
    reason: str,
    breach_since: datetime | None,
    output: str,
) -> list[Event]:
    """What people hear about a tick that ended: a report ready, an SLA breach (a
    backup check that proved a job outside its RPO, an audit under the floor: one event
    per breach, from its first failing run until a run passes again), or a failed run."""
    when = f"{due:%Y-%m-%d %H:%M} UTC"
    where = {"policy": job.policy, "action": job.action, "due": due.isoformat()}
    if state is TickState.OK:
        if job.action != "report":
            return []
        folders = _report_folders(output)
        return [
            Event(
                f"report-ready:{job.run_key(due)}",
                "report-ready",
                job.client,
                f"[mspauto] {job.client}: the monthly report is ready",
                "The monthly report was written and signed"
                + (f": {', '.join(folders)}" if folders else "")
                + ". Check it with 'mspauto report verify DIR --public-key KEY'.",
                {**where, "folders": folders},
            )
        ]
    breach = _BREACHES.get((job.action, exit_code))
    if breach is not None and state is TickState.FAILED and breach_since is not None:
        return [
            Event(
                f"sla-breached:{job.name}@{breach_since:%Y-%m-%dT%H:%MZ}",
                "sla-breached",
                job.client,
                f"[mspauto] {job.client}: SLA breach, {breach}",
                f"The scheduled {job.action} run of policy {job.policy} ({when}) found "
                f"{breach}, first at {breach_since:%Y-%m-%d %H:%M} UTC. "
                f"Details: mspauto {job.command(due)[0]} --client {job.client}.",
                {**where, "since": breach_since.isoformat()},
            )
        ]
    return [
        Event(
            f"run-failed:{job.run_key(due)}",
            "run-failed",
            job.client,
            f"[mspauto] {job.client}: {job.action} run {state.value} ({job.policy})",
            f"The scheduled {job.action} run of policy {job.policy} ({when}) ended "
            f"{state.value}"
            + (f" with exit code {exit_code}" if exit_code is not None else "")
            + (f": {reason}" if reason else "")
            + f". Details: mspauto runs list --client {job.client}.",
            {**where, "state": state.value, "exit_code": exit_code, "reason": reason},
        )
    ]


_BREACHES: dict[tuple[str, int | None], str] = {
    ("backup", 2): "backups not proven within their RPO",
    ("baseline", 3): "a baseline score under the contract's floor",
}
"""Exit codes that mean the run worked and found the contract broken."""


def _report_folders(output: str) -> list[str]:
    try:
        written = json.loads(output)["reports"]
        return [str(r["folder"]) for r in written]
    except (ValueError, KeyError, TypeError):
        return []


def waiver_events(project: Project, today: date) -> list[Event]:
    """A waiver about to expire, once per client and expiry date (per notification
    policy, within its ``waiver_warning``; the policies decide who hears)."""
    warnings = [p.waiver_warning for p in _notification_policies(project)]
    if not warnings:
        return []
    horizon = max(warnings)
    events = []
    for loaded in project.policies:
        waiver = loaded.policy
        if not isinstance(waiver, Waiver) or not today <= waiver.expires <= today + horizon:
            continue
        for client in sorted(project.inventory.clients.values(), key=lambda c: c.name):
            hosts = sorted(h.name for h in client.hosts.values() if waiver.targets.matches(h))
            if not hosts:
                continue
            days = (waiver.expires - today).days
            events.append(
                Event(
                    f"waiver-expiring:{client.name}:{waiver.name}:{waiver.expires}",
                    "waiver-expiring",
                    client.name,
                    f"[mspauto] {client.name}: waiver {waiver.name} expires in {days} days",
                    f"Waiver {waiver.name} ({waiver.subject}, approved by {waiver.approved_by}) "
                    f"expires on {waiver.expires}, on {', '.join(hosts)}. Renew it (new "
                    "expiry, approver and date) or plan the fix.",
                    {"waiver": waiver.name, "expires": waiver.expires.isoformat(), "hosts": hosts},
                )
            )
    return events


def _notification_policies(project: Project) -> list[NotificationPolicy]:
    return [p.policy for p in project.policies if isinstance(p.policy, NotificationPolicy)]


def _channels(policy: NotificationPolicy) -> list[str]:
    return [f"{policy.name}:{c}" for c in ("email", "webhook") if getattr(policy, c) is not None]


def send_email(channel: EmailChannel, message: dict[str, Any], project_root: Path) -> None:
    """One message to every recipient, over SMTP."""
    mail = EmailMessage()
    mail["Subject"] = _one_line(message["subject"])
    mail["From"] = channel.sender
    mail["To"] = ", ".join(channel.to)
    mail.set_content(message["text"])
    try:
        password = resolve_secret(channel.password, project_root) if channel.password else None
        with smtplib.SMTP(channel.server, channel.port, timeout=_TIMEOUT) as smtp:
            if channel.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if channel.username:
                smtp.login(channel.username, password or "")
            smtp.send_message(mail)
    except SecretError as exc:
        raise DeliveryError(f"the mail password cannot be read: {exc}") from None
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(f"{channel.server}:{channel.port}: {_one_line(str(exc))}") from None


def post_webhook(channel: WebhookChannel, message: dict[str, Any]) -> None:
    """A JSON POST: ``text`` for Slack and Teams, the event's fields under ``mspauto``."""
    body = json.dumps(
        {"text": f"{message['subject']}\n{message['text']}", "mspauto": message["fields"]}
    ).encode()
    request = urllib.request.Request(
        channel.url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "mspauto"},
    )
    try:
        # Only http(s) URLs pass validation: urlopen never reads a file: URL here.
        with urllib.request.urlopen(request, timeout=_TIMEOUT) as answer:
            answer.read(4096)
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"the webhook answered {exc.code} {exc.reason}") from None
    except (OSError, ValueError) as exc:
        raise DeliveryError(f"the webhook cannot be reached: {_one_line(str(exc))}") from None


def _one_line(text: str) -> str:
    """Text fit for a mail header or a log line: no line breaks or control bytes."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())[:300]
