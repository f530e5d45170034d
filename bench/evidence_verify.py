"""`evidence verify` at 1,000,000 records with signed checkpoints and proofs (issues 8, 9).

    .venv/bin/python bench/evidence_verify.py [--records 1000000] [--output-bytes 1024]
        [--distinct 0.5] [--chains 4] [--old-records 100000] [--proofs 100]
        [--url postgresql+psycopg://postgres@127.0.0.1:5432/postgres]

Builds a scratch store (SQLite in a temporary folder, or with --url a scratch database
on that PostgreSQL server, dropped afterwards) holding runs of host_result records, as
the engine writes them, spread over a few chains (clients): a stdout and a stderr output
per host result, a share (--distinct) of the stdouts distinct outputs of --output-bytes,
the rest shared. The rows are written in bulk with the store's own hashing (append does
one statement per row, minutes at this size), in chain order, since the database's
continuity trigger accepts a record only as its chain's next; verify then checks every
one, so a row written wrong would show as a problem and fail the run. Like a run, the
builder signs a checkpoint of the run's chain after each run (RFC 6962 root from a
Merkle frontier fed each record's leaf, signed with a bench key made in the temporary
folder), stores it in evidence_checkpoints (in bulk, with the records) and appends it
to a witness log there.

Then, each in a child process of its own so that building costs no memory there:
(1) the baseline, a plain sequential read of every record and output with SHA-256 over
each (the cost no verify can avoid); (2) `EvidenceStore.verify()` without a key (hash
links, outputs and Merkle leaves, no signatures); (3) the full verify,
`verify(key=..., witness=...)`, timed, with the child's peak RSS; (4) the full verify
again under tracemalloc for its peak Python memory; (5) proofs as an auditor's report
makes them: one chain's leaves recomputed from its records, then --proofs inclusion
proofs of random records against its latest signed root and a consistency proof from
its first signed checkpoint to its latest, each made and verified. With --old-records,
the verify issue 8 replaced (every row of a chain and every output held at once) and
the full verify run on a smaller store, for their peak memory side by side.
Target (issues 8, 9): verify's peak memory under 300 MB at 1,000,000 records.
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
    """Writes records as `EvidenceStore.append` would, in bulk, with the store's hashing,
    and signs a checkpoint of a chain whenever a run on it ends, as `checkpoint` does."""

    def __init__(self, url: str, chains: int, key: Path, witness: Path) -> None:
        from mspauto.evidence.checkpoints import Notary, Witness
        from mspauto.evidence.merkle import Frontier
        from mspauto.evidence.store import GENESIS, EvidenceStore
        from mspauto.signing import SigningKey

        self.store = EvidenceStore(url)
        self.heads = dict.fromkeys([f"client-{c:02d}" for c in range(chains)], (0, GENESIS))
        self.frontiers = {chain: Frontier() for chain in self.heads}
        self.notary = Notary(SigningKey.load(key), Witness(witness))
        self.pending_records: list[dict[str, Any]] = []
        self.pending_outputs: list[dict[str, Any]] = []
        self.pending_checkpoints: list[dict[str, Any]] = []
        self.added = self.output_bytes = self.signed = 0
        self.insert_seconds = self.sign_seconds = self.witness_seconds = 0.0

    def add(self, chain: str, kind: str, run_id: str, host: str, payload: dict[str, Any]) -> None:
        from mspauto.evidence.merkle import leaf_hash
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
        self.frontiers[chain].append(leaf_hash(bytes.fromhex(digest)))
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

    def sign(self, chain: str) -> None:
        """A checkpoint of ``chain`` as it is now: signed, kept for the next flush and
        appended to the witness (one fsync each, as a run does)."""
        started = time.perf_counter()
        frontier = self.frontiers[chain]
        signed = self.notary.sign(chain, frontier.size, frontier.root())
        self.pending_checkpoints.append(
            {
                "chain": chain,
                "size": signed.size,
                "root": signed.root.hex(),
                "signed_at": signed.time,
                "note": signed.note,
                "frontier": json.dumps(frontier.to_json()),
            }
        )
        witnessing = time.perf_counter()
        assert self.notary.witness is not None
        self.notary.witness.append(signed)
        self.signed += 1
        self.sign_seconds += witnessing - started
        self.witness_seconds += time.perf_counter() - witnessing

    def flush(self) -> None:
        from sqlalchemy import insert

        from mspauto.evidence.schema import checkpoints, outputs, records

        started = time.perf_counter()
        with self.store.engine.begin() as conn:
            if self.pending_records:
                conn.execute(insert(records), self.pending_records)
            if self.pending_outputs:
                conn.execute(insert(outputs), self.pending_outputs)
            if self.pending_checkpoints:
                conn.execute(insert(checkpoints), self.pending_checkpoints)
        self.insert_seconds += time.perf_counter() - started
        self.pending_records.clear()
        self.pending_outputs.clear()
        self.pending_checkpoints.clear()

    def close(self) -> None:
        from sqlalchemy import insert

        from mspauto.evidence.schema import chain_heads

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


def build(
    url: str,
    count: int,
    chains: int,
    output_bytes: int,
    distinct: float,
    key: Path,
    witness: Path,
) -> dict[str, Any]:
    """Runs of host results over ``chains`` chains, ``count`` records in all, each run
    followed by a signed checkpoint of its chain."""
    builder = Builder(url, chains, key, witness)
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
        builder.sign(chain)
        if len(builder.pending_records) >= BUILD_BATCH:
            builder.flush()
    builder.close()
    return {
        "seconds": time.perf_counter() - start,
        "records": builder.added,
        "distinct_outputs": distinct_added,
        "output_bytes": builder.output_bytes,
        "checkpoints": builder.signed,
        "insert_seconds": builder.insert_seconds,
        "sign_seconds": builder.sign_seconds,
        "witness_seconds": builder.witness_seconds,
    }


# --- what each child measures -----------------------------------------------------------


def plain_read(url: str) -> dict[str, Any]:
    """The baseline: every record and output read in one sequential pass, SHA-256 over each."""
    import hashlib

    from sqlalchemy import select

    from mspauto.evidence.schema import outputs, records
    from mspauto.evidence.store import EvidenceStore, record_hash

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


def new_verify(
    url: str, traced: bool, key: Path | None = None, witness: Path | None = None
) -> dict[str, Any]:
    """`EvidenceStore.verify()` as `mspauto evidence verify` runs it: with the public key
    and the witness (every signature, every signed root recomputed), or without a key
    (hash links, outputs and Merkle leaves only)."""
    import tracemalloc

    from mspauto.evidence.checkpoints import Witness
    from mspauto.evidence.store import EvidenceStore
    from mspauto.signing import PublicKey

    store = EvidenceStore(url, writable=False)
    public = None if key is None else PublicKey.load(key)
    log = None if witness is None else Witness(witness)
    before = peak_rss_mb()
    if traced:
        tracemalloc.start()
    start = time.perf_counter()
    result = store.verify(key=public, witness=log)
    seconds = time.perf_counter() - start
    traced_peak = tracemalloc.get_traced_memory()[1] / 2**20 if traced else 0.0
    store.close()
    return {
        "seconds": seconds,
        "checked": result.checked,
        "checkpoints": result.checkpoints,
        "problems": [str(p) for p in result.problems[:5]] + result.warnings[:5],
        "rss_before_mb": before,
        "rss_peak_mb": peak_rss_mb(),
        "traced_peak_mb": traced_peak,
    }


def proofs(url: str, key: Path, count: int) -> dict[str, Any]:
    """Proofs as an auditor's report makes them, for the store's first chain: its leaves
    recomputed from its records in order, ``count`` inclusion proofs of random records
    against the latest signed root, and a consistency proof from the first signed
    checkpoint to the latest, each made and then verified."""
    import random

    from sqlalchemy import select

    from mspauto.evidence import merkle
    from mspauto.evidence.checkpoints import parse_checkpoint
    from mspauto.evidence.schema import checkpoints, records
    from mspauto.evidence.store import EvidenceStore, record_hash
    from mspauto.signing import PublicKey

    public = PublicKey.load(key)
    store = EvidenceStore(url, writable=False)
    chain = store.chains()[0]
    before = peak_rss_mb()
    start = time.perf_counter()
    with store.engine.connect() as conn:
        query = (
            select(checkpoints.c.note)
            .where(checkpoints.c.chain == chain)
            .order_by(checkpoints.c.size)
        )
        notes = list(conn.execute(query).scalars())
        first, latest = (parse_checkpoint(note, public) for note in (notes[0], notes[-1]))
        leaves: list[bytes] = []
        query = (
            select(
                records.c.prev_hash,
                records.c.seq,
                records.c.kind,
                records.c.run_id,
                records.c.host,
                records.c.recorded_at,
                records.c.payload,
            )
            .where(records.c.chain == chain, records.c.seq <= latest.size)
            .order_by(records.c.seq)
            .execution_options(yield_per=BUILD_BATCH)
        )
        for batch in conn.execute(query).partitions(BUILD_BATCH):
            for prev_hash, seq, kind, run_id, host, recorded_at, payload in batch:
                digest = record_hash(
                    prev_hash, chain, seq, kind, run_id, host, recorded_at, payload
                )
                leaves.append(merkle.leaf_hash(bytes.fromhex(digest)))
    store.close()
    leaves_seconds = time.perf_counter() - start
    size = latest.size
    if len(leaves) != size:
        sys.exit(f"{chain}: {len(leaves)} records, but its latest checkpoint covers #{size}")

    start = time.perf_counter()
    for index in random.Random(9).sample(range(size), min(count, size)):
        path = merkle.inclusion_proof(leaves, index, size)
        if not merkle.verify_inclusion(leaves[index], index, size, path, latest.root):
            sys.exit(f"{chain}: the inclusion proof of #{index + 1} does not verify")
    inclusion_seconds = time.perf_counter() - start

    start = time.perf_counter()
    path = merkle.consistency_proof(leaves, first.size, size)
    if not merkle.verify_consistency(first.size, size, first.root, latest.root, path):
        sys.exit(f"{chain}: the consistency proof #{first.size} -> #{size} does not verify")
    consistency_seconds = time.perf_counter() - start
    return {
        "chain": chain,
        "leaves": size,
        "first": first.size,
        "checkpoints": len(notes),
        "proofs": min(count, size),
        "leaves_seconds": leaves_seconds,
        "inclusion_seconds": inclusion_seconds,
        "consistency_seconds": consistency_seconds,
        "rss_before_mb": before,
        "rss_peak_mb": peak_rss_mb(),
    }


def old_verify(url: str) -> dict[str, Any]:
    """The verify issue 8 replaced, reduced to what it held and hashed: every row of a
    chain and every stored output of the store at once, once per chain."""
    import hashlib

    from sqlalchemy import select

    from mspauto.evidence.schema import outputs, records
    from mspauto.evidence.store import EvidenceStore, record_hash

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
        "checkpoints": None,
        "problems": [],
        "rss_before_mb": before,
        "rss_peak_mb": peak_rss_mb(),
    }


# --- running it -------------------------------------------------------------------------


def in_child(mode: str, url: str, *extra: str) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter and return what it printed."""
    done = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--store", url, *extra],
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        sys.exit(f"child {mode!r} failed ({done.returncode}):\n{done.stderr}{done.stdout}")
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


