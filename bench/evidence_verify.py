"""`evidence verify` at 1,000,000 records: memory flat as the store grows (issue 8).

    .venv/bin/python bench/evidence_verify.py [--records 1000000] [--output-bytes 1024]
        [--distinct 0.5] [--chains 4] [--old-records 100000]
        [--url postgresql+psycopg://postgres@127.0.0.1:5432/postgres]

Builds a scratch store (SQLite in a temporary folder, or with --url a scratch database
on that PostgreSQL server, dropped afterwards) holding runs of host_result records, as
the engine writes them, spread over a few chains (clients): a stdout and a stderr output
per host result, a share (--distinct) of the stdouts distinct outputs of --output-bytes,
the rest shared. The rows are written in bulk with the store's own hashing (append does
one statement per row, minutes at this size); verify then checks every one, so a row
written wrong would show as a problem and fail the run.

Then, each in a child process of its own so that building costs no memory there:
(1) the baseline, a plain sequential read of every record and output with SHA-256 over
each (the cost no verify can avoid); (2) `EvidenceStore.verify()`, timed, with the
child's peak RSS; (3) verify again under tracemalloc for its peak Python memory. With
--old-records, the verify this one replaced (every row of a chain and every output held
at once) and the new one run on a smaller store, for their peak memory side by side.
Target (issue 8): verify's peak memory under 300 MB at 1,000,000 records.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BUILD_BATCH = 5000
HOSTS_PER_RUN = 250
EPOCH = datetime(2026, 11, 1, tzinfo=UTC)


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the store ------------------------------------------------------------------------


def distinct_output(index: int, size: int) -> bytes:
    """An apt-like listing, unique to ``index``, of exactly ``size`` bytes."""
    line = (
        f"Inst libexample{index % 97}-{index} (2.{index % 13}.{index} "
        "Debian-Security:12/stable-security [amd64])\n"
    )
    return (line * (size // len(line) + 1))[:size].encode()


SHARED_STDOUTS = [
    f"Reading package lists...\nBuilding dependency tree...\n0 upgraded, {n} held back.\n".encode()
    for n in range(8)
]
SHARED_STDERRS = [b"", b"W: --force-yes is deprecated, use one of the options starting --allow\n"]


class Builder:
    """Writes records as `EvidenceStore.append` would, in bulk, with the store's hashing."""

    def __init__(self, url: str, chains: int) -> None:
        from mspauto.evidence.store import GENESIS, EvidenceStore

        self.store = EvidenceStore(url)
        self.heads = dict.fromkeys([f"client-{c:02d}" for c in range(chains)], (0, GENESIS))
        self.pending_records: list[dict[str, Any]] = []
        self.pending_outputs: list[dict[str, Any]] = []
        self.added = self.output_bytes = 0

    def add(self, chain: str, kind: str, run_id: str, host: str, payload: dict[str, Any]) -> None:
        from mspauto.evidence.store import canonical_json, record_hash

        seq, prev = self.heads[chain]
        seq += 1
        text = canonical_json(payload)
        at = (EPOCH + timedelta(milliseconds=self.added)).isoformat(timespec="microseconds")
        digest = record_hash(prev, chain, seq, kind, run_id, host, at, text)
        self.pending_records.append(
            {
                "chain": chain,
                "seq": seq,
                "kind": kind,
                "run_id": run_id,
                "host": host,
                "recorded_at": at,
                "payload": text,
                "prev_hash": prev,
                "hash": digest,
            }
        )
        self.heads[chain] = (seq, digest)
        self.added += 1

    def keep(self, data: bytes) -> dict[str, Any]:
        """Store an output (once: callers pass each distinct output once) and describe it."""
        from mspauto.evidence.store import store_output

        kept, described = store_output(data)
        self.pending_outputs.append(
            {"sha256": described["sha256"], "size": len(kept), "data": kept}
        )
        self.output_bytes += len(kept)
        return described

    def flush(self) -> None:
        from sqlalchemy import insert

        from mspauto.evidence.store import outputs, records

        with self.store.engine.begin() as conn:
            if self.pending_records:
                conn.execute(insert(records), self.pending_records)
            if self.pending_outputs:
                conn.execute(insert(outputs), self.pending_outputs)
        self.pending_records.clear()
        self.pending_outputs.clear()

    def close(self) -> None:
        from sqlalchemy import insert

        from mspauto.evidence.store import chain_heads

        self.flush()
        with self.store.engine.begin() as conn:
            conn.execute(
                insert(chain_heads),
                [{"chain": c, "seq": seq, "hash": h} for c, (seq, h) in self.heads.items()],
            )
        self.store.close()


