"""Worker keys (issue 14): a worker signs its appends with a key of its own that the
MSP's key vouches for, for named clients and a time; the control node's checkpoint
takes in only what such a certificate allows."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mspauto.cli import cli
from mspauto.evidence.checkpoints import Notary, Witness
from mspauto.evidence.store import EvidenceStore, NewRecord
from mspauto.evidence.worker_keys import (
    WorkerCertificate,
    WorkerSigner,
    certificate_path,
    issue_certificate,
    msp_key_path,
)
from mspauto.signing import SigningError, SigningKey, generate_key

NOW = datetime.now(UTC)


def run(project: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--project", str(project), *args])


def _key(folder: Path, name: str) -> SigningKey:
    generate_key(folder / f"{name}.key", folder / f"{name}.key.pub", comment=name)
    return SigningKey.load(folder / f"{name}.key")


@pytest.fixture
def msp(tmp_path: Path) -> SigningKey:
    return _key(tmp_path, "msp")


def _signer(
    tmp_path: Path, msp: SigningKey, clients: tuple[str, ...], until: datetime
) -> WorkerSigner:
    worker = _key(tmp_path, f"worker-{len(list(tmp_path.glob('worker-*.key')))}")
    return WorkerSigner(worker, issue_certificate(msp, "nyc-1", worker.public_key, clients, until))


def _append(store: EvidenceStore, chain: str) -> None:
    store.append([NewRecord(chain, "note", "run-1", NOW, {"text": "from a worker"})])


def test_a_certificate_reads_back_and_refuses_any_change(msp: SigningKey, tmp_path: Path) -> None:
    worker = _key(tmp_path, "worker")
    until = NOW + timedelta(days=30)
    certificate = issue_certificate(msp, "nyc-1", worker.public_key, ("acme",), until)
    read = WorkerCertificate.read(certificate.note, msp.public_key)
    assert (read.name, read.key, read.clients) == ("nyc-1", worker.public_key, ("acme",))
    assert read.allows("acme", NOW) and not read.allows("globex", NOW)
    assert not read.allows("acme", until + timedelta(seconds=1))
    widened = certificate.note.replace("clients acme", "clients acme,globex")
    with pytest.raises(SigningError):
        WorkerCertificate.read(widened, msp.public_key)
    with pytest.raises(SigningError):  # vouched for by another key
        WorkerCertificate.read(certificate.note, _key(tmp_path, "other").public_key)
    with pytest.raises(SigningError, match="a worker name is"):
        issue_certificate(msp, "nyc 1; rm", worker.public_key, ("acme",), until)


@pytest.mark.parametrize(
    ("chain", "days", "signed"),
    [("acme", 30, True), ("globex", 30, False), ("acme", -1, False)],
    ids=["its-client", "another-client", "expired"],
)
def test_the_control_node_signs_a_workers_records_only_as_its_certificate_allows(
    msp: SigningKey, tmp_path: Path, chain: str, days: int, signed: bool
) -> None:
    url = f"sqlite:///{tmp_path / 'evidence.db'}"
    worker = EvidenceStore(
        url, batch_signer=_signer(tmp_path, msp, ("acme",), NOW + timedelta(days=days))
    )
    _append(worker, chain)
    assert not worker.wrote_records  # signed: nothing for the worker to warn about
    worker.close()
    control = EvidenceStore(url, notary=Notary(msp, Witness(tmp_path / "witness")))
    outcome = control.checkpoint(chain)
    control.close()
    if signed:
        assert outcome.checkpoint is not None and outcome.checkpoint.size == 1
    else:
        assert outcome.checkpoint is None
        assert "were not written by a holder of the signing key" in (outcome.skipped or "")


def test_verify_counts_a_workers_unsigned_tail_as_signed_by_its_writer(
    msp: SigningKey, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'evidence.db'}"
    worker = EvidenceStore(
        url, batch_signer=_signer(tmp_path, msp, ("acme",), NOW + timedelta(days=1))
    )
    _append(worker, "acme")
    _append(worker, "globex")
    worker.close()
    store = EvidenceStore(url, writable=False)
    problems = [str(p) for p in store.verify(key=msp.public_key).problems]
    store.close()
    assert not any(p.startswith("acme") for p in problems), problems
    assert any(p.startswith("globex") and "signed neither" in p for p in problems), problems


def test_a_worker_key_loads_with_its_certificate_and_not_after_it_expired(
    msp: SigningKey, tmp_path: Path
) -> None:
    worker = _key(tmp_path, "nyc-1")
    path = tmp_path / "nyc-1.key"
    until = NOW + timedelta(days=1)
    with pytest.raises(SigningError, match="no worker certificate at"):
        WorkerSigner.load(path)
    certificate_path(path).write_text(
        issue_certificate(msp, "nyc-1", worker.public_key, ("acme",), until).note
    )
    with pytest.raises(SigningError, match="no MSP public key at"):
        WorkerSigner.load(path)
    msp_key_path(path).write_text(_key(tmp_path, "impostor").public_key.to_text())
    with pytest.raises(SigningError, match="the MSP's key"):  # vouched for by another
        WorkerSigner.load(path)
    msp_key_path(path).write_text(msp.public_key.to_text())
    loaded = WorkerSigner.load(path)
    assert loaded.certificate.clients == ("acme",) and loaded.msp_key == msp.public_key
    with pytest.raises(SigningError, match="expired at"):
        WorkerSigner.load(path, now=until + timedelta(minutes=1))
    other = _key(tmp_path, "other")
    certificate_path(path).write_text(
        issue_certificate(msp, "nyc-1", other.public_key, ("acme",), until).note
    )
    with pytest.raises(SigningError, match="is for another key"):
        WorkerSigner.load(path)


def test_keys_worker_issues_a_key_and_certificate_for_named_clients(
    example_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MSPAUTO_STATE_DIR", str(tmp_path / "state"))
    without = run(example_project, "keys", "worker", "nyc-1", "--client", "acme")
    assert without.exit_code == 1 and without.stderr.startswith("error: no signing key at ")
    assert run(example_project, "keys", "init").exit_code == 0
    unknown = run(example_project, "keys", "worker", "nyc-1", "--client", "acmee")
    assert unknown.exit_code == 1 and unknown.stderr.startswith("error: no client named acmee")
    made = run(example_project, "keys", "worker", "nyc-1", "--client", "acme", "--days", "7")
    assert made.exit_code == 0, made.stderr
    key = tmp_path / "state" / "keys" / "workers" / "nyc-1.key"
    assert f"worker key: {key}" in made.stdout and "clients: acme" in made.stdout
    assert os.stat(key).st_mode & 0o777 == 0o600
    assert WorkerSigner.load(key).certificate.not_after < NOW + timedelta(days=8)
    again = run(example_project, "keys", "worker", "nyc-1", "--client", "acme")
    assert again.exit_code == 1 and "already exists" in again.stderr


def test_a_worker_serves_only_the_clients_its_certificate_names(
    example_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MSPAUTO_STATE_DIR", str(tmp_path / "state"))
    assert run(example_project, "keys", "init").exit_code == 0
    assert run(example_project, "keys", "worker", "nyc-1", "--client", "acme").exit_code == 0
    monkeypatch.setenv("MSPAUTO_WORKER_KEY", str(tmp_path / "state/keys/workers/nyc-1.key"))
    monkeypatch.setenv("MSPAUTO_BROKER_URL", "amqp://guest:guest@127.0.0.1:1//")
    monkeypatch.setenv("MSPAUTO_EVIDENCE_URL", "postgresql+psycopg://postgres@127.0.0.1:1/x")
    refused = run(example_project, "worker", "--client", "globex")
    assert refused.exit_code == 1
    assert refused.stderr == (
        "error: the certificate of worker nyc-1 allows acme only, not globex\n"
    )


def test_validate_names_a_worker_key_that_will_not_do(
    example_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MSPAUTO_WORKER_KEY", str(tmp_path / "nyc-1.key"))
    result = run(example_project, "validate")
    assert result.exit_code == 1
    assert (
        f"$MSPAUTO_WORKER_KEY: no worker key at {tmp_path / 'nyc-1.key'}: issue one on the "
        "control node ('mspauto keys worker NAME --client CLIENT') and copy it here with its "
        ".cert"
    ) in result.stderr.splitlines()


def test_records_of_a_certificate_the_msp_did_not_sign_or_deleted_are_not_signed(
    msp: SigningKey, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'evidence.db'}"
    impostor = _key(tmp_path, "impostor")
    worker = EvidenceStore(
        url, batch_signer=_signer(tmp_path, impostor, ("acme",), NOW + timedelta(days=1))
    )
    _append(worker, "acme")
    worker.close()
    control = EvidenceStore(url, notary=Notary(msp, Witness(tmp_path / "witness")))
    outcome = control.checkpoint("acme")
    assert outcome.checkpoint is None
    # The certificates are append-only, like the signatures that name them.
    with pytest.raises(Exception, match="append-only"), control.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM evidence_signers")
    control.close()


def test_a_worker_refuses_batches_in_its_certificates_last_minutes(
    msp: SigningKey, tmp_path: Path, example_project: Path
) -> None:
    from mspauto.config import Settings
    from mspauto.distributed.jobs import Batch, BatchRefused, client_digest, run_batch
    from mspauto.project import load_project

    project = load_project(Settings.load(example_project))
    acme = project.inventory.clients["acme"]
    batch = Batch("run-1", "acme", (sorted(acme.hosts)[0],), {"kind": "exec"}, "")
    store = EvidenceStore(
        f"sqlite:///{tmp_path / 'evidence.db'}",
        batch_signer=_signer(tmp_path, msp, ("acme",), NOW + timedelta(minutes=5)),
    )
    try:
        with pytest.raises(BatchRefused, match="the certificate of worker nyc-1 expires at"):
            run_batch(
                replace(batch, digest=client_digest(project, acme)), project, store, lambda *_: True
            )
    finally:
        store.close()
