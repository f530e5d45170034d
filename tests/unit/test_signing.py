"""The signing key as auditors and other tools meet it: the real minisign binary must
accept our key files and signatures and we must accept its; signed notes must match
the C2SP spec's and Go's published vectors; and every refusal is one clear line."""

from __future__ import annotations

import base64
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mspauto.cli import cli
from mspauto.signing import (
    PublicKey,
    SigningError,
    SigningKey,
    generate_key,
    note_verifier_key,
    open_note,
    sign_file,
    sign_note,
    verify_file,
)

MINISIGN = shutil.which("minisign")
needs_minisign = pytest.mark.skipif(
    MINISIGN is None,
    reason="the minisign binary is not installed (bash scripts/install-system-deps.sh installs it)",
)

REPORT = b"acme, January 2026: 14 hosts patched within SLA\n"


def minisign(*args: str | Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real minisign; without ``stdin`` it gets /dev/null, so a password prompt
    fails instead of hanging."""
    assert MINISIGN is not None
    return subprocess.run(
        [MINISIGN, *map(str, args)],
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def key_files(tmp_path: Path) -> tuple[Path, Path]:
    """A key made by mspauto: (secret key file, public key file)."""
    secret, public = tmp_path / "keys" / "evidence.key", tmp_path / "keys" / "evidence.key.pub"
    generate_key(secret, public, comment="test key")
    return secret, public


@pytest.fixture
def minisign_key_files(tmp_path: Path) -> tuple[Path, Path]:
    """An unencrypted key made by the real ``minisign -G -W``."""
    secret, public = tmp_path / "mini.key", tmp_path / "mini.pub"
    result = minisign("-G", "-W", "-p", public, "-s", secret)
    assert result.returncode == 0, result.stderr
    return secret, public


def _comment_key_id(public: Path) -> str:
    """The key id on a minisign .pub file's comment line, as 16 digits: minisign 0.12
    zero-pads it (as we do), 0.11 (Debian 12) does not."""
    comment = public.read_text().splitlines()[0]
    assert comment.startswith("untrusted comment: minisign public key ")
    return comment.rsplit(" ", 1)[1].zfill(16)


@pytest.fixture
def report(tmp_path: Path) -> Path:
    path = tmp_path / "report.txt"
    path.write_bytes(REPORT)
    return path


# --- interoperability with the real minisign --------------------------------------------


@needs_minisign
def test_minisign_signs_with_a_generated_key_and_verifies_it(
    key_files: tuple[Path, Path], report: Path
) -> None:
    secret, public = key_files
    signed = minisign("-S", "-s", secret, "-m", report, "-t", "acme 2026-01")
    assert signed.returncode == 0, signed.stderr + signed.stdout
    assert "Password" not in signed.stdout
    verified = minisign("-Vm", report, "-p", public)
    assert verified.returncode == 0, verified.stderr
    assert "Trusted comment: acme 2026-01" in verified.stdout
    # And our own verifier accepts minisign's signature.
    minisig = Path(f"{report}.minisig").read_text()
    assert verify_file(REPORT, minisig, PublicKey.load(public)) == "acme 2026-01"


@needs_minisign
def test_generated_files_are_byte_for_byte_what_minisign_derives(
    key_files: tuple[Path, Path], tmp_path: Path
) -> None:
    """minisign -R rebuilds the .pub from the secret key file: the same bytes prove the
    secret key's layout (key id and public half where minisign looks) and the .pub's."""
    secret, public = key_files
    rebuilt = tmp_path / "rebuilt.pub"
    result = minisign("-R", "-s", secret, "-p", rebuilt)
    assert result.returncode == 0, result.stderr
    assert rebuilt.read_text().splitlines()[1] == public.read_text().splitlines()[1]
    assert _comment_key_id(rebuilt) == PublicKey.load(public).fingerprint()


@needs_minisign
def test_a_minisign_made_key_loads_and_its_signatures_verify_with_minisign(
    minisign_key_files: tuple[Path, Path], report: Path
) -> None:
    secret, public = minisign_key_files
    key = SigningKey.load(secret)
    assert key.public_key == PublicKey.load(public)
    assert _comment_key_id(public) == key.public_key.fingerprint()
    Path(f"{report}.minisig").write_text(
        sign_file(REPORT, key, trusted_comment="client:acme\tmonth:2026-01")
    )
    verified = minisign("-Vm", report, "-p", public)
    assert verified.returncode == 0, verified.stderr
    assert "Trusted comment: client:acme\tmonth:2026-01" in verified.stdout
    # -H refuses legacy (non-prehashed) signatures: ours are prehashed, as minisign's are.
    assert minisign("-V", "-H", "-m", report, "-p", public).returncode == 0


def _tamper_data(data: bytes, minisig: str) -> tuple[bytes, str]:
    return data.replace(b"14 hosts", b"15 hosts"), minisig


def _tamper_comment(data: bytes, minisig: str) -> tuple[bytes, str]:
    return data, minisig.replace("trusted comment: acme", "trusted comment: globex")


@needs_minisign
@pytest.mark.parametrize("signer", ["mspauto", "minisign"])
@pytest.mark.parametrize(
    ("tamper", "minisign_says", "we_say"),
    [
        (_tamper_data, "Signature verification failed", "does not match the data"),
        (_tamper_comment, "Comment signature verification failed", "the comment was altered"),
    ],
    ids=["data", "trusted comment"],
)
def test_a_tampered_file_or_comment_fails_both_verifiers(
    minisign_key_files: tuple[Path, Path],
    report: Path,
    signer: str,
    tamper: Callable[[bytes, str], tuple[bytes, str]],
    minisign_says: str,
    we_say: str,
) -> None:
    secret, public = minisign_key_files
    minisig_path = Path(f"{report}.minisig")
    if signer == "mspauto":
        minisig_path.write_text(sign_file(REPORT, SigningKey.load(secret), trusted_comment="acme"))
    else:
        assert minisign("-S", "-s", secret, "-m", report, "-t", "acme").returncode == 0
    data, minisig = tamper(REPORT, minisig_path.read_text())
    report.write_bytes(data)
    minisig_path.write_text(minisig)

    result = minisign("-Vm", report, "-p", public)
    assert result.returncode == 1
    assert minisign_says in result.stderr
    with pytest.raises(SigningError, match=we_say):
        verify_file(data, minisig, PublicKey.load(public))


@needs_minisign
def test_a_signature_by_another_key_is_named_as_such(
    key_files: tuple[Path, Path], minisign_key_files: tuple[Path, Path]
) -> None:
    ours, theirs = SigningKey.load(key_files[0]), PublicKey.load(minisign_key_files[1])
    minisig = sign_file(REPORT, ours, trusted_comment="acme")
    with pytest.raises(SigningError) as raised:
        verify_file(REPORT, minisig, theirs)
    assert str(raised.value) == (
        f"signed by key {ours.public_key.fingerprint()}, not by key {theirs.fingerprint()}"
    )


@needs_minisign
def test_an_encrypted_minisign_key_is_refused_with_what_to_do(tmp_path: Path) -> None:
    # minisign reads the password with echo off, but from stdin when it is no tty, so a
    # real encrypted key can be made here (its scrypt step takes a few seconds).
    secret = tmp_path / "encrypted.key"
    made = minisign("-G", "-p", tmp_path / "encrypted.pub", "-s", secret, stdin="pw\npw\n")
    assert made.returncode == 0, made.stderr
    with pytest.raises(SigningError) as raised:
        SigningKey.load(secret)
    assert str(raised.value) == (
        f"{secret} is encrypted with a password; mspauto signs unattended and needs an "
        "unencrypted key, made by 'mspauto keys init' or 'minisign -G -W'"
    )


# --- key files --------------------------------------------------------------------------


def test_the_secret_key_is_private_from_its_creation(tmp_path: Path) -> None:
    secret, public = tmp_path / "state" / "keys" / "evidence.key", tmp_path / "state" / "p.pub"
    key = generate_key(secret, public, comment="test key")
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(secret.parent.stat().st_mode) == 0o700
    assert SigningKey.load(secret).public_key == key == PublicKey.load(public)
    assert secret.read_text().splitlines()[0] == "untrusted comment: test key"
    assert repr(SigningKey.load(secret)) == f"<SigningKey {key.fingerprint()}>"


@pytest.mark.parametrize("kept", [0, 1], ids=["secret key", "public key"])
def test_an_existing_key_file_is_never_overwritten(key_files: tuple[Path, Path], kept: int) -> None:
    existing, other = key_files[kept], key_files[1 - kept]
    before = existing.read_bytes()
    other.unlink()
    with pytest.raises(SigningError) as raised:
        generate_key(*key_files, comment="again")
    assert str(raised.value) == (
        f"{existing} already exists; a key is never overwritten (move it away first if you "
        "really mean to replace the key)"
    )
    assert existing.read_bytes() == before
    assert not other.exists()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_a_key_others_can_read_is_refused(key_files: tuple[Path, Path], mode: int) -> None:
    secret, _ = key_files
    secret.chmod(mode)
    with pytest.raises(SigningError) as raised:
        SigningKey.load(secret)
    assert str(raised.value) == (
        f"{secret} is accessible by group or others (mode {mode:04o}); anyone who reads it "
        f"can sign as the MSP: run 'chmod 600 {secret}'"
    )
    secret.chmod(0o600)
    SigningKey.load(secret)


def _edit_struct(edit: Callable[[bytearray], None]) -> Callable[[str], str]:
    """A change to the decoded key bytes, for a secret key file's text."""

    def apply(text: str) -> str:
        comment, encoded = text.splitlines()
        data = bytearray(base64.b64decode(encoded))
        edit(data)
        return f"{comment}\n{base64.b64encode(bytes(data)).decode()}\n"

    return apply


def _set(offset: int, value: bytes) -> Callable[[bytearray], None]:
    def edit(data: bytearray) -> None:
        data[offset : offset + len(value)] = value

    return edit


def _flip(offset: int) -> Callable[[bytearray], None]:
    def edit(data: bytearray) -> None:
        data[offset] ^= 1

    return edit


def _zero_checksum_and_flip_secret(data: bytearray) -> None:
    """What a damaged ``minisign -G -W`` key looks like: it records no checksum."""
    data[126:158] = bytes(32)
    data[62] ^= 1


MALFORMED_SECRET_KEYS: dict[str, tuple[Callable[[str], str], str]] = {
    "empty": (lambda _: "", "is not a minisign secret key (expected a comment line"),
    "public key": (
        lambda _: f"untrusted comment: x\n{base64.b64encode(b'Ed' + bytes(40)).decode()}\n",
        "is not a minisign secret key (42 bytes, not 158)",
    ),
    "no comment": (lambda t: t.splitlines()[1], "is not a minisign secret key (expected"),
    "bad base64": (lambda t: t.replace("RWQA", "RW!A"), ": the secret key is not valid base64"),
    "truncated": (_edit_struct(lambda d: d.__delitem__(slice(100, None))), "(100 bytes, not 158)"),
    "other algorithm": (_edit_struct(_set(0, b"Xx")), "unsupported key algorithm b'Xx'"),
    "other checksum": (_edit_struct(_set(4, b"B3")), "unsupported checksum algorithm b'B3'"),
    "other kdf": (_edit_struct(_set(2, b"Zz")), "unsupported key encryption b'Zz'"),
    "checksum": (_edit_struct(_flip(157)), "checksum mismatch, the key file is damaged"),
    "secret byte": (_edit_struct(_flip(70)), "checksum mismatch, the key file is damaged"),
    "secret byte, no checksum": (
        _edit_struct(_zero_checksum_and_flip_secret),
        "the stored public key does not match the secret key; the key file is damaged",
    ),
}


@pytest.mark.parametrize(
    ("change", "message"), MALFORMED_SECRET_KEYS.values(), ids=MALFORMED_SECRET_KEYS.keys()
)
def test_a_malformed_secret_key_is_one_line_naming_the_file(
    key_files: tuple[Path, Path], change: Callable[[str], str], message: str
) -> None:
    secret, _ = key_files
    secret.write_text(change(secret.read_text()))
    with pytest.raises(SigningError) as raised:
        SigningKey.load(secret)
    assert "\n" not in str(raised.value)
    assert str(raised.value).startswith(str(secret))
    assert message in str(raised.value)


def test_a_key_file_that_is_not_text_or_not_there(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.key"
    with pytest.raises(SigningError, match="create one with 'mspauto keys init'"):
        SigningKey.load(missing)
    with pytest.raises(SigningError, match=f"^no public key at {missing}$"):
        PublicKey.load(missing)
    binary = tmp_path / "binary.key"
    fd = os.open(binary, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"\xff\xfe\x00garbage")
    os.close(fd)
    with pytest.raises(SigningError, match=r"is not a minisign key file \(not UTF-8 text\)$"):
        SigningKey.load(binary)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not a minisign public key"),
        ("hello\nRWQ=\n", "the first line must start with 'untrusted comment:'"),
        ("untrusted comment: x\n!!!!\n", "the public key is not valid base64"),
        ("untrusted comment: x\nRWQAAA==\n", "not a minisign public key (4 bytes, not 42)"),
        ("a\nb\nc\n", "expected a comment line and a base64 line"),
    ],
)
def test_a_malformed_public_key_is_one_line(text: str, message: str) -> None:
    with pytest.raises(SigningError) as raised:
        PublicKey.from_text(text)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_public_key_reads_from_its_file_text_or_its_base64_line(
    key_files: tuple[Path, Path],
) -> None:
    _, public = key_files
    key = PublicKey.load(public)
    assert PublicKey.from_text(public.read_text()) == key
    assert PublicKey.from_text(public.read_text().splitlines()[1]) == key
    assert key.to_text() == public.read_text()
    assert len(key.raw) == 32 and len(key.key_id) == 8
    assert key.fingerprint() == key.key_id[::-1].hex().upper()


