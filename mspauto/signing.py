"""The MSP's Ed25519 signing key, in minisign's file format.

One key signs two kinds of things. Evidence checkpoints are C2SP signed notes
(https://c2sp.org/signed-note), the format transparency logs use for checkpoints.
Monthly reports are signed as minisign ``.minisig`` files, because an auditor then
needs nothing from us to check them: the stock ``minisign -V`` and our ``.pub`` file.
Keeping the key files in minisign's format lets that one key serve both, and lets
people use minisign itself to make, inspect or back up the key.

The layouts follow minisign's source (``src/minisign.h`` and ``src/minisign.c`` of
github.com/jedisct1/minisign, 0.11 and 0.12): a secret key file is an untrusted comment
line and the base64 of ``"Ed" || kdf_alg || "B2" || salt(32) || opslimit(8) ||
memlimit(8) || key_id(8) || ed25519_secret(64) || blake2b_256_checksum(32)``; a public
key file is a comment line and the base64 of ``"Ed" || key_id(8) || ed25519_public(32)``.
The secret key is kept unencrypted (``kdf_alg`` is two zero bytes, as ``minisign -G -W``
writes) because a scheduled, unattended run has nobody to type a password: file
permissions and keeping the file off the evidence database's host protect it instead.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = [
    "PublicKey",
    "SigningError",
    "SigningKey",
    "generate_key",
    "note_verifier_key",
    "open_note",
    "sign_file",
    "sign_note",
    "verify_file",
]

_SIG_ALG = b"Ed"
_SIG_ALG_PREHASHED = b"ED"
_KDF_NONE = b"\0\0"
_KDF_SCRYPT = b"Sc"
_CHK_ALG = b"B2"
_KEY_ID_BYTES = 8
_PUBLIC_BYTES = 32
_SIGNATURE_BYTES = 64
_CHECKSUM_BYTES = 32
_KDF_PARAMS_BYTES = 32 + 8 + 8  # salt, opslimit, memlimit
_SECRET_STRUCT_BYTES = 6 + _KDF_PARAMS_BYTES + _KEY_ID_BYTES + 64 + _CHECKSUM_BYTES
_PUBLIC_STRUCT_BYTES = 2 + _KEY_ID_BYTES + _PUBLIC_BYTES
_SIG_STRUCT_BYTES = 2 + _KEY_ID_BYTES + _SIGNATURE_BYTES

_COMMENT_PREFIX = "untrusted comment: "
_TRUSTED_PREFIX = "trusted comment: "
# minisign reads lines with fgets() into fixed buffers (COMMENTMAXBYTES = 1024,
# TRUSTEDCOMMENTMAXBYTES = 8192, both counting the prefix, the newline and the final
# NUL); a longer line would be split and the file misread, so we never write one.
_MAX_COMMENT = 1024 - len(_COMMENT_PREFIX) - 2
_MAX_TRUSTED_COMMENT = 8192 - len(_TRUSTED_PREFIX) - 2
_MAX_KEY_FILE_BYTES = 4096

_NOTE_SIGNATURE_PREFIX = "\u2014 "  # em dash, space
_NOTE_ALG_ED25519 = b"\x01"
_NOTE_KEY_HASH_BYTES = 4
_MAX_NOTE_SIGNATURES = 100  # as golang.org/x/mod/sumdb/note: parsing stays cheap


class SigningError(Exception):
    """A key or signature could not be made, read or verified; the message is one line
    that says which file or what to do."""


@dataclass(frozen=True)
class PublicKey:
    """The public half of a signing key: what auditors and verifiers are given.

    ``key_id`` is minisign's random 8-byte key number, which a ``.minisig`` names so
    that ``minisign -V`` can tell a wrong key from a forged signature; ``raw`` is the
    32-byte Ed25519 public key.
    """

    key_id: bytes
    raw: bytes

    def __post_init__(self) -> None:
        if len(self.key_id) != _KEY_ID_BYTES or len(self.raw) != _PUBLIC_BYTES:
            raise SigningError(
                f"a public key is an {_KEY_ID_BYTES}-byte key id and a {_PUBLIC_BYTES}-byte "
                f"Ed25519 key, not {len(self.key_id)} and {len(self.raw)} bytes"
            )

    @classmethod
    def load(cls, path: Path) -> PublicKey:
        """The key in a minisign ``.pub`` file."""
        try:
            text = _read_key_file(path)
        except FileNotFoundError:
            raise SigningError(f"no public key at {path}") from None
        try:
            return cls.from_text(text)
        except SigningError as exc:
            raise SigningError(f"{path}: {exc}") from None

    @classmethod
    def from_text(cls, text: str) -> PublicKey:
        """The key in a ``.pub`` file's content, or in just its base64 line (what
        ``minisign -P`` takes)."""
        lines = text.strip("\n").split("\n")
        if len(lines) == 2:
            comment, encoded = lines
            if not comment.startswith(_COMMENT_PREFIX):
                raise SigningError(
                    f"not a minisign public key (the first line must start "
                    f"with {_COMMENT_PREFIX.strip()!r})"
                )
        elif len(lines) == 1:
            encoded = lines[0]
        else:
            raise SigningError(
                "not a minisign public key (expected a comment line and a base64 line)"
            )
        data = _b64decode(encoded.strip(), "public key")
        if len(data) != _PUBLIC_STRUCT_BYTES:
            raise SigningError(
                f"not a minisign public key ({len(data)} bytes, not {_PUBLIC_STRUCT_BYTES})"
            )
        if data[:2] != _SIG_ALG:
            raise SigningError(f"unsupported public key algorithm {data[:2]!r} (only Ed25519)")
        return cls(key_id=data[2:10], raw=data[10:])

    def to_text(self) -> str:
        """The ``.pub`` file content, as ``minisign -G`` writes it."""
        encoded = base64.b64encode(_SIG_ALG + self.key_id + self.raw).decode()
        return f"{_COMMENT_PREFIX}minisign public key {self.fingerprint()}\n{encoded}\n"

    def fingerprint(self) -> str:
        """The key id as minisign prints it: 16 uppercase hex digits of the key number
        read as a little-endian integer (so the bytes appear reversed)."""
        return self.key_id[::-1].hex().upper()

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is this key's Ed25519 signature of ``message``. Any bad
        input (wrong length, not a curve point) is simply ``False``: callers decide."""
        if len(signature) != _SIGNATURE_BYTES:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


