"""Signed checkpoints of evidence chains, and the witness that keeps a copy of each.

Each client's chain of records is also an RFC 6962 Merkle tree whose leaves are the
records' hashes. After a run, the control node signs a checkpoint of every chain the run
wrote to: the chain, its size and the tree's root, in the C2SP ``tlog-checkpoint``
signed-note format that transparency logs use::

    mspauto-evidence/acme
    42
    <base64 root hash>
    time 2026-12-03T09:30:00.123456+00:00

    — mspauto-evidence <base64 key hash and Ed25519 signature>

Whoever lacks the signing key cannot forge a record and sign over it, and a rewrite
that recomputes every hash no longer matches the signed roots. Each checkpoint is also
appended to a witness (a log file in a folder the settings name, meant for another
disk), so a store cut back, rolled back to an older copy or missing a chain no longer
matches the newest witnessed checkpoint. The witness can also send each entry, as the
very line it appends, to copies elsewhere (a webhook, syslog) that someone else keeps:
verify reads only the log, an auditor compares it with them. docs/evidence.md says what
remains possible.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
import threading
import time as clock
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mspauto.evidence.copies import COPY_PAUSES, COPY_REST, COPY_TRIES, CopyFailed, WitnessCopy
from mspauto.signing import PublicKey, SigningError, SigningKey, open_note, sign_note

__all__ = [
    "KEY_NAME",
    "Checkpoint",
    "Notary",
    "Witness",
    "WitnessCopyError",
    "WitnessEntry",
    "batch_message",
    "checkpoint_body",
    "parse_checkpoint",
    "witnessed_sizes",
]

KEY_NAME = "mspauto-evidence"
"""The key name in every checkpoint's signature line."""
_ORIGIN = "mspauto-evidence/"
_HEAD_ORIGIN = "mspauto-evidence-head/"
WITNESS_LOG = "checkpoints.jsonl"


@dataclass(frozen=True)
class Checkpoint:
    """A chain's size and Merkle root at one moment, as signed."""

    chain: str
    size: int
    root: bytes
    time: str
    note: str
    """The whole signed note, signature lines included."""
    head: bool = False
    """A head note, not a checkpoint: the chain could not be checkpointed (it is
    broken), so the control node signed only that it saw the chain reach ``size``,
    with ``root`` the SHA-256 of that last record's stored hash. It vouches for no
    record; it lets verify catch records removed after it."""


def checkpoint_body(chain: str, size: int, root: bytes, time: str) -> str:
    """The signed text of a checkpoint (origin, size, root, then the time)."""
    return f"{_ORIGIN}{chain}\n{size}\n{base64.b64encode(root).decode()}\ntime {time}\n"


def parse_checkpoint(note: str, key: PublicKey) -> Checkpoint:
    """A checkpoint from its signed note, or :class:`SigningError` saying why not
    (not signed by ``key``, or not a checkpoint)."""
    if not isinstance(note, str):  # SQLite keeps whatever type it is given
        raise SigningError("a checkpoint that is not text")
    body = open_note(note, key, KEY_NAME)
    lines = body.split("\n")
    try:
        origin, size_text, root_text, time_line = lines[:4]
        size = int(size_text)
        root = base64.b64decode(root_text, validate=True)
    except ValueError:
        raise SigningError("a signed note that is not an evidence checkpoint") from None
    head = origin.startswith(_HEAD_ORIGIN)
    if (
        not (head or origin.startswith(_ORIGIN))
        or len(root) != 32
        or not time_line.startswith("time ")
    ):
        raise SigningError("a signed note that is not an evidence checkpoint")
    chain = origin.removeprefix(_HEAD_ORIGIN if head else _ORIGIN)
    return Checkpoint(chain, size, root, time_line[5:], note, head)


