"""Copies of the witness elsewhere: each checkpoint a run signs also goes, as the very
line the witness log holds, to a webhook and to syslog, so that someone other than the
database's owner keeps it. Real receivers on loopback, no network mocks: a copy that
cannot be delivered never loses the checkpoint or stops the run, and says which copy."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from click.testing import CliRunner, Result

from mspauto.cli import cli
from mspauto.config import Settings
from mspauto.evidence import checkpoints
from mspauto.evidence import copies as copy_module
from mspauto.evidence.checkpoints import Notary, Witness, WitnessCopyError
from mspauto.evidence.copies import SyslogCopy, WebhookCopy, WitnessSettingError, witness_copies
from mspauto.signing import SigningKey, generate_key

TOKEN = "s3cret-witness-token"
VARIABLES = (
    "MSPAUTO_INVENTORY",
    "MSPAUTO_POLICIES",
    "MSPAUTO_EVIDENCE_URL",
    "MSPAUTO_SIGNING_KEY",
    "MSPAUTO_WITNESS_DIR",
    "MSPAUTO_WITNESS_WEBHOOK",
    "MSPAUTO_WITNESS_WEBHOOK_TOKEN_FILE",
    "MSPAUTO_WITNESS_SYSLOG",
)


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same tries, with short pauses (the receivers are real; only waiting is cut)."""
    monkeypatch.setattr(checkpoints, "COPY_PAUSES", (0.01, 0.01))
    monkeypatch.setattr(copy_module, "COPY_TIMEOUT", 0.3)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Two clients with one local host each, and the MSP's signing key."""
    root = tmp_path / "project"
    (root / "inventory").mkdir(parents=True)
    (root / "policies").mkdir()
    (root / "policies" / "c.yaml").write_text("kind: contract\nname: std\n")
    for client in ("acme", "globex"):
        document = {
            "client": {
                "name": client,
                "display_name": client,
                "timezone": "UTC",
                "contract": "std",
                "platform": "debian",
                "connection": "local",
            },
            "hosts": {f"{client}-001": {}},
        }
        (root / "inventory" / f"{client}.yaml").write_text(yaml.safe_dump(document))
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MSPAUTO_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    assert run(root, "keys", "init").exit_code == 0
    yield root