class SigningKey:
    """The secret key, loaded into memory for signing. Its repr never shows the key.

    ``key_id`` is minisign's 8-byte key number; ``public_key`` the public half, with
    the same key id."""

    __slots__ = ("_private", "key_id", "public_key")

    key_id: bytes
    public_key: PublicKey

    def __init__(self, private_key: Ed25519PrivateKey, key_id: bytes) -> None:
        if len(key_id) != _KEY_ID_BYTES:
            raise SigningError(f"a key id is {_KEY_ID_BYTES} bytes, not {len(key_id)}")
        self._private = private_key
        self.key_id = key_id
        self.public_key = PublicKey(key_id=key_id, raw=_raw_public(private_key))

    def __repr__(self) -> str:
        return f"<SigningKey {self.public_key.fingerprint()}>"

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        """The unencrypted minisign secret key in ``path``.

        Refuses a file that group or others may access, as ssh does, since anyone who
        reads it can forge the MSP's evidence; refuses encrypted keys, which an
        unattended run cannot unlock; and checks the file is whole (checksum, and the
        public key stored beside the secret one)."""
        try:
            text = _read_key_file(path, private=True)
        except FileNotFoundError:
            raise SigningError(
                f"no signing key at {path}; create one with 'mspauto keys init'"
            ) from None
        lines = text.strip("\n").split("\n")
        if len(lines) != 2 or not lines[0].startswith(_COMMENT_PREFIX):
            raise SigningError(
                f"{path} is not a minisign secret key (expected a comment line and a base64 line)"
            )
        try:
            data = _b64decode(lines[1].strip(), "secret key")
        except SigningError as exc:
            raise SigningError(f"{path}: {exc}") from None
        if len(data) != _SECRET_STRUCT_BYTES:
            raise SigningError(
                f"{path} is not a minisign secret key "
                f"({len(data)} bytes, not {_SECRET_STRUCT_BYTES})"
            )
        sig_alg, kdf_alg, chk_alg = data[0:2], data[2:4], data[4:6]
        if sig_alg != _SIG_ALG:
            raise SigningError(f"{path}: unsupported key algorithm {sig_alg!r} (only Ed25519)")
        if chk_alg != _CHK_ALG:
            raise SigningError(f"{path}: unsupported checksum algorithm {chk_alg!r}")
        if kdf_alg == _KDF_SCRYPT:
            raise SigningError(
                f"{path} is encrypted with a password; mspauto signs unattended and needs "
                "an unencrypted key, made by 'mspauto keys init' or 'minisign -G -W'"
            )
        if kdf_alg != _KDF_NONE:
            raise SigningError(f"{path}: unsupported key encryption {kdf_alg!r}")
        offset = 6 + _KDF_PARAMS_BYTES
        key_id = data[offset : offset + _KEY_ID_BYTES]
        secret = data[offset + _KEY_ID_BYTES : offset + _KEY_ID_BYTES + 64]
        checksum = data[offset + _KEY_ID_BYTES + 64 :]
        # minisign 0.11 and 0.12 leave the checksum zero in keys made with -G -W (they
        # compute it only when encrypting), so zero means "not recorded", not "damaged";
        # the public-half comparison below still catches a damaged key then.
        if checksum != bytes(_CHECKSUM_BYTES) and checksum != _checksum(key_id, secret):
            raise SigningError(f"{path}: checksum mismatch, the key file is damaged")
        private_key = Ed25519PrivateKey.from_private_bytes(secret[:32])
        if _raw_public(private_key) != secret[32:]:
            raise SigningError(
                f"{path}: the stored public key does not match the secret key; "
                "the key file is damaged"
            )
        return cls(private_key, key_id)

    def sign(self, message: bytes) -> bytes:
        """The raw 64-byte Ed25519 signature of ``message``."""
        return self._private.sign(message)

    def _secret_file_text(self, comment: str) -> str:
        """The unencrypted minisign secret key file, as ``minisign -G -W`` lays it out."""
        secret = self._private.private_bytes_raw() + self.public_key.raw
        data = (
            _SIG_ALG
            + _KDF_NONE
            + _CHK_ALG
            + bytes(_KDF_PARAMS_BYTES)
            + self.key_id
            + secret
            + _checksum(self.key_id, secret)
        )
        return f"{_COMMENT_PREFIX}{comment}\n{base64.b64encode(data).decode()}\n"


