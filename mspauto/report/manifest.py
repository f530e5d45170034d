"""The monthly report's signed manifest, and the check behind ``mspauto report verify``.

A report folder holds the report's files (PDF, CSV, JSON, OSCAL...) and two more:
``manifest.json``, which lists every file's SHA-256 and size and the evidence the report
rests on, and ``manifest.json.minisig``, the MSP's minisign signature of it. An auditor
needs only the MSP's ``.pub`` file and the stock tool::

    minisign -Vm manifest.json -p msp.pub      # the manifest is the MSP's, unaltered
    sha256sum report.pdf                        # each file is the one the manifest lists

The manifest's ``evidence`` says, per chain the report counted records from: the first
and last counted record, how many were counted and a SHA-256 over them (binding the list
in ``report.json``), and three signed checkpoints of the chain with RFC 6962 consistency
proofs to the last of them:

- ``start_checkpoint``: the newest checkpoint signed at or before the period start
  (``null`` when the chain had none then: the log is then proven from its first record);
- ``handover_checkpoint``: the oldest one signed at or after the period start, which is
  what the previous month's manifest normally ends with (see below; ``null`` if none);
- ``end_checkpoint``: the oldest checkpoint covering the last counted record signed at
  or after the period end, or the newest covering it when the report is made before
  the month is over.

Checkpoints are the C2SP signed notes the evidence store keeps (head notes vouch for no
record and are never used), so each one is checked with the same public key.

Last month's manifest, in the client's hands, is a witness of the log: this month's log
must extend last month's end checkpoint. Last month ends with the first checkpoint
signed after the boundary between the months, and this month starts with the last one
signed before it, so the two are normally different checkpoints. That is why the
manifest carries the handover checkpoint and its proof: offline, the previous end
checkpoint must be one this manifest proves part of its log (its start, handover or end
checkpoint, same size and root). With the evidence store, any previous end checkpoint is
checked by computing the consistency proof from the records.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Annotated, Final, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from mspauto.evidence.checkpoints import Checkpoint, parse_checkpoint
from mspauto.evidence.merkle import (
    EMPTY_ROOT,
    Frontier,
    consistency_proof,
    leaf_hash,
    verify_consistency,
)
from mspauto.evidence.store import EvidenceStore
from mspauto.signing import PublicKey, SigningError, SigningKey, sign_file, verify_file
from mspauto.sla.model import MonthlyReport, Period

__all__ = [
    "FORMAT",
    "MANIFEST",
    "MANIFEST_SIGNATURE",
    "REPORT_JSON",
    "ChainEvidence",
    "FileEntry",
    "Manifest",
    "ManifestError",
    "ManifestPeriod",
    "RecordRef",
    "ReportVerification",
    "build_manifest",
    "refs_sha256",
    "verify_report",
]

MANIFEST = "manifest.json"
MANIFEST_SIGNATURE = MANIFEST + ".minisig"
REPORT_JSON = "report.json"
"""The report's JSON rendering: its top-level ``evidence`` list (``{chain, seq, hash}``
per record counted) is what the manifest's ``refs_sha256`` binds."""
FORMAT: Final = "mspauto-report-manifest"

_REPORT_SUFFIXES = frozenset({".pdf", ".csv", ".json", ".html", ".htm", ".xml"})
"""An unlisted file with one of these names would pass for part of the signed report."""

