"""WinRM transport on pywinrm: PowerShell on Windows hosts over WS-Management.

- Authentication per credential: ``winrm_transport`` ntlm (default), kerberos, credssp,
  certificate or basic. HTTPS (port 5986, the default) always validates the server's
  certificate; a private CA is named by the host variable ``winrm_ca_trust_path``. A
  certificate that fails validation is ``tls_untrusted``, with what to do about it.
  Port 5985 means HTTP, where NTLM, Kerberos and CredSSP encrypt each message.
- Scripts go to PowerShell on stdin, read whole by a short bootstrap passed as
  ``-EncodedCommand``: a script of any length works, where putting it on the command
  line fails beyond about 3 KB (cmd.exe's 8191-character limit after encoding).
- :meth:`WinRMTransport.session` keeps one WinRS shell open for many commands.
"""

from __future__ import annotations

import base64
import contextlib
import re
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mspauto.inventory.models import Credential
from mspauto.inventory.resolve import Client, Host
from mspauto.secrets import SecretError, resolve_secret, secret_path
from mspauto.transport.base import (
    CommandResult,
    CredentialCache,
    ErrorKind,
    TransportFailure,
    utcnow,
)

__all__ = ["BOOTSTRAP", "WinRMSession", "WinRMTransport"]

# Reads the whole script from stdin, runs it, and passes its exit code on.
BOOTSTRAP = (
    "$ErrorActionPreference = 'Continue'; "
    "$s = [Console]::In.ReadToEnd(); "
    "& ([ScriptBlock]::Create($s)); "
    "if ($LASTEXITCODE) { exit $LASTEXITCODE } elseif (-not $?) { exit 1 }"
)
_POWERSHELL = [
    "-NoProfile",
    "-NonInteractive",
    "-ExecutionPolicy",
    "Bypass",
    "-EncodedCommand",
    base64.b64encode(BOOTSTRAP.encode("utf-16-le")).decode(),
]


@dataclass(frozen=True)
class _Login:
    user: str
    password: str | None
    method: str
    key_file: Path | None


class WinRMSession:
    """One open WinRS shell on one host; run as many commands as needed, then close."""

    def __init__(self, host: Host, protocol: Any, shell_id: str) -> None:
        """Wrap ``shell_id``, already opened on ``host`` through ``protocol``."""
        self.host = host
        self._protocol = protocol
        self._shell = shell_id

    def run(self, script: str, timeout: float) -> CommandResult:
        """Run a PowerShell script; never raises for host or network problems."""
        started = utcnow()
        try:
            stdout, stderr, rc = self._run(script, timeout)
        except TransportFailure as failure:
            return CommandResult.failure(
                self.host.name, script, failure.kind, failure.message, started=started
            )
        out = stdout.decode("utf-8", errors="replace")
        err = stderr.decode("utf-8", errors="replace")
        failed = rc != 0
        return CommandResult(
            self.host.name,
            script,
            rc,
            out,
            err,
            started,
            utcnow(),
            ErrorKind.COMMAND_FAILED if failed else None,
            (_headline(err) or f"exit code {rc}")[:200] if failed else "",
            stdout_bytes=len(stdout),
            stderr_bytes=len(stderr),
        )

    def _run(self, script: str, timeout: float) -> tuple[bytes, bytes, int]:
        from winrm.exceptions import WinRMOperationTimeoutError

        deadline = time.monotonic() + timeout
        with _classified(self.host):
            command = self._protocol.run_command(self._shell, "powershell.exe", _POWERSHELL)
        # From here the script may be running: a broken connection must not be retried.
        with _classified(self.host, after_start=True):
            self._protocol.send_command_input(
                self._shell, command, script.encode("utf-8"), end=True
            )
            out: list[bytes] = []
            err: list[bytes] = []
            while True:
                try:
                    stdout, stderr, rc, done = self._protocol.get_command_output_raw(
                        self._shell, command
                    )
                except WinRMOperationTimeoutError:
                    stdout, stderr, rc, done = b"", b"", -1, False
                out.append(stdout)
                err.append(stderr)
                if done:
                    break
                if time.monotonic() >= deadline:
                    self._protocol.cleanup_command(self._shell, command)
                    raise TransportFailure(
                        ErrorKind.TIMEOUT, f"command did not finish within {timeout:g}s"
                    )
            self._protocol.cleanup_command(self._shell, command)
        return b"".join(out), b"".join(err), rc

    def close(self) -> None:
        """Delete the shell on the host (a host that went away has nothing to clean up)."""
        with contextlib.suppress(TransportFailure), _classified(self.host):
            self._protocol.close_shell(self._shell)