def generate_key(secret_path: Path, public_path: Path, *, comment: str) -> PublicKey:
    """Make a new key: the secret key file (mode 0600, in a 0700 folder if the folder
    is new) and its ``.pub`` file. Never overwrites either file: replacing a key
    silently would orphan everything signed with the old one.

    ``comment`` is the secret key file's untrusted comment line."""
    _check_comment(comment, "key comment", _MAX_COMMENT)
    for path in (secret_path, public_path):
        if os.path.lexists(path):
            raise SigningError(
                f"{path} already exists; a key is never overwritten (move it away first "
                "if you really mean to replace the key)"
            )
    key = SigningKey(Ed25519PrivateKey.generate(), os.urandom(_KEY_ID_BYTES))
    try:
        secret_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        public_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SigningError(f"cannot create {exc.filename}: {exc.strerror}") from None
    _create_file(secret_path, key._secret_file_text(comment), 0o600)
    try:
        _create_file(public_path, key.public_key.to_text(), 0o644)
    except SigningError:
        secret_path.unlink()
        raise
    return key.public_key


# --- C2SP signed notes ---------------------------------------------------------------


def sign_note(text: str, key: SigningKey, name: str) -> str:
    """``text`` as a signed note: the text, a blank line, and one signature line
    ``— <name> base64(key hash || Ed25519 signature)``.

    ``text`` must end with a newline and hold no control characters but newlines (it
    may hold empty lines: readers split at the last one). ``name`` identifies the key
    to readers together with the key hash; it must follow the spec's rules for key
    names."""
    _check_note_name(name)
    if not text.endswith("\n"):
        raise SigningError("a note's text must end with a newline")
    _check_note_characters(text, "note text")
    signature = key.sign(text.encode())
    encoded = base64.b64encode(_note_key_hash(name, key.public_key) + signature).decode()
    return f"{text}\n{_NOTE_SIGNATURE_PREFIX}{name} {encoded}\n"


