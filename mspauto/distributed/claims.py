"""Taking the hosts of a distributed run (``run_host_claims``), so that none runs twice.

A worker takes each host (a unique row) before anything runs on it, and renews its
claims while it works on the run (:meth:`HostClaims.keep_alive`). A batch delivered
again (its worker died, the broker restarted, a batch outlived the broker's consumer
timeout) then finds its hosts taken: one whose outcome is recorded is left alone; one
whose owner still renews its claim is left to that owner; one whose owner stopped
renewing for its lease (:data:`CLAIM_LEASE`) was lost with its worker, and is recorded as
interrupted (it may have run) and never run again. The control node takes every host no
worker took yet when it stops a run or gives up waiting, and records them itself: a
batch that arrives later runs none of them.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, Engine, and_, exists, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from mspauto.engine import Claim
from mspauto.evidence.records import RecordKind
from mspauto.evidence.schema import records, run_host_claims
from mspauto.inventory.resolve import Host

__all__ = ["CLAIM_LEASE", "CONTROL", "HostClaims", "worker_name"]

CONTROL = "control:"
"""Owner prefix of hosts the control node took (it records their outcome itself)."""
CLAIM_LEASE = timedelta(seconds=30)
"""A claim its owner has not renewed for this long is a lost worker's (the default of
``MSPAUTO_CLAIM_LEASE``); owners renew theirs six times per lease."""


def worker_name() -> str:
    """This worker process, as a claim's owner: host, process and a token of this
    batch (a redelivery to the same process is another owner)."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"


