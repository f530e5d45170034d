"""Ansible transport on ansible-runner: one ansible run for many hosts of one client.

Starting Ansible costs about two seconds, so this transport runs a module (``shell`` for
ad-hoc commands) or a playbook on all the given hosts in one run, with high forks, and
turns Ansible's per-host events into the same :class:`CommandResult` as every other
transport.

SSH hosts and WinRM hosts (Windows: ``ansible.windows`` modules over pywinrm) are run
in separate Ansible runs, since a connection password given to a run would make its
SSH hosts log in with it too.

Nothing secret is written to disk: each run gets a fresh private data directory (mode
0700) that is deleted after the results are harvested; the generated inventory holds
addresses, users and key *paths* only; runner's env files are not written
(``suppress_env_files``), so the become password and a WinRM host's password reach
Ansible's prompts through runner's in-memory answers, never a file, a variable or a
command line; events are collected through the event handler and not saved.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from mspauto.inventory.resolve import Client, Host
from mspauto.secrets import SecretError, resolve_secret, secret_path
from mspauto.transport.base import CommandResult, ErrorKind, utcnow

__all__ = ["PLAY_FILE", "AnsibleTransport", "TaskOutcome", "task_outcomes"]

PLAY_FILE = "mspauto-play.yml"
"""The play of every run, as written into the run's private project folder."""
INVENTORY_FILE = "mspauto-hosts.yml"

_BECOME_PROMPT = r"^BECOME password.*:\s*?$"
# ``--ask-pass`` asks for the connection password under this name whatever the connection.
_CONNECTION_PROMPT = r"^SSH password:\s*?$"
_PASSED_ENVIRONMENT = re.compile(
    r"^(PATH|HOME|USER|LOGNAME|LANG|LC_\w+|TZ|TMPDIR|TERM|PYTHONPATH|ANSIBLE_\w+|RUNNER_\w+|"
    r"AWX_\w+|JOB_ID|INVENTORY_ID|PROJECT_REVISION)$"
)


@dataclass(frozen=True)
class _Access:
    user: str
    key_file: Path | None
    become_password: str | None
    connection: str = "ssh"
    password: str | None = None
    """A WinRM host's login password (SSH hosts log in with their key)."""
    winrm: Mapping[str, str] | None = None
    """A WinRM host's ``ansible_winrm_*`` settings."""

    @property
    def run_key(self) -> tuple[str, str | None, str | None]:
        """Hosts with equal keys share a run: one connection type, one answer per prompt."""
        return (self.connection, self.password, self.become_password)


