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
from dataclasses import dataclass
from pathlib import Path

import paramiko

from mspauto.inventory.models import Credential
from mspauto.inventory.resolve import Client, Host
from mspauto.secrets import SecretError, resolve_secret, secret_path
from mspauto.transport.base import CommandResult, ErrorKind, utcnow

__all__ = ["DEFAULT_OUTPUT_CAP", "SSHTransport", "fingerprint"]

DEFAULT_OUTPUT_CAP = 4 * 1024 * 1024
_KEY_CLASSES = (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey)


def fingerprint(key: paramiko.PKey) -> str:
    """``SHA256:...``, as OpenSSH prints it."""
    return str(key.fingerprint)


class _Failure(Exception):
    """A classified failure before the command could run."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


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
        self._logins: dict[str, _Login] = {}
        self._lock = threading.Lock()
        self._known: paramiko.HostKeys | None = None

    # --- preparing --------------------------------------------------------------

    def _host_keys(self) -> paramiko.HostKeys:
        with self._lock:
            if self._known is None:
                path = self._root / self._client.known_hosts
                if not path.is_file():
                    raise _Failure(
                        ErrorKind.HOST_KEY_UNKNOWN,
                        f"{self._client.known_hosts} does not exist; record host "
                        "keys with 'mspauto hosts trust HOST'",
                    )
                self._known = paramiko.HostKeys(str(path))
            return self._known

    def _login(self, name: str | None) -> _Login:
        if name is None:
            raise _Failure(
                ErrorKind.CONFIG,
                "no credential: set 'credential' on the host, its group, site or client",
            )
        with self._lock:
            if name not in self._logins:
                self._logins[name] = self._fetch(name, self._client.credentials[name])
            return self._logins[name]

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
            raise _Failure(ErrorKind.CONFIG, f"credential {name}: {exc}") from None
        except (OSError, paramiko.SSHException, ValueError) as exc:
            raise _Failure(
                ErrorKind.CONFIG, f"credential {name}: cannot load the private key ({exc})"
            ) from None
        return _Login(credential.user, pkey, password, become)

    # --- running ----------------------------------------------------------------

    def run(self, host: Host, command: str, *, sudo: bool, timeout: float) -> CommandResult:
        """Connect, run ``command`` (through sudo if asked), disconnect."""
        started = utcnow()
        ssh: paramiko.SSHClient | None = None
        try:
            login = self._login(host.credential)
            ssh = self._connect(host, login)
            rc, out, err = self._execute(ssh, login, command, sudo, timeout)
        except _Failure as failure:
            return CommandResult(
                host.name, command, None, "", "", started, utcnow(), failure.kind, failure.message
            )
        finally:
            if ssh is not None:
                ssh.close()
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

    def _connect(self, host: Host, login: _Login) -> paramiko.SSHClient:
        known = self._host_keys()
        port = host.port or 22
        lookup = host.address if port == 22 else f"[{host.address}]:{port}"
        try:
            sock = socket.create_connection((host.address, port), timeout=self._connect_timeout)
        except ConnectionRefusedError:
            raise _Failure(
                ErrorKind.UNREACHABLE, f"connection refused on {host.address}:{port}"
            ) from None
        except TimeoutError:
            raise _Failure(
                ErrorKind.UNREACHABLE,
                f"no answer from {host.address}:{port} within {self._connect_timeout:g}s",
            ) from None
        except socket.gaierror as exc:
            raise _Failure(
                ErrorKind.UNREACHABLE, f"cannot resolve {host.address}: {exc.strerror}"
            ) from None
        except OSError as exc:
            raise _Failure(
                ErrorKind.UNREACHABLE, f"{host.address}:{port}: {exc.strerror or exc}"
            ) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        ssh = paramiko.SSHClient()
        # Only this host's recorded keys: no per-connection copy of the whole file.
        recorded = known.lookup(lookup)
        for key_type, key in recorded.items() if recorded is not None else ():
            ssh.get_host_keys().add(lookup, key_type, key)
        ssh.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            ssh.connect(
                hostname=host.address,
                port=port,
                username=login.user,
                pkey=login.pkey,
                password=login.password,
                sock=sock,
                timeout=self._connect_timeout,
                banner_timeout=self._connect_timeout,
                auth_timeout=self._connect_timeout,
                channel_timeout=self._connect_timeout,
                allow_agent=False,
                look_for_keys=False,
            )
        except paramiko.BadHostKeyException as exc:
            ssh.close()
            raise _Failure(
                ErrorKind.HOST_KEY_MISMATCH,
                f"host key changed: known_hosts has {exc.expected_key.fingerprint}, "
                f"the host presented {exc.key.fingerprint}; if the change is "
                f"expected, 'mspauto hosts trust {host.name} --replace'",
            ) from None
        except paramiko.AuthenticationException:
            ssh.close()
            raise _Failure(
                ErrorKind.AUTH_FAILED, f"user {login.user}: authentication refused"
            ) from None
        except paramiko.SSHException as exc:
            ssh.close()
            text = str(exc)
            if "not found in known_hosts" in text:
                raise _Failure(
                    ErrorKind.HOST_KEY_UNKNOWN,
                    f"no key recorded for {lookup} in {self._client.known_hosts}; "
                    f"check it out of band, then 'mspauto hosts trust {host.name}'",
                ) from None
            if "banner" in text.lower() or "timeout" in text.lower():
                raise _Failure(
                    ErrorKind.TIMEOUT,
                    f"no SSH handshake within {self._connect_timeout:g}s ({text})",
                ) from None
            raise _Failure(ErrorKind.UNREACHABLE, f"SSH failed: {text}") from None
        except TimeoutError:
            ssh.close()
            raise _Failure(
                ErrorKind.TIMEOUT, f"no SSH handshake within {self._connect_timeout:g}s"
            ) from None
        except (OSError, EOFError) as exc:
            ssh.close()
            raise _Failure(ErrorKind.UNREACHABLE, f"connection lost: {exc}") from None
        return ssh

    def _execute(
        self, ssh: paramiko.SSHClient, login: _Login, command: str, sudo: bool, timeout: float
    ) -> tuple[int, _Capture, _Capture]:
        deadline = time.monotonic() + timeout
        stdin_data = b""
        if sudo and login.user != "root":
            if login.become_password is not None:
                # The password goes to sudo on stdin, never on a command line.
                command = f"sudo -S -p '' -- sh -c {shlex.quote(command)}"
                stdin_data = login.become_password.encode() + b"\n"
            else:
                command = f"sudo -n -- sh -c {shlex.quote(command)}"
        transport = ssh.get_transport()
        assert transport is not None
        try:
            channel = transport.open_session(timeout=max(deadline - time.monotonic(), 0.1))
            channel.exec_command(command)
            if stdin_data:
                channel.sendall(stdin_data)
            channel.shutdown_write()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise _Failure(ErrorKind.UNREACHABLE, f"could not start the command: {exc}") from None
        out, err = _Capture(self._output_cap), _Capture(self._output_cap)
        try:
            while True:
                if channel.recv_ready():
                    out.add(channel.recv(65536))
                elif channel.recv_stderr_ready():
                    err.add(channel.recv_stderr(65536))
                elif channel.exit_status_ready():
                    break
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise _Failure(
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
            raise _Failure(ErrorKind.UNREACHABLE, f"connection lost: {exc}") from None
        finally:
            channel.close()

    def close(self) -> None:
        """Nothing is kept open between commands; forget fetched secrets."""
        with self._lock:
            self._logins.clear()


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