_Hex64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class ManifestError(Exception):
    """The manifest cannot be made; the message is one line saying why and what to do."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class FileEntry(_Strict):
    """One report file as signed."""

    sha256: _Hex64
    bytes: int = Field(ge=0)


class RecordRef(_Strict):
    """One evidence record: its place in its chain and its hash."""

    seq: int = Field(ge=1)
    hash: _Hex64


class ChainEvidence(_Strict):
    """The records the report counted from one chain, and the signed log they are in."""

    records: int = Field(ge=1)
    """Distinct records counted."""
    first: RecordRef
    last: RecordRef
    refs_sha256: _Hex64
    """:func:`refs_sha256` of the counted records."""
    start_checkpoint: str | None
    handover_checkpoint: str | None
    end_checkpoint: str
    consistency_proof: list[str]
    """RFC 6962 proof (base64 hashes) from the start checkpoint (or the empty log) to
    the end checkpoint."""
    handover_proof: list[str]
    """From the handover checkpoint to the end checkpoint (empty without one)."""


class ManifestPeriod(_Strict):
    """The month, as instants (``start <= t < end``) and the zone it was cut in."""

    start: AwareDatetime
    end: AwareDatetime
    timezone: str


class Manifest(_Strict):
    """What ``manifest.json`` holds."""

    format: Literal["mspauto-report-manifest"]
    version: Literal[1]
    client: str
    month: str
    period: ManifestPeriod
    generated_at: AwareDatetime
    mspauto_version: str
    policy_set_hash: str
    files: dict[str, FileEntry]
    evidence: dict[str, ChainEvidence]


@dataclass
class ReportVerification:
    """What :func:`verify_report` found; each line is one sentence naming its file."""

    problems: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    """What was proven."""
    warnings: list[str] = field(default_factory=list)
    """Worth knowing; nothing the manifest vouches for is in doubt because of it."""

    @property
    def ok(self) -> bool:
        """Whether nothing is wrong."""
        return not self.problems


def refs_sha256(refs: Iterable[tuple[int, str]]) -> str:
    """The SHA-256 (hex) binding one chain's counted records: of the line
    ``"<seq> <hash>\\n"`` for each distinct record, in ascending order."""
    lines = "".join(f"{seq} {digest}\n" for seq, digest in sorted(set(refs)))
    return hashlib.sha256(lines.encode()).hexdigest()


# --- building ------------------------------------------------------------------------


def build_manifest(
    folder: Path,
    files: Sequence[Path],
    report: MonthlyReport,
    store: EvidenceStore,
    key: SigningKey,
    *,
    policy_set_hash: str,
) -> Path:
    """Write ``manifest.json`` and ``manifest.json.minisig`` for ``report`` in ``folder``.

    ``files`` are the paths of the report's files, as the renderers returned them (all
    inside ``folder``, ``report.json`` among them).
    Every record the report counted must be in the store as counted and covered by a
    checkpoint signed with ``key``; anything else is a :class:`ManifestError`. Returns
    the manifest's path."""
    entries = _file_entries(folder, files)
    if REPORT_JSON not in entries:
        raise ManifestError(
            f"{REPORT_JSON} is not among the report's files: the manifest binds the "
            "records the report counted through it"
        )
    counted = _by_chain((ref.chain, ref.seq, ref.hash) for ref in report.evidence)
    try:
        listed = _report_json_refs(folder / REPORT_JSON)
    except ValueError as exc:
        raise ManifestError(f"{folder / REPORT_JSON}: {exc}") from None
    if listed != counted:
        raise ManifestError(
            f"{folder / REPORT_JSON} lists other evidence records than the report being "
            "signed: render it from the same report"
        )
    evidence = {
        chain: _chain_evidence(store, key.public_key, chain, refs, report.period)
        for chain, refs in sorted(counted.items())
    }
    manifest = Manifest(
        format=FORMAT,
        version=1,
        client=report.client,
        month=report.period.month,
        period=ManifestPeriod(
            start=report.period.start, end=report.period.end, timezone=report.period.timezone
        ),
        generated_at=report.generated_at,
        mspauto_version=report.mspauto_version,
        policy_set_hash=policy_set_hash,
        files=entries,
        evidence=evidence,
    )
    data = _manifest_bytes(manifest)
    try:
        signature = sign_file(
            data, key, trusted_comment=_trusted_comment(manifest.client, manifest.month)
        )
    except SigningError as exc:
        raise ManifestError(f"cannot sign the manifest: {exc}") from None
    _write(folder / MANIFEST, data)
    _write(folder / MANIFEST_SIGNATURE, signature.encode())
    return folder / MANIFEST


