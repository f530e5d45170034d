"""SSH transport on paramiko, with strict host keys from the client's own known_hosts.

Host keys are only ever read from the client's known_hosts file (RejectPolicy: an
unknown key is refused, never added). TCP_NODELAY is set on the socket we hand to
paramiko (connects drop from ~100 ms to a few ms on low-latency links). Output is
drained from both streams while the command runs, so a command that writes a lot
cannot deadlock, and every wait has a deadline.
"""

from __future__ import annotations

import io
import select
import shlex
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import paramiko

from mspauto.checks.secrets import MARK
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

__all__ = ["DEFAULT_OUTPUT_CAP", "SSHTransport", "fingerprint"]

DEFAULT_OUTPUT_CAP = 4 * 1024 * 1024
_KEY_CLASSES = (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey)


def fingerprint(key: paramiko.PKey) -> str:
    """``SHA256:...``, as OpenSSH prints it."""
    return str(key.fingerprint)


@dataclass(frozen=True)
class _Login:
    """A credential with its secrets fetched (kept in memory only)."""

    user: str
    pkey: paramiko.PKey | None
    password: str | None
    become_password: str | None


class _Capture:
    """Collects one output stream up to a cap, counting what it drops."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.parts: list[bytes] = []
        self.kept = 0
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self.cap - self.kept
        if room > 0:
            self.parts.append(data[:room])
            self.kept += min(room, len(data))

    def text(self) -> str:
        return b"".join(self.parts).decode("utf-8", errors="replace")


class SSHTransport:
    """Runs commands over SSH on the hosts of one client."""

    def __init__(
        self,
        client: Client,
        project_root: Path,
        *,
        connect_timeout: float = 10.0,
        output_cap: int = DEFAULT_OUTPUT_CAP,
    ) -> None:
        self._client = client
        self._root = project_root
        self._connect_timeout = connect_timeout
        self._output_cap = output_cap
        self._logins = CredentialCache(lambda name: self._fetch(name, client.credentials[name]))
        self._lock = threading.Lock()
        self._known: paramiko.HostKeys | None = None

    # --- preparing --------------------------------------------------------------

    def _host_keys(self) -> paramiko.HostKeys:
        with self._lock:
            if self._known is None:
                path = self._root / self._client.known_hosts
                if not path.is_file():
                    raise TransportFailure(
                        ErrorKind.HOST_KEY_UNKNOWN,
                        f"{self._client.known_hosts} does not exist; record host "
                        "keys with 'mspauto hosts trust HOST'",
                    )
                try:
                    self._known = paramiko.HostKeys(str(path))
                except (OSError, ValueError, paramiko.SSHException) as exc:
                    raise TransportFailure(
                        ErrorKind.CONFIG,
                        f"{self._client.known_hosts} cannot be read ({exc}); fix or remove "
                        "the broken line",
                    ) from None
            return self._known

    def _fetch(self, name: str, credential: Credential) -> _Login:
        try:
            pkey = None
            if credential.private_key is not None:
                passphrase = (
                    resolve_secret(credential.key_passphrase, self._root)
                    if credential.key_passphrase
                    else None
                )
                path = secret_path(credential.private_key, self._root)
                if path is not None:
                    pkey = paramiko.PKey.from_path(path, passphrase)
                else:
                    pkey = _key_from_text(
                        resolve_secret(credential.private_key, self._root), passphrase
                    )
            password = (
                resolve_secret(credential.password, self._root) if credential.password else None
            )
            become = (
                resolve_secret(credential.become_password, self._root)
                if credential.become_password
                else None
            )
        except SecretError as exc:
            raise TransportFailure(ErrorKind.CONFIG, f"credential {name}: {exc}") from None
        except (OSError, paramiko.SSHException, ValueError) as exc:
            raise TransportFailure(
                ErrorKind.CONFIG, f"credential {name}: cannot load the private key ({exc})"
            ) from None
        return _Login(credential.user, pkey, password, become)

    # --- running ----------------------------------------------------------------

    def run(
        self, host: Host, command: str, *, sudo: bool, timeout: float, stdin: bytes = b""
    ) -> CommandResult:
        """Connect, run ``command`` (through sudo if asked), disconnect."""
        started = utcnow()
        transport: paramiko.Transport | None = None
        try:
            login = self._logins.get(host.credential)
            transport = self._connect(host, login)
            rc, out, err = self._execute(transport, login, command, sudo, timeout, stdin)
        except TransportFailure as failure:
            return CommandResult.failure(
                host.name, command, failure.kind, failure.message, started=started
            )
        finally:
            if transport is not None:
                transport.close()
        error = None if rc == 0 else ErrorKind.COMMAND_FAILED
        message = "" if rc == 0 else _last_line(err.text()) or f"exit code {rc}"
        return CommandResult(
            host.name,
            command,
            rc,
            out.text(),
            err.text(),
            started,
            utcnow(),
            error,
            message,
            stdout_bytes=out.total,
            stderr_bytes=err.total,
        )

    def _connect(self, host: Host, login: _Login) -> paramiko.Transport:
        port = host.port or 22
        lookup = host.address if port == 22 else f"[{host.address}]:{port}"
        recorded = self._host_keys().lookup(lookup)
        if not recorded:
            raise TransportFailure(
                ErrorKind.HOST_KEY_UNKNOWN,
                f"no key recorded for {lookup} in {self._client.known_hosts}; "
                f"check it out of band, then 'mspauto hosts trust {host.name}'",
            )
        limit = self._connect_timeout
        try:
            sock = socket.create_connection((host.address, port), timeout=limit)
        except ConnectionRefusedError:
            raise TransportFailure(
                ErrorKind.UNREACHABLE, f"connection refused on {host.address}:{port}"
            ) from None
        except TimeoutError:
            raise TransportFailure(
                ErrorKind.UNREACHABLE, f"no answer from {host.address}:{port} within {limit:g}s"
            ) from None
        except socket.gaierror as exc:
            raise TransportFailure(
                ErrorKind.UNREACHABLE, f"cannot resolve {host.address}: {exc.strerror}"
            ) from None
        except OSError as exc:
            raise TransportFailure(
                ErrorKind.UNREACHABLE, f"{host.address}:{port}: {exc.strerror or exc}"
            ) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        transport = paramiko.Transport(sock)
        transport.banner_timeout = transport.handshake_timeout = limit
        transport.auth_timeout = limit
        # Ask only for the key types we have recorded, so the host cannot offer another.
        transport.get_security_options().key_types = _algorithms(recorded.keys())
        try:
            try:
                transport.start_client(timeout=limit)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                if not transport.remote_version:
                    raise TransportFailure(
                        ErrorKind.TIMEOUT, f"no SSH banner within {limit:g}s (host hung?)"
                    ) from None
                if "incompatible" in str(exc).lower():
                    raise TransportFailure(
                        ErrorKind.HOST_KEY_MISMATCH,
                        f"the host offers none of the key types recorded for it "
                        f"({', '.join(recorded.keys())})",
                    ) from None
                raise TransportFailure(ErrorKind.TIMEOUT, f"SSH handshake failed: {exc}") from None
            if transport.host_key is None:  # start_client gave up waiting, silently
                what = "no SSH banner" if not transport.remote_version else "no SSH handshake"
                raise TransportFailure(ErrorKind.TIMEOUT, f"{what} within {limit:g}s (host hung?)")
            presented = transport.get_remote_server_key()
            expected = recorded.get(presented.get_name())
            if expected is None or expected != presented:
                known_fp = expected.fingerprint if expected is not None else "another key type"
                raise TransportFailure(
                    ErrorKind.HOST_KEY_MISMATCH,
                    f"host key changed: known_hosts has {known_fp}, the host "
                    f"presented {presented.fingerprint}; if the change is expected, "
                    f"'mspauto hosts trust {host.name} --replace'",
                )
            self._authenticate(transport, login)
        except BaseException:
            transport.close()
            raise
        return transport

    @staticmethod
    def _authenticate(transport: paramiko.Transport, login: _Login) -> None:
        try:
            if login.pkey is not None:
                try:
                    transport.auth_publickey(login.user, login.pkey)
                except paramiko.AuthenticationException:
                    if login.password is None:
                        raise
            if not transport.is_authenticated() and login.password is not None:
                transport.auth_password(login.user, login.password)
        except paramiko.AuthenticationException:
            raise TransportFailure(
                ErrorKind.AUTH_FAILED, f"user {login.user}: authentication refused"
            ) from None
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise TransportFailure(
                ErrorKind.TIMEOUT, f"authentication did not finish: {exc}"
            ) from None
        if not transport.is_authenticated():
            raise TransportFailure(
                ErrorKind.CONFIG,
                f"user {login.user}: the credential has neither a private key nor a password",
            )

    def _execute(
        self,
        transport: paramiko.Transport,
        login: _Login,
        command: str,
        sudo: bool,
        timeout: float,
        stdin: bytes = b"",
    ) -> tuple[int, _Capture, _Capture]:
        deadline = time.monotonic() + timeout
        stdin_data, held = stdin, b""
        if sudo and login.user != "root":
            if login.become_password is not None:
                # The password goes to sudo on stdin, never on a command line. A command
                # given no input reads /dev/null, so it can never read the password
                # (NOPASSWD sudo leaves it unread); one given input skips every line
                # before its own marker (mspauto.checks.secrets), the password's too.
                inner = command if stdin else f"exec </dev/null; {command}"
                command = f"sudo -S -p '' -- sh -c {shlex.quote(inner)}"
                stdin_data = login.become_password.encode() + b"\n"
                # Secrets wait until the script, let in by sudo, prints their marker: a
                # sudo that refuses the password reads its retries from stdin, and must
                # never read them from the secrets.
                held = stdin if stdin.startswith(MARK.encode()) else b""
                stdin_data += b"" if held else stdin
            else:
                command = f"sudo -n -- sh -c {shlex.quote(command)}"
        ready = held.split(b"\n", 1)[0]
        try:
            channel = transport.open_session(timeout=max(deadline - time.monotonic(), 0.1))
            channel.exec_command(command)
            if stdin_data:
                channel.sendall(stdin_data)
            if not held:
                channel.shutdown_write()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise TransportFailure(
                ErrorKind.UNREACHABLE, f"could not start the command: {exc}"
            ) from None
        out, err = _Capture(self._output_cap), _Capture(self._output_cap)
        try:
            while True:
                if held and (ready in b"".join(out.parts) or b"try again" in b"".join(err.parts)):
                    # The script runs as root and asks: send. sudo refused: send nothing.
                    if ready in b"".join(out.parts):
                        channel.sendall(held)
                    channel.shutdown_write()
                    held = b""
                if channel.recv_ready():
                    out.add(channel.recv(65536))
                elif channel.recv_stderr_ready():
                    err.add(channel.recv_stderr(65536))
                elif channel.exit_status_ready() and (channel.eof_received or channel.closed):
                    break  # sshd may report the exit before it has sent all the output
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TransportFailure(
                            ErrorKind.TIMEOUT, f"command did not finish within {timeout:g}s"
                        )
                    select.select([channel], [], [], min(remaining, 1.0))
            # Output that arrived with the exit status.
            while channel.recv_ready():
                out.add(channel.recv(65536))
            while channel.recv_stderr_ready():
                err.add(channel.recv_stderr(65536))
            return channel.recv_exit_status(), out, err
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise TransportFailure(ErrorKind.CONNECTION_LOST, f"connection lost: {exc}") from None
        finally:
            channel.close()

    def close(self) -> None:
        """Nothing is kept open between commands; forget fetched secrets."""
        self._logins.clear()


_RSA_ALGORITHMS = ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")


def _algorithms(key_types: Iterable[str]) -> tuple[str, ...]:
    """Host key algorithms that can prove possession of the recorded key types."""
    algorithms: list[str] = []
    for key_type in key_types:
        algorithms += _RSA_ALGORITHMS if key_type == "ssh-rsa" else [key_type]
    return tuple(dict.fromkeys(algorithms))


def _key_from_text(text: str, passphrase: str | None) -> paramiko.PKey:
    for key_class in _KEY_CLASSES:
        try:
            return key_class.from_private_key(io.StringIO(text), password=passphrase)
        except paramiko.SSHException:
            continue
    raise ValueError("not an Ed25519, ECDSA or RSA private key")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""
