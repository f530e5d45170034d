"""Copies of the witness log elsewhere: each entry the witness appends is also sent, as
the very same line, to a webhook or to syslog that someone else keeps (an MSP's SIEM, a
service another admin controls), so that rolling back both the database and the
witness folder still shows there. ``verify`` reads only the log; an auditor compares it
with a copy (docs/evidence.md).

Hand-written on the standard library on purpose: urllib's and SysLogHandler's own
error handling would print tracebacks or follow redirects with the token; here every
failure is one phrase for the run's warning, and a failed copy never loses the entry
(the log has it first).
"""

from __future__ import annotations

import errno
import http.client
import ipaddress
import os
import socket
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

__all__ = [
    "COPY_PAUSES",
    "COPY_REST",
    "COPY_TIMEOUT",
    "COPY_TRIES",
    "CopyFailed",
    "SyslogCopy",
    "TokenFileError",
    "WebhookCopy",
    "WitnessCopy",
    "WitnessSettingError",
    "witness_copies",
]

COPY_TRIES = 3
"""Tries per checkpoint for a copy (webhook, syslog) whose failure may pass."""
COPY_PAUSES = (0.5, 2.0)
"""Seconds between those tries."""
COPY_TIMEOUT = 5.0
"""Seconds a copy's receiver may take to connect or answer, per try."""
COPY_REST = 60.0
"""Seconds a copy that failed every try is left alone before it is tried again."""
_SYSLOG_PRI = 1 * 8 + 6
"""Facility user, severity info."""


class CopyFailed(Exception):
    """A copy did not take an entry; the text says why in a few words."""

    def __init__(self, reason: str, *, lasting: bool = False) -> None:
        super().__init__(reason)
        self.lasting = lasting
        """Trying again at once will not help (the receiver refused the request)."""


class WitnessSettingError(ValueError):
    """A witness copy setting that cannot be used; one line, never a secret."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable
        self.message = message


class TokenFileError(ValueError):
    """A webhook's token file cannot be read, or does not hold one token."""


class WitnessCopy(Protocol):
    """Somewhere the witness also sends each entry."""

    @property
    def name(self) -> str:
        """What the copy is, for messages (never a secret)."""
        ...

    def send(self, line: str) -> None:
        """Deliver one witness log line (no newline); :class:`CopyFailed` if not."""
        ...


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: following it would turn the POST into a GET without
    the entry, and could hand the token to another host."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class WebhookCopy:
    """An HTTP(S) POST of each entry: the body is exactly the log's line (newline
    included), as ``application/json``; with ``token_file``, that file's text is sent as
    ``Authorization: Bearer``. The file is read at each send (so it can be rotated) and
    named in messages; its content never is. Any 2xx answer counts as delivered."""

    def __init__(
        self, url: str, token_file: Path | None = None, *, timeout: float | None = None
    ) -> None:
        # The URL is never repeated back: its path or query may hold a secret.
        if any(not c.isprintable() or c.isspace() for c in url):
            raise ValueError("the URL holds spaces or control characters")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError("not an https:// (or http://) URL")
        if parts.username is not None or parts.password is not None:
            raise ValueError(
                "the URL holds a user or password: put a token in a file and name the "
                "file in MSPAUTO_WITNESS_WEBHOOK_TOKEN_FILE instead"
            )
        try:
            port = parts.port
        except ValueError:
            port = 0
        if port == 0:
            raise ValueError("the URL's port is not 1..65535")
        if not parts.hostname:
            raise ValueError("the URL names no host")
        if token_file is not None and parts.scheme == "http" and not _loopback(parts.hostname):
            raise ValueError(
                "a token is sent only over https (or http to this machine): use https://"
            )
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        self.name = f"webhook {parts.scheme}://{host}" + (f":{port}" if port else "")
        """Scheme, host and port only: a webhook's path often is its secret."""
        self.url = url
        self.token_file = token_file
        self.timeout = timeout
        """Seconds per try (None: ``COPY_TIMEOUT``)."""
        self._opener = urllib.request.build_opener(_NoRedirects)
        if token_file is not None:
            self._token()  # unreadable or empty: refused now, not at the first checkpoint

    def _token(self) -> str:
        assert self.token_file is not None
        try:
            token = self.token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not text"
            raise TokenFileError(f"cannot read {self.token_file}: {why}") from None
        if not token or any(not c.isprintable() or c.isspace() for c in token):
            raise TokenFileError(f"{self.token_file} must hold one token on one line")
        return token

    def send(self, line: str) -> None:
        headers = {"Content-Type": "application/json", "User-Agent": "mspauto"}
        if self.token_file is not None:
            try:
                headers["Authorization"] = f"Bearer {self._token()}"
            except TokenFileError as exc:
                raise CopyFailed(f"the token file: {exc}", lasting=True) from None
        request = urllib.request.Request(
            self.url, data=(line + "\n").encode(), method="POST", headers=headers
        )
        try:
            # Only http(s) URLs are accepted above: a file: URL is never opened.
            with self._opener.open(request, timeout=self.timeout or COPY_TIMEOUT) as answer:
                answer.read(4096)
        except urllib.error.HTTPError as exc:
            passing = exc.code >= 500 or exc.code in (408, 429)
            redirect = " (a redirect, not followed)" if 300 <= exc.code < 400 else ""
            raise CopyFailed(
                f"it answered {exc.code} {_plain(str(exc.reason))}{redirect}",
                lasting=not passing,
            ) from None
        except urllib.error.URLError as exc:
            raise CopyFailed(_plain(_reason(exc.reason))) from None
        except (OSError, http.client.HTTPException) as exc:  # HTTPException: a garbled answer
            raise CopyFailed(_plain(_reason(exc))) from None