def _file_entries(folder: Path, files: Sequence[Path]) -> dict[str, FileEntry]:
    """Each file's name relative to ``folder`` (POSIX form) with its hash and size."""
    base = folder.resolve()
    entries: dict[str, FileEntry] = {}
    for given in files:
        path = given.resolve()
        try:
            name = path.relative_to(base).as_posix()
        except ValueError:
            raise ManifestError(f"{given} is not inside the report folder {folder}") from None
        if name in (MANIFEST, MANIFEST_SIGNATURE):
            raise ManifestError(f"{given}: the manifest never lists itself or its signature")
        if not path.is_file():
            raise ManifestError(f"{given} is not a file")
        size, digest = _hash_file(path)
        entries[name] = FileEntry(sha256=digest, bytes=size)
    return entries


def _chain_evidence(
    store: EvidenceStore,
    key: PublicKey,
    chain: str,
    refs: set[tuple[int, str]],
    period: Period,
) -> ChainEvidence:
    """The evidence section of one chain, every claim in it checked against the store."""
    first = min(refs)
    last = max(refs)
    signed = [
        (_signed_at(checkpoint), checkpoint) for checkpoint in store.signed_checkpoints(chain, key)
    ]
    covering = [item for item in signed if item[1].size >= last[0]]
    if not covering:
        raise ManifestError(
            f"no signed checkpoint of {chain} covers record #{last[0]}, which the report "
            f"counted: run 'mspauto evidence checkpoint --client {chain}' first"
        )

    def when(item: tuple[datetime, Checkpoint]) -> tuple[datetime, int]:
        return item[0], item[1].size

    after_end = [item for item in covering if item[0] >= period.end]
    end = (min(after_end, key=when) if after_end else max(covering, key=when))[1]
    before_start = [item for item in signed if item[0] <= period.start]
    start = max(before_start, key=when)[1] if before_start else None
    after_start = [item for item in signed if item[0] >= period.start]
    handover = min(after_start, key=when)[1] if after_start else None
    for checkpoint in (start, handover):
        if checkpoint is not None and checkpoint.size > end.size:
            raise ManifestError(
                f"{chain}: the checkpoint at #{checkpoint.size} was signed before the smaller "
                f"one at #{end.size}: run 'mspauto evidence verify'"
            )

    digests = _content_hashes(store, chain, end.size)
    missing = [seq for seq, digest in enumerate(digests, start=1) if digest is None]
    if missing:
        raise ManifestError(
            f"{chain}: records {_spans(missing)} are missing from the evidence store: "
            "run 'mspauto evidence verify'"
        )
    leaves = [leaf_hash(bytes.fromhex(digest)) for digest in digests if digest is not None]
    sizes = {end.size} | {c.size for c in (start, handover) if c is not None}
    roots = _roots_at(leaves, sizes)
    for checkpoint in (start, handover, end):
        if checkpoint is not None and roots[checkpoint.size] != checkpoint.root:
            raise ManifestError(
                f"{chain}: the records up to #{checkpoint.size} no longer match their signed "
                "checkpoint: run 'mspauto evidence verify'"
            )
    for seq, digest in sorted(refs):
        if seq < 1 or digests[seq - 1] != digest:
            raise ManifestError(
                f"{chain} #{seq}: the record the report counted is no longer what it counted "
                "(its content gives another hash): run 'mspauto evidence verify'"
            )

    def proof(old: Checkpoint | None) -> list[str]:
        nodes = consistency_proof(leaves, 0 if old is None else old.size, end.size)
        return [base64.b64encode(node).decode() for node in nodes]

    return ChainEvidence(
        records=len(refs),
        first=RecordRef(seq=first[0], hash=first[1]),
        last=RecordRef(seq=last[0], hash=last[1]),
        refs_sha256=refs_sha256(refs),
        start_checkpoint=None if start is None else start.note,
        handover_checkpoint=None if handover is None else handover.note,
        end_checkpoint=end.note,
        consistency_proof=proof(start),
        handover_proof=[] if handover is None else proof(handover),
    )