class AnsibleTransport:
    """Runs ad-hoc commands and plays on many hosts of one client in few ansible-runner
    runs (one per connection type and password)."""

    def __init__(
        self,
        client: Client,
        project_root: Path,
        *,
        forks: int = 50,
        connect_timeout: float = 10.0,
        keep_private_data: Path | None = None,
    ) -> None:
        self._client = client
        self._root = project_root
        # The client's own cap on parallel work holds for Ansible runs too.
        self._forks = min(forks, client.spec.max_parallel or forks)
        self._connect_timeout = connect_timeout
        self._keep = keep_private_data

    def run(
        self, host: Host, command: str, *, sudo: bool, timeout: float, stdin: bytes = b""
    ) -> CommandResult:
        """One host (prefer :meth:`run_many`: each ansible run costs seconds to start).
        No input: Ansible would write it into the run's files."""
        if stdin:
            return CommandResult.failure(
                host.name,
                command,
                ErrorKind.CONFIG,
                "the ansible transport passes no input to commands (it would be written "
                "to disk); run this through ssh",
            )
        return self.run_many([host], command, sudo=sudo, timeout=timeout)[0]

    def run_many(
        self,
        hosts: list[Host],
        command: str,
        *,
        sudo: bool,
        timeout: float,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> list[CommandResult]:
        """Run ``command`` through Ansible's shell module on every host at once;
        ``cancelled`` is polled and stops the run once it turns true."""
        accesses, results = self._accesses(hosts, command)
        runnable = [h for h in hosts if h.name in accesses]
        if runnable:
            results.update(self._run(runnable, accesses, command, sudo, timeout, cancelled))
        return [results[host.name] for host in hosts]

    def _accesses(
        self, hosts: list[Host], command: str
    ) -> tuple[dict[str, _Access], dict[str, CommandResult]]:
        """How to reach each host, and a config failure for each that cannot be."""
        started = utcnow()
        accesses: dict[str, _Access] = {}
        failures: dict[str, CommandResult] = {}
        for host in hosts:
            try:
                if host.connection == "winrm":
                    accesses[host.name] = self._winrm_access(host)
                elif host.connection == "ssh":
                    accesses[host.name] = self._access(host)
                else:
                    raise _Config(
                        f"the ansible transport reaches SSH and WinRM hosts, not {host.connection}"
                    )
            except _Config as exc:
                failures[host.name] = CommandResult.failure(
                    host.name, command, ErrorKind.CONFIG, str(exc), started=started
                )
        return accesses, failures

    def _access(self, host: Host) -> _Access:
        name = host.credential
        if name is None:
            raise _Config("no credential: set 'credential' on the host or above it")
        credential = self._client.credentials[name]
        if credential.private_key is None or credential.private_key.file is None:
            raise _Config(
                f"credential {name}: the ansible transport needs a private key "
                "given as {file: PATH}"
            )
        try:
            become = (
                resolve_secret(credential.become_password, self._root)
                if credential.become_password
                else None
            )
        except SecretError as exc:
            raise _Config(f"credential {name}: {exc}") from None
        # Checked here, per host, so a bad path is this host's config error, not a crash.
        _ssh_option("UserKnownHostsFile", self._root / self._client.known_hosts)
        return _Access(credential.user, secret_path(credential.private_key, self._root), become)

    def _winrm_access(self, host: Host) -> _Access:
        """A Windows host over WinRM, set up as :class:`~mspauto.transport.winrm.WinRMTransport`
        reaches it: HTTPS with the certificate checked (against the project's CA file
        when the host names one), clear-text logins refused over HTTP."""
        name = host.credential
        if name is None:
            raise _Config("no credential: set 'credential' on the host or above it")
        credential = self._client.credentials[name]
        method = credential.winrm_transport or "ntlm"
        port = host.port or 5986
        scheme = "http" if port == 5985 else "https"
        if scheme == "http" and method in ("basic", "certificate"):
            raise _Config(
                f"winrm_transport {method} over HTTP (port 5985) would send the credentials "
                "in clear text; use HTTPS (port 5986)"
            )
        settings = {
            "ansible_winrm_transport": method,
            "ansible_winrm_scheme": scheme,
            "ansible_winrm_server_cert_validation": "validate",
        }
        ca = host.vars.get("winrm_ca_trust_path")
        if ca:
            path = self._root / str(ca)
            if not path.is_file():
                raise _Config(f"winrm_ca_trust_path {ca}: no such file in the project")
            settings["ansible_winrm_ca_trust_path"] = str(path.resolve())
        try:
            password = (
                resolve_secret(credential.password, self._root) if credential.password else None
            )
            if method == "certificate":
                if credential.private_key is None:
                    raise _Config(
                        f"credential {name}: winrm_transport certificate needs a private_key"
                    )
                settings["ansible_winrm_cert_pem"] = str(
                    self._root / str(host.vars.get("winrm_cert_pem", ""))
                )
                settings["ansible_winrm_cert_key_pem"] = str(
                    secret_path(credential.private_key, self._root)
                )
        except SecretError as exc:
            raise _Config(f"credential {name}: {exc}") from None
        if password is None and method != "certificate":
            raise _Config(f"credential {name}: winrm_transport {method} needs a password")
        return _Access(credential.user, None, None, "winrm", password, settings)

    def _inventory(self, hosts: list[Host], accesses: dict[str, _Access], sockets: Path) -> str:
        """The run's inventory as YAML, every value ``!unsafe`` (a credential's user,
        a path: data, never a template)."""
        known_hosts = (self._root / self._client.known_hosts).resolve()
        entries: dict[str, dict[str, Any]] = {}
        for host in hosts:
            access = accesses[host.name]
            if access.connection == "winrm":
                entries[host.name] = {
                    "ansible_host": host.address,
                    "ansible_port": host.port or 5986,
                    "ansible_user": access.user,
                    "ansible_connection": "winrm",
                    # Rights come from the account; sudo has no meaning on Windows.
                    "ansible_become": False,
                    **(access.winrm or {}),
                }
                continue
            entries[host.name] = {
                "ansible_host": host.address,
                "ansible_port": host.port or 22,
                "ansible_user": access.user,
                "ansible_connection": "ssh",
                "ansible_ssh_private_key_file": str(access.key_file),
                # Only this client's keys, not OpenSSH's global file. Connections are
                # shared only inside this run: their sockets live in the run's own
                # private folder (deleted afterwards), so each host's first connection
                # of the run checks its key and nothing outside the run can reuse one.
                # Ansible splits these like a shell: the path is one quoted word, and
                # OpenSSH reads the quoted value as one file name, spaces and all.
                "ansible_ssh_common_args": (
                    f"-o {shlex.quote(_ssh_option('UserKnownHostsFile', known_hosts))} "
                    "-o GlobalKnownHostsFile=/dev/null "
                    "-o StrictHostKeyChecking=yes -o BatchMode=yes"
                ),
                "ansible_ssh_args": (
                    f"-o ControlMaster=auto -o ControlPersist=15s -o ControlPath={sockets}/%C"
                ),
                "ansible_python_interpreter": "auto_silent",
            }
        return yaml.dump({"all": {"hosts": _unsafe(entries)}}, Dumper=_PlayDumper)

    def _run(
        self,
        hosts: list[Host],
        accesses: dict[str, _Access],
        command: str,
        sudo: bool,
        timeout: float,
        cancelled: Callable[[], bool],
    ) -> dict[str, CommandResult]:
        results: dict[str, CommandResult] = {}
        for group in _by_run(hosts, accesses):
            # A play of one shell task rather than an ad-hoc run: the command is data,
            # and only a play file can say so (``!unsafe``), so Ansible never templates
            # it. Windows runs it in PowerShell, as the winrm transport does.
            windows = accesses[group[0].name].connection == "winrm"
            module = "ansible.windows.win_shell" if windows else "ansible.builtin.shell"
            play = _play_yaml([{"name": "command", module: command}], become=sudo and not windows)
            events, status = self._ansible(
                group,
                accesses,
                play,
                sudo=sudo,
                check=False,
                timeout=timeout,
                cancelled=cancelled,
            )
            results.update(_harvest(group, command, events, status))
        return results

    def run_play(
        self,
        hosts: list[Host],
        tasks: Sequence[Mapping[str, Any]],
        *,
        check: bool,
        timeout: float,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> list[CommandResult]:
        """Run ``tasks`` as one play (become on) on ``hosts``; with ``check``, Ansible's
        check mode with diffs: what would change, changing nothing. Tasks choose their
        hosts with ``when:``. Each host's result holds its task outcomes as JSON lines in
        ``stdout`` (read them with :func:`task_outcomes`); ``rc`` is 2 when a task failed."""
        accesses, results = self._accesses(hosts, "ansible play")
        play = _play_yaml(tasks, become=True)
        runnable = [h for h in hosts if h.name in accesses]
        for group in _by_run(runnable, accesses):
            events, status = self._ansible(
                group,
                accesses,
                play,
                sudo=True,
                check=check,
                timeout=timeout,
                cancelled=cancelled,
                # ``timeout`` bounds each task; the whole play may take each in turn.
                run_timeout=timeout * max(1, len(tasks)),
            )
            results.update(_play_results(group, events, status, len(tasks)))
        return [results[host.name] for host in hosts]

    def _ansible(
        self,
        hosts: list[Host],
        accesses: dict[str, _Access],
        play: str,
        *,
        sudo: bool,
        check: bool,
        timeout: float,
        cancelled: Callable[[], bool],
        run_timeout: float | None = None,
    ) -> tuple[list[dict[str, Any]], str]:
        """One ansible-runner run of ``play`` (YAML); its events and final status."""
        from ansible_runner.interface import init_runner

        access = accesses[hosts[0].name]
        private = Path(
            tempfile.mkdtemp(prefix="mspauto-ansible-", dir=self._keep if self._keep else None)
        )
        # A short folder of its own for the connection sockets (a socket path is limited
        # to about 100 bytes, and %C alone takes 40).
        sockets = Path(tempfile.mkdtemp(prefix="msa-"))
        # Both files are written here, with every value from inventory, policies or the
        # command line marked !unsafe: runner would write dicts as plain JSON, which
        # Ansible templates.
        (private / "project").mkdir()
        (private / "project" / PLAY_FILE).write_text(play)
        (private / "inventory").mkdir()
        inventory = private / "inventory" / INVENTORY_FILE
        inventory.write_text(self._inventory(hosts, accesses, sockets))
        events: list[dict[str, Any]] = []
        cmdline = ["--timeout", str(int(self._connect_timeout))]
        if check:
            cmdline += ["--check", "--diff"]
        passwords: dict[str, str] = {}
        if access.password is not None:
            cmdline.append("--ask-pass")
            passwords[_CONNECTION_PROMPT] = access.password
        if sudo and access.connection == "ssh":
            cmdline.append("--become")
            if access.become_password is not None:
                cmdline.append("--ask-become-pass")
                passwords[_BECOME_PROMPT] = access.become_password
        try:
            runner = init_runner(
                private_data_dir=str(private),
                inventory=str(inventory),
                playbook=PLAY_FILE,
                host_pattern="all",
                forks=self._forks,
                cmdline=" ".join(cmdline),
                passwords=passwords,
                suppress_env_files=True,
                envvars={
                    "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
                    "ANSIBLE_HOST_KEY_CHECKING": "True",
                    "ANSIBLE_TASK_TIMEOUT": str(int(timeout)),
                    "ANSIBLE_NOCOLOR": "True",
                    "ANSIBLE_LOCAL_TEMP": str(private / "tmp"),
                    # One SSH operation per task instead of three (sudo needs no tty).
                    "ANSIBLE_PIPELINING": "True",
                },
                quiet=True,
                timeout=int(run_timeout or timeout) + int(self._connect_timeout) + 30,
                event_handler=_collect_into(events),
                cancel_callback=cancelled,
            )
            # Runner copies this process's whole environment into the run and into an
            # artifact file; secrets referenced as env: live there. Pass on only what
            # Ansible needs.
            runner.config.env = {
                name: value
                for name, value in runner.config.env.items()
                if _PASSED_ENVIRONMENT.match(name)
            }
            runner.run()
        finally:
            _close_connections(sockets)
            if self._keep is None:
                shutil.rmtree(private, ignore_errors=True)
        return events, str(runner.status)

    def close(self) -> None:
        """Nothing stays open between runs."""


@dataclass(frozen=True)
class TaskOutcome:
    """One playbook task on one host."""

    task: str
    status: str
    """``ok``, ``changed``, ``failed``, ``skipped`` or ``unreachable``."""
    message: str = ""
    diff: str = ""

    def as_dict(self) -> dict[str, str]:
        """Machine-readable form (one JSON line of a play result's stdout)."""
        return {
            "task": self.task,
            "status": self.status,
            "message": self.message,
            "diff": self.diff,
        }


DIFFS_BUDGET = 32 * 1024
"""Characters of diff a play result's stdout keeps per host, shared by its tasks: even
escaped as JSON (up to 6 bytes a character) well under what the evidence store keeps of
an output (256 KiB), so every task's line is stored whole and a result read back from
the store (a worker's) has every outcome (up to about 500 tasks a host, where each
diff keeps at least 64 characters)."""


def _outcome_lines(outcomes: list[TaskOutcome]) -> str:
    """A host's task outcomes as JSON lines, each diff cut to its share of the budget."""
    share = max(64, DIFFS_BUDGET // max(1, len(outcomes)))
    lines = []
    for outcome in outcomes:
        kept = outcome
        if len(outcome.diff) > share:
            cut = len(outcome.diff) - share
            kept = replace(
                outcome, diff=f"{outcome.diff[:share]}\n[diff cut: {cut} more characters]"
            )
        lines.append(json.dumps(kept.as_dict()) + "\n")
    return "".join(lines)


def task_outcomes(stdout: str) -> list[TaskOutcome]:
    """The task outcomes a play result carries in its ``stdout`` (a line that is not
    whole, from an output stored cut short, ends the list)."""
    outcomes = []
    for line in stdout.splitlines():
        if line.strip():
            try:
                data = json.loads(line)
                outcome = TaskOutcome(
                    str(data["task"]), str(data["status"]), str(data["message"]), str(data["diff"])
                )
            except (ValueError, KeyError, TypeError):
                break
            outcomes.append(outcome)
    return outcomes


def _play_results(
    hosts: list[Host], events: list[dict[str, Any]], status: str, tasks: int
) -> dict[str, CommandResult]:
    """One result per host from a play's events: its tasks as JSON lines, ``rc`` 2 if one
    failed, a classified error when the host could not be reached, and an unknown
    outcome when the run ended before every task had reported on the host."""
    outcomes = _task_outcomes(hosts, events)
    times: dict[str, list[datetime]] = {}
    for event in events:
        name = event.get("event_data", {}).get("host")
        if name and event.get("created"):
            times.setdefault(name, []).append(datetime.fromisoformat(event["created"]))
    results = {}
    for host in hosts:
        done = outcomes[host.name]
        stamps = times.get(host.name) or [utcnow()]
        stdout = _outcome_lines(done)
        unreachable = next((o for o in done if o.status == "unreachable"), None)
        failed = next((o for o in done if o.status == "failed"), None)
        if unreachable is not None:
            ran = any(o.status in ("ok", "changed", "failed") for o in done)
            message = " ".join(unreachable.message.split())
            # Lost after tasks had run: they may have changed the host, so never retried.
            error = ErrorKind.CONNECTION_LOST if ran else _classify_unreachable(message)
            results[host.name] = CommandResult(
                host.name,
                "ansible play",
                None,
                stdout,
                "",
                min(stamps),
                max(stamps),
                error,
                _explain(error, message, host.name),
            )
        elif status != "successful" and len(done) < tasks:
            results[host.name] = CommandResult(
                host.name,
                "ansible play",
                None,
                stdout,
                "",
                min(stamps),
                max(stamps),
                ErrorKind.INTERRUPTED if status == "canceled" else ErrorKind.TIMEOUT,
                f"the ansible run ended ({status}) after {len(done)} of {tasks} tasks on "
                "this host: outcome unknown",
            )
        else:
            results[host.name] = CommandResult(
                host.name,
                "ansible play",
                2 if failed else 0,
                stdout,
                "",
                min(stamps),
                max(stamps),
                ErrorKind.COMMAND_FAILED if failed else None,
                f"{failed.task}: {failed.message}" if failed else "",
            )
    return results


class _Unsafe(str):
    """Text Ansible must use as it is, never render as a template."""


class _PlayDumper(yaml.SafeDumper):
    """Writes :class:`_Unsafe` text with Ansible's ``!unsafe`` tag."""


_PlayDumper.add_representer(
    _Unsafe, lambda dumper, text: dumper.represent_scalar("!unsafe", str(text))
)


_TEMPLATE_MARKS = ("{{", "{%", "{#")


def _unsafe(value: Any) -> Any:
    """Every text inside ``value`` that Ansible could read as a template marked unsafe
    (mapping keys are module and argument names, written by mspauto). Only such text:
    Ansible re-reads an ``!unsafe`` scalar as if unquoted, so ``!unsafe 'true'`` would
    become a boolean and ``!unsafe '0600'`` a number."""
    if isinstance(value, str):
        return _Unsafe(value) if any(mark in value for mark in _TEMPLATE_MARKS) else value
    if isinstance(value, Mapping):
        return {key: _unsafe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_unsafe(item) for item in value]
    return value


def _ssh_option(name: str, path: Path) -> str:
    """``NAME="PATH"`` for ``ssh -o``; a path OpenSSH could not read as one quoted value
    is refused (it would otherwise become more options)."""
    text = str(path)
    if any(c in text for c in '"\n\r\\'):
        raise _Config(f"{name}: the path {text!r} holds a quote, backslash or line break")
    return f'{name}="{text}"'


def _play_yaml(tasks: Sequence[Mapping[str, Any]], *, become: bool) -> str:
    """The play as YAML in which data is never code: every value of every task (its
    name and its module's arguments, which carry values from policies and packs) is
    ``!unsafe``, so Ansible never templates it on the control node; only ``when`` stays
    an expression, and it is built by mspauto from validated host names."""
    marked = [
        {key: (value if key == "when" else _unsafe(value)) for key, value in task.items()}
        for task in tasks
    ]
    play = [{"hosts": "all", "gather_facts": False, "become": become, "tasks": marked}]
    return yaml.dump(play, Dumper=_PlayDumper, sort_keys=False)


def _close_connections(sockets: Path) -> None:
    """Stop the run's shared SSH connections now instead of when they idle out."""
    for socket_path in sockets.iterdir():
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                ["ssh", "-S", str(socket_path), "-O", "exit", "mspauto-run"],
                capture_output=True,
                timeout=5,
                check=False,
            )
    shutil.rmtree(sockets, ignore_errors=True)


def _by_run(hosts: list[Host], accesses: dict[str, _Access]) -> list[list[Host]]:
    """Hosts grouped so each Ansible run reaches one kind of connection and answers
    each password prompt with one password."""
    groups: dict[tuple[str, str | None, str | None], list[Host]] = {}
    for host in hosts:
        groups.setdefault(accesses[host.name].run_key, []).append(host)
    return list(groups.values())


def _task_outcomes(hosts: list[Host], events: list[dict[str, Any]]) -> dict[str, list[TaskOutcome]]:
    statuses = {
        "runner_on_ok": "ok",
        "runner_on_failed": "failed",
        "runner_on_skipped": "skipped",
        "runner_on_unreachable": "unreachable",
    }
    outcomes: dict[str, list[TaskOutcome]] = {host.name: [] for host in hosts}
    for event in events:
        data = event.get("event_data", {})
        status = statuses.get(str(event.get("event")))
        if status is None or data.get("host") not in outcomes:
            continue
        res = data.get("res", {})
        if status == "ok" and res.get("changed"):
            status = "changed"
        diff = res.get("diff") or []
        text = "".join(
            f"{d.get('before_header', '')}\n- {d.get('before', '')}\n+ {d.get('after', '')}\n"
            for d in (diff if isinstance(diff, list) else [diff])
            if isinstance(d, dict)
        )
        message = str(res.get("msg", ""))
        if status == "failed" and res.get("rc") not in (None, 0):
            # A command's "non-zero return code" says nothing; its last error line does.
            lines = [line for line in str(res.get("stderr", "")).splitlines() if line.strip()]
            if lines:
                message = f"{message} (rc {res['rc']}): {lines[-1].strip()}"
        updates = res.get("updates")
        if status == "failed" and isinstance(updates, dict):
            # win_updates: each failed update with Windows Update's reason comes first.
            failures = [
                f"KB{(u.get('kb') or ['?'])[0]}: {u['failure_msg']}"
                for u in updates.values()
                if isinstance(u, dict) and u.get("failure_msg")
            ]
            message = "; ".join([*failures, message])
        outcomes[data["host"]].append(
            TaskOutcome(str(data.get("task", "")), status, message[:300], text)
        )
    return outcomes


def _collect_into(events: list[dict[str, Any]]) -> Callable[[dict[str, Any]], bool]:
    """An event handler that keeps events in memory and tells runner not to save them."""

    def collect(event: dict[str, Any]) -> bool:
        events.append(event)
        return False

    return collect


class _Config(Exception):
    """A host cannot be run through Ansible as configured."""


_KINDS = (
    (
        re.compile(
            r"REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed.*"
            r"(changed|mismatch)",
            re.S,
        ),
        ErrorKind.HOST_KEY_MISMATCH,
    ),
    (
        re.compile(r"No \S+ host key is known|Host key verification failed"),
        ErrorKind.HOST_KEY_UNKNOWN,
    ),
    (re.compile(r"Permission denied"), ErrorKind.AUTH_FAILED),
    (re.compile(r"banner exchange|timed out", re.I), ErrorKind.TIMEOUT),
)


def _classify_unreachable(message: str) -> ErrorKind:
    for pattern, kind in _KINDS:
        if pattern.search(message):
            return kind
    return ErrorKind.UNREACHABLE


def _explain(error: ErrorKind, message: str, host: str) -> str:
    """One readable line from Ansible's message (which carries OpenSSH's banner art)."""
    if error is ErrorKind.HOST_KEY_MISMATCH:
        return (
            f"host key changed (OpenSSH: REMOTE HOST IDENTIFICATION HAS CHANGED); if the "
            f"change is expected, 'mspauto hosts trust {host} --replace'"
        )
    if error is ErrorKind.HOST_KEY_UNKNOWN:
        return f"no key recorded in known_hosts; check it, then 'mspauto hosts trust {host}'"
    detail = message.split("via ssh: ", 1)[-1]
    return detail[:300]


def _harvest(
    hosts: list[Host], command: str, events: list[dict[str, Any]], status: str
) -> dict[str, CommandResult]:
    started: dict[str, datetime] = {}
    results: dict[str, CommandResult] = {}
    for event in events:
        data = event.get("event_data", {})
        name = data.get("host")
        if not name:
            continue
        when = datetime.fromisoformat(event.get("created", utcnow().isoformat()))
        kind = event.get("event")
        if kind == "runner_on_start":
            started[name] = when
            continue
        res = data.get("res", {})
        begin = started.get(name, when)
        stdout, stderr = str(res.get("stdout", "")), str(res.get("stderr", ""))
        if kind == "runner_on_ok":
            results[name] = CommandResult(
                name, command, int(res.get("rc", 0)), stdout, stderr, begin, when
            )
        elif kind == "runner_on_failed":
            rc = res.get("rc")
            message = (stderr.strip().splitlines() or [str(res.get("msg", "failed"))])[-1]
            timed_out = "timed out" in str(res.get("msg", "")).lower()
            results[name] = CommandResult(
                name,
                command,
                rc if isinstance(rc, int) else None,
                stdout,
                stderr,
                begin,
                when,
                ErrorKind.TIMEOUT if timed_out else ErrorKind.COMMAND_FAILED,
                message[:200],
            )
        elif kind == "runner_on_unreachable":
            message = " ".join(str(res.get("msg", "unreachable")).split())
            error = _classify_unreachable(message)
            results[name] = CommandResult.failure(
                name, command, error, _explain(error, message, name), started=begin
            )
    for host in hosts:
        if host.name not in results:
            reason = (
                "the ansible run was stopped while this host was in it: outcome unknown"
                if status == "canceled"
                else f"ansible reported nothing for this host (run {status})"
            )
            results[host.name] = CommandResult.failure(
                host.name,
                command,
                ErrorKind.INTERRUPTED if status == "canceled" else ErrorKind.TIMEOUT,
                reason,
            )
    return results