class WinRMTransport:
    """Runs PowerShell on the Windows hosts of one client."""

    def __init__(
        self, client: Client, project_root: Path, *, connect_timeout: float = 10.0
    ) -> None:
        self._client = client
        self._root = project_root
        self._connect_timeout = connect_timeout
        self._logins = CredentialCache(lambda name: self._fetch(name, client.credentials[name]))

    def run(
        self, host: Host, command: str, *, sudo: bool, timeout: float, stdin: bytes = b""
    ) -> CommandResult:
        """Open a shell, run one script, close the shell. ``sudo`` has no meaning on
        Windows: rights come from the credential's account. The script itself travels
        on stdin, so there is no room for more input."""
        started = utcnow()
        if stdin:
            return CommandResult.failure(
                host.name,
                command,
                ErrorKind.CONFIG,
                "the winrm transport cannot pass input to a command yet",
                started=started,
            )
        try:
            with self.session(host, timeout) as session:
                return session.run(command, timeout)
        except TransportFailure as failure:
            return CommandResult.failure(
                host.name, command, failure.kind, failure.message, started=started
            )

    @contextmanager
    def session(self, host: Host, timeout: float = 60.0) -> Iterator[WinRMSession]:
        """One shell for many commands (raises a classified failure if it cannot open)."""
        from winrm.protocol import Protocol

        login = self._logins.get(host.credential)
        port = host.port or 5986
        scheme = "http" if port == 5985 else "https"
        if scheme == "http" and login.method in ("basic", "certificate"):
            raise TransportFailure(
                ErrorKind.CONFIG,
                f"winrm_transport {login.method} over HTTP (port 5985) would send the "
                "credentials in clear text; use HTTPS (port 5986)",
            )
        ca = host.vars.get("winrm_ca_trust_path")
        if ca and not (self._root / str(ca)).is_file():
            # requests would raise a bare OSError for it, from deep inside the first request.
            raise TransportFailure(
                ErrorKind.CONFIG, f"winrm_ca_trust_path {ca}: no such file in the project"
            )
        # WS-Man holds a Receive open up to the operation timeout, then faults and is
        # asked again; a shorter one than the command's keeps the deadline responsive.
        operation = max(1, min(20, int(timeout / 2)))
        options: dict[str, Any] = {
            "transport": login.method,
            "username": login.user,
            "password": login.password,
            "server_cert_validation": "validate",
            # Without a named CA: the public CAs (certifi), never an environment variable.
            "ca_trust_path": str(self._root / str(ca)) if ca else None,
            "operation_timeout_sec": operation,
            "read_timeout_sec": operation + max(1, int(self._connect_timeout)),
            "proxy": None,
        }
        if login.method == "certificate":
            options.update(
                cert_pem=str(self._root / str(host.vars.get("winrm_cert_pem", ""))),
                cert_key_pem=str(login.key_file or ""),
            )
        endpoint = f"{scheme}://{_bracket(host.address)}:{port}/wsman"
        with _classified(host):
            protocol = Protocol(endpoint, **options)
            shell = protocol.open_shell(codepage=65001, noprofile=True)
        session = WinRMSession(host, protocol, shell)
        try:
            yield session
        finally:
            session.close()

    def _fetch(self, name: str, credential: Credential) -> _Login:
        try:
            password = (
                resolve_secret(credential.password, self._root) if credential.password else None
            )
        except SecretError as exc:
            raise TransportFailure(ErrorKind.CONFIG, f"credential {name}: {exc}") from None
        key_file = (
            secret_path(credential.private_key, self._root) if credential.private_key else None
        )
        return _Login(credential.user, password, credential.winrm_transport or "ntlm", key_file)

    def close(self) -> None:
        """Forget fetched secrets (shells are closed after each use)."""
        self._logins.clear()