def _signed_at(checkpoint: Checkpoint) -> datetime:
    try:
        return _aware(checkpoint.time)
    except ValueError:
        raise ManifestError(
            f"{checkpoint.chain}: the checkpoint at #{checkpoint.size} has no readable time "
            f"({checkpoint.time!r})"
        ) from None


def _manifest_bytes(manifest: Manifest) -> bytes:
    """The manifest as signed: sorted keys, indented for people reading it, UTF-8."""
    text = json.dumps(
        manifest.model_dump(mode="json"), sort_keys=True, indent=2, ensure_ascii=False
    )
    return (text + "\n").encode()


def _trusted_comment(client: str, month: str) -> str:
    """What ``minisign -V`` prints as the signature's trusted comment."""
    return f"mspauto monthly report manifest: client {client}, month {month}"


def _write(path: Path, data: bytes) -> None:
    """Replace ``path`` whole, so a reader never sees half a manifest."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise ManifestError(f"cannot write {path}: {exc.strerror or exc}") from None


# --- verifying -----------------------------------------------------------------------


@dataclass(frozen=True)
class _ChainProven:
    """One chain's end checkpoint, and the (size, root) pairs proven part of its log."""

    end: Checkpoint
    proven: dict[int, tuple[str, bytes]]
    """Size -> (which checkpoint: start, handover or end; its root)."""


def verify_report(
    folder: Path,
    public_key: PublicKey,
    *,
    previous: Path | None = None,
    store: EvidenceStore | None = None,
) -> ReportVerification:
    """Check a report folder against its signed manifest.

    Proves: the manifest is signed by ``public_key`` and unaltered; every file it lists
    is there with the signed SHA-256 and size; the evidence ``report.json`` counts is
    the evidence the manifest describes; each chain's checkpoints are signed by the key
    for that chain and its end checkpoint extends its start (consistency proof). With
    ``previous`` (last month's folder or its ``manifest.json``, signature checked too):
    this month's log extends last month's end checkpoint. With ``store``: every counted
    record is stored as counted and included in the log the end checkpoint signs."""
    result = ReportVerification()
    manifest = _load_signed(folder / MANIFEST, public_key, MANIFEST, result)
    if manifest is None:
        return result
    intact = _check_files(folder, manifest, result)
    counted = _check_report_json(folder, manifest, intact, result)
    chains: dict[str, _ChainProven] = {}
    for chain, evidence in sorted(manifest.evidence.items()):
        proven = _check_chain(chain, evidence, manifest.period, public_key, result)
        if proven is not None:
            chains[chain] = proven
    leaves: dict[str, list[bytes]] = {}
    if store is not None:
        leaves = _check_store(store, chains, counted, result)
    if previous is not None:
        _check_previous(previous, manifest, chains, leaves, public_key, result)
    return result


def _load_signed(
    path: Path, key: PublicKey, label: str, result: ReportVerification
) -> Manifest | None:
    """The manifest at ``path`` once its signature verifies. An unsigned or altered
    manifest is one problem and nothing more: none of its content can be trusted."""
    signature_path = path.with_name(path.name + ".minisig")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        where = "" if label == str(path) else f" from {path.parent}"
        result.problems.append(f"{label}: missing{where}")
        return None
    except OSError as exc:
        result.problems.append(f"{label}: cannot read it: {exc.strerror or exc}")
        return None
    try:
        signature = signature_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        result.problems.append(f"{label}.minisig: missing: the manifest is not signed")
        return None
    except (OSError, UnicodeDecodeError) as exc:
        result.problems.append(f"{label}.minisig: cannot read it: {exc}")
        return None
    try:
        comment = verify_file(data, signature, key)
    except SigningError as exc:
        result.problems.append(
            f"{label}: {exc}: the manifest was changed after signing, or is not the MSP's"
        )
        return None
    try:
        manifest = Manifest.model_validate_json(data)
    except ValidationError as exc:
        result.problems.append(f"{label}: not an mspauto report manifest ({_first_error(exc)})")
        return None
    expected = _trusted_comment(manifest.client, manifest.month)
    if comment != expected:
        result.problems.append(
            f"{label}.minisig: its trusted comment is {comment!r}, not {expected!r}"
        )
        return None
    result.checked.append(
        f"{label}: signed by key {key.fingerprint()} ({manifest.client}, {manifest.month})"
    )
    return manifest