def host_result(
    host: str, address: str, stdout: dict[str, Any], stderr: dict[str, Any]
) -> dict[str, Any]:
    """A payload shaped like the engine's host_result."""
    return {
        "host": host,
        "address": address,
        "port": 22,
        "connection": "ssh",
        "command": "apt-get -s -o Debug::NoLocking=1 upgrade",
        "sudo": True,
        "rc": 0,
        "error": None,
        "message": "",
        "started": EPOCH.isoformat(),
        "finished": EPOCH.isoformat(),
        "attempts": 1,
        "stdout": stdout,
        "stderr": stderr,
    }


def build(url: str, count: int, chains: int, output_bytes: int, distinct: float) -> dict[str, Any]:
    """Runs of host results over ``chains`` chains, ``count`` records in all."""
    builder = Builder(url, chains)
    names = list(builder.heads)
    shared_stdouts = [builder.keep(data) for data in SHARED_STDOUTS]
    shared_stderrs = [builder.keep(data) for data in SHARED_STDERRS]
    start = time.perf_counter()
    share = 0.0
    run_number = distinct_added = 0
    while builder.added < count:
        chain = names[run_number % chains]
        run_id = str(uuid.UUID(int=run_number))
        run_number += 1
        hosts = [f"host{h:04d}.{chain}" for h in range(HOSTS_PER_RUN)]
        builder.add(chain, "run_started", run_id, "", {"kind": "patch", "hosts": hosts})
        hosts = hosts[: max(0, count - builder.added - 1)]
        for h, host in enumerate(hosts):
            share += distinct
            if share >= 1:
                share -= 1
                stdout = builder.keep(distinct_output(builder.added, output_bytes))
                distinct_added += 1
            else:
                stdout = shared_stdouts[builder.added % len(shared_stdouts)]
            stderr = shared_stderrs[1 if builder.added % 10 == 0 else 0]
            address = f"10.{run_number % 256}.{h // 256}.{h % 256}"
            builder.add(
                chain, "host_result", run_id, host, host_result(host, address, stdout, stderr)
            )
        if builder.added < count:
            finished = {"status": "ok", "counts": {"ok": len(hosts)}}
            builder.add(chain, "run_finished", run_id, "", finished)
        if len(builder.pending_records) >= BUILD_BATCH:
            builder.flush()
    builder.close()
    return {
        "seconds": time.perf_counter() - start,
        "records": builder.added,
        "distinct_outputs": distinct_added,
        "output_bytes": builder.output_bytes,
    }


# --- what each child measures -----------------------------------------------------------


def plain_read(url: str) -> dict[str, Any]:
    """The baseline: every record and output read in one sequential pass, SHA-256 over each."""
    import hashlib

    from sqlalchemy import select

    from mspauto.evidence.store import EvidenceStore, outputs, record_hash, records

    store = EvidenceStore(url, writable=False)
    rows = 0
    start = time.perf_counter()
    with store.engine.connect() as conn:
        query = select(records).order_by(records.c.id).execution_options(yield_per=BUILD_BATCH)
        for batch in conn.execute(query).partitions(BUILD_BATCH):
            for row in batch:
                record_hash(
                    row.prev_hash,
                    row.chain,
                    row.seq,
                    row.kind,
                    row.run_id,
                    row.host,
                    row.recorded_at,
                    row.payload,
                )
            rows += len(batch)
        query = select(outputs.c.data).execution_options(yield_per=64)
        for batch in conn.execute(query).partitions(64):
            for row in batch:
                hashlib.sha256(row.data).hexdigest()
    seconds = time.perf_counter() - start
    store.close()
    return {"seconds": seconds, "checked": rows}


def new_verify(url: str, traced: bool) -> dict[str, Any]:
    """`EvidenceStore.verify()` as `mspauto evidence verify` runs it."""
    import tracemalloc

    from mspauto.evidence.store import EvidenceStore

    store = EvidenceStore(url, writable=False)
    before = peak_rss_mb()
    if traced:
        tracemalloc.start()
    start = time.perf_counter()
    result = store.verify()
    checked, problems = result.checked, result.problems
    seconds = time.perf_counter() - start
    traced_peak = tracemalloc.get_traced_memory()[1] / 2**20 if traced else 0.0
    store.close()
    return {
        "seconds": seconds,
        "checked": checked,
        "problems": [str(p) for p in problems[:5]],
        "rss_before_mb": before,
        "rss_peak_mb": peak_rss_mb(),
        "traced_peak_mb": traced_peak,
    }


