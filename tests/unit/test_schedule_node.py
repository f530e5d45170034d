"""The control node as a whole (issue 13): a scheduled backup check that proves a job
outside its RPO tells the webhook once per breach and opens one HaloPSA ticket, a note
per later failing run, and a new ticket for a new breach. Runs are stand-ins (their
exit codes are the backups command's); the project, database, webhook and PSA
receivers are real."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from psa_receivers import HaloHandler, Psa, serve
from sqlalchemy import text
from test_schedule_notify import Receiver
from test_schedule_semantics import FakeClock, FakeLauncher

from mspauto.config import Settings
from mspauto.evidence.checkpoints import Notary, Witness
from mspauto.evidence.records import RecordKind, ScheduledRun
from mspauto.evidence.store import EvidenceStore
from mspauto.schedule.jobs import Job
from mspauto.schedule.service import ControlNode
from mspauto.signing import SigningKey, generate_key


@pytest.fixture
def receivers() -> Iterator[tuple[type[Receiver], ThreadingHTTPServer, Psa]]:
    hook = type("Hook", (Receiver,), {"received": [], "status": 200})
    webhook = ThreadingHTTPServer(("127.0.0.1", 0), hook)
    threading.Thread(target=webhook.serve_forever, daemon=True).start()
    halo, psa = serve(HaloHandler)
    hook.url = f"http://127.0.0.1:{webhook.server_address[1]}/hook"  # type: ignore[attr-defined]
    try:
        yield hook, halo, psa
    finally:
        for server in (webhook, halo):
            server.shutdown()
            server.server_close()


def test_a_breach_tells_people_once_and_tickets_it_in_the_psa(
    example_project: Path,
    receivers: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    hook, halo, psa = receivers
    monkeypatch.setenv("TEST_HALO_SECRET", "HALO-SECRET")
    monkeypatch.setenv("MSPAUTO_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("MSPAUTO_EVIDENCE_URL", raising=False)
    base = f"http://127.0.0.1:{halo.server_address[1]}"
    (example_project / "policies" / "notify.yaml").write_text(
        "kind: notification\nname: ops\nclients: [acme]\n"
        "events: [sla-breached, run-failed]\n"
        f"webhook: {{url: '{hook.url}'}}\n"
        "psa:\n  system: halopsa\n"
        f"  url: '{base}'\n  auth_url: '{base}/auth/token'\n"
        "  client_id: mspauto-app\n  client_secret: {env: TEST_HALO_SECRET}\n"
        "  companies: {acme: '12'}\n"
    )
    settings = Settings.load(example_project)
    store = EvidenceStore(settings.evidence_url)
    clock, launcher = FakeClock(datetime(2026, 12, 1, 12, 29, tzinfo=UTC)), FakeLauncher()
    logged: list[tuple[str, dict[str, Any]]] = []
    node = ControlNode(settings, store, launcher, clock, lambda e, **f: logged.append((e, f)))

    def day(number: int, backups_exit: int) -> None:
        """acme's backup check (07:30 New York = 12:30 UTC) on day ``number``."""
        clock.at = datetime(2026, 12, number, 12, 31, tzinfo=UTC)
        node.run_pass()  # the tick starts
        for name, launch in zip((n for n, _ in launcher.started), launcher.launches, strict=True):
            if launch.code is None:
                launch.code = backups_exit if name == "acme/acme-backups/backup" else 0
        clock.at += timedelta(minutes=1)
        node.run_pass()  # it ended: people told, the PSA asked
        node.deliver()

    try:
        node.run_pass()  # first sight of every job
        day(1, 2)
        day(2, 2)
        day(3, 0)
        day(4, 2)
    finally:
        store.close()
    breaches = [r["body"]["mspauto"] for r in hook.received]
    assert [(b["event"], b["since"][:10]) for b in breaches] == [
        ("sla-breached", "2026-12-01"),
        ("sla-breached", "2026-12-04"),
    ]
    assert "backups not proven within their RPO" in hook.received[0]["body"]["text"]
    first, second = sorted(psa.tickets)
    assert psa.tickets[first]["company"] == "12"
    assert len(psa.notes[first]) == 1 and "2026-12-02" in psa.notes[first][0]
    assert psa.notes[second] == []
    assert not [e for e, _ in logged if e in ("scheduler.error", "psa.failed")], logged