def _check_files(folder: Path, manifest: Manifest, result: ReportVerification) -> set[str]:
    """Each listed file against its signed hash and size; unlisted files. Returns the
    names found intact."""
    intact: set[str] = set()
    for name, entry in sorted(manifest.files.items()):
        if not _plain_name(name):
            result.problems.append(
                f"{MANIFEST}: lists {name!r}, which is not a file name inside the report folder"
            )
            continue
        path = folder / name
        if not path.is_file():
            result.problems.append(f"{name}: missing (the signed manifest lists it)")
            continue
        size, digest = _hash_file(path)
        if (digest, size) != (entry.sha256, entry.bytes):
            result.problems.append(
                f"{name}: changed since the manifest was signed (SHA-256 {digest[:16]}..., "
                f"{size} bytes; signed {entry.sha256[:16]}..., {entry.bytes} bytes)"
            )
            continue
        intact.add(name)
    if intact:
        result.checked.append(
            f"{len(intact)} files have the SHA-256 and size the manifest lists: "
            + ", ".join(sorted(intact))
        )
    ignored = {MANIFEST, MANIFEST_SIGNATURE, *manifest.files}
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if name in ignored or not path.is_file():
            continue
        if path.suffix.lower() in _REPORT_SUFFIXES:
            result.problems.append(
                f"{name}: not in the signed manifest, so nothing vouches for it (remove it, "
                "or make the report again)"
            )
        else:
            result.warnings.append(f"{name}: not in the signed manifest (not a report file)")
    return intact


def _check_report_json(
    folder: Path, manifest: Manifest, intact: set[str], result: ReportVerification
) -> dict[str, set[tuple[int, str]]] | None:
    """The records ``report.json`` counts, checked against the manifest's evidence
    (None when they cannot be read, which is then a problem already)."""
    if REPORT_JSON not in manifest.files:
        result.problems.append(
            f"{MANIFEST}: does not list {REPORT_JSON}, so the records the report counted "
            "cannot be checked"
        )
        return None
    if REPORT_JSON not in intact:
        return None  # missing or changed: said above
    try:
        counted = _report_json_refs(folder / REPORT_JSON)
    except ValueError as exc:
        result.problems.append(f"{REPORT_JSON}: {exc}")
        return None
    for chain in sorted(set(counted) | set(manifest.evidence)):
        refs, evidence = counted.get(chain), manifest.evidence.get(chain)
        if evidence is None:
            result.problems.append(
                f"{REPORT_JSON}: counts records of {chain}, for which the manifest has no evidence"
            )
        elif refs is None:
            result.problems.append(
                f"{MANIFEST}: has evidence for {chain}, of which {REPORT_JSON} counts no record"
            )
        elif (
            evidence.records,
            (evidence.first.seq, evidence.first.hash),
            (evidence.last.seq, evidence.last.hash),
            evidence.refs_sha256,
        ) != (len(refs), min(refs), max(refs), refs_sha256(refs)):
            result.problems.append(
                f"{MANIFEST}: the evidence for {chain} does not describe the records "
                f"{REPORT_JSON} counts (number, first, last or their SHA-256 differ)"
            )
        else:
            result.checked.append(
                f"{chain}: the {len(refs)} records {REPORT_JSON} counts are the ones the "
                "manifest describes"
            )
    return counted


