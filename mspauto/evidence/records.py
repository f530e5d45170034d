"""Every kind of evidence record, typed: what each payload holds and how it is read back.

Writers build these dataclasses and store their ``payload()``; readers (``runs``, the
monthly report) get them back with ``read``/``read_host_findings``/
``read_change_result``, never by poking at dicts. A
payload carries ``schema`` so later shapes can be told apart; records written before
schemas existed (``baseline_result``, ``baseline_remediation``) are read into today's
types, so an MSP's existing evidence keeps verifying *and* reading.

Findings are the one shape every check kind writes (baseline rules and pending updates
today; backup jobs next): reports read findings only, whatever produced them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "FINDINGS_SCHEMA",
    "SCHEDULED_STATES",
    "Attempt",
    "ChangeOutcome",
    "ChangeResult",
    "Finding",
    "FindingStatus",
    "HostFindings",
    "HostResult",
    "OutputRef",
    "RecordKind",
    "RunFinished",
    "RunStarted",
    "RunStatus",
    "ScheduledRun",
    "read_change_result",
    "read_host_findings",
]

FINDINGS_SCHEMA = 1
"""Version of the ``findings`` and ``change_result`` payload shapes."""


class RecordKind(StrEnum):
    """What a stored record is (the ``kind`` column)."""

    RUN_STARTED = "run_started"
    HOST_RESULT = "host_result"
    RUN_FINISHED = "run_finished"
    FINDINGS = "findings"
    """One host's findings from one check run (any check kind)."""
    CHANGE_RESULT = "change_result"
    """One host's changes and each subject's status before and after them."""
    PATCH_ROLLOUT = "patch_rollout"
    """How one ring of a patch rollout went: its hosts, the failed ones, whether the
    rollout stopped there."""
    SCHEDULED_RUN = "scheduled_run"
    """One tick of the control node's schedule and how it ended: run (ok, failed,
    interrupted) or skipped, with the reason."""
    LEGACY_BASELINE_RESULT = "baseline_result"
    """Written before findings existed; read as :class:`HostFindings`."""
    LEGACY_BASELINE_REMEDIATION = "baseline_remediation"
    """Written before change results existed; read as :class:`ChangeResult`."""


class RunStatus(StrEnum):
    """How a run ended (``running`` only while its process is alive)."""

    COMPLETED = "completed"
    INTERRUPTED = "interrupted"
    """Stopped on request (first Ctrl-C or SIGTERM) or the control node died."""
    ABORTED = "aborted"
    """Stopped at once (second Ctrl-C): hosts still running are of unknown outcome."""
    RUNNING = "running"


class FindingStatus(StrEnum):
    """A verdict on one subject (a rule, a package, a backup job) on one host."""

    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"
    """The check could not run or its answer could not be read: never a pass."""
    NOT_APPLICABLE = "not_applicable"
    WAIVED = "waived"
    """It failed, but an approved, unexpired waiver covers it."""


_STATUSES = {str(status): status for status in FindingStatus}
"""Statuses by value: a report reads a status per finding, and a dict lookup is much
cheaper than the enum's call (which still reports an unknown value)."""


@dataclass(frozen=True)
class OutputRef:
    """A raw output stored beside the records, named by its SHA-256."""

    sha256: str
    bytes: int
    stored: int

    def as_dict(self) -> dict[str, Any]:
        """Payload form."""
        return {"sha256": self.sha256, "bytes": self.bytes, "stored": self.stored}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OutputRef:
        """Read the payload form back."""
        return cls(str(data["sha256"]), int(data["bytes"]), int(data.get("stored", data["bytes"])))