@contextmanager
def _classified(host: Host, *, after_start: bool = False) -> Iterator[None]:
    """Turn pywinrm and requests exceptions into one classified, one-line failure."""
    import requests
    from winrm.exceptions import InvalidCredentialsError, WinRMError, WinRMTransportError

    try:
        yield
    except TransportFailure:
        raise
    except InvalidCredentialsError:
        raise TransportFailure(ErrorKind.AUTH_FAILED, "the host refused the credentials") from None
    except requests.exceptions.SSLError as exc:
        refused = _certificate_error(exc)
        if refused is not None:
            raise TransportFailure(ErrorKind.TLS_UNTRUSTED, _untrusted(refused, host)) from None
        # Not the certificate: the TLS handshake itself broke (a port that does not speak
        # TLS, a connection cut mid-handshake).
        kind = ErrorKind.CONNECTION_LOST if after_start else ErrorKind.UNREACHABLE
        hint = " (is the port an HTTPS listener?)" if "WRONG_VERSION_NUMBER" in str(exc) else ""
        raise TransportFailure(kind, f"TLS handshake failed: {_reason(exc)}{hint}") from None
    except requests.exceptions.ConnectTimeout:
        raise TransportFailure(ErrorKind.UNREACHABLE, "no answer to the connection") from None
    except requests.exceptions.ReadTimeout:
        raise TransportFailure(ErrorKind.TIMEOUT, "the host stopped answering") from None
    except requests.exceptions.ConnectionError as exc:
        if after_start:
            raise TransportFailure(
                ErrorKind.CONNECTION_LOST, f"connection lost: {_reason(exc)}"
            ) from None
        raise TransportFailure(ErrorKind.UNREACHABLE, f"cannot connect: {_reason(exc)}") from None
    except WinRMTransportError as exc:
        kind = ErrorKind.CONNECTION_LOST if after_start else ErrorKind.UNREACHABLE
        raise TransportFailure(kind, f"WinRM HTTP {exc.code}: {exc.message}") from None
    except WinRMError as exc:
        kind = ErrorKind.CONNECTION_LOST if after_start else ErrorKind.UNREACHABLE
        raise TransportFailure(kind, f"WinRM: {exc}") from None


# OpenSSL's X509_V_ERR_* codes that call for another remedy than naming the issuing CA.
_NAME_MISMATCH = {62, 63, 64}  # hostname, email, IP address
_OUT_OF_DATE = {9, 10}  # not yet valid, expired


def _certificate_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification error under requests' and urllib3's wrappers, if any."""
    seen: set[int] = set()
    pending: list[object] = [exc]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        # requests wraps urllib3's MaxRetryError in args; that one keeps the cause in reason.
        pending += [*current.args, getattr(current, "reason", None)]
        pending += [current.__cause__, current.__context__]
    return None


def _untrusted(error: ssl.SSLCertVerificationError, host: Host) -> str:
    """One line: what is wrong with the host's certificate and what to do about it."""
    why = str(error.verify_message or error.reason or "verification failed").rstrip(".")
    if error.verify_code in _NAME_MISMATCH:
        return (
            f"the host's TLS certificate is not issued for {host.address} ({why}); set the "
            "host's address to a name it carries, or reissue it for this address"
        )
    if error.verify_code in _OUT_OF_DATE:
        return f"the host's TLS certificate is out of date ({why}); renew it on the host"
    ca = host.vars.get("winrm_ca_trust_path")
    if ca:
        return (
            f"the host's TLS certificate is not issued by the CA in winrm_ca_trust_path "
            f"{ca} ({why}); put the CA that issued it in that file"
        )
    return (
        f"the host's TLS certificate is not issued by a public CA ({why}); name the CA "
        "that issued it (or the self-signed certificate) with the host variable "
        "winrm_ca_trust_path"
    )


def _reason(exc: BaseException) -> str:
    text = str(exc)
    for marker in ("WRONG_VERSION_NUMBER", "Connection refused", "Name or service"):
        if marker in text:
            return marker.replace("_", " ").lower()
    return text.splitlines()[0][:160] if text else type(exc).__name__


# Where an error happened, as Windows PowerShell prints it under the message:
# "At line:1 char:1" or "At C:\scripts\audit.ps1:12 char:5".
_POSITION = re.compile(r"^At (line:\d+|.+:\d+) char:\d+$")


def _headline(stderr: str) -> str:
    """The last message line of stderr, skipping the lines PowerShell prints under an
    error's message (its position and "+ CategoryInfo" lines say less than it)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    messages = [line for line in lines if not (line.startswith("+") or _POSITION.match(line))]
    return (messages or lines or [""])[-1]


def _bracket(address: str) -> str:
    return f"[{address}]" if ":" in address else address