class SyslogCopy:
    """Each entry as one syslog message (facility user, severity info, app ``mspauto``,
    message id ``checkpoint``), its text exactly the log's line.

    ``target`` is ``unix:PATH`` (the local syslog, e.g. ``unix:/dev/log``: the short
    local form, which the daemon stamps with time and host), ``udp:HOST[:PORT]`` or
    ``tcp:HOST[:PORT]`` (port 514 if none; RFC 5424 with time and host, over TCP one
    message a line, RFC 6587's non-transparent framing). UDP reports no lost message:
    only a name that does not resolve or a network that is unreachable is seen."""

    def __init__(self, target: str, *, timeout: float | None = None) -> None:
        shown = _plain(target)
        transport, _, where = target.partition(":")
        if transport not in ("unix", "udp", "tcp") or not where:
            raise ValueError(f"'{shown}' is not unix:PATH, udp:HOST[:PORT] or tcp:HOST[:PORT]")
        self.transport = transport
        self.timeout = timeout
        """Seconds per try (None: ``COPY_TIMEOUT``)."""
        self.name = f"syslog {shown}"
        self.path: str | None = None
        self.host = ""
        self.port = 514
        if transport == "unix":
            if not where.startswith("/"):
                raise ValueError(f"'{shown}': give the socket's absolute path (unix:/dev/log)")
            self.path = where
            return
        host, port = where, ""
        if where.startswith("["):  # [IPv6]:PORT
            host, _, rest = where[1:].partition("]")
            if rest and not rest.startswith(":"):
                raise ValueError(f"'{shown}': write an IPv6 address as [ADDRESS]:PORT")
            port = rest[1:]
        elif where.count(":") == 1:
            host, port = where.split(":")
        elif ":" in where:
            raise ValueError(f"'{shown}': write an IPv6 address as [ADDRESS]:PORT")
        if not host or any(not c.isprintable() or c.isspace() for c in host):
            raise ValueError(f"'{shown}' names no host")
        if port:
            if not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ValueError(f"'{shown}': the port must be 1..65535")
            self.port = int(port)
        self.host = host

    def send(self, line: str) -> None:
        try:
            if self.path is not None:
                self._send_unix(f"<{_SYSLOG_PRI}>mspauto[{os.getpid()}]: {line}".encode())
                return
            stamp = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
            message = (
                f"<{_SYSLOG_PRI}>1 {stamp} {_syslog_host()} mspauto {os.getpid()} "
                f"checkpoint - {line}"
            ).encode()
            if self.transport == "tcp":
                with socket.create_connection(
                    (self.host, self.port), self.timeout or COPY_TIMEOUT
                ) as conn:
                    conn.sendall(message + b"\n")
                return
            family, kind, proto, _, address = socket.getaddrinfo(
                self.host, self.port, type=socket.SOCK_DGRAM
            )[0]
            with socket.socket(family, kind, proto) as conn:
                conn.settimeout(self.timeout or COPY_TIMEOUT)
                conn.connect(address)
                conn.send(message)
        except OSError as exc:
            raise CopyFailed(_plain(_reason(exc))) from None

    def _send_unix(self, message: bytes) -> None:
        assert self.path is not None
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as conn:
                conn.settimeout(self.timeout or COPY_TIMEOUT)
                conn.connect(self.path)
                conn.send(message)
        except OSError as exc:
            if exc.errno != errno.EPROTOTYPE:
                raise
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:  # a stream socket
                conn.settimeout(self.timeout or COPY_TIMEOUT)
                conn.connect(self.path)
                conn.sendall(message + b"\n")


def witness_copies(
    webhook: str | None, token_file: Path | None, syslog: str | None
) -> list[WitnessCopy]:
    """The copies the settings name (``MSPAUTO_WITNESS_WEBHOOK``, ``..._TOKEN_FILE``,
    ``MSPAUTO_WITNESS_SYSLOG``), or :class:`WitnessSettingError` saying which is wrong."""
    copies: list[WitnessCopy] = []
    if token_file is not None and not webhook:
        raise WitnessSettingError(
            "MSPAUTO_WITNESS_WEBHOOK_TOKEN_FILE", "is set, but MSPAUTO_WITNESS_WEBHOOK is not"
        )
    if webhook:
        try:
            copies.append(WebhookCopy(webhook, token_file))
        except TokenFileError as exc:
            raise WitnessSettingError("MSPAUTO_WITNESS_WEBHOOK_TOKEN_FILE", str(exc)) from None
        except ValueError as exc:
            raise WitnessSettingError("MSPAUTO_WITNESS_WEBHOOK", str(exc)) from None
    if syslog:
        try:
            copies.append(SyslogCopy(syslog))
        except ValueError as exc:
            raise WitnessSettingError("MSPAUTO_WITNESS_SYSLOG", str(exc)) from None
    return copies


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _reason(exc: object) -> str:
    """Why a connection failed, in words (no errno numbers)."""
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, socket.gaierror):
        return f"the name does not resolve ({exc.strerror})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def _plain(text: str) -> str:
    """Text fit for one line of a message: no line breaks or control bytes, kept short."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())[:200]


def _syslog_host() -> str:
    """This machine's name as RFC 5424 allows it (printable ASCII, no spaces)."""
    name = "".join(c for c in socket.gethostname() if 33 <= ord(c) <= 126)[:255]
    return name or "-"