def _check_chain(
    chain: str,
    evidence: ChainEvidence,
    period: ManifestPeriod,
    key: PublicKey,
    result: ReportVerification,
) -> _ChainProven | None:
    """One chain's checkpoints (signature, chain, times) and consistency proofs."""
    label = f"{MANIFEST}: evidence for {chain}"
    try:
        end = _open_checkpoint(evidence.end_checkpoint, key, chain, "end")
        start = (
            None
            if evidence.start_checkpoint is None
            else _open_checkpoint(evidence.start_checkpoint, key, chain, "start")
        )
        handover = (
            None
            if evidence.handover_checkpoint is None
            else _open_checkpoint(evidence.handover_checkpoint, key, chain, "handover")
        )
    except ValueError as exc:
        result.problems.append(f"{label}: {exc}")
        return None
    problems = len(result.problems)
    end_at = _aware(end.time)
    if evidence.last.seq > end.size:
        result.problems.append(
            f"{label}: the end checkpoint (#{end.size}) does not cover the last counted "
            f"record #{evidence.last.seq}"
        )
    if end_at < period.end:
        result.warnings.append(
            f"{chain}: the end checkpoint was signed at {end.time}, before the period "
            "ended (a report made before the month was over)"
        )
    if start is not None and _aware(start.time) > period.start:
        result.problems.append(
            f"{label}: the start checkpoint was signed at {start.time}, after the period start"
        )
    if handover is not None and _aware(handover.time) < period.start:
        result.problems.append(
            f"{label}: the handover checkpoint was signed at {handover.time}, before the "
            "period start"
        )
    proven = {end.size: ("end", end.root)}
    for which, old, encoded in (
        ("start", start, evidence.consistency_proof),
        ("handover", handover, evidence.handover_proof),
    ):
        old_size, old_root = (0, EMPTY_ROOT) if old is None else (old.size, old.root)
        if old is None and which == "handover":
            if encoded:
                result.problems.append(f"{label}: a handover proof without a handover checkpoint")
            continue
        proof = _decode_proof(encoded)
        if proof is None or not verify_consistency(old_size, end.size, old_root, end.root, proof):
            result.problems.append(
                f"{label}: the consistency proof from the {which} checkpoint (#{old_size}) "
                f"to the end checkpoint (#{end.size}) does not hold: the end checkpoint's "
                "log does not extend it"
            )
        elif old is not None:
            proven.setdefault(old.size, (which, old.root))
    if len(result.problems) > problems:
        return None
    since = (
        "the chain's first record (no checkpoint was signed before the period start)"
        if start is None
        else f"#{start.size} (signed {start.time})"
    )
    result.checked.append(
        f"{chain}: the log at #{end.size} (signed {end.time}) extends the one at {since}: "
        f"checkpoints signed by key {key.fingerprint()}, consistency proven"
    )
    return _ChainProven(end, proven)


def _check_store(
    store: EvidenceStore,
    chains: Mapping[str, _ChainProven],
    counted: Mapping[str, set[tuple[int, str]]] | None,
    result: ReportVerification,
) -> dict[str, list[bytes]]:
    """Every counted record in the store as counted, under the signed end root.
    Returns each complete chain's leaves up to its end checkpoint.

    An inclusion proof per record would show that its leaf sits at its position under
    the signed root. Holding every leaf up to the end checkpoint, recomputing the root
    once from them shows it for all of them at once (the root commits to each leaf at
    its position), and comparing each counted hash with the leaf at its seq is then
    what each record's inclusion proof would establish: O(n) in all rather than O(n)
    per record, which matters at tens of thousands of records a month."""
    complete: dict[str, list[bytes]] = {}
    for chain, proven in sorted(chains.items()):
        size, label = proven.end.size, f"evidence store: {chain}"
        included = False
        digests = _content_hashes(store, chain, size)
        missing = [seq for seq, digest in enumerate(digests, start=1) if digest is None]
        if missing:
            result.problems.append(
                f"{label}: records {_spans(missing)} are missing, though the end checkpoint "
                f"covers #{size}"
            )
        else:
            leaves = [leaf_hash(bytes.fromhex(d)) for d in digests if d is not None]
            complete[chain] = leaves
            if _roots_at(leaves, {size})[size] != proven.end.root:
                result.problems.append(
                    f"{label}: the records up to #{size} do not hash to the end checkpoint's "
                    "signed root: records were changed after they were signed"
                )
            else:
                included = True
        refs = None if counted is None else counted.get(chain)
        if refs is None:
            continue  # report.json unreadable or without this chain: said already
        # Counted records missing within the checkpoint are in the line above already.
        changed = sorted(
            seq
            for seq, digest in refs
            if not 1 <= seq <= size or digests[seq - 1] not in (None, digest)
        )
        if changed:
            result.problems.append(
                f"{label}: records {_spans(changed)} that the report counted were edited or "
                "are missing (their content no longer gives the hash the report counted)"
            )
        elif included:
            result.checked.append(
                f"{chain}: the {len(refs)} counted records are in the evidence store as "
                f"counted, included in the log signed at #{size}"
            )
    return complete


