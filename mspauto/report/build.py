"""Making one client's monthly report: scope from the project, figures from the
evidence, every file written into a fresh folder that appears only when complete."""

from __future__ import annotations

import gc
import hashlib
import heapq
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from mspauto import __version__
from mspauto.evidence.checkpoints import Checkpoint, Witness, parse_checkpoint
from mspauto.evidence.store import EvidenceStore, StoredRecord, canonical_json
from mspauto.inventory.resolve import Client
from mspauto.patching.check import MANAGER_OF_PLATFORM
from mspauto.policy.models import Waiver
from mspauto.policy.registry import PolicyDocument
from mspauto.project import Project
from mspauto.signing import PublicKey, SigningError, SigningKey
from mspauto.sla.model import MonthlyReport
from mspauto.sla.period import month_period, previous_month
from mspauto.sla.report import CHECK_KINDS, READ_KINDS, ReportScope, compute_report

if TYPE_CHECKING:
    from mspauto.report.render import PdfRenderer

__all__ = [
    "ReportError",
    "check_witness",
    "client_evidence",
    "make_report",
    "policy_set_hash",
    "report_scope",
    "write_report",
]


class ReportError(Exception):
    """The report cannot be made; the message is one line saying why and what to do."""


def report_scope(project: Project, client: Client) -> ReportScope:
    """Which checks target each of the client's hosts, its contract and its waivers."""
    contract = project.contracts().get(client.spec.contract)
    if contract is None:  # validate refuses this; a report never guesses the terms
        raise ReportError(
            f"client '{client.name}' names contract '{client.spec.contract}', which no "
            "policy file defines ('mspauto validate' shows where)"
        )
    targets: dict[str, frozenset[str]] = {}
    covered: dict[str, tuple[Waiver, list[str]]] = {}
    for host in sorted(client.hosts.values(), key=lambda h: h.name):
        kinds = set()
        for loaded in project.policies_for(host):
            policy = loaded.policy
            if isinstance(policy, Waiver):
                covered.setdefault(policy.name, (policy, []))[1].append(host.name)
            elif policy.kind in CHECK_KINDS and getattr(policy, "enabled", True):
                if policy.kind == "patch" and host.platform not in MANAGER_OF_PLATFORM:
                    continue  # network gear: not patched by mspauto, as 'patch status'
                kinds.add(policy.kind)
        targets[host.name] = frozenset(kinds)
    return ReportScope(
        client=client.name,
        client_name=client.spec.display_name,
        timezone=client.spec.timezone,
        contract=contract,
        targets=targets,
        waivers=[(waiver, tuple(hosts)) for waiver, hosts in covered.values()],
    )


def policy_set_hash(project: Project, client: Client) -> str:
    """SHA-256 over the policies that judged the client (as validated, in a canonical
    form): the manifest names it, so two reports made under different policies differ."""
    scope_names = {client.spec.contract}
    for host in client.hosts.values():
        scope_names.update(p.policy.name for p in project.policies_for(host))
    chosen = sorted(
        (p.policy.kind, p.policy.name, _as_json(p.policy))
        for p in project.policies
        if p.policy.name in scope_names
    )
    return hashlib.sha256(canonical_json(chosen).encode()).hexdigest()


def _as_json(policy: PolicyDocument) -> str:
    assert isinstance(policy, BaseModel)  # every registered kind is a pydantic model
    return canonical_json(policy.model_dump(mode="json"))


def client_evidence(store: EvidenceStore, client: str) -> Iterator[StoredRecord]:
    """The client's records a report reads (:data:`READ_KINDS`), in chain order."""
    return heapq.merge(
        *(store.records(chain=client, kind=kind) for kind in READ_KINDS),
        key=lambda record: record.seq,
    )


def check_witness(store: EvidenceStore, client: str, key: PublicKey, witness: Witness) -> None:
    """Refuse a store the witness log contradicts: the newest checkpoint the witness
    holds for the client's chain must be one the store holds too. A store rolled back
    to an older copy (records of a bad month gone) would otherwise give a clean report
    whose manifest verifies; ``mspauto evidence verify`` then says what happened."""
    seen: Checkpoint | None = None
    if not witness.exists():
        if store.signed_checkpoints(client, key):
            raise ReportError(
                f"no witness log at {witness.path}, but {client}'s evidence is signed: is "
                "the witness folder mounted? (set MSPAUTO_WITNESS_DIR to it)"
            )
        return
    for entry in witness.entries():
        if isinstance(entry, str):
            if not entry.startswith("witness line"):
                raise ReportError(entry)
            continue
        try:
            checkpoint = parse_checkpoint(entry.note, key)
        except SigningError:
            continue
        latest = seen is None or checkpoint.size >= seen.size
        if checkpoint.chain == client and not checkpoint.head and latest:
            seen = checkpoint
    if seen is None:
        return
    held = {(c.size, c.root) for c in store.signed_checkpoints(client, key)}
    if (seen.size, seen.root) not in held:
        raise ReportError(
            f"the evidence store does not match the witness log: it lacks {client}'s "
            f"checkpoint of {seen.size} records that the log holds (rolled back or "
            "replaced?); run 'mspauto evidence verify' before any report"
        )


def make_report(
    project: Project, store: EvidenceStore, client: Client, month: str, *, now: datetime
) -> MonthlyReport:
    """The client's report for ``month`` (``YYYY-MM``, in the client's time zone)."""
    zone = client.spec.timezone
    period = month_period(month, zone)
    if period.start > now:
        raise ReportError(f"{month} has not started yet in {zone}: nothing to report")
    with _few_collections():
        return compute_report(
            client_evidence(store, client.name),
            report_scope(project, client),
            period,
            month_period(previous_month(month), zone),
            now=now,
            version=__version__,
        )


def write_report(
    report: MonthlyReport,
    folder: Path,
    store: EvidenceStore,
    key: SigningKey,
    *,
    policy_hash: str,
    replace: bool = False,
    renderer: PdfRenderer | None = None,
) -> list[Path]:
    """Every report file and the signed manifest into ``folder`` (the PDF laid out by
    ``renderer``, see :func:`~mspauto.report.render.write_all`).

    The files are made in a temporary folder beside it and moved into place at once,
    so a crash or an error never leaves a half report that looks whole."""
    from mspauto.report.manifest import build_manifest
    from mspauto.report.render import write_all

    if folder.exists() and not replace:
        raise ReportError(
            f"{folder} exists already: a delivered report is not overwritten "
            "(give --replace to make it again)"
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        with _few_collections():
            files = write_all(report, work, renderer)
            build_manifest(work, files, report, store, key, policy_set_hash=policy_hash)
        os.chmod(work, 0o755)
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
            work.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            work.rename(folder)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return sorted(folder.iterdir())


class _Collector:
    """Collects cycles rarely while reports are made. A month of evidence becomes
    millions of small objects that live until the report is written, none in a cycle;
    at Python's default threshold the collector walks them again and again (about a
    quarter of the report's time, measured with bench/report.py) and frees nothing.
    Reports made at once in threads share the setting; the last to finish restores it."""

    YOUNG_OBJECTS = 50_000
    """Allocations between collections of young objects (Python's default is 700)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._default = gc.get_threshold()

    @contextmanager
    def rarely(self) -> Iterator[None]:
        with self._lock:
            if self._users == 0:
                self._default = gc.get_threshold()
                gc.set_threshold(self.YOUNG_OBJECTS, *self._default[1:])
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    gc.set_threshold(*self._default)


_few_collections = _Collector().rarely