@dataclass(frozen=True)
class RunStarted:
    """What a run was asked to do, by whom, where (the first record of every run)."""

    kind: str
    """``exec``, ``baseline``, ``baseline-change``..."""
    client: str
    command: str
    """What ran: the command, or a description when each host ran its own script."""
    sudo: bool
    hosts: tuple[str, ...]
    timeout: float
    retries: int
    forks: int
    requested_by: str
    node: str
    pid: int
    mspauto: str
    scripts: tuple[str, ...] = ()
    """SHA-256 of each distinct per-host script (stored as outputs), if any."""
    check_mode: bool = False
    """True for a dry run of changes (Ansible check mode): nothing was changed."""

    def payload(self) -> dict[str, Any]:
        """The ``run_started`` payload."""
        return {
            "kind": self.kind,
            "client": self.client,
            "command": self.command,
            "sudo": self.sudo,
            "hosts": list(self.hosts),
            "timeout": self.timeout,
            "retries": self.retries,
            "forks": self.forks,
            "requested_by": self.requested_by,
            "node": self.node,
            "pid": self.pid,
            "mspauto": self.mspauto,
            "scripts": list(self.scripts),
            "check_mode": self.check_mode,
        }

    @classmethod
    def read(cls, payload: Mapping[str, Any]) -> RunStarted:
        """Read a stored payload (older ones lack ``scripts`` and ``check_mode``)."""
        return cls(
            kind=str(payload.get("kind", "")),
            client=str(payload.get("client", "")),
            command=str(payload.get("command", "")),
            sudo=bool(payload.get("sudo", False)),
            hosts=tuple(payload.get("hosts", [])),
            timeout=float(payload.get("timeout", 0)),
            retries=int(payload.get("retries", 0)),
            forks=int(payload.get("forks", 0)),
            requested_by=str(payload.get("requested_by", "")),
            node=str(payload.get("node", "")),
            pid=int(payload.get("pid", 0)),
            mspauto=str(payload.get("mspauto", "")),
            scripts=tuple(payload.get("scripts", [])),
            check_mode=bool(payload.get("check_mode", False)),
        )


@dataclass(frozen=True)
class Attempt:
    """One try at a host (unreachable hosts are tried again)."""

    started: str
    finished: str
    error: str | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        """Payload form."""
        return {
            "started": self.started,
            "finished": self.finished,
            "error": self.error,
            "message": self.message,
        }


@dataclass(frozen=True)
class HostResult:
    """What one host did in a run: exit code, classified error, outputs, every attempt."""

    host: str
    address: str
    port: int | None
    connection: str
    command: str
    sudo: bool
    rc: int | None
    error: str | None
    message: str
    started: str
    finished: str
    stdout: OutputRef
    stderr: OutputRef
    attempts: int = 1
    """How many times the host was tried."""
    tries: tuple[Attempt, ...] = ()
    """Every attempt in order (records written before tries were kept hold only the
    count)."""
    script: OutputRef | None = None
    """The host's own script, stored as an output (``command`` then describes it)."""

    @property
    def ok(self) -> bool:
        """True when the command ran and exited 0."""
        return self.rc == 0 and not self.error

    def payload(self) -> dict[str, Any]:
        """The ``host_result`` payload."""
        return {
            "host": self.host,
            "address": self.address,
            "port": self.port,
            "connection": self.connection,
            "command": self.command,
            "sudo": self.sudo,
            "rc": self.rc,
            "error": self.error,
            "message": self.message,
            "started": self.started,
            "finished": self.finished,
            "attempts": self.attempts,
            "tries": [t.as_dict() for t in self.tries],
            "stdout": self.stdout.as_dict(),
            "stderr": self.stderr.as_dict(),
            "script": None if self.script is None else self.script.as_dict(),
        }

    @classmethod
    def read(cls, payload: Mapping[str, Any]) -> HostResult:
        """Read a stored payload (older ones lack ``tries`` and ``script``)."""
        tries = tuple(
            Attempt(
                str(t["started"]), str(t["finished"]), t.get("error"), str(t.get("message", ""))
            )
            for t in payload.get("tries", [])
        )
        script = payload.get("script")
        return cls(
            host=str(payload["host"]),
            address=str(payload.get("address", "")),
            port=payload.get("port"),
            connection=str(payload.get("connection", "")),
            command=str(payload.get("command", "")),
            sudo=bool(payload.get("sudo", False)),
            rc=payload.get("rc"),
            error=payload.get("error"),
            message=str(payload.get("message", "")),
            started=str(payload.get("started", "")),
            finished=str(payload.get("finished", "")),
            stdout=OutputRef.from_dict(payload["stdout"]),
            stderr=OutputRef.from_dict(payload["stderr"]),
            attempts=int(payload.get("attempts", max(1, len(tries)))),
            tries=tries,
            script=None if script is None else OutputRef.from_dict(script),
        )


@dataclass(frozen=True)
class RunFinished:
    """How a run ended, with a count of hosts per outcome (the last record of a run)."""

    status: RunStatus
    counts: Mapping[str, int]

    def payload(self) -> dict[str, Any]:
        """The ``run_finished`` payload."""
        return {"status": str(self.status), "counts": dict(self.counts)}

    @classmethod
    def read(cls, payload: Mapping[str, Any]) -> RunFinished:
        """Read a stored payload."""
        return cls(RunStatus(payload["status"]), dict(payload.get("counts", {})))