class WitnessCopyError(OSError):
    """The witness log has the checkpoint, but a copy of it was not delivered."""

    def __init__(self, failures: Sequence[str]) -> None:
        self.failures = list(failures)
        """One phrase per copy that failed, naming it."""
        super().__init__(errno.EIO, f"the entry is in that log, but {'; and '.join(self.failures)}")

    def __str__(self) -> str:
        return str(self.strerror)


@dataclass(frozen=True)
class WitnessEntry:
    """One line of the witness log: its line number and the note it holds."""

    line: int
    note: str


class Witness:
    """An append-only log of signed checkpoints, one JSON object per line.

    The file is only ever opened for appending, and each entry is flushed to disk
    before the run goes on. Put the folder on another disk or host (an NFS mount, or a
    file system with ``chattr +a``) so whoever can replace the database cannot also
    rewrite this.

    ``copies`` (a webhook, syslog) are sent each entry too, as the same line, after the
    log has it: for a record kept by someone else, so that rolling back both the
    database and this folder still shows elsewhere. The log is what verify reads."""

    def __init__(self, folder: Path, copies: Sequence[WitnessCopy] = ()) -> None:
        self.folder = folder
        self.path = folder / WITNESS_LOG
        self.copies = tuple(copies)
        self._failed: dict[str, tuple[float, str]] = {}
        """Per copy that failed every try: when (monotonic) and why."""
        self._lock = threading.Lock()

    def create(self) -> None:
        """Make the (empty) log if there is none, before anything is signed: from then
        on a missing log means it was lost or moved, never "nothing signed yet"."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        # O_NONBLOCK: a pipe planted at the path must not hang the control node.
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK
        os.close(os.open(self.path, flags, 0o600))

    def append(self, checkpoint: Checkpoint) -> None:
        """Add a checkpoint, then send it to each copy. Raises OSError when the log
        cannot be written (the copies are sent all the same), else
        :class:`WitnessCopyError` when the log has it but a copy was not delivered."""
        line = json.dumps(
            {"chain": checkpoint.chain, "size": checkpoint.size, "note": checkpoint.note},
            ensure_ascii=False,
        )
        try:
            self._write(line)
        except OSError:
            self._send_copies(line)  # the checkpoint is then at least somewhere else
            raise
        failures = self._send_copies(line)
        if failures:
            raise WitnessCopyError(failures)

    def _write(self, line: str) -> None:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.path.exists() and not self.path.is_file():
            raise OSError(f"{self.path} is not a file")
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(descriptor, (line + "\n").encode())
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    def _send_copies(self, line: str) -> list[str]:
        """Send ``line`` to every copy, all at once (a slow one does not hold up the
        others); what went wrong, one phrase per failed copy."""
        if len(self.copies) < 2:
            problems = [self._send(copy, line) for copy in self.copies]
        else:
            with ThreadPoolExecutor(len(self.copies)) as pool:
                problems = list(pool.map(lambda copy: self._send(copy, line), self.copies))
        return [problem for problem in problems if problem]

    def _send(self, copy: WitnessCopy, line: str) -> str | None:
        """Send ``line`` to one copy: up to ``COPY_TRIES`` tries, pausing between them,
        while what went wrong may pass. A copy that failed every try is not tried again
        for ``COPY_REST`` seconds (a run signing a chain per client would otherwise wait
        on a dead receiver once per client); each checkpoint it misses is reported."""
        with self._lock:
            failed = self._failed.get(copy.name)
        if failed is not None and clock.monotonic() - failed[0] < COPY_REST:
            ago = round(clock.monotonic() - failed[0])
            return f"{copy.name} was not sent a copy: it failed {ago} s ago ({failed[1]})"
        tries = 0
        while True:
            tries += 1
            try:
                copy.send(line)
            except CopyFailed as exc:
                if exc.lasting or tries >= COPY_TRIES:
                    with self._lock:
                        self._failed[copy.name] = (clock.monotonic(), str(exc))
                    after = f" after {tries} tries" if tries > 1 else ""
                    return f"{copy.name} did not take its copy{after} ({exc})"
                clock.sleep(COPY_PAUSES[min(tries, len(COPY_PAUSES)) - 1])
            else:
                with self._lock:
                    self._failed.pop(copy.name, None)
                return None

    def exists(self) -> bool:
        """Whether there is a log (something else at its path counts: reading it then
        reports what it is)."""
        return self.path.exists() or self.path.is_symlink()

    def entries(self) -> Iterator[WitnessEntry | str]:
        """Each entry in order; an unreadable line, or a log that is not a readable
        file, is yielded as a message instead."""
        if not self.path.is_file():  # a folder, a pipe (would block), a dangling link
            yield f"{self.path} is not a file"
            return
        try:
            handle = self.path.open(encoding="utf-8", errors="replace")
        except OSError as exc:
            yield f"cannot read {self.path}: {exc.strerror or exc}"
            return
        with handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    note = json.loads(line)["note"]
                except (ValueError, KeyError, TypeError):
                    yield f"witness line {number} is not a checkpoint entry"
                    continue
                if not isinstance(note, str):
                    yield f"witness line {number} is not a checkpoint entry"
                    continue
                yield WitnessEntry(number, note)


def batch_message(
    chain: str, first_seq: int, prev_hash: str, last_seq: int, last_hash: str
) -> bytes:
    """What a batch signature covers: records ``first_seq..last_seq`` of ``chain``, from
    the record they follow to the last one's hash (which, through the hash links,
    commits to every record in between)."""
    return (
        f"mspauto-evidence-batch\n{chain}\n{first_seq}\n{prev_hash}\n{last_seq}\n{last_hash}\n"
    ).encode()


def witnessed_sizes(witness: Witness, key: PublicKey) -> dict[str, int]:
    """The largest size the witness holds a checkpoint signed by ``key`` for, by chain
    (lines that are not such checkpoints are skipped; verify reports them)."""
    sizes: dict[str, int] = {}
    if not witness.exists():
        return sizes
    for entry in witness.entries():
        if isinstance(entry, str) and not entry.startswith("witness line"):
            raise SigningError(entry)  # the log cannot be read: it knows nothing certain
        if isinstance(entry, WitnessEntry):
            try:
                checkpoint = parse_checkpoint(entry.note, key)
            except SigningError:
                continue
            sizes[checkpoint.chain] = max(sizes.get(checkpoint.chain, 0), checkpoint.size)
    return sizes


class Notary:
    """Signs checkpoints with the MSP's key and hands each to the witness."""

    def __init__(self, key: SigningKey, witness: Witness | None) -> None:
        self.key = key
        self.witness = witness

    def sign_batch(
        self, chain: str, first_seq: int, prev_hash: str, last_seq: int, last_hash: str
    ) -> str:
        """The signature (base64) of one append's records of ``chain``."""
        message = batch_message(chain, first_seq, prev_hash, last_seq, last_hash)
        return base64.b64encode(self.key.sign(message)).decode()

    def sign_head(self, chain: str, size: int, last_hash: str) -> Checkpoint:
        """A head note: ``chain`` reached ``size`` records, the last stored with hash
        ``last_hash`` (whatever text that is)."""
        time = datetime.now(UTC).isoformat(timespec="microseconds")
        digest = hashlib.sha256(str(last_hash).encode(errors="replace")).digest()
        body = checkpoint_body(chain, size, digest, time).replace(_ORIGIN, _HEAD_ORIGIN, 1)
        return Checkpoint(chain, size, digest, time, sign_note(body, self.key, KEY_NAME), True)

    def sign(self, chain: str, size: int, root: bytes) -> Checkpoint:
        """A checkpoint of ``chain`` at ``size`` records with Merkle root ``root``."""
        time = datetime.now(UTC).isoformat(timespec="microseconds")
        note = sign_note(checkpoint_body(chain, size, root, time), self.key, KEY_NAME)
        return Checkpoint(chain, size, root, time, note)