def _check_previous(
    previous: Path,
    manifest: Manifest,
    chains: Mapping[str, _ChainProven],
    leaves: Mapping[str, list[bytes]],
    key: PublicKey,
    result: ReportVerification,
) -> None:
    """This month's log extends the end checkpoint of last month's manifest."""
    path = previous / MANIFEST if previous.is_dir() else previous
    before = _load_signed(path, key, str(path), result)
    if before is None:
        return
    if before.client != manifest.client:
        result.problems.append(f"{path}: is client {before.client}'s, not {manifest.client}'s")
        return
    if before.period.end > manifest.period.start:
        result.problems.append(
            f"{path}: is for {before.month}, which does not come before {manifest.month}"
        )
        return
    for chain, evidence in sorted(before.evidence.items()):
        try:
            old = _open_checkpoint(evidence.end_checkpoint, key, chain, "end")
        except ValueError as exc:
            result.problems.append(f"{path}: evidence for {chain}: {exc}")
            continue
        proven = chains.get(chain)
        label = f"{MANIFEST}: evidence for {chain}"
        if proven is None:
            if chain not in manifest.evidence:
                result.warnings.append(
                    f"{chain}: this month's report counted none of its records, so its "
                    f"continuity with {path} is not checked"
                )
            continue  # else its checkpoints failed: said already
        if old.size > proven.end.size:
            result.problems.append(
                f"{label}: the log ends at #{proven.end.size}, before the previous month's "
                f"end checkpoint (#{old.size}): records were removed or the store rolled back"
            )
            continue
        known = proven.proven.get(old.size)
        if known is not None:
            which, root = known
            if root == old.root:
                result.checked.append(
                    f"{chain}: the previous month's end checkpoint (#{old.size}) is this "
                    f"month's {which} checkpoint: the log continues it"
                )
            else:
                result.problems.append(
                    f"{label}: the {which} checkpoint at #{old.size} has another root than "
                    "the previous month's end checkpoint of that size: the log was rewritten "
                    "or the store rolled back"
                )
            continue
        chain_leaves = leaves.get(chain)
        if chain_leaves is None:
            result.problems.append(
                f"{label}: the previous month's end checkpoint (#{old.size}) is not one this "
                "manifest proves; give the evidence store to compute the consistency proof"
            )
            continue
        proof = consistency_proof(chain_leaves, old.size, proven.end.size)
        if verify_consistency(old.size, proven.end.size, old.root, proven.end.root, proof):
            result.checked.append(
                f"{chain}: the log at #{proven.end.size} extends the previous month's end "
                f"checkpoint (#{old.size}): consistency proven from the evidence store"
            )
        else:
            result.problems.append(
                f"{label}: the log at #{proven.end.size} does not extend the previous "
                f"month's end checkpoint (#{old.size}): the log was rewritten or the store "
                "rolled back"
            )