SCHEDULED_STATES = ("ok", "failed", "interrupted", "skipped")
"""How a scheduled tick can end."""


@dataclass(frozen=True)
class ScheduledRun:
    """One tick of a scheduled job (``scheduled_run``): when it was due, how it ended
    and why. A run it started leaves its own records too; a skipped tick has only this."""

    key: str
    """The tick's key (``client/policy/action@due``): a record read twice is one tick."""
    policy: str
    action: str
    """``patch``, ``patch-scan``, ``backup``, ``backup-drill``, ``baseline`` or ``report``."""
    due: str
    """When the tick was due (ISO 8601, UTC)."""
    state: str
    """``ok``, ``failed``, ``interrupted`` or ``skipped``."""
    reason: str
    exit_code: int | None

    def payload(self) -> dict[str, Any]:
        """The ``scheduled_run`` payload."""
        return {
            "key": self.key,
            "policy": self.policy,
            "action": self.action,
            "due": self.due,
            "state": self.state,
            "reason": self.reason,
            "exit_code": self.exit_code,
        }

    @classmethod
    def read(cls, payload: Mapping[str, Any]) -> ScheduledRun:
        """Read a stored payload (KeyError or TypeError when mspauto did not write it)."""
        text = {name: payload[name] for name in ("key", "policy", "action", "due", "state")}
        reason, code = payload["reason"], payload["exit_code"]
        if not all(isinstance(v, str) for v in (*text.values(), reason)):
            raise TypeError("a scheduled run's fields are text")
        if code is not None and (isinstance(code, bool) or not isinstance(code, int)):
            raise TypeError("a scheduled run's exit code is a number")
        if text["state"] not in SCHEDULED_STATES:
            raise ValueError(f"a scheduled run cannot end {text['state']!r}")
        return cls(reason=reason, exit_code=code, **text)


