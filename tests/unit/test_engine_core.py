"""The engine's own behaviour, against an in-process transport (no hosts needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mspauto.config import Settings
from mspauto.engine import EngineError, RunSpec, run_command
from mspauto.evidence.runs import list_runs, run_detail
from mspauto.evidence.store import EvidenceStore
from mspauto.inventory.resolve import Client, Host
from mspauto.project import load_project
from mspauto.transport.base import ErrorKind
from mspauto.transport.fake import FakeTransport


def _clients(root: Path, hosts: int, max_parallel: int | None = None) -> dict[str, Client]:
    (root / "inventory").mkdir(parents=True)
    (root / "policies").mkdir()
    (root / "policies" / "c.yaml").write_text("kind: contract\nname: std\n")
    for client in ("acme", "globex"):
        spec: dict[str, object] = {
            "name": client,
            "display_name": client,
            "timezone": "UTC",
            "contract": "std",
            "platform": "debian",
            "connection": "local",
        }
        if max_parallel:
            spec["max_parallel"] = max_parallel
        document = {"client": spec, "hosts": {f"{client}-{i:03d}": {} for i in range(hosts)}}
        (root / "inventory" / f"{client}.yaml").write_text(yaml.safe_dump(document))
    project = load_project(Settings.load(root))
    assert not project.errors, project.errors
    return dict(project.inventory.clients)


def _spec(client: Client, **options: object) -> RunSpec:
    return RunSpec(client=client, hosts=list(client.hosts.values()), command="true", **options)  # type: ignore[arg-type]


def test_every_host_gets_a_result_in_order_and_evidence(tmp_path: Path) -> None:
    acme = _clients(tmp_path, 50)["acme"]
    store = EvidenceStore(f"sqlite:///{tmp_path / 'e.db'}")
    outcome = run_command(_spec(acme, forks=8), FakeTransport(), store)
    assert outcome.ok and outcome.status == "completed"
    assert [r.host for r in outcome.results] == list(acme.hosts)
    (run,) = list_runs(store)
    assert run.counts == {"ok": 50}
    detail = run_detail(store, outcome.run_id)
    assert detail is not None and len(detail.results) == 50
    result = store.verify()
    assert (result.checked, result.problems) == (52, [])


def test_the_client_cap_bounds_parallel_work(tmp_path: Path) -> None:
    acme = _clients(tmp_path, 40, max_parallel=3)["acme"]
    transport = FakeTransport(delay=0.02)
    run_command(_spec(acme, forks=20), transport, None)
    assert transport.peak_parallel == 3


def test_hosts_of_another_client_are_refused(tmp_path: Path) -> None:
    clients = _clients(tmp_path, 2)
    mixed = RunSpec(
        client=clients["acme"],
        hosts=[*clients["acme"].hosts.values(), *clients["globex"].hosts.values()],
        command="true",
    )
    transport = FakeTransport()
    with pytest.raises(EngineError, match="hosts of another client"):
        run_command(mixed, transport, None)
    assert transport.calls == []


def test_only_unreachable_hosts_are_retried(tmp_path: Path) -> None:
    acme = _clients(tmp_path, 3)["acme"]
    kinds = {
        "acme-000": ErrorKind.UNREACHABLE,
        "acme-001": ErrorKind.TIMEOUT,
        "acme-002": ErrorKind.AUTH_FAILED,
    }

    def outcome(host: Host, command: str) -> tuple[int, str, ErrorKind | None]:
        return -1, "", kinds[host.name]

    transport = FakeTransport(outcome)
    result = run_command(_spec(acme, retries=2), transport, None)
    assert [r.attempts for r in result.results] == [3, 1, 1]
    assert sorted(transport.calls) == ["acme-000"] * 3 + ["acme-001", "acme-002"]


def test_a_bug_for_one_host_is_reported_not_hidden(tmp_path: Path) -> None:
    acme = _clients(tmp_path, 3)["acme"]

    def outcome(host: Host, command: str) -> tuple[int, str, ErrorKind | None]:
        if host.name == "acme-001":
            raise RuntimeError("boom")
        return 0, "", None

    result = run_command(_spec(acme), FakeTransport(outcome), None)
    by_host = {r.host: r for r in result.results}
    assert by_host["acme-001"].error is ErrorKind.INTERNAL
    assert by_host["acme-001"].message == "RuntimeError: boom"
    assert by_host["acme-000"].ok and by_host["acme-002"].ok


class _BrokenStore(EvidenceStore):
    """A store whose database fails on every write (a lock held too long, a full disk)."""

    def append(self, new: object) -> list[object]:  # type: ignore[override]
        raise RuntimeError("database is locked\n[SQL: INSERT INTO evidence_records ...]")


def test_a_failing_store_loses_no_result_and_says_so(tmp_path: Path) -> None:
    acme = _clients(tmp_path, 5)["acme"]
    outcome = run_command(
        _spec(acme), FakeTransport(), _BrokenStore(f"sqlite:///{tmp_path / 'e.db'}")
    )
    assert [r.ok for r in outcome.results] == [True] * 5
    assert outcome.evidence_error == "RuntimeError: database is locked"
