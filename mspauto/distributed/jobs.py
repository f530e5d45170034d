"""What a batch message holds, and how a worker carries it out.

A message names things and never holds a secret: the run, the client, its hosts, what
to run (an ad-hoc command, or a check kind with its options) and a digest of the
client's part of the project. The worker rebuilds everything else from its own copy of
the project (the hosts, their credentials from references, the check's plans and
scripts), refuses a batch whose digest differs (it would run or judge something else
than the control node planned), and runs it through the same engine and pipeline as
an in-process run, taking each host before running it (:mod:`mspauto.distributed.claims`).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from mspauto.checks.pipeline import (
    ClientScope,
    RunOptions,
    change_spec,
    recorded_play,
    run_checks,
    scope_client,
)
from mspauto.distributed.claims import CLAIM_LEASE, HostClaims, worker_name
from mspauto.engine import RunOutcome, RunSpec, run_hosts
from mspauto.engine.progress import Progress
from mspauto.engine.run import ResultHook
from mspauto.evidence.records import RunStatus
from mspauto.evidence.store import EvidenceStore, canonical_json
from mspauto.inventory.resolve import Client, Host
from mspauto.project import Project
from mspauto.signing import PublicKey, SigningKey
from mspauto.transport import transport_for
from mspauto.transport.base import Transport

__all__ = ["MESSAGE_VERSION", "Batch", "BatchRefused", "client_digest", "run_batch"]

MESSAGE_VERSION = 1
EXPIRY_MARGIN = timedelta(minutes=10)
"""A worker takes no batch this close to its certificate's expiry: what it records
must be checkpointed (at the run's end) while the certificate holds."""


class BatchRefused(Exception):
    """The worker will not run this batch (one line saying why, for the control node)."""


@dataclass(frozen=True)
class Batch:
    """One Celery task: some hosts of one client's run, and what they run."""

    run_id: str
    client: str
    hosts: tuple[str, ...]
    job: Mapping[str, Any]
    """``{"kind": "exec", "command", "sudo", "timeout", "retries", "forks", "via",
    "connect_timeout"}`` or ``{"kind": "check", "check", "timeout", "forks", "today"}``
    (with what the check kind needs besides: ``now``, ``check_integrity``, ``due_only``,
    and ``policies`` when it reads policies of another kind)."""
    digest: str
    """:func:`client_digest` of the control node's project."""

    def message(self, key: SigningKey | None = None) -> dict[str, Any]:
        """The task's argument (JSON), signed with the MSP's ``key`` when given."""
        message: dict[str, Any] = {
            "version": MESSAGE_VERSION,
            **asdict(self),
            "hosts": list(self.hosts),
        }
        if key is not None:
            message["signature"] = base64.b64encode(key.sign(_signed_part(message))).decode()
        return message

    @classmethod
    def read(cls, message: object, key: PublicKey | None = None) -> Batch:
        """The batch in ``message``; with the MSP's public ``key``, only if that key
        signed it (whoever can publish to the broker cannot then send work)."""
        if not isinstance(message, Mapping):
            raise BatchRefused("a malformed batch message (not a mapping)")
        if message.get("version") != MESSAGE_VERSION:
            raise BatchRefused(
                f"a batch message of version {message.get('version')!r}: this worker runs "
                f"version {MESSAGE_VERSION} (run the same mspauto on workers and control node)"
            )
        if key is not None and not _signed_by(message, key):
            raise BatchRefused(
                "a batch message not signed by the MSP's key: sent by something other than "
                "a control node holding that key"
            )
        try:
            return cls(
                str(message["run_id"]),
                str(message["client"]),
                tuple(str(h) for h in message["hosts"]),
                dict(message["job"]),
                str(message["digest"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BatchRefused(f"a malformed batch message ({exc})") from None


def _signed_part(message: Mapping[str, Any]) -> bytes:
    """What a batch signature covers: the whole message but the signature."""
    unsigned = {k: v for k, v in message.items() if k != "signature"}
    return b"mspauto batch message v1\n" + canonical_json(unsigned).encode()


def _signed_by(message: Mapping[str, Any], key: PublicKey) -> bool:
    signature = message.get("signature")
    if not isinstance(signature, str):
        return False
    try:
        raw = base64.b64decode(signature, validate=True)
        return key.verify(_signed_part(message), raw)
    except (ValueError, TypeError):
        return False


def client_digest(project: Project, client: Client) -> str:
    """SHA-256 over what a worker rebuilds a batch of ``client`` from: its hosts as
    resolved (addresses, credentials by reference, variables) and every policy. Another
    client's files do not count: a worker inside one client's network may hold only
    that client's inventory."""
    hosts = [
        {f.name: getattr(h, f.name) for f in fields(h) if f.name != "location"}
        for h in sorted(client.hosts.values(), key=lambda h: h.name)
    ]  # where each is written does not change what it is
    policies = sorted(
        canonical_json(p.policy.model_dump(mode="json"))  # type: ignore[attr-defined]
        for p in project.policies
    )
    material = {
        "client": client.spec.model_dump(mode="json"),
        "hosts": json.loads(json.dumps(hosts, default=_plain)),
        "policies": policies,
    }
    return hashlib.sha256(canonical_json(material).encode()).hexdigest()


def _plain(value: object) -> object:
    """JSON for what a resolved host holds beyond JSON's types."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, frozenset | set):
        return sorted(value)
    return str(value)


CheckFactory = Callable[[Project, EvidenceStore, "Batch"], Any]
"""Builds a check kind's :class:`~mspauto.checks.pipeline.Check` for a batch, as the
control node built it (its options are in the batch's job)."""


def _baseline(project: Project, _store: EvidenceStore, _batch: Batch) -> Any:
    from mspauto.baseline.check import BaselineCheck

    return BaselineCheck.for_project(project)


def _backup(project: Project, store: EvidenceStore, batch: Batch) -> Any:
    from mspauto.backup.check import BackupCheck
    from mspauto.backup.verify import last_integrity_checks

    return BackupCheck(
        project.settings.root,
        now=_now(batch.job),  # the control node's "now"
        last_integrity=last_integrity_checks(store, batch.client, list(batch.hosts)),
        check_integrity=bool(batch.job.get("check_integrity", False)),
    )


def _drill(project: Project, store: EvidenceStore, batch: Batch) -> Any:
    from mspauto.backup.drill import DrillCheck
    from mspauto.backup.verify import last_drills

    due_only = bool(batch.job.get("due_only", False))
    return DrillCheck(
        project.settings.root,
        now=_now(batch.job),
        last_drills=last_drills(store, batch.client, list(batch.hosts)) if due_only else None,
    )


def _patch(project: Project, store: EvidenceStore, batch: Batch) -> Any:
    from mspauto.patching.apply import patch_check
    from mspauto.patching.severity import SeveritySourceError

    job = batch.job
    try:
        sources = _severity_sources(project)
    except SeveritySourceError as exc:
        raise BatchRefused(f"this worker's severity sources cannot be used: {exc}") from None
    theirs = job.get("sources")
    if not isinstance(theirs, list) or not all(isinstance(h, str) for h in theirs):
        raise BatchRefused(f"a malformed batch message (sources {theirs!r})")
    if sorted(s.sha256 for s in sources.snapshots) != sorted(theirs):
        raise BatchRefused(
            "this worker's severity sources differ from the control node's (the Debian "
            "tracker or KEV copy): give both the same files"
        )
    phase = job.get("phase", "pre")
    lock_timeout = job.get("lock_timeout", 120)
    if phase not in ("pre", "post") or not _whole(lock_timeout, 0, 3600):
        raise BatchRefused(f"a malformed batch message (phase {phase!r}, lock {lock_timeout!r})")
    client = project.inventory.clients[batch.client]
    return patch_check(
        store,
        batch.client,
        batch.hosts,
        contract=project.contracts().get(client.spec.contract),
        now=_now(job),
        sources=sources,
        lock_timeout=lock_timeout,
        phase=phase,
    )


def _now(job: Mapping[str, Any]) -> datetime:
    """The control node's "now" a check judges at: an ISO 8601 time with its zone."""
    value = job.get("now")
    when = datetime.fromisoformat(value) if isinstance(value, str) else None
    if when is None or when.tzinfo is None:
        raise BatchRefused(f"a malformed batch message (now {value!r})")
    return when


def _whole(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


_SOURCES: dict[tuple[object, ...], Any] = {}


def _severity_sources(project: Project) -> Any:
    """The severity sources this worker's settings name, read again only when a file
    changed (the Debian tracker's copy is tens of megabytes)."""
    from mspauto.patching.severity import SeveritySources

    settings = project.settings
    stamp = tuple(
        (str(path), path.stat().st_mtime_ns, path.stat().st_size) if path.exists() else path
        for path in (settings.debian_tracker, settings.kev_catalog)
        if path is not None
    )
    if stamp not in _SOURCES:
        _SOURCES.clear()
        _SOURCES[stamp] = SeveritySources.from_settings(settings)
    return _SOURCES[stamp]


def _sites(project: Project, client: str) -> set[str | None]:
    known = project.inventory.clients.get(client)
    return set() if known is None else {h.site for h in known.hosts.values()}


def _check_factories() -> dict[str, CheckFactory]:
    return {"baseline": _baseline, "backup": _backup, "backup-drill": _drill, "patch": _patch}


@dataclass(frozen=True)
class _Limits:
    timeout: float
    retries: int
    forks: int
    connect_timeout: float


def _limits(job: Mapping[str, Any]) -> _Limits:
    """A job's time limits and parallelism, each checked (a message is data from the
    broker: whoever can publish there could send anything)."""

    def number(name: str, default: float, low: float, high: float) -> float:
        value = job.get(name, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            raise BatchRefused(f"a malformed batch message ({name} {value!r})")
        return float(value)

    return _Limits(
        timeout=number("timeout", 60.0, 0.1, 86400.0),
        retries=int(number("retries", 2, 0, 10)),
        forks=int(number("forks", 50, 1, 1000)),
        connect_timeout=number("connect_timeout", 10.0, 0.1, 3600.0),
    )


def _text(job: Mapping[str, Any], name: str) -> str:
    value = job.get(name)
    if not isinstance(value, str):
        raise BatchRefused(f"a malformed batch message ({name} is not text)")
    return value


CHANGES = frozenset({"baseline"})
"""Check kinds whose changes a worker makes (``kind: change`` batches)."""


def _check_of(
    job: Mapping[str, Any],
    project: Project,
    store: EvidenceStore,
    batch: Batch,
    hosts: list[Host],
) -> tuple[Any, ClientScope]:
    """The check a batch names, built as the control node built it, and its scope."""
    factory = _check_factories().get(str(job.get("check")))
    if factory is None:
        raise BatchRefused(f"this worker cannot run checks of kind {job.get('check')!r}")
    try:
        today = date.fromisoformat(_text(job, "today"))
        check = factory(project, store, batch)
    except ValueError as exc:
        raise BatchRefused(f"a malformed batch message ({exc})") from None
    # The policies a check reads are of its kind (a restore drill reads backup ones).
    policies = str(job.get("policies", job["check"]))
    client = project.inventory.clients[batch.client]
    return check, scope_client(project, client, hosts, policies, today)


def _run_of(
    kind: str,
    project: Project,
    store: EvidenceStore,
    client: Client,
    hosts: list[Host],
    job: Mapping[str, Any],
    limits: _Limits,
) -> tuple[RunSpec, Transport]:
    """The run of an ad-hoc command, or of a patch install or reboot (its play built
    here, from the scan the control node recorded), and the transport it goes by."""
    root = project.settings.root
    if kind == "exec":
        spec = RunSpec(
            client=client,
            hosts=hosts,
            command=_text(job, "command"),
            sudo=job.get("sudo") is True,
            timeout=limits.timeout,
            retries=limits.retries,
            forks=limits.forks,
        )
        return spec, transport_for(
            client,
            root,
            via="ansible" if job.get("via") == "ansible" else "direct",
            connect_timeout=limits.connect_timeout,
            forks=limits.forks,
        )
    from mspauto.patching.apply import worker_play

    try:
        play = worker_play(project, store, client, hosts, job)
    except ValueError as exc:
        raise BatchRefused(f"a {kind} batch this worker cannot build: {exc}") from None
    spec = RunSpec(
        client=client,
        hosts=hosts,
        command=_text(job, "command"),
        play=play,
        sudo=True,
        retries=0,  # a lost connection may hide an install or a reboot that happened
        timeout=limits.timeout,
        forks=limits.forks,
        kind="patch-reboot" if kind == "patch-reboot" else "patch-change",
    )
    return spec, transport_for(client, root, via="ansible", forks=limits.forks)


def run_batch(
    batch: Batch,
    project: Project,
    store: EvidenceStore,
    allowed: Callable[[str, str | None], bool],
    digest: Callable[[Project, Client], str] = client_digest,
    lease: timedelta = CLAIM_LEASE,
) -> dict[str, Any]:
    """Run ``batch`` here (a worker): its hosts' records go to ``store``. What it did, in
    a few counts (the evidence holds the rest); :class:`BatchRefused` when it may not."""
    signer = store.batch_signer
    # (The worker stops before this; a batch it took just then is refused, in time.)
    if signer is not None and datetime.now(UTC) > signer.certificate.not_after - EXPIRY_MARGIN:
        raise BatchRefused(
            f"the certificate of worker {signer.certificate.name} expires at "
            f"{signer.certificate.not_after:%Y-%m-%d %H:%M} UTC: what it recorded now might "
            "count as unsigned; issue a new one ('mspauto keys worker') and restart it"
        )
    if not allowed(batch.client, None) and not any(
        allowed(batch.client, site) for site in _sites(project, batch.client)
    ):
        raise BatchRefused(f"this worker does not serve client {batch.client!r}")
    client = project.inventory.clients.get(batch.client)
    if client is None:
        raise BatchRefused(f"client {batch.client!r} is not in this worker's project")
    if digest(project, client) != batch.digest:
        raise BatchRefused(
            f"this worker's project differs from the control node's for client "
            f"{batch.client!r} (inventory or policies): deploy the same project to both"
        )
    unknown = [name for name in batch.hosts if name not in client.hosts]
    if unknown:
        raise BatchRefused(f"hosts not in client {batch.client!r}: {', '.join(unknown)}")
    hosts = [client.hosts[name] for name in batch.hosts]
    elsewhere = [h.name for h in hosts if not allowed(batch.client, h.site)]
    if elsewhere:
        raise BatchRefused(f"hosts at a site this worker does not serve: {', '.join(elsewhere)}")
    claims = HostClaims(store.engine, batch.run_id, worker_name(), lease)
    job = batch.job
    kind = job.get("kind")
    results: dict[str, Any] = {}

    def executor(
        spec: RunSpec,
        transport: Transport,
        store: EvidenceStore | None,
        _progress: Progress | None,
        on_result: ResultHook | None,
    ) -> RunOutcome:
        with claims.keep_alive():
            done = run_hosts(
                spec,
                transport,
                store,
                batch.run_id,
                on_result=on_result,
                claim=claims.take,
                keep_claim=claims.keep,
            )
        results.update(done)
        return RunOutcome(batch.run_id, batch.client, RunStatus.COMPLETED, list(done.values()))

    limits = _limits(job)
    if kind == "check":
        check, scope = _check_of(job, project, store, batch, hosts)
        options = RunOptions(timeout=limits.timeout, forks=limits.forks, executor=executor)
        transport = transport_for(client, project.settings.root)
        run_checks(check, scope, transport, store, options)
    elif kind == "change":
        if not isinstance(job.get("check"), str) or job["check"] not in CHANGES:
            raise BatchRefused(f"this worker makes no changes of kind {job.get('check')!r}")
        check, scope = _check_of(job, project, store, batch, hosts)
        try:
            play = recorded_play(check, scope, store, _text(job, "before"))
        except ValueError as exc:
            raise BatchRefused(f"a change batch this worker cannot build: {exc}") from None
        spec = change_spec(
            client, hosts, check.kind, _text(job, "command"), play, job.get("dry_run") is True
        )
        spec = replace(spec, timeout=limits.timeout, forks=limits.forks)
        transport = transport_for(client, project.settings.root, via="ansible", forks=limits.forks)
        executor(spec, transport, store, None, None)
    elif kind in ("exec", "patch-install", "patch-reboot"):
        spec, transport = _run_of(str(kind), project, store, client, hosts, job, limits)
        executor(spec, transport, store, None, None)
    else:
        raise BatchRefused(f"this worker cannot run jobs of kind {kind!r}")
    return {"hosts": sorted(results), "ok": sum(1 for r in results.values() if r.ok)}
