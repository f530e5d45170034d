"""Worker keys: a worker signs what it appends with a key of its own, which the MSP's
key vouches for in a certificate naming the clients it may write for.

A worker placed inside one client's network should not hold the MSP's signing key:
whoever takes that machine could then sign evidence for every client. Instead the
control node issues the worker a key and a certificate (``mspauto keys worker``): a C2SP
signed note, signed by the MSP's key, that says the worker's name, its public key, the
clients whose chains it may write to, and until when. The worker signs each append with
its key and stores the certificate beside its signatures (``evidence_signers``); the
control node's checkpoint takes in those records only when the certificate verifies
with the MSP's key, names the chain's client and has not expired. A stolen worker key
can therefore write for its own clients until its certificate expires, and for no one
else.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mspauto.evidence.checkpoints import batch_message
from mspauto.signing import PublicKey, SigningError, SigningKey, open_note, sign_note

__all__ = [
    "CERTIFICATE_NAME",
    "WorkerCertificate",
    "WorkerSigner",
    "certificate_path",
    "check_request",
    "issue_certificate",
    "msp_key_path",
]

CERTIFICATE_NAME = "mspauto-workers"
"""The key name in a certificate's signature line (not a checkpoint's: a certificate can
never pass for a checkpoint, nor the other way round)."""
_ORIGIN = "mspauto-worker-certificate/v1"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def certificate_path(key_path: Path) -> Path:
    """Where a worker key's certificate lives: beside it, ``NAME.cert``."""
    return key_path.with_suffix(".cert")


def msp_key_path(key_path: Path) -> Path:
    """Where a worker keeps the MSP's public key: beside its key, ``NAME.msp.pub`` (it
    checks its certificate and every batch message with it)."""
    return key_path.with_suffix(".msp.pub")


@dataclass(frozen=True)
class WorkerCertificate:
    """What the MSP's key says of one worker key."""

    name: str
    key: PublicKey
    clients: tuple[str, ...]
    not_after: datetime
    note: str
    """The signed note itself, as stored."""

    @property
    def fingerprint(self) -> str:
        """How a batch signature names its certificate: SHA-256 of the note."""
        return hashlib.sha256(self.note.encode()).hexdigest()

    def allows(self, chain: str, now: datetime) -> bool:
        """Whether records of ``chain`` signed by this key count as signed at ``now``."""
        return chain in self.clients and now <= self.not_after

    @classmethod
    def read(cls, note: str, msp_key: PublicKey) -> WorkerCertificate:
        """The certificate in ``note``, its signature checked with ``msp_key``;
        :class:`SigningError` says why not."""
        lines = open_note(note, msp_key, CERTIFICATE_NAME).split("\n")
        if len(lines) != 6 or lines[0] != _ORIGIN or lines[5] != "":
            raise SigningError("not an mspauto worker certificate")
        fields = dict(line.partition(" ")[::2] for line in lines[1:5])
        try:
            clients = tuple(fields["clients"].split(","))
            not_after = datetime.fromisoformat(fields["not-after"])
            key = PublicKey.from_text(fields["key"])
            name = fields["name"]
        except (KeyError, ValueError) as exc:
            raise SigningError(f"a malformed worker certificate ({exc})") from None
        if not_after.tzinfo is None or not all(clients) or not _NAME.match(name):
            raise SigningError("a malformed worker certificate")
        return cls(name, key, clients, not_after, note)


def issue_certificate(
    msp_key: SigningKey,
    name: str,
    worker_key: PublicKey,
    clients: tuple[str, ...],
    not_after: datetime,
) -> WorkerCertificate:
    """Vouch for ``worker_key`` (worker ``name``) writing the chains of ``clients``
    until ``not_after``."""
    check_request(name, clients)
    key_line = base64.b64encode(b"Ed" + worker_key.key_id + worker_key.raw).decode()
    body = (
        f"{_ORIGIN}\nname {name}\nkey {key_line}\nclients {','.join(sorted(set(clients)))}\n"
        f"not-after {not_after.astimezone(UTC).isoformat(timespec='seconds')}\n"
    )
    return WorkerCertificate.read(sign_note(body, msp_key, CERTIFICATE_NAME), msp_key.public_key)


def check_request(name: str, clients: tuple[str, ...]) -> None:
    """:class:`SigningError` unless ``name`` can name a worker and ``clients`` are one
    or more client names (inventory names: no commas or spaces)."""
    if not _NAME.match(name):
        raise SigningError(
            f"a worker name is letters, digits, '.', '_' and '-' (up to 64), not {name!r}"
        )
    if not clients or any(not _NAME.match(c) for c in clients):
        raise SigningError("a worker certificate names one or more clients")


class WorkerSigner:
    """Signs a worker's appends with its own key (an :class:`EvidenceStore`'s
    ``batch_signer``); the store keeps the certificate beside the signatures."""

    def __init__(
        self, key: SigningKey, certificate: WorkerCertificate, msp_key: PublicKey | None = None
    ) -> None:
        if key.public_key != certificate.key:
            raise SigningError(
                f"the certificate of worker {certificate.name} is for another key: issue "
                "the key and its certificate together ('mspauto keys worker')"
            )
        self.key = key
        self.certificate = certificate
        self.msp_key = msp_key
        """The MSP's public key, which signed the certificate (and signs batches)."""

    @classmethod
    def load(cls, key_path: Path, now: datetime | None = None) -> WorkerSigner:
        """The worker key at ``key_path``, its certificate and the MSP's public key
        beside it; refused when the certificate is not the MSP's or has expired (its
        records would be left unsigned)."""
        if not key_path.exists():
            raise SigningError(
                f"no worker key at {key_path}: issue one on the control node ('mspauto keys "
                "worker NAME --client CLIENT') and copy it here with its .cert"
            )
        key = SigningKey.load(key_path)
        cert_path = certificate_path(key_path)
        try:
            note = cert_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SigningError(f"no worker certificate at {cert_path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SigningError(f"cannot read {cert_path}: {exc}") from None
        if not msp_key_path(key_path).exists():
            raise SigningError(
                f"no MSP public key at {msp_key_path(key_path)}: copy it there with the "
                "worker key ('mspauto keys worker' writes all three files)"
            )
        msp_key = PublicKey.load(msp_key_path(key_path))
        try:
            certificate = WorkerCertificate.read(note, msp_key)
        except SigningError as exc:
            raise SigningError(
                f"{cert_path}: {exc} (is {msp_key_path(key_path).name} the MSP's key?)"
            ) from None
        if (now or datetime.now(UTC)) > certificate.not_after:
            raise SigningError(
                f"the certificate of worker {certificate.name} expired at "
                f"{certificate.not_after:%Y-%m-%d %H:%M} UTC: issue a new one "
                "('mspauto keys worker' on the control node)"
            )
        return cls(key, certificate, msp_key)

    def sign_batch(
        self, chain: str, first_seq: int, prev_hash: str, last_seq: int, last_hash: str
    ) -> str:
        """The signature (base64) of one append's records of ``chain``."""
        message = batch_message(chain, first_seq, prev_hash, last_seq, last_hash)
        return base64.b64encode(self.key.sign(message)).decode()