def test_verify_answers_false_to_anything_that_is_not_a_good_signature(
    key_files: tuple[Path, Path],
) -> None:
    key = SigningKey.load(key_files[0])
    signature = key.sign(b"message")
    public = key.public_key
    assert public.verify(b"message", signature)
    assert not public.verify(b"messagE", signature)
    assert not public.verify(b"message", signature[:-1])
    assert not public.verify(b"message", b"")
    assert not public.verify(b"message", bytes(64))
    not_a_point = PublicKey(key_id=public.key_id, raw=b"\xff" * 32)
    assert not not_a_point.verify(b"message", signature)


# --- signed notes -----------------------------------------------------------------------

CHECKPOINT = "mspauto.example/evidence/acme\n1042\nq7nTg2Yk3sZ1mJ5Q0oVb8r0d1f2k3l4m5n6o7p8q9r0=\n"


@pytest.fixture
def signing_key(key_files: tuple[Path, Path]) -> SigningKey:
    return SigningKey.load(key_files[0])


def test_a_signed_note_opens_to_its_text(signing_key: SigningKey) -> None:
    note = sign_note(CHECKPOINT, signing_key, "msp.example/evidence")
    assert note.startswith(CHECKPOINT + "\n\u2014 msp.example/evidence ")
    assert note.endswith("\n") and note.count("\n") == CHECKPOINT.count("\n") + 2
    assert open_note(note, signing_key.public_key, "msp.example/evidence") == CHECKPOINT


