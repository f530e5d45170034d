"""A WS-Management / WinRS endpoint that answers like a Windows host, for tests.

No Windows machine can run here, so this speaks the wire protocol a real one speaks:
SOAP 1.2 envelopes over HTTPS (or HTTP) on loopback, the WinRS shell actions (Create,
Command, Send, Receive, Signal, Delete), Basic authentication answered with 401 on bad
credentials, and the WS-Man operation-timeout fault that clients must retry on. Command
output comes from canned answers matched against the PowerShell script the client sent on
stdin (or, for a ``PowerShell -EncodedCommand`` line, the script it encodes), or by a
``responder`` that keeps a simulated host's state (mspauto.lab.windows_update). None was
recorded from a Windows host: each reproduces output published by
Microsoft or pasted in a public thread, named by its ``source``, or is marked
``modelled`` with a note saying what it is modelled on (tests/fixtures/winrm/).

What this does NOT prove: NTLM, Kerberos or CredSSP authentication and their message
encryption; real PowerShell semantics (it matches scripts, it does not run them); CLIXML
error streams; Windows quotas and shell lifetimes; what a Windows host answers beyond the
cited outputs. Only a real Windows host proves those.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import re
import ssl
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "MODELLED",
    "CannedAnswer",
    "WinRMEndpoint",
    "check_source",
    "load_answers",
    "make_certificates",
]

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "x": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "p": "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd",
}
SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
TRANSFER = "http://schemas.xmlsoap.org/ws/2004/09/transfer"
CMD_RESOURCE = f"{SHELL}/cmd"
WSMAN_FAULT = "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault"
OPERATION_TIMEOUT_CODE = 2150858793
# Headers every WS-Man request carries (MS-WSMV 3.1.4).
REQUIRED_HEADERS = (
    "a:To",
    "a:ReplyTo",
    "a:MessageID",
    "a:Action",
    "w:ResourceURI",
    "w:MaxEnvelopeSize",
    "w:OperationTimeout",
)


MODELLED = "modelled"
"""The ``source`` of an answer nobody published: its ``note`` says what it is modelled on."""


def check_source(source: str, note: str) -> None:
    """Refuse an answer that does not say where it comes from (raises ValueError).

    ``source`` is the URL of the page or thread whose output the answer reproduces, or
    ``modelled``, and then ``note`` must say what it is modelled on.
    """
    if source == MODELLED:
        if not note.strip():
            raise ValueError("a modelled answer needs a note saying what it is modelled on")
    elif not source.startswith(("https://", "http://")):
        raise ValueError(f"source must be a URL or {MODELLED!r}, not {source!r}")


@dataclass(frozen=True)
class CannedAnswer:
    """What the endpoint answers to a script matching ``pattern`` (not recorded from a
    host: reproduced from the published output named by ``source``, or modelled)."""

    pattern: str
    source: str
    """Where the output comes from: a URL, ``modelled``, or for an answer put together
    from many (a baseline audit) the fixture file that names a source per part."""
    note: str = ""
    """What the source shows, or what a modelled answer is modelled on."""
    stdout: str = ""
    stderr: str = ""
    exit_code: int = 0
    delay: float = 0.0
    """Seconds before the command finishes (to exercise timeouts and retries)."""

    def __post_init__(self) -> None:
        if not self.source.strip():
            raise ValueError(f"answer {self.pattern!r} names no source")

    def matches(self, script: str) -> bool:
        """True when ``pattern`` (a regular expression) occurs in the script."""
        return re.search(self.pattern, script, re.MULTILINE) is not None


def load_answers(path: Path) -> list[CannedAnswer]:
    """The canned answers listed in a YAML file, each checked to name its source."""
    answers = []
    for index, entry in enumerate(yaml.safe_load(path.read_text()) or []):
        try:
            if not isinstance(entry, dict):
                raise ValueError("expected a mapping with pattern, source and the answer")
            check_source(str(entry.get("source", "")), str(entry.get("note", "")))
            answers.append(CannedAnswer(**entry))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path.name}, answer {index + 1}: {exc}") from None
    return answers


def _not_recognized(script: str) -> CannedAnswer:
    first = script.strip().splitlines()[0] if script.strip() else ""
    word = first.split()[0] if first else ""
    return CannedAnswer(
        pattern="",
        source="https://pastebin.com/FQfu71X0",
        note=(
            "Windows PowerShell's CommandNotFoundException record as pasted there, for the "
            "script's first word; the paste's console line wrapping left out (modelled)"
        ),
        stderr=(
            f"{word} : The term '{word}' is not recognized as the name of a cmdlet, "
            "function, script file, or operable program. Check the spelling of the name, "
            "or if a path was included, verify that the path is correct and try again.\r\n"
            f"At line:1 char:1\r\n+ {first}\r\n+ {'~' * len(word)}\r\n"
            f"    + CategoryInfo          : ObjectNotFound: ({word}:String) [], "
            "CommandNotFoundException\r\n"
            "    + FullyQualifiedErrorId : CommandNotFoundException\r\n \r\n"
        ),
        exit_code=1,
    )


@dataclass
class _Command:
    line: str
    stdin: bytearray = field(default_factory=bytearray)
    stdin_closed: bool = False
    answer: CannedAnswer | None = None
    started: float = 0.0
    delivered: bool = False


@dataclass
class _Shell:
    commands: dict[str, _Command] = field(default_factory=dict)


class WinRMEndpoint:
    """A loopback WinRM listener; use as a context manager."""

    def __init__(
        self,
        address: str,
        answers: list[CannedAnswer],
        *,
        users: dict[str, str],
        port: int = 0,
        certificate: tuple[Path, Path] | None = None,
        hostname: str = "WIN-LAB01",
        responder: Callable[[str], CannedAnswer | None] | None = None,
    ) -> None:
        if not ipaddress.ip_address(address).is_loopback:
            raise ValueError("the WinRM test endpoint only listens on loopback")
        self.address = address
        self.answers = answers
        self.responder = responder
        """Asked first for every script; None passes it on to ``answers``."""
        self.users = users
        self.hostname = hostname
        self.shells: dict[str, _Shell] = {}
        self.shells_created = 0
        self.scripts: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((address, port), self._handler())
        self._server.daemon_threads = True
        if certificate is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(certificate[0]), str(certificate[1]))
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port: int = self._server.server_address[1]
        self.scheme = "https" if certificate else "http"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> WinRMEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- protocol ---------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: tests read the endpoint's counters, not its log."""

            def do_POST(self) -> None:
                if self.path != "/wsman":
                    self._reply(404, b"")
                    return
                if not endpoint._authorized(self.headers.get("Authorization", "")):
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="WSMAN"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, answer = endpoint.handle(body)
                self._reply(status, answer)

            def _reply(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/soap+xml;charset=UTF-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def _authorized(self, header: str) -> bool:
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return self.users.get(user) == password

    def handle(self, body: bytes) -> tuple[int, bytes]:
        """Answer one SOAP request: (HTTP status, SOAP envelope)."""
        try:
            envelope = ET.fromstring(body)
        except ET.ParseError:
            return 400, b""
        header = envelope.find("s:Header", NS)
        if header is None or any(header.find(name, NS) is None for name in REQUIRED_HEADERS):
            return 400, self._fault("a:InvalidMessageInformationHeader", "missing WS-Man header")
        action = header.findtext("a:Action", "", NS)
        message_id = header.findtext("a:MessageID", "", NS)
        selector = header.find("w:SelectorSet/w:Selector[@Name='ShellId']", NS)
        shell_id = selector.text if selector is not None else None
        timeout = _seconds(header.findtext("w:OperationTimeout", "PT20S", NS))
        payload = envelope.find("s:Body", NS)
        with self._lock:
            if action == f"{TRANSFER}/Create":
                return 200, self._create(message_id)
            shell = self.shells.get(shell_id or "")
        if shell is None:
            return 500, self._fault("w:InvalidSelectors", "The shell was not found.")
        if action == f"{SHELL}/Command":
            return 200, self._command(message_id, shell, payload)
        if action == f"{SHELL}/Send":
            return 200, self._send(message_id, shell, payload)
        if action == f"{SHELL}/Receive":
            return self._receive(message_id, shell, payload, timeout)
        if action == f"{SHELL}/Signal":
            return 200, self._reply(message_id, "SignalResponse", "<rsp:SignalResponse/>")
        if action == f"{TRANSFER}/Delete":
            with self._lock:
                self.shells.pop(shell_id or "", None)
            return 200, self._reply(message_id, f"{TRANSFER}/DeleteResponse", "", full=True)
        return 500, self._fault("a:ActionNotSupported", f"unsupported action {action}")

    def _create(self, message_id: str) -> bytes:
        shell_id = str(uuid.uuid4()).upper()
        self.shells[shell_id] = _Shell()
        self.shells_created += 1
        body = (
            f"<x:ResourceCreated><a:Address>{self.scheme}://{self.address}:{self.port}/wsman"
            f"</a:Address><a:ReferenceParameters><w:ResourceURI>{CMD_RESOURCE}</w:ResourceURI>"
            f'<w:SelectorSet><w:Selector Name="ShellId">{shell_id}</w:Selector></w:SelectorSet>'
            f"</a:ReferenceParameters></x:ResourceCreated>"
            f"<rsp:Shell><rsp:ShellId>{shell_id}</rsp:ShellId>"
            f"<rsp:ResourceUri>{CMD_RESOURCE}</rsp:ResourceUri>"
            f"<rsp:Owner>{self.hostname}\\mspauto</rsp:Owner><rsp:ClientIP>{self.address}"
            "</rsp:ClientIP><rsp:IdleTimeOut>PT7200.000S</rsp:IdleTimeOut>"
            "<rsp:InputStreams>stdin</rsp:InputStreams>"
            "<rsp:OutputStreams>stdout stderr</rsp:OutputStreams>"
            "<rsp:ShellRunTime>P0DT0H0M0S</rsp:ShellRunTime>"
            "<rsp:ShellInactivity>P0DT0H0M0S</rsp:ShellInactivity></rsp:Shell>"
        )
        return self._reply(message_id, f"{TRANSFER}/CreateResponse", body, full=True)

    def _command(self, message_id: str, shell: _Shell, payload: ET.Element | None) -> bytes:
        line = payload.find("rsp:CommandLine", NS) if payload is not None else None
        command = " ".join(
            filter(
                None,
                [
                    line.findtext("rsp:Command", "", NS) if line is not None else "",
                    line.findtext("rsp:Arguments", "", NS) if line is not None else "",
                ],
            )
        )
        command_id = str(uuid.uuid4()).upper()
        with self._lock:
            shell.commands[command_id] = _Command(command)
        return self._reply(
            message_id,
            "CommandResponse",
            f"<rsp:CommandResponse><rsp:CommandId>{command_id}</rsp:CommandId>"
            "</rsp:CommandResponse>",
        )

    def _send(self, message_id: str, shell: _Shell, payload: ET.Element | None) -> bytes:
        stream = payload.find("rsp:Send/rsp:Stream", NS) if payload is not None else None
        if stream is not None:
            with self._lock:
                command = shell.commands[stream.get("CommandId", "")]
                command.stdin += base64.b64decode(stream.text or "")
                if stream.get("End", "").lower() == "true":
                    command.stdin_closed = True
        return self._reply(message_id, "SendResponse", "<rsp:SendResponse/>")

    def _receive(
        self, message_id: str, shell: _Shell, payload: ET.Element | None, timeout: float
    ) -> tuple[int, bytes]:
        desired = payload.find("rsp:Receive/rsp:DesiredStream", NS) if payload is not None else None
        command_id = desired.get("CommandId", "") if desired is not None else ""
        command = shell.commands.get(command_id)
        if command is None:
            return 500, self._fault("w:InvalidSelectors", "The command was not found.")
        if command.answer is None:
            script = (
                command.stdin.decode("utf-8", errors="replace")
                if command.stdin_closed
                else _decoded(command.line)
            )
            with self._lock:
                self.scripts.append(script)
                answer = self.responder(script) if self.responder else None
            command.answer = answer or next(
                (a for a in self.answers if a.matches(script)), _not_recognized(script)
            )
            command.started = time.monotonic()
        remaining = command.answer.delay - (time.monotonic() - command.started)
        if remaining > 0:
            time.sleep(min(remaining, timeout))
            if remaining > timeout:
                return 500, self._fault(
                    "w:TimedOut",
                    "The WS-Management service cannot "
                    "complete the operation within the time specified in "
                    "OperationTimeout.",
                    code=OPERATION_TIMEOUT_CODE,
                )
        answer = command.answer
        streams = ""
        for name, text in (("stdout", answer.stdout), ("stderr", answer.stderr)):
            if text and not command.delivered:
                encoded = base64.b64encode(text.encode("utf-8")).decode()
                streams += (
                    f'<rsp:Stream Name="{name}" CommandId="{command_id}">{encoded}</rsp:Stream>'
                )
            streams += (
                f'<rsp:Stream Name="{name}" CommandId="{command_id}" End="true"></rsp:Stream>'
            )
        command.delivered = True
        state = (
            f'<rsp:CommandState CommandId="{command_id}" '
            f'State="{SHELL}/CommandState/Done"><rsp:ExitCode>{answer.exit_code}'
            "</rsp:ExitCode></rsp:CommandState>"
        )
        return 200, self._reply(
            message_id,
            "ReceiveResponse",
            f"<rsp:ReceiveResponse>{streams}{state}</rsp:ReceiveResponse>",
        )

    # --- envelopes --------------------------------------------------------------

    def _reply(self, relates_to: str, action: str, body: str, *, full: bool = False) -> bytes:
        uri = action if full else f"{SHELL}/{action}"
        return _envelope(
            f"<a:Action>{uri}</a:Action><a:MessageID>uuid:{uuid.uuid4()}</a:MessageID>"
            "<a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To>"
            f"<a:RelatesTo>{relates_to}</a:RelatesTo>",
            body,
        )

    def _fault(self, subcode: str, reason: str, code: int = 2150858778) -> bytes:
        return _envelope(
            "<a:Action>http://schemas.dmtf.org/wbem/wsman/1/wsman/fault</a:Action>"
            f"<a:MessageID>uuid:{uuid.uuid4()}</a:MessageID>",
            "<s:Fault><s:Code><s:Value>s:Receiver</s:Value><s:Subcode>"
            f"<s:Value>{subcode}</s:Value></s:Subcode></s:Code>"
            f'<s:Reason><s:Text xml:lang="en-US">{reason}</s:Text></s:Reason>'
            f'<s:Detail><f:WSManFault xmlns:f="{WSMAN_FAULT}" '
            f'Code="{code}" Machine="{self.hostname}"><f:Message>{reason}</f:Message>'
            "</f:WSManFault></s:Detail></s:Fault>",
        )


def _envelope(header: str, body: str) -> bytes:
    namespaces = " ".join(f'xmlns:{prefix}="{uri}"' for prefix, uri in NS.items())
    return (
        f'<s:Envelope xml:lang="en-US" {namespaces}><s:Header>{header}</s:Header>'
        f"<s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


def _decoded(line: str) -> str:
    """The script a ``PowerShell ... -EncodedCommand B64`` line runs (base64 of UTF-16LE,
    as Windows PowerShell reads it); any other command line as it is."""
    match = re.search(r"-EncodedCommand\s+([A-Za-z0-9+/=]+)", line)
    if match is None:
        return line
    try:
        return base64.b64decode(match[1]).decode("utf-16-le")
    except ValueError:
        return line


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"PT(\d+(?:\.\d+)?)S", duration.strip())
    return float(match[1]) if match else 20.0


def make_certificates(
    directory: Path, address: str, *, expired: bool = False
) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate for ``address``: (ca.pem, cert.pem, key.pem).

    ``expired`` makes a server certificate whose validity ended yesterday (the CA stays
    valid), as a host shows when nobody renewed its WinRM listener's certificate.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mspauto lab test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    start = now - dt.timedelta(days=30) if expired else now - dt.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(now - dt.timedelta(days=1) if expired else now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    paths = (directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    paths[2].chmod(0o600)
    return paths