def run(project: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--project", str(project), *args])


def exec_(project: Path, client: str = "acme") -> Result:
    result = run(project, "exec", "--client", client, "--", "true")
    assert result.exit_code == 0, result.output
    return result


def witness_lines(project: Path) -> list[bytes]:
    """The witness log's lines, each with its newline, as bytes."""
    log = Settings.load(project).witness_dir / checkpoints.WITNESS_LOG
    return log.read_bytes().splitlines(keepends=True)


class Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []
    status: ClassVar[int] = 200
    location: ClassVar[str] = ""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(
            {
                "path": self.path,
                "type": self.headers["Content-Type"],
                "authorization": self.headers["Authorization"],
                "body": body,
            }
        )
        self.send_response(type(self).status)
        if type(self).location:
            self.send_header("Location", type(self).location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # where a followed redirect would land
        type(self).received.append({"path": self.path, "body": b"", "get": True})
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[type[Receiver]]:
    handler = type("Hook", (Receiver,), {"received": [], "status": 200, "location": ""})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.port = server.server_address[1]  # type: ignore[attr-defined]
    handler.url = f"http://127.0.0.1:{handler.port}/hooks/T0/B1/path-secret"  # type: ignore[attr-defined]
    try:
        yield handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def udp_syslog() -> Iterator[socket.socket]:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(5)
    try:
        yield receiver
    finally:
        receiver.close()


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def notary(tmp_path: Path, *copies: copy_module.WitnessCopy) -> Notary:
    generate_key(tmp_path / "key", tmp_path / "key.pub", comment="test key")
    return Notary(SigningKey.load(tmp_path / "key"), Witness(tmp_path / "witness", copies))


# --- end to end ---------------------------------------------------------------------


def test_the_webhook_gets_each_signed_checkpoint_as_the_witness_line(
    project: Path, webhook: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    monkeypatch.setenv("MSPAUTO_WITNESS_WEBHOOK", webhook.url)
    monkeypatch.setenv("MSPAUTO_WITNESS_WEBHOOK_TOKEN_FILE", str(token_file))
    results = [exec_(project), exec_(project, "globex"), exec_(project)]

    lines = witness_lines(project)
    assert len(lines) == 3
    assert [r["body"] for r in webhook.received] == lines  # byte for byte, in order
    assert {r["path"] for r in webhook.received} == {"/hooks/T0/B1/path-secret"}
    assert {r["type"] for r in webhook.received} == {"application/json"}
    assert {r["authorization"] for r in webhook.received} == {f"Bearer {TOKEN}"}
    assert [json.loads(r["body"])["chain"] for r in webhook.received] == [
        "acme",
        "globex",
        "acme",
    ]
    for result in results:
        assert "warning" not in result.stderr
        assert TOKEN not in result.output
    assert not any(TOKEN.encode() in line for line in lines)
    assert run(project, "evidence", "verify").exit_code == 0


def test_a_down_webhook_is_named_in_a_warning_and_the_log_still_has_the_entry(
    project: Path, monkeypatch: pytest.MonkeyPatch, udp_syslog: socket.socket
) -> None:
    port = free_port()
    monkeypatch.setenv("MSPAUTO_WITNESS_WEBHOOK", f"http://127.0.0.1:{port}/hook?key=abc123")
    monkeypatch.setenv("MSPAUTO_WITNESS_SYSLOG", f"udp:127.0.0.1:{udp_syslog.getsockname()[1]}")
    result = exec_(project)  # the run itself succeeds

    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, result.stderr
    (line,) = witness_lines(project)
    size = json.loads(line)["size"]
    assert warnings[0].startswith(
        f"warning: acme: the checkpoint at #{size} is witnessed, but webhook "
        f"http://127.0.0.1:{port} did not take its copy"
    )
    assert "after 3 tries (Connection refused)" in warnings[0]
    assert "abc123" not in result.output and "/hook" not in result.output
    assert "syslog" not in warnings[0]  # the copy that was delivered is not blamed

    assert udp_syslog.recv(65536).endswith(b" " + line.rstrip(b"\n"))
    verified = run(project, "evidence", "verify")
    assert verified.exit_code == 0, verified.output


def test_syslog_over_udp_gets_each_line_as_an_rfc5424_message(
    project: Path, monkeypatch: pytest.MonkeyPatch, udp_syslog: socket.socket
) -> None:
    monkeypatch.setenv("MSPAUTO_WITNESS_SYSLOG", f"udp:127.0.0.1:{udp_syslog.getsockname()[1]}")
    exec_(project)
    exec_(project, "globex")

    for line in witness_lines(project):
        message = udp_syslog.recv(65536)
        header, _, text = message.partition(b" checkpoint - ")
        assert text == line.rstrip(b"\n")
        pri_version, stamp, host, app, pid = header.split(b" ")
        assert (pri_version, app) == (b"<14>1", b"mspauto")  # user.info, RFC 5424
        assert stamp.endswith(b"Z") and b"T" in stamp
        assert host and pid == str(os.getpid()).encode()


def test_a_mistyped_setting_stops_a_writer_in_one_line_naming_it(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MSPAUTO_WITNESS_SYSLOG", "udp:127.0.0.1:99999")
    result = run(project, "exec", "--client", "acme", "--", "true")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: MSPAUTO_WITNESS_SYSLOG: 'udp:127.0.0.1:99999': the port must be 1..65535\n"
    )
    assert "Traceback" not in result.output
    monkeypatch.delenv("MSPAUTO_WITNESS_SYSLOG")
    monkeypatch.setenv("MSPAUTO_WITNESS_WEBHOOK", "https://admin:hunter2@siem.example/hook")
    result = run(project, "exec", "--client", "acme", "--", "true")
    assert result.exit_code == 1
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("error: MSPAUTO_WITNESS_WEBHOOK: the URL holds a user or ")
    assert "hunter2" not in result.output
    assert not Settings.load(project).witness_dir.exists()  # nothing ran, nothing signed


# --- the copies one by one -------------------------------------------------------------


@pytest.mark.parametrize(
    ("webhook", "token_file", "syslog", "message"),
    [
        ("ftp://siem.example/x", None, None, "MSPAUTO_WITNESS_WEBHOOK: not an https:// (or "),
        ("siem.example/x", None, None, "MSPAUTO_WITNESS_WEBHOOK: not an https:// (or "),
        ("https:///x", None, None, "MSPAUTO_WITNESS_WEBHOOK: the URL names no host"),
        ("https://h:0x/x", None, None, "MSPAUTO_WITNESS_WEBHOOK: the URL's port is not 1.."),
        ("https://h:0/x", None, None, "MSPAUTO_WITNESS_WEBHOOK: the URL's port is not 1.."),
        ("https://h/a b", None, None, "MSPAUTO_WITNESS_WEBHOOK: the URL holds spaces or "),
        ("https://u:pw@h/", None, None, "MSPAUTO_WITNESS_WEBHOOK: the URL holds a user or "),
        ("http://siem.example/x", "tok", None, "MSPAUTO_WITNESS_WEBHOOK: a token is sent only "),
        ("https://h/x", "missing", None, "MSPAUTO_WITNESS_WEBHOOK_TOKEN_FILE: cannot read "),
        ("https://h/x", "empty", None, "MSPAUTO_WITNESS_WEBHOOK_TOKEN_FILE: "),
        ("https://h/x", "two", None, "MSPAUTO_WITNESS_WEBHOOK_TOKEN_FILE: "),
        (None, "tok", None, "MSPAUTO_WITNESS_WEBHOOK_TOKEN_FILE: is set, but MSPAUTO_WITNESS_"),
        (None, None, "/dev/log", "MSPAUTO_WITNESS_SYSLOG: '/dev/log' is not unix:PATH, udp:"),
        (None, None, "syslog.example:514", "MSPAUTO_WITNESS_SYSLOG: 'syslog.example:514' is"),
        (None, None, "udp:", "MSPAUTO_WITNESS_SYSLOG: 'udp:' is not unix:PATH"),
        (None, None, "unix:dev/log", "MSPAUTO_WITNESS_SYSLOG: 'unix:dev/log': give the "),
        (None, None, "tcp::514", "MSPAUTO_WITNESS_SYSLOG: 'tcp::514' names no host"),
        (None, None, "tcp:h:x", "MSPAUTO_WITNESS_SYSLOG: 'tcp:h:x': the port must be 1.."),
        (None, None, "udp:::1:514", "MSPAUTO_WITNESS_SYSLOG: 'udp:::1:514': write an IPv6 "),
        (None, None, "udp:h\n:1", "MSPAUTO_WITNESS_SYSLOG: 'udp:h :1' names no host"),
    ],
)
def test_each_wrong_setting_is_one_line(
    tmp_path: Path, webhook: str | None, token_file: str | None, syslog: str | None, message: str
) -> None:
    (tmp_path / "tok").write_text("abc\n")
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "two").write_text("abc def\n")
    with pytest.raises(WitnessSettingError) as raised:
        witness_copies(webhook, tmp_path / token_file if token_file else None, syslog)
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)
    assert "abc" not in str(raised.value) and "pw" not in str(raised.value)


def test_good_settings_make_their_copies(tmp_path: Path) -> None:
    (tmp_path / "tok").write_text("abc\n")
    copies = witness_copies("http://localhost:8080/x?k=v", tmp_path / "tok", "udp:[::1]")
    assert [c.name for c in copies] == ["webhook http://localhost:8080", "syslog udp:[::1]"]
    syslog = copies[1]
    assert isinstance(syslog, SyslogCopy)
    assert (syslog.host, syslog.port) == ("::1", 514)
    assert witness_copies(None, None, None) == []
    assert WebhookCopy("https://[2001:db8::1]/x").name == "webhook https://[2001:db8::1]"
    assert SyslogCopy("tcp:siem.example:6514").port == 6514


def test_a_failing_receiver_is_retried_then_rested_and_the_log_keeps_every_entry(
    tmp_path: Path, webhook: Any
) -> None:
    webhook.status = 503
    signer = notary(tmp_path, WebhookCopy(webhook.url))
    witness = signer.witness
    assert witness is not None
    with pytest.raises(WitnessCopyError) as raised:
        witness.append(signer.sign("acme", 1, bytes(32)))
    assert len(webhook.received) == 3  # three tries
    assert raised.value.failures == [
        f"webhook http://127.0.0.1:{webhook.port} did not take its copy after 3 tries "
        "(it answered 503 Service Unavailable)"
    ]
    assert isinstance(raised.value, OSError)  # what the store reports as a warning
    # The next checkpoint, moments later, does not wait on it again: it says so.
    with pytest.raises(WitnessCopyError, match=r"was not sent a copy: it failed 0 s ago"):
        witness.append(signer.sign("globex", 1, bytes(32)))
    assert len(webhook.received) == 3
    assert [json.loads(line)["chain"] for line in witness.path.read_text().splitlines()] == [
        "acme",
        "globex",
    ]


def test_a_refusal_is_not_retried_and_a_redirect_is_not_followed(
    tmp_path: Path, webhook: Any
) -> None:
    webhook.status = 401
    signer = notary(tmp_path, WebhookCopy(webhook.url))
    assert signer.witness is not None
    with pytest.raises(WitnessCopyError, match=r"did not take its copy \(it answered 401 "):
        signer.witness.append(signer.sign("acme", 1, bytes(32)))
    assert len(webhook.received) == 1

    webhook.received.clear()
    webhook.status, webhook.location = 302, f"http://127.0.0.1:{webhook.port}/elsewhere"
    again = Witness(tmp_path / "witness", [WebhookCopy(webhook.url)])
    with pytest.raises(WitnessCopyError, match=r"302 Found \(a redirect, not followed\)"):
        again.append(signer.sign("acme", 2, bytes(32)))
    assert [r.get("get") for r in webhook.received] == [None]  # one POST, no GET after it


def test_a_receiver_that_never_answers_times_out(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # connects, never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/hook"
        signer = notary(tmp_path, WebhookCopy(url))
        assert signer.witness is not None
        with pytest.raises(WitnessCopyError, match=r"after 3 tries \(no answer in time\)"):
            signer.witness.append(signer.sign("acme", 1, bytes(32)))
    assert len(signer.witness.path.read_text().splitlines()) == 1


def test_a_witness_log_that_cannot_be_written_still_sends_its_copies(
    tmp_path: Path, webhook: Any
) -> None:
    signer = notary(tmp_path, WebhookCopy(webhook.url))
    assert signer.witness is not None
    signer.witness.path.mkdir(parents=True)  # a folder where the log belongs
    with pytest.raises(OSError, match="is not a file") as raised:
        signer.witness.append(signer.sign("acme", 1, bytes(32)))
    assert not isinstance(raised.value, WitnessCopyError)
    assert json.loads(webhook.received[0]["body"])["chain"] == "acme"


def test_the_token_file_is_read_at_each_send(tmp_path: Path, webhook: Any) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first\n")
    signer = notary(tmp_path, WebhookCopy(webhook.url, token_file))
    assert signer.witness is not None
    signer.witness.append(signer.sign("acme", 1, bytes(32)))
    token_file.write_text("rotated\n")
    signer.witness.append(signer.sign("acme", 2, bytes(32)))
    token_file.unlink()
    with pytest.raises(WitnessCopyError, match=r"did not take its copy \(the token file: "):
        signer.witness.append(signer.sign("acme", 3, bytes(32)))
    assert [r["authorization"] for r in webhook.received] == ["Bearer first", "Bearer rotated"]


def test_syslog_over_tcp_is_one_message_a_line(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(5)
        received: list[bytes] = []

        def accept() -> None:
            for _ in range(2):
                conn, _ = server.accept()
                with conn:
                    received.append(conn.makefile("rb").read())

        thread = threading.Thread(target=accept)
        thread.start()
        signer = notary(tmp_path, SyslogCopy(f"tcp:127.0.0.1:{server.getsockname()[1]}"))
        assert signer.witness is not None
        signer.witness.append(signer.sign("acme", 1, bytes(32)))
        signer.witness.append(signer.sign_head("globex", 1, "a stored hash"))
        thread.join(5)
    lines = signer.witness.path.read_bytes().splitlines(keepends=True)
    assert [r.count(b"\n") for r in received] == [1, 1]
    assert [r.partition(b" checkpoint - ")[2] for r in received] == lines


def test_syslog_on_a_unix_socket_gets_the_local_form() -> None:
    folder = Path(tempfile.mkdtemp(prefix="mspauto-"))  # short: a socket path has a limit
    try:
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        receiver.bind(str(folder / "log"))
        receiver.settimeout(5)
        with receiver:
            signer = notary(folder, SyslogCopy(f"unix:{folder / 'log'}"))
            assert signer.witness is not None
            signer.witness.append(signer.sign("acme", 1, bytes(32)))
            message = receiver.recv(65536)
        (line,) = signer.witness.path.read_bytes().splitlines()
        assert message == f"<14>mspauto[{os.getpid()}]: ".encode() + line
        # No socket there: a failure naming the copy, after its tries.
        gone = Witness(folder / "witness", [SyslogCopy(f"unix:{folder / 'nothing'}")])
        with pytest.raises(WitnessCopyError) as raised:
            gone.append(signer.sign("acme", 2, bytes(32)))
        assert str(raised.value) == (
            f"the entry is in that log, but syslog unix:{folder / 'nothing'} did not take its "
            "copy after 3 tries (No such file or directory)"
        )
    finally:
        shutil.rmtree(folder)