@dataclass(frozen=True)
class Finding:
    """What one check found about one subject on one host."""

    subject: str
    """What was judged: a rule id, a package, a backup job."""
    policy: str
    """The policy that asked for it ('' in records written before policies were named)."""
    status: FindingStatus
    observed: str = ""
    expected: str = ""
    reason: str = ""
    waiver: str | None = None
    weight: int = 1
    detail: Mapping[str, Any] = field(default_factory=dict)
    """Kind-specific facts (a rule's title, pack, severity and CIS references)."""

    def as_dict(self) -> dict[str, Any]:
        """Payload form (statuses as their string values)."""
        return {
            "subject": self.subject,
            "policy": self.policy,
            "status": str(self.status),
            "observed": self.observed,
            "expected": self.expected,
            "reason": self.reason,
            "waiver": self.waiver,
            "weight": self.weight,
            "detail": dict(self.detail),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        """Read the payload form back (TypeError for a detail that is no mapping: a
        record mspauto did not write)."""
        detail = data.get("detail") or {}
        if not isinstance(detail, Mapping):
            raise TypeError("a finding's detail is a mapping")
        return cls(
            subject=str(data["subject"]),
            policy=str(data.get("policy", "")),
            status=_STATUSES.get(data["status"]) or FindingStatus(data["status"]),
            observed=str(data.get("observed", "")),
            expected=str(data.get("expected", "")),
            reason=str(data.get("reason", "")),
            waiver=data.get("waiver"),
            weight=int(data.get("weight", 1)),
            detail=detail,
        )


@dataclass(frozen=True)
class HostFindings:
    """Everything one check run found on one host (or why the host was not checked)."""

    check: str
    """The check kind: ``baseline``, ``patch`` (later ``backup``)."""
    host: str
    findings: tuple[Finding, ...] = ()
    unchecked: str | None = None
    """Why the host could not be checked at all (it then counts as failed)."""

    def count(self, status: FindingStatus | str) -> int:
        """How many findings ended in ``status``."""
        return sum(1 for f in self.findings if f.status == status)

    def payload(self) -> dict[str, Any]:
        """The ``findings`` record payload."""
        return {
            "schema": FINDINGS_SCHEMA,
            "check": self.check,
            "host": self.host,
            "unchecked": self.unchecked,
            "findings": [f.as_dict() for f in self.findings],
        }


def read_host_findings(kind: str, payload: Mapping[str, Any]) -> HostFindings:
    """A ``findings`` record (or a legacy ``baseline_result``) as :class:`HostFindings`."""
    if kind == RecordKind.LEGACY_BASELINE_RESULT:
        return HostFindings(
            "baseline",
            str(payload["host"]),
            tuple(_legacy_rule_finding(r) for r in payload.get("results", [])),
            payload.get("unaudited"),
        )
    if kind != RecordKind.FINDINGS:
        raise ValueError(f"a {kind} record holds no findings")
    return HostFindings(
        str(payload["check"]),
        str(payload["host"]),
        tuple(Finding.from_dict(f) for f in payload.get("findings", [])),
        payload.get("unchecked"),
    )


def _legacy_rule_finding(result: Mapping[str, Any]) -> Finding:
    return Finding(
        subject=str(result["rule_id"]),
        policy="",
        status=FindingStatus(result["status"]),
        observed=str(result.get("observed", "")),
        expected=str(result.get("expected", "")),
        reason=str(result.get("reason", "")),
        waiver=result.get("waiver"),
        weight=int(result.get("weight", 1)),
        detail={
            "title": result.get("title", ""),
            "pack": result.get("pack", ""),
            "severity": result.get("severity", ""),
            "cis": list(result.get("cis", [])),
        },
    )


@dataclass(frozen=True)
class ChangeOutcome:
    """One change (an Ansible task) on one host, and its subject before and after."""

    subject: str
    task: str
    status: str
    """``changed``, ``ok`` (nothing to change), ``failed``, ``skipped``, ``unreachable``
    or ``not_run`` (the change run never reached it)."""
    before: FindingStatus | None
    after: FindingStatus | None
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        """Payload form."""
        return {
            "subject": self.subject,
            "task": self.task,
            "status": self.status,
            "before": None if self.before is None else str(self.before),
            "after": None if self.after is None else str(self.after),
            "message": self.message,
        }


@dataclass(frozen=True)
class ChangeResult:
    """What changing one host did: the runs involved and each subject before and after."""

    check: str
    host: str
    before_run: str
    change_run: str | None
    after_run: str | None
    changes: tuple[ChangeOutcome, ...] = ()

    def payload(self) -> dict[str, Any]:
        """The ``change_result`` record payload."""
        return {
            "schema": FINDINGS_SCHEMA,
            "check": self.check,
            "host": self.host,
            "before_run": self.before_run,
            "change_run": self.change_run,
            "after_run": self.after_run,
            "changes": [c.as_dict() for c in self.changes],
        }


def read_change_result(kind: str, payload: Mapping[str, Any]) -> ChangeResult:
    """A ``change_result`` record (or a legacy ``baseline_remediation``)."""
    if kind == RecordKind.LEGACY_BASELINE_REMEDIATION:
        tasks: Sequence[Mapping[str, Any]] = payload.get("tasks", [])
        changes = []
        for rule_id, states in payload.get("rules", {}).items():
            # Old task names were "RULE (EXPECTED)"; a rule fixed for two values had two
            # tasks, one of them skipped on this host.
            own = [t for t in tasks if str(t.get("task", "")).startswith(f"{rule_id} (")]
            ran = next((t for t in own if t.get("status") != "skipped"), own[0] if own else None)
            changes.append(
                ChangeOutcome(
                    subject=rule_id,
                    task=str(ran["task"]) if ran else "",
                    status=str(ran["status"]) if ran else "not_run",
                    before=_status(states.get("before")),
                    after=_status(states.get("after")),
                    message=str(ran.get("message", "")) if ran else "",
                )
            )
        return ChangeResult(
            "baseline",
            str(payload["host"]),
            str(payload["before_run"]),
            None,
            payload.get("after_run"),
            tuple(changes),
        )
    if kind != RecordKind.CHANGE_RESULT:
        raise ValueError(f"a {kind} record holds no change result")
    return ChangeResult(
        str(payload["check"]),
        str(payload["host"]),
        str(payload["before_run"]),
        payload.get("change_run"),
        payload.get("after_run"),
        tuple(
            ChangeOutcome(
                str(c["subject"]),
                str(c["task"]),
                str(c["status"]),
                _status(c.get("before")),
                _status(c.get("after")),
                str(c.get("message", "")),
            )
            for c in payload.get("changes", [])
        ),
    )


def _status(value: object) -> FindingStatus | None:
    return None if value is None else FindingStatus(str(value))