def test_a_note_text_may_hold_empty_lines(signing_key: SigningKey) -> None:
    text = "first\n\nafter an empty line\n\n"
    note = sign_note(text, signing_key, "msp")
    assert open_note(note, signing_key.public_key, "msp") == text


def _change_a_body_byte(note: str, _: SigningKey) -> str:
    return note.replace("1042", "1043")


def _sign_with_another_key(note: str, _: SigningKey) -> str:
    other = SigningKey(Ed25519PrivateKey.generate(), bytes(8))
    return sign_note(CHECKPOINT, other, "msp")


def _sign_under_another_name(note: str, key: SigningKey) -> str:
    return sign_note(CHECKPOINT, key, "msp2")


def _remove_the_signature_line(note: str, _: SigningKey) -> str:
    return note[: note.index("\u2014")]


def _mangle_the_signature_line(note: str, _: SigningKey) -> str:
    return note.replace("\u2014 msp ", "- msp ")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_change_a_body_byte, r"^the signature by msp \(key [0-9A-F]{16}\) does not match"),
        (_sign_with_another_key, r"^note not signed by key [0-9A-F]{16} as msp$"),
        (_sign_under_another_name, r"^note not signed by key [0-9A-F]{16} as msp$"),
        (_remove_the_signature_line, r"^malformed signed note: it must end with a signature"),
        (_mangle_the_signature_line, r"^malformed signed note: not a signature line: '- msp "),
    ],
    ids=["body byte", "another key", "another name", "no signature", "no em dash"],
)
def test_a_note_not_signed_as_expected_is_refused(
    signing_key: SigningKey, change: Callable[[str, SigningKey], str], message: str
) -> None:
    note = change(sign_note(CHECKPOINT, signing_key, "msp"), signing_key)
    with pytest.raises(SigningError, match=message):
        open_note(note, signing_key.public_key, "msp")