def test_every_ended_tick_is_signed_evidence_in_its_clients_chain(
    example_project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Runs and skipped ticks alike become ``scheduled_run`` records in the client's
    chain, under a signed checkpoint; a store that fails loses none of them (they are
    appended on the next pass) and none is appended twice."""
    monkeypatch.setenv("MSPAUTO_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("MSPAUTO_EVIDENCE_URL", raising=False)
    public = generate_key(tmp_path / "key", tmp_path / "key.pub", comment="test")
    witness = Witness(tmp_path / "witness")
    witness.create()
    settings = Settings.load(example_project)
    store = EvidenceStore(
        settings.evidence_url, notary=Notary(SigningKey.load(tmp_path / "key"), witness)
    )
    clock, launcher = FakeClock(datetime(2026, 12, 1, 12, 29, tzinfo=UTC)), FakeLauncher()
    logged: list[tuple[str, dict[str, Any]]] = []
    node = ControlNode(settings, store, launcher, clock, lambda e, **f: logged.append((e, f)))
    try:
        node.run_pass()  # first sight of every job
        # Two days later: acme's backup check of 2 December was missed (the one of
        # 3 December, 12:30 UTC, replaces it), and so were other daily jobs.
        clock.at = datetime(2026, 12, 3, 12, 31, tzinfo=UTC)
        node.run_pass()
        started = [name for name, _ in launcher.started]
        assert "acme/acme-backups/backup" in started
        launcher.finish_all(2)  # every run found a problem
        clock.at += timedelta(minutes=1)
        failing = store.append

        def full_disk(*_: object) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(store, "append", full_disk)
        node.run_pass()  # the runs end, but the store takes nothing
        assert (
            "scheduler.error",
            {
                "action": "_record_client_ticks",
                "error": "OSError: [Errno 28] No space left on device",
            },
        ) in logged
        monkeypatch.setattr(store, "append", failing)
        clock.at += timedelta(minutes=1)
        node.run_pass()  # now they are appended
        node.run_pass()  # and never again
    finally:
        store.close()

    reader = EvidenceStore(settings.evidence_url)
    try:
        records = list(reader.records(chain="acme", kind=RecordKind.SCHEDULED_RUN))
        verified = reader.verify(key=public, witness=witness)
    finally:
        reader.close()
    ticks = {r.payload["key"]: ScheduledRun.read(r.payload) for r in records}
    assert len(ticks) == len(records)  # none twice
    backup = {t.due[:10]: t for t in ticks.values() if t.policy == "acme-backups"}
    assert backup["2026-12-02"].state == "skipped"
    assert "missed while the control node was down" in backup["2026-12-02"].reason
    assert (backup["2026-12-03"].state, backup["2026-12-03"].exit_code) == ("failed", 2)
    ran = [t for t in ticks.values() if t.state != "skipped"]
    assert len(ran) == len([n for n in started if n.startswith("acme/")])
    assert not verified.problems, verified.problems
    assert not [w for w in verified.warnings if "no checkpoint" in w], verified.warnings


def test_a_row_mspauto_did_not_write_never_holds_up_the_ticks_behind_it(
    example_project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MSPAUTO_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("MSPAUTO_EVIDENCE_URL", raising=False)
    settings = Settings.load(example_project)
    store = EvidenceStore(settings.evidence_url)
    logged: list[tuple[str, dict[str, Any]]] = []
    clock = FakeClock(datetime(2026, 12, 1, 12, 29, tzinfo=UTC))
    node = ControlNode(settings, store, FakeLauncher(), clock, lambda e, **f: logged.append((e, f)))
    try:
        planted = Job("legacy-job", "x", "y", "* * * * *", "UTC", True)  # no client/policy/action
        node.state.skip(planted, datetime(2026, 11, 1, tzinfo=UTC), clock.now(), "planted")
        with store.engine.begin() as conn:  # a name mspauto never writes
            conn.execute(text("UPDATE schedule_runs SET job = 'legacy-job'"))
        real = Job("acme", "acme-backups", "backup", "30 12 * * *", "UTC", True)
        node.state.skip(real, datetime(2026, 11, 2, tzinfo=UTC), clock.now(), "missed")
        node.record_ticks()
        node.record_ticks()
        records = list(store.records(chain="acme", kind=RecordKind.SCHEDULED_RUN))
    finally:
        store.close()
    assert [r.payload["policy"] for r in records] == ["acme-backups"]
    assert [e for e, _ in logged].count("tick.unrecordable") == 1, logged