def check_clean(result: dict[str, Any], expected: int, checkpoints: int | None) -> None:
    """Fail unless verify checked every record (and every checkpoint) and found nothing."""
    if (
        result["checked"] != expected
        or result["problems"]
        or (checkpoints is not None and result["checkpoints"] != checkpoints)
    ):
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
    parser.add_argument(
        "--proofs", type=int, default=100, help="inclusion proofs to make and verify"
    )
    parser.add_argument("--url", help="a PostgreSQL server URL to build scratch databases on")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--key", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--witness", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        public = None if args.key is None else args.key.with_name(args.key.name + ".pub")
        answer = {
            "build": lambda: build(
                args.store,
                args.records,
                args.chains,
                args.output_bytes,
                args.distinct,
                args.key,
                args.witness,
            ),
            "read": lambda: plain_read(args.store),
            "links": lambda: new_verify(args.store, traced=False),
            "verify": lambda: new_verify(args.store, False, public, args.witness),
            "traced": lambda: new_verify(args.store, True, public, args.witness),
            "proofs": lambda: proofs(
                args.store, args.key.with_name(args.key.name + ".pub"), args.proofs
            ),
            "old": lambda: old_verify(args.store),
        }[args.child]()
        print(json.dumps(answer))
        return
    run(args)


def run(args: argparse.Namespace) -> None:
    """Build the stores, measure each thing in its own child, print the figures."""
    from mspauto.signing import generate_key

    shape = [
        f"--records={args.records}",
        f"--chains={args.chains}",
        f"--output-bytes={args.output_bytes}",
        f"--distinct={args.distinct}",
    ]
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as work:
        key = Path(work) / "keys" / "evidence.key"
        generate_key(key, key.with_name(key.name + ".pub"), comment="bench evidence key")
        signing = [f"--key={key}", f"--witness={Path(work) / 'witness-big'}"]
        with scratch_store(args.url, Path(work), "big") as url:
            built = in_child("build", url, *shape, *signing)
            n, signed = built["records"], built["checkpoints"]
            print(
                f"store: {n:,} records in {args.chains} chains, {built['distinct_outputs']:,} "
                f"distinct outputs of {args.output_bytes} B, {built['output_bytes'] / 1e6:,.0f} MB "
                f"of outputs ({store_kind(url)}), {signed:,} checkpoints, built in "
                f"{built['seconds']:.0f} s (inserts {built['insert_seconds']:.0f} s, signing "
                f"{built['sign_seconds']:.1f} s, witness appends {built['witness_seconds']:.1f} s)"
            )
            read = in_child("read", url)
            links = in_child("links", url)
            check_clean(links, n, 0)
            verify = in_child("verify", url, *signing)
            check_clean(verify, n, signed)
            traced = in_child("traced", url, *signing)
            check_clean(traced, n, signed)
            proved = in_child("proofs", url, *signing, f"--proofs={args.proofs}")
        print(
            f"plain read + SHA-256 of every record and output: {read['seconds']:7.1f} s  "
            f"{n / read['seconds']:9,.0f} records/s  (baseline)"
        )
        print(
            f"EvidenceStore.verify(), no key (links, leaves):  {links['seconds']:7.1f} s  "
            f"{n / links['seconds']:9,.0f} records/s  "
            f"{links['seconds'] / read['seconds']:.2f}x baseline"
        )
        print(
            f"EvidenceStore.verify(key=, witness=):           {verify['seconds']:7.1f} s  "
            f"{n / verify['seconds']:9,.0f} records/s  "
            f"{verify['seconds'] / read['seconds']:.2f}x baseline  "
            f"({verify['checkpoints']:,} checkpoints)"
        )
        print(
            f"peak RSS of the verifying process (full):       {verify['rss_peak_mb']:7.0f} MB  "
            f"({verify['rss_before_mb']:.0f} MB before verify)  target < 300 MB"
        )
        print(
            f"peak traced Python memory during verify (full): {traced['traced_peak_mb']:7.1f} MB  "
            f"(outputs in the store: {built['output_bytes'] / 1e6:,.0f} MB)"
        )
        each = proved["inclusion_seconds"] / proved["proofs"]
        print(
            f"proofs for {proved['chain']} ({proved['leaves']:,} records, "
            f"{proved['checkpoints']:,} checkpoints): leaves recomputed in "
            f"{proved['leaves_seconds']:.1f} s; {proved['proofs']} inclusion proofs made and "
            f"verified in {proved['inclusion_seconds']:.1f} s ({each * 1000:.0f} ms each); "
            f"consistency #{proved['first']} -> #{proved['leaves']} in "
            f"{proved['consistency_seconds']:.2f} s; peak RSS {proved['rss_peak_mb']:.0f} MB "
            f"({proved['rss_before_mb']:.0f} MB before)"
        )
        if args.old_records:
            small_shape = [f"--records={args.old_records}", *shape[1:]]
            signing = [f"--key={key}", f"--witness={Path(work) / 'witness-small'}"]
            with scratch_store(args.url, Path(work), "small") as url:
                small_built = in_child("build", url, *small_shape, *signing)
                small = small_built["records"]
                old = in_child("old", url)
                check_clean(old, small, None)
                new = in_child("verify", url, *signing)
                check_clean(new, small, small_built["checkpoints"])
            print(
                f"at {small:,} records, peak RSS: old verify {old['rss_peak_mb']:.0f} MB "
                f"({old['seconds']:.1f} s), new verify (full) {new['rss_peak_mb']:.0f} MB "
                f"({new['seconds']:.1f} s); each {new['rss_before_mb']:.0f} MB before verify"
            )


if __name__ == "__main__":
    main()