def test_signatures_by_other_keys_are_ignored(signing_key: SigningKey) -> None:
    """The spec: verifiers ignore signatures from unknown keys, such as a witness's
    cosignature beside ours."""
    witness = SigningKey(Ed25519PrivateKey.generate(), bytes(8))
    ours = sign_note(CHECKPOINT, signing_key, "msp")
    theirs = sign_note(CHECKPOINT, witness, "witness.example")
    both = ours + theirs.removeprefix(CHECKPOINT + "\n")
    assert open_note(both, signing_key.public_key, "msp") == CHECKPOINT
    assert open_note(both, witness.public_key, "witness.example") == CHECKPOINT


@pytest.mark.parametrize(
    ("text", "name", "message"),
    [
        ("no final newline", "msp", "must end with a newline"),
        ("a tab\there\n", "msp", "note text holds the control character '\\t'"),
        ("a lone surrogate \udc80\n", "msp", "note text is not valid UTF-8"),
        (CHECKPOINT, "", "invalid note key name ''"),
        (CHECKPOINT, "msp example", "invalid note key name 'msp example'"),
        (CHECKPOINT, "msp\u00a0example", "invalid note key name"),
        (CHECKPOINT, "msp+1", "invalid note key name 'msp+1'"),
    ],
)
def test_what_cannot_be_signed_as_a_note(
    signing_key: SigningKey, text: str, name: str, message: str
) -> None:
    with pytest.raises(SigningError, match=re.escape(message)):
        sign_note(text, signing_key, name)