def _open_checkpoint(note: str, key: PublicKey, chain: str, which: str) -> Checkpoint:
    """A checkpoint of ``chain`` from its note, or ValueError saying what it is instead."""
    try:
        checkpoint = parse_checkpoint(note, key)
    except SigningError as exc:
        raise ValueError(
            f"the {which} checkpoint is not signed by key {key.fingerprint()} ({exc})"
        ) from None
    if checkpoint.head:
        raise ValueError(f"the {which} checkpoint is a head note, which vouches for no record")
    if checkpoint.chain != chain:
        raise ValueError(f"the {which} checkpoint is one of {checkpoint.chain}, not of {chain}")
    try:
        _aware(checkpoint.time)
    except ValueError:
        raise ValueError(
            f"the {which} checkpoint's time {checkpoint.time!r} is not readable"
        ) from None
    return checkpoint


# --- shared --------------------------------------------------------------------------


def _report_json_refs(path: Path) -> dict[str, set[tuple[int, str]]]:
    """The records a ``report.json`` counts, by chain; ValueError says why not."""
    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise ValueError(f"cannot read it: {exc.strerror or exc}") from None
    except (ValueError, RecursionError):
        raise ValueError("not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("evidence"), list):
        raise ValueError("has no 'evidence' list of the records the report counted")
    found = []
    for position, item in enumerate(data["evidence"]):
        fields = item if isinstance(item, dict) else {}
        chain, seq, digest = fields.get("chain"), fields.get("seq"), fields.get("hash")
        if not (isinstance(chain, str) and type(seq) is int and isinstance(digest, str)):
            raise ValueError(f"evidence[{position}] is not a {{chain, seq, hash}} record")
        found.append((chain, seq, digest))
    return _by_chain(found)


def _by_chain(refs: Iterable[tuple[str, int, str]]) -> dict[str, set[tuple[int, str]]]:
    grouped: dict[str, set[tuple[int, str]]] = {}
    for chain, seq, digest in refs:
        grouped.setdefault(chain, set()).add((seq, digest))
    return grouped


def _content_hashes(store: EvidenceStore, chain: str, size: int) -> list[str | None]:
    """The hash of each record ``1..size`` from its content (None where missing)."""
    digests: list[str | None] = [None] * size
    for seq, digest in store.content_hashes(chain, size):
        if isinstance(seq, int) and 1 <= seq <= size:
            digests[seq - 1] = digest
    return digests


def _roots_at(leaves: Sequence[bytes], sizes: Iterable[int]) -> dict[int, bytes]:
    """The tree's root at each of ``sizes`` (at most ``len(leaves)``), in one pass."""
    frontier = Frontier()
    roots = {}
    for size in sorted(set(sizes)):
        frontier.extend(leaves[frontier.size : size])
        roots[size] = frontier.root()
    return roots


def _decode_proof(encoded: Sequence[str]) -> list[bytes] | None:
    try:
        return [base64.b64decode(node, validate=True) for node in encoded]
    except (binascii.Error, ValueError):
        return None


def _hash_file(path: Path) -> tuple[int, str]:
    """A file's size and SHA-256 (hex), read in chunks."""
    with path.open("rb") as file:
        digest = hashlib.file_digest(file, "sha256").hexdigest()
        return os.fstat(file.fileno()).st_size, digest


def _plain_name(name: str) -> bool:
    """A relative POSIX path inside the folder, written plainly (no ``..``, no ``./``)."""
    pure = PurePosixPath(name)
    return (
        bool(name)
        and not pure.is_absolute()
        and ".." not in pure.parts
        and "\\" not in name
        and pure.as_posix() == name
    )


def _aware(text: str) -> datetime:
    """An ISO 8601 time with its offset; ValueError for one without."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"no time zone in {text!r}")
    return moment


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "the top level"
    more = exc.error_count() - 1
    return f"{where}: {error['msg']}" + (f"; and {more} more" if more else "")


def _spans(seqs: Sequence[int]) -> str:
    """Ascending record numbers as runs: ``#4..#7, #9``."""
    runs: list[list[int]] = []
    for seq in seqs:
        if runs and seq == runs[-1][1] + 1:
            runs[-1][1] = seq
        else:
            runs.append([seq, seq])
    return ", ".join(f"#{a}" if a == b else f"#{a}..#{b}" for a, b in runs)