def open_note(note: str, key: PublicKey, name: str) -> str:
    """The text of ``note`` once a signature by ``key`` under ``name`` verifies.

    Signatures by other keys are ignored, as the spec requires; a signature that
    names this key but does not verify refuses the whole note."""
    _check_note_name(name)
    _check_note_characters(note, "signed note")
    split = note.rfind("\n\n")
    if split < 0:
        raise SigningError("malformed signed note: no blank line before the signatures")
    text, signature_block = note[: split + 1], note[split + 2 :]
    if not signature_block.endswith("\n"):
        raise SigningError("malformed signed note: it must end with a signature line")
    lines = signature_block[:-1].split("\n")
    if len(lines) > _MAX_NOTE_SIGNATURES:
        raise SigningError(f"malformed signed note: more than {_MAX_NOTE_SIGNATURES} signatures")
    expected_hash = _note_key_hash(name, key)
    verified = False
    for line in lines:
        if not line.startswith(_NOTE_SIGNATURE_PREFIX):
            raise SigningError(f"malformed signed note: not a signature line: {line[:60]!r}")
        signer, _, encoded = line[len(_NOTE_SIGNATURE_PREFIX) :].partition(" ")
        try:
            _check_note_name(signer)
            signature = _b64decode(encoded, "signature")
        except SigningError as exc:
            raise SigningError(f"malformed signed note: {exc}") from None
        if len(signature) <= _NOTE_KEY_HASH_BYTES:
            raise SigningError("malformed signed note: a signature is too short")
        if signer != name or signature[:_NOTE_KEY_HASH_BYTES] != expected_hash:
            continue
        if not key.verify(text.encode(), signature[_NOTE_KEY_HASH_BYTES:]):
            raise SigningError(
                f"the signature by {name} (key {key.fingerprint()}) does not match the "
                "note: it was altered"
            )
        verified = True
    if not verified:
        raise SigningError(f"note not signed by key {key.fingerprint()} as {name}")
    return text


def note_verifier_key(name: str, key: PublicKey) -> str:
    """The key as a signed-note verifier key, ``<name>+<key hash hex>+<base64(0x01 ||
    key)>``: what tools built on golang.org/x/mod/sumdb/note are configured with."""
    _check_note_name(name)
    encoded = base64.b64encode(_NOTE_ALG_ED25519 + key.raw).decode()
    return f"{name}+{_note_key_hash(name, key).hex()}+{encoded}"


def _note_key_hash(name: str, key: PublicKey) -> bytes:
    """SHA-256(name || "\\n" || 0x01 || public key)[:4], the spec's Ed25519 key ID."""
    digest = hashlib.sha256(name.encode() + b"\n" + _NOTE_ALG_ED25519 + key.raw).digest()
    return digest[:_NOTE_KEY_HASH_BYTES]


def _check_note_name(name: str) -> None:
    """Key names are non-empty, with no Unicode spaces and no '+' (it separates the
    parts of a verifier key)."""
    if not name or "+" in name or any(c.isspace() for c in name):
        raise SigningError(
            f"invalid note key name {name!r}: it must be non-empty, without spaces or '+'"
        )
    _check_note_characters(name, "note key name")


def _check_note_characters(text: str, what: str) -> None:
    """Notes are UTF-8 with no ASCII control character but newline."""
    try:
        text.encode()
    except UnicodeEncodeError:
        raise SigningError(f"{what} is not valid UTF-8") from None
    for char in text:
        if char < " " and char != "\n":
            raise SigningError(f"{what} holds the control character {char!r}")


# --- minisign file signatures ----------------------------------------------------------


def sign_file(
    data: bytes,
    key: SigningKey,
    *,
    trusted_comment: str,
    untrusted_comment: str = "signature from mspauto",
) -> str:
    """The ``.minisig`` text for ``data``, as ``minisign -S`` writes it: the prehashed
    "ED" algorithm (an Ed25519 signature of the BLAKE2b-512 of the data), then a
    global signature binding the trusted comment to that signature, so the comment
    (a report's client and month, say) cannot be swapped either."""
    _check_comment(untrusted_comment, "untrusted comment", _MAX_COMMENT)
    _check_comment(trusted_comment, "trusted comment", _MAX_TRUSTED_COMMENT)
    signature = key.sign(hashlib.blake2b(data, digest_size=64).digest())
    global_signature = key.sign(signature + trusted_comment.encode())
    sig_struct = _SIG_ALG_PREHASHED + key.key_id + signature
    return (
        f"{_COMMENT_PREFIX}{untrusted_comment}\n"
        f"{base64.b64encode(sig_struct).decode()}\n"
        f"{_TRUSTED_PREFIX}{trusted_comment}\n"
        f"{base64.b64encode(global_signature).decode()}\n"
    )