# Published vectors, so the key hash and signature layout are checked against somebody
# else's arithmetic. Go: golang.org/x/mod, sumdb/note/note.go (package documentation) and
# sumdb/note/note_test.go (TestSign, TestOpen), commit fe2ec04f7c3c. C2SP: signed-note.md,
# section "Verifier keys", Example (github.com/C2SP/C2SP, commit 5ba5ee830903).
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_NOTE = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
    "\n"
    "\u2014 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
C2SP_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
C2SP_NOTE = (
    "This is an example message.\n"
    "\n"
    "\u2014 example.com/foo "
    "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)


def _vkey_public_key(vkey: str) -> PublicKey:
    """The raw Ed25519 key of a verifier key ``name+hash+base64(0x01 || key)``; such
    keys have no minisign key id, so it is left zero."""
    encoded = base64.b64decode(vkey.split("+", 2)[2])
    assert encoded[0] == 1  # Ed25519
    return PublicKey(key_id=bytes(8), raw=encoded[1:])


@pytest.mark.parametrize(
    ("vkey", "note"), [(GO_VKEY, GO_NOTE), (C2SP_VKEY, C2SP_NOTE)], ids=["go", "c2sp"]
)
def test_the_published_notes_verify_with_their_published_keys(vkey: str, note: str) -> None:
    name = vkey.split("+", 1)[0]
    key = _vkey_public_key(vkey)
    assert note_verifier_key(name, key) == vkey  # the key hash is the published one
    text = note[: note.rindex("\n\n") + 1]
    assert open_note(note, key, name) == text
    with pytest.raises(SigningError, match="does not match the note"):
        open_note(note.replace("is", "was", 1), key, name)


def test_signing_with_the_go_documentation_key_reproduces_its_note() -> None:
    """Ed25519 signatures are deterministic, so the published note is reproduced byte for
    byte from the published private key."""
    seed = base64.b64decode(GO_SKEY.split("+", 4)[4])[1:]
    key = SigningKey(Ed25519PrivateKey.from_private_bytes(seed), bytes(8))
    assert note_verifier_key("PeterNeumann", key.public_key) == GO_VKEY
    text = GO_NOTE[: GO_NOTE.rindex("\n\n") + 1]
    assert sign_note(text, key, "PeterNeumann") == GO_NOTE


# --- the command line -------------------------------------------------------------------


def run(project: Path, *args: str) -> Result:
    return CliRunner().invoke(
        cli,
        ["--project", str(project), "keys", *args],
        env={"MSPAUTO_SIGNING_KEY": None, "MSPAUTO_STATE_DIR": None},
    )


def test_keys_init_then_show(tmp_path: Path) -> None:
    secret = tmp_path / ".state" / "keys" / "evidence.key"
    public = tmp_path / ".state" / "keys" / "evidence.key.pub"
    made = run(tmp_path, "init")
    assert made.exit_code == 0, made.output
    fingerprint = PublicKey.load(public).fingerprint()
    assert made.stdout.splitlines() == [
        f"public key: {public}",
        f"fingerprint: {fingerprint}",
        f"keep the secret key {secret} off the evidence database's disk and out of its "
        "backups; give the .pub file to auditors",
    ]
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600

    shown = run(tmp_path, "show")
    assert shown.exit_code == 0, shown.output
    assert shown.stdout == public.read_text() + f"fingerprint: {fingerprint}\n"

    again = run(tmp_path, "init")
    assert again.exit_code == 1
    assert again.stderr == (
        f"error: {secret} already exists; a key is never overwritten (move it away first "
        "if you really mean to replace the key)\n"
    )
    assert PublicKey.load(public).fingerprint() == fingerprint


def test_keys_show_without_a_key(tmp_path: Path) -> None:
    result = run(tmp_path, "show")
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: no signing key at {tmp_path / '.state' / 'keys' / 'evidence.key'}; "
        "create one with 'mspauto keys init'\n"
    )