def old_verify(url: str) -> dict[str, Any]:
    """The verify issue 8 replaced, reduced to what it held and hashed: every row of a
    chain and every stored output of the store at once, once per chain."""
    import hashlib

    from sqlalchemy import select

    from mspauto.evidence.store import EvidenceStore, outputs, record_hash, records

    store = EvidenceStore(url, writable=False)
    before = peak_rss_mb()
    checked = 0
    start = time.perf_counter()
    for chain in store.chains():
        with store.engine.connect() as conn:
            query = select(records).where(records.c.chain == chain).order_by(records.c.id)
            rows = conn.execute(query).all()
            stored = {row.sha256: bytes(row.data) for row in conn.execute(select(outputs))}
        for row in rows:
            record_hash(
                row.prev_hash,
                row.chain,
                row.seq,
                row.kind,
                row.run_id,
                row.host,
                row.recorded_at,
                row.payload,
            )
            payload = json.loads(row.payload)
            for name in ("stdout", "stderr"):
                if isinstance(payload.get(name), dict):
                    hashlib.sha256(stored[payload[name]["sha256"]]).hexdigest()
        checked += len(rows)
        del rows, stored
    seconds = time.perf_counter() - start
    store.close()
    return {
        "seconds": seconds,
        "checked": checked,
        "problems": [],
        "rss_before_mb": before,
        "rss_peak_mb": peak_rss_mb(),
    }


# --- running it -------------------------------------------------------------------------


def in_child(mode: str, url: str, *extra: str) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter and return what it printed."""
    done = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--store", url, *extra],
        check=True,
        capture_output=True,
        text=True,
    )
    answer: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return answer


@contextmanager
def scratch_store(server_url: str | None, folder: Path, name: str) -> Iterator[str]:
    """A store URL to fill: a SQLite file in ``folder``, or a database made for the run."""
    if server_url is None:
        yield f"sqlite:///{folder / name}.db"
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    database = f"mspauto_bench_{name}_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {database}"))
    try:
        yield make_url(server_url).set(database=database).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        admin.dispose()


def store_kind(url: str) -> str:
    if url.startswith("sqlite:///"):
        return f"SQLite, {Path(url.removeprefix('sqlite:///')).stat().st_size / 1e9:.2f} GB file"
    return "PostgreSQL"


def check_clean(result: dict[str, Any], expected: int) -> None:
    if result["checked"] != expected or result["problems"]:
        sys.exit(f"verify did not pass cleanly: {result}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--output-bytes", type=int, default=1024)
    parser.add_argument(
        "--distinct", type=float, default=0.5, help="share of host results with their own stdout"
    )
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument(
        "--old-records",
        type=int,
        default=100_000,
        help="size of the store the old verify runs on (0: skip it)",
    )
    parser.add_argument("--url", help="a PostgreSQL server URL to build scratch databases on")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        shape = [args.records, args.chains, args.output_bytes, args.distinct]
        answer = {
            "build": lambda: build(args.store, *shape),
            "read": lambda: plain_read(args.store),
            "verify": lambda: new_verify(args.store, traced=False),
            "traced": lambda: new_verify(args.store, traced=True),
            "old": lambda: old_verify(args.store),
        }[args.child]()
        print(json.dumps(answer))
        return

    shape = [
        f"--records={args.records}",
        f"--chains={args.chains}",
        f"--output-bytes={args.output_bytes}",
        f"--distinct={args.distinct}",
    ]
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as work:
        with scratch_store(args.url, Path(work), "big") as url:
            built = in_child("build", url, *shape)
            n = built["records"]
            print(
                f"store: {n:,} records in {args.chains} chains, {built['distinct_outputs']:,} "
                f"distinct outputs of {args.output_bytes} B, {built['output_bytes'] / 1e6:,.0f} MB "
                f"of outputs ({store_kind(url)}), built in {built['seconds']:.0f} s"
            )
            read = in_child("read", url)
            verify = in_child("verify", url)
            check_clean(verify, n)
            traced = in_child("traced", url)
            check_clean(traced, n)
        print(
            f"plain read + SHA-256 of every record and output: {read['seconds']:7.1f} s  "
            f"{n / read['seconds']:9,.0f} records/s  (baseline)"
        )
        print(
            f"EvidenceStore.verify():                         {verify['seconds']:7.1f} s  "
            f"{n / verify['seconds']:9,.0f} records/s  "
            f"{verify['seconds'] / read['seconds']:.2f}x baseline"
        )
        print(
            f"peak RSS of the verifying process:              {verify['rss_peak_mb']:7.0f} MB  "
            f"({verify['rss_before_mb']:.0f} MB before verify)  target < 300 MB"
        )
        print(
            f"peak traced Python memory during verify:        {traced['traced_peak_mb']:7.1f} MB  "
            f"(outputs in the store: {built['output_bytes'] / 1e6:,.0f} MB)"
        )
        if args.old_records:
            small_shape = [f"--records={args.old_records}", *shape[1:]]
            with scratch_store(args.url, Path(work), "small") as url:
                small = in_child("build", url, *small_shape)["records"]
                old = in_child("old", url)
                check_clean(old, small)
                new = in_child("verify", url)
                check_clean(new, small)
            print(
                f"at {small:,} records, peak RSS: old verify {old['rss_peak_mb']:.0f} MB "
                f"({old['seconds']:.1f} s), new verify {new['rss_peak_mb']:.0f} MB "
                f"({new['seconds']:.1f} s); each {new['rss_before_mb']:.0f} MB before verify"
            )


if __name__ == "__main__":
    main()