def verify_file(data: bytes, minisig: str, key: PublicKey) -> str:
    """The trusted comment of ``minisig`` once it verifies as ``key``'s signature of
    ``data``, checked as ``minisign -V`` does (legacy "Ed" signatures included)."""
    lines = [line.removesuffix("\r") for line in minisig.split("\n")]
    if len(lines) < 4 or not lines[0].startswith(_COMMENT_PREFIX):
        raise SigningError("not a minisign signature (expected an untrusted comment line first)")
    if not lines[2].startswith(_TRUSTED_PREFIX):
        raise SigningError("not a minisign signature (the third line must be the trusted comment)")
    sig_struct = _b64decode(lines[1].strip(), "signature")
    global_signature = _b64decode(lines[3].strip(), "trusted comment signature")
    trusted_comment = lines[2][len(_TRUSTED_PREFIX) :]
    if len(sig_struct) != _SIG_STRUCT_BYTES or len(global_signature) != _SIGNATURE_BYTES:
        raise SigningError("not a minisign signature (wrong signature length)")
    if not _printable(trusted_comment):
        raise SigningError("the signature's trusted comment holds unprintable characters")
    algorithm, key_id, signature = sig_struct[:2], sig_struct[2:10], sig_struct[10:]
    if algorithm == _SIG_ALG_PREHASHED:
        message = hashlib.blake2b(data, digest_size=64).digest()
    elif algorithm == _SIG_ALG:
        message = data
    else:
        raise SigningError(f"unsupported signature algorithm {algorithm!r}")
    if key_id != key.key_id:
        raise SigningError(
            f"signed by key {key_id[::-1].hex().upper()}, not by key {key.fingerprint()}"
        )
    if not key.verify(message, signature):
        raise SigningError(f"the signature by key {key.fingerprint()} does not match the data")
    if not key.verify(signature + trusted_comment.encode(), global_signature):
        raise SigningError(
            f"the trusted comment's signature by key {key.fingerprint()} does not match: "
            "the comment was altered"
        )
    return trusted_comment


# --- helpers ---------------------------------------------------------------------------


def _raw_public(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _checksum(key_id: bytes, secret: bytes) -> bytes:
    """minisign's secret key checksum: BLAKE2b-256 of sig_alg || key_id || secret."""
    return hashlib.blake2b(_SIG_ALG + key_id + secret, digest_size=_CHECKSUM_BYTES).digest()


def _b64decode(encoded: str, what: str) -> bytes:
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise SigningError(f"the {what} is not valid base64") from None


def _printable(text: str) -> bool:
    """minisign's ``is_printable``: tabs and visible characters only, so a trusted
    comment cannot hide text from the person reading ``minisign -V`` output."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return all(c == "\t" or not (c < " " or "\x7f" <= c <= "\x9f") for c in text)


def _check_comment(comment: str, what: str, limit: int) -> None:
    if not _printable(comment):
        raise SigningError(f"the {what} must be one line of printable text")
    if len(comment.encode()) > limit:
        raise SigningError(f"the {what} is longer than minisign reads ({limit} bytes)")


def _read_key_file(path: Path, *, private: bool = False) -> str:
    """A key file's text; for a secret key, only if group and others cannot access it.
    The mode is read from the open file, so it is the file actually read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)  # a pipe must not hang
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise SigningError(f"cannot read {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as file:
        mode = os.fstat(file.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise SigningError(f"{path} is not a file")
        if private and mode & 0o077:
            raise SigningError(
                f"{path} is accessible by group or others (mode {stat.S_IMODE(mode):04o}); "
                f"anyone who reads it can sign as the MSP: run 'chmod 600 {path}'"
            )
        content = file.read(_MAX_KEY_FILE_BYTES + 1)
    if len(content) > _MAX_KEY_FILE_BYTES:
        raise SigningError(f"{path} is too large to be a minisign key file")
    try:
        return content.decode()
    except UnicodeDecodeError:
        raise SigningError(f"{path} is not a minisign key file (not UTF-8 text)") from None


def _create_file(path: Path, text: str, mode: int) -> None:
    """Create ``path`` holding ``text``; never replaces a file. The mode is set at
    creation, so the secret key is never readable by others, not even for a moment."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except FileExistsError:
        raise SigningError(f"{path} already exists; a key is never overwritten") from None
    except OSError as exc:
        raise SigningError(f"cannot create {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise SigningError(f"cannot write {path}: {exc.strerror}") from None