class HostClaims:
    """The claims of one run, in the database behind ``engine``."""

    def __init__(
        self, engine: Engine, run_id: str, owner: str, lease: timedelta = CLAIM_LEASE
    ) -> None:
        self.engine = engine
        self.run_id = run_id
        self.owner = owner
        self.lease = lease
        self._held: dict[str, float] = {}
        """Hosts this owner took, and when (monotonic)."""
        self._renewed = 0.0
        """When this owner's claims were last renewed (monotonic)."""

    def take(self, host: Host) -> Claim:
        """Take ``host`` for this worker, or say what became of it."""
        try:
            with self.engine.begin() as conn:
                # Straight to the driver: a claim is taken before every host, and the
                # Core statement cost a third of a millisecond more.
                marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
                now = _stamp()
                conn.exec_driver_sql(
                    f"INSERT INTO {run_host_claims.name} (run_id, host, owner, claimed_at, "
                    f"alive_at) VALUES ({', '.join([marker] * 5)})",
                    (self.run_id, host.name, self.owner, now, now),
                )
            self._held[host.name] = time.monotonic()
            return Claim.MINE
        except IntegrityError:
            pass
        # Taken already. While its owner renews the claim, the host is its owner's to
        # record: wait for the record (a batch delivered twice at once), or for the
        # lease to run out (the owner was lost with the host's outcome).
        while True:
            recorded, owner, alive_at = self._state(host)
            if recorded or owner is None or owner.startswith(CONTROL):
                return Claim.DONE  # recorded, or the control node records it
            if alive_at <= _stamp(datetime.now(UTC) - self.lease) and self._take_over(
                host, owner, alive_at
            ):
                return Claim.LOST  # now this worker's to record (as interrupted), once
            time.sleep(1.0)

    def keep(self, host: Host) -> bool:
        """Whether ``host`` is this owner's to record, renewing its claim (a host it
        never took, as one it did not start, is taken now); False when another holds
        it: a worker cut off longer than its lease, whose hosts were taken over."""
        held = self._held.get(host.name)
        if (
            held is not None
            and time.monotonic() - max(held, self._renewed) < self.lease.total_seconds() / 2
        ):
            return True  # taken or renewed within half a lease: no one can have taken it
        now = _stamp()
        try:
            if self._claim_if(host, run_host_claims.c.owner == self.owner):
                return True
            with self.engine.begin() as conn:
                conn.execute(
                    insert(run_host_claims).values(
                        run_id=self.run_id,
                        host=host.name,
                        owner=self.owner,
                        claimed_at=now,
                        alive_at=now,
                    )
                )
            self._held[host.name] = time.monotonic()
            return True
        except IntegrityError:
            return False
        except SQLAlchemyError:
            return True  # the database is away: the record's own append will say so

    def _take_over(self, host: Host, owner: str, alive_at: str) -> bool:
        """Take a lost worker's claim on ``host`` if it is still as read: of the
        deliveries and the control node that find it lost, one records the host."""
        return self._claim_if(
            host, run_host_claims.c.owner == owner, run_host_claims.c.alive_at == alive_at
        )

    def _claim_if(self, host: Host, *conditions: ColumnElement[bool]) -> bool:
        """Make ``host``'s claim this owner's, renewed now, if it meets ``conditions``."""
        with self.engine.begin() as conn:
            claimed = conn.execute(
                update(run_host_claims)
                .where(
                    run_host_claims.c.run_id == self.run_id,
                    run_host_claims.c.host == host.name,
                    *conditions,
                )
                .values(owner=self.owner, alive_at=_stamp())
            )
        if claimed.rowcount != 1:
            return False
        self._held[host.name] = time.monotonic()
        return True

    def _state(self, host: Host) -> tuple[bool, str | None, str]:
        """Whether the host's outcome is recorded, its claim's owner and last renewal."""
        with self.engine.connect() as conn:
            claim = conn.execute(
                select(run_host_claims.c.owner, run_host_claims.c.alive_at).where(
                    run_host_claims.c.run_id == self.run_id, run_host_claims.c.host == host.name
                )
            ).first()
            recorded = conn.execute(
                select(
                    exists().where(
                        and_(
                            records.c.run_id == self.run_id,
                            records.c.host == host.name,
                            records.c.kind == RecordKind.HOST_RESULT,
                        )
                    )
                )
            ).scalar()
        if claim is None:
            return bool(recorded), None, ""
        return bool(recorded), str(claim.owner), str(claim.alive_at)

    @contextmanager
    def keep_alive(self) -> Iterator[None]:
        """Renew this owner's claims six times per lease while inside."""
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(self.lease.total_seconds() / 6):
                try:
                    with self.engine.begin() as conn:
                        conn.execute(
                            update(run_host_claims)
                            .where(
                                run_host_claims.c.run_id == self.run_id,
                                run_host_claims.c.owner == self.owner,
                            )
                            .values(alive_at=_stamp())
                        )
                    self._renewed = time.monotonic()
                except Exception:  # the database is away: the next renewal tries again
                    continue

        thread = threading.Thread(target=renew, name="claims-renewal", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def take_the_rest(self, hosts: Sequence[str], why: str) -> list[str]:
        """For the control node: take every host of ``hosts`` no worker took yet (a
        stop, or no worker came); those it took, which it must record itself."""
        table, now = run_host_claims, _stamp()
        rows = [
            {
                "run_id": self.run_id,
                "host": name,
                "owner": f"{CONTROL}{why}",
                "claimed_at": now,
                "alive_at": now,
            }
            for name in hosts
        ]
        if not rows:
            return []
        insert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        with self.engine.begin() as conn:
            conn.execute(insert(table).values(rows).on_conflict_do_nothing())
            mine = conn.execute(
                select(table.c.host).where(
                    table.c.run_id == self.run_id, table.c.owner == f"{CONTROL}{why}"
                )
            )
            return sorted(set(hosts) & {row.host for row in mine})

    def take_lost(self, hosts: Sequence[str], why: str) -> list[str]:
        """For the control node: take those of ``hosts`` whose worker stopped renewing
        its claim a lease ago (lost with the host's outcome), to record them itself."""
        if not hosts:
            return []
        table, owner = run_host_claims, f"{CONTROL}{why}"
        with self.engine.begin() as conn:
            conn.execute(
                update(table)
                .where(
                    table.c.run_id == self.run_id,
                    table.c.host.in_(hosts),
                    ~table.c.owner.startswith(CONTROL),
                    table.c.alive_at <= _stamp(datetime.now(UTC) - self.lease),
                    # recorded meanwhile (a worker that took the claim over): leave it
                    ~exists().where(
                        and_(
                            records.c.run_id == self.run_id,
                            records.c.host == table.c.host,
                            records.c.kind == RecordKind.HOST_RESULT,
                        )
                    ),
                )
                .values(owner=owner, alive_at=_stamp())
            )
            mine = conn.execute(
                select(table.c.host).where(
                    table.c.run_id == self.run_id, table.c.host.in_(hosts), table.c.owner == owner
                )
            )
            return sorted(row.host for row in mine)

    def taken(self) -> dict[str, str]:
        """Every host of the run taken so far, and by whom."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(run_host_claims.c.host, run_host_claims.c.owner).where(
                    run_host_claims.c.run_id == self.run_id
                )
            )
            return {row.host: row.owner for row in rows}


def _stamp(at: datetime | None = None) -> str:
    """A UTC time as stored: fixed width, so text order is time order."""
    return (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
