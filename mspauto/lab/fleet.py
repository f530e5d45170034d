"""Bring a lab fleet up, report on it, inject faults, and take it all down again."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from mspauto.lab.backups import BORG_PASSPHRASE, RESTIC_PASSWORD, make_templates
from mspauto.lab.base import (
    LAB_USER,
    Base,
    default_cache_dir,
    ensure_base,
    ensure_dnf_base,
    ensure_stock_base,
)
from mspauto.lab.host import LabHost
from mspauto.lab.plan import (
    BACKUP_STATES,
    BORG_REPOSITORY,
    FIRST_ADDRESS,
    RESTIC_REPOSITORY,
    HostPlan,
    inventory_document,
    plan_fleet,
)
from mspauto.lab.system import (
    LabError,
    alive,
    check_can_run,
    kill_and_wait,
    mounts_under,
    run,
    unmount_all_under,
)

__all__ = ["HostStatus", "Lab", "ssh_banner"]

REPO_PORT = 8873
RPM_REPO_PORT = 8874
CONTRACT = "lab-standard"
# What `lab down` may delete inside the lab folder: only what `lab up` made.
_MADE = (
    "hosts",
    "logs",
    "keys",
    "inventory",
    "policies",
    "secrets",
    "backup-templates",
    "backup-builder",
    "lab.json",
)


@dataclass(frozen=True)
class HostStatus:
    """How one lab host is doing right now."""

    plan: HostPlan
    running: bool
    answers: bool

    def as_dict(self) -> dict[str, Any]:
        """Machine-readable form for ``--format json``."""
        return {**asdict(self.plan), "running": self.running, "answers": self.answers}


def ssh_banner(address: str, port: int = 22, timeout: float = 2.0) -> str | None:
    """The SSH banner a host sends, or ``None`` if it does not answer in time."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as connection:
            connection.settimeout(timeout)
            banner = connection.recv(256).decode(errors="replace").strip()
    except OSError:
        return None
    return banner if banner.startswith("SSH-") else None


class Lab:
    """A lab fleet living in ``directory`` (its state, keys, inventory and host disks)."""

    def __init__(self, directory: Path, cache_dir: Path | None = None) -> None:
        self.directory = directory.resolve()
        self.cache_dir = cache_dir or default_cache_dir()
        self.state_file = self.directory / "lab.json"
        self.key = self.directory / "keys" / "lab_ed25519"
        self.inventory_dir = self.directory / "inventory"

    # --- state --------------------------------------------------------------------

    def state(self) -> dict[str, Any] | None:
        """What ``lab up`` recorded, or ``None`` when no lab is up here."""
        if not self.state_file.exists():
            return None
        data: dict[str, Any] = json.loads(self.state_file.read_text())
        return data

    def _save(self, state: dict[str, Any]) -> None:
        temporary = self.state_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(state, indent=2))
        temporary.replace(self.state_file)

    def plans(self) -> list[HostPlan]:
        """The hosts of the lab that is up."""
        state = self.state()
        return [_plan(entry) for entry in state["hosts"]] if state else []

    def _running(self, entry: dict[str, Any]) -> int | None:
        """The host's ``unshare`` PID if it is alive and really ours (PIDs get reused)."""
        pid = entry.get("pid")
        if isinstance(pid, int) and alive(pid) and _is_lab_process(pid, self.directory / "hosts"):
            return pid
        return None

    def _host(self, plan: HostPlan) -> LabHost:
        return LabHost(
            plan, self.directory / "hosts" / plan.name, self.directory / "logs" / f"{plan.name}.log"
        )

    # --- up -----------------------------------------------------------------------

    def up(
        self,
        count: int,
        clients: list[str],
        *,
        faults: bool,
        first_address: str = FIRST_ADDRESS,
        stock: int = 0,
        dnf: int = 0,
        say: Callable[[str], None] = print,
    ) -> list[HostPlan]:
        """Start the fleet (reusing whatever of it is already there): ``count`` planted
        hosts, ``stock`` stock ones and ``dnf`` dnf hosts."""
        check_can_run()
        try:
            plans = plan_fleet(
                count, clients, faults=faults, first_address=first_address, stock=stock, dnf=dnf
            )
        except ValueError as exc:
            raise LabError(str(exc)) from None
        existing = self.state()
        if existing is not None:
            if [_plan(entry) for entry in existing["hosts"]] != plans:
                raise LabError(
                    f"a different lab is up in {self.directory} "
                    f"({len(existing['hosts'])} hosts); run 'mspauto lab down' first"
                )
            self._restart_missing(existing, say)
            return plans

        if self.directory.exists() and any(self.directory.iterdir()):
            raise LabError(
                f"{self.directory} is not empty and holds no lab; give an empty or "
                "new folder (lab down deletes what lab up writes there)"
            )
        # The lab base (and with it the apt repository) only when a planted host needs it.
        base = ensure_base(self.cache_dir, say) if count else None
        stock_base = ensure_stock_base(self.cache_dir, say) if stock else None
        dnf_base = ensure_dnf_base(self.cache_dir, say) if dnf else None
        self.directory.mkdir(parents=True, exist_ok=True)
        state: dict[str, Any] = {
            "version": 1,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "base": str(base.directory) if base else None,
            "stock_base": str(stock_base.directory) if stock_base else None,
            "dnf_base": str(dnf_base.directory) if dnf_base else None,
            "repo": None,
            "rpm_repo": None,
            "hosts": [{**asdict(plan), "pid": None} for plan in plans],
        }
        self._save(state)  # first, so `lab down` can clean up after a failure below
        try:
            self._build(state, {"lab": base, "stock": stock_base, "dnf": dnf_base}, plans, say)
        except BaseException:
            say("lab up failed; removing what it made")
            self.down(say=lambda _: None)
            raise
        return plans

    def _build(
        self,
        state: dict[str, Any],
        bases: dict[str, Base | None],
        plans: list[HostPlan],
        say: Callable[[str], None],
    ) -> None:
        started = time.monotonic()
        keys = self.key.parent
        keys.mkdir(parents=True, exist_ok=True)
        for key in (self.key, keys / "stranger_ed25519"):
            if not key.exists():
                run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "mspauto-lab", "-f", key])
        lab_key = self.key.with_suffix(".pub").read_text().strip()
        stranger_key = (keys / "stranger_ed25519.pub").read_text().strip()

        taken = [plan.address for plan in plans if not _port_free(plan.address, 22)]
        if taken:
            raise LabError(
                f"{taken[0]}:22 is already in use (another lab? "
                "'mspauto lab status --dir ...'); choose another --first-address"
            )
        base, dnf_base = bases["lab"], bases["dnf"]
        repo_address = str(ipaddress.IPv4Address(plans[0].address) - 1)
        if base is not None:
            state["repo"] = self._start_repository(base, repo_address)
            self._save(state)
        if dnf_base is not None:
            state["rpm_repo"] = self._start_repository(
                dnf_base, repo_address, RPM_REPO_PORT, "rpm-repository"
            )
            self._save(state)
        repo_url = state["repo"]["url"] if state["repo"] else None
        rpm_repo_url = state["rpm_repo"]["url"] if state["rpm_repo"] else None
        templates = self.directory / "backup-templates"

        def rootfs(plan: HostPlan) -> Path:
            kind = "dnf" if plan.platform == "rhel" else plan.baseline
            chosen = bases.get(kind, base)
            assert chosen is not None  # up() built every base its plans need
            return chosen.rootfs

        def prepare(plan: HostPlan) -> str:
            host = self._host(plan)
            host.create(rootfs(plan))
            host.set_identity(rpm_repo_url if plan.platform == "rhel" else repo_url)
            known = host.new_host_key()
            if plan.fault == "changed-key":
                host.new_host_key()  # the host now presents a key nobody recorded
            host.authorize(
                stranger_key if plan.fault == "rejects-key" else lab_key,
                _uid_of(rootfs(plan), LAB_USER),
            )
            host.plant_baseline()
            return f"{plan.address} {known}"

        def finish(plan: HostPlan) -> int | None:
            host = self._host(plan)
            host.plant_backup(templates)
            return None if plan.fault == "sshd-down" else host.start()

        # Backup repositories take seconds of key derivation: make them meanwhile.
        with ThreadPoolExecutor(max_workers=1) as background:
            repositories = (
                background.submit(
                    make_templates, base.rootfs, self.directory / "backup-builder", templates
                )
                if base is not None
                else None
            )
            with ThreadPoolExecutor(max_workers=8) as pool:
                known_lines = list(pool.map(prepare, plans))
                if repositories is not None:
                    repositories.result()
                pids = list(pool.map(finish, plans))
        for entry, pid in zip(state["hosts"], pids, strict=True):
            entry["pid"] = pid
        self._save(state)
        self._write_project(plans, known_lines)
        self._wait_until_answering(state)
        served = [url for url in (repo_url, rpm_repo_url) if url]
        say(
            f"lab up: {len(plans)} hosts in {time.monotonic() - started:.1f} s "
            f"(repository {', '.join(served) or 'none: stock hosts only'})"
        )

    def _start_repository(
        self, base: Base, address: str, preferred_port: int = REPO_PORT, name: str = "repository"
    ) -> dict[str, Any]:
        """Serve ``base``'s repository over HTTP on ``address`` (the apt one, or the
        dnf ones of the dnf base), logging to ``logs/<name>.log``."""
        port = preferred_port if _port_free(address, preferred_port) else _free_port(address)
        log = self.directory / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as output:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "http.server",
                    str(port),
                    "--bind",
                    address,
                    "--directory",
                    str(base.repository),
                ],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                start_new_session=True,
            )
        url = f"http://{address}:{port}/"
        deadline = time.monotonic() + 10
        while not _port_open(address, port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise LabError(f"the lab's repository did not start on {address}:{port}")
            time.sleep(0.05)
        return {"pid": process.pid, "url": url, "directory": str(base.repository)}

    def _write_project(self, plans: list[HostPlan], known_lines: list[str]) -> None:
        """A project the rest of mspauto can use: inventory, known_hosts, a contract, a
        baseline and a patch policy."""
        known_hosts = self.inventory_dir / "known_hosts"
        known_hosts.mkdir(parents=True, exist_ok=True)
        clients = list(dict.fromkeys(plan.client for plan in plans))
        for client in clients:
            # Relative to the project (the lab folder): a key must be inside the project.
            key = self.key.relative_to(self.directory).as_posix()
            document = inventory_document(client, plans, key, CONTRACT)
            (self.inventory_dir / f"{client}.yaml").write_text(
                "# Written by 'mspauto lab up'; 'mspauto lab down' removes it.\n"
                + yaml.safe_dump(document, sort_keys=False)
            )
            lines = [
                line for plan, line in zip(plans, known_lines, strict=True) if plan.client == client
            ]
            (known_hosts / client).write_text("\n".join(lines) + "\n")
        policies = self.directory / "policies"
        policies.mkdir(exist_ok=True)
        (policies / "contract.yaml").write_text(
            f"# The contract of the lab's clients.\nkind: contract\nname: {CONTRACT}\n"
        )
        (policies / "baseline.yaml").write_text(
            "# Audit every lab host against mspauto's Debian CIS pack.\n"
            "kind: baseline\nname: lab-cis\ntargets: {clients: ['*']}\n"
            "schedule: {cron: '0 5 * * *', timezone: client}\npacks: [debian-cis]\n"
        )
        (policies / "patch.yaml").write_text(
            "# Patch every lab host: security updates at once, the rest when a person says\n"
            "# so; a reboot when an update asks for one (docs/patching.md).\n"
            "kind: patch\nname: lab-patch\ntargets: {clients: ['*']}\n"
            "schedule: {cron: '0 1 * * sat', timezone: client}\n"
            "scan_schedule: {cron: '0 6 * * *', timezone: client}\n"
            "approvals:\n"
            "  - match: {classifications: [security]}\n    action: auto\n"
            "  - action: manual\n"
            "reboot: {policy: if-required}\n"
        )
        self._write_backup_policies(policies, plans)

    def _write_backup_policies(self, policies: Path, plans: list[HostPlan]) -> None:
        """Backup policies for the planted repositories, with their passwords kept in
        the project (mode 0600), as a control node keeps them. Only for tools some host
        has: a policy that targets no host is a validation error."""
        secrets = self.directory / "secrets"
        secrets.mkdir(mode=0o700, exist_ok=True)
        for name, value in (("restic.pass", RESTIC_PASSWORD), ("borg.pass", BORG_PASSPHRASE)):
            (secrets / name).write_text(value + "\n")
            (secrets / name).chmod(0o600)
        planted = {plan.backup for plan in plans if plan.backup is not None}
        restic_tags = [f"backup-{s}" for s in BACKUP_STATES if not s.startswith("borg")]
        borg_tags = [f"backup-{s}" for s in BACKUP_STATES if s.startswith("borg")]
        documents = [
            {
                "kind": "backup",
                "name": f"lab-{tool}",
                "targets": {"tags": tags},
                "schedule": {"cron": "0 7 * * *", "timezone": "client"},
                "rpo": "24h",
                "restore_test": {
                    "every": "90d",
                    "sample_paths": ["/etc/debian_version", "/etc/hostname", "/etc/ssh"],
                },
                "jobs": [
                    {
                        "name": "etc",
                        "provider": tool,
                        "repository": repository,
                        "password": {"file": f"secrets/{tool}.pass"},
                    }
                ],
            }
            for tool, tags, repository in (
                ("restic", restic_tags, RESTIC_REPOSITORY),
                ("borg", borg_tags, BORG_REPOSITORY),
            )
            if planted & {tag.removeprefix("backup-") for tag in tags}
        ]
        if not documents:
            (policies / "backup.yaml").unlink(missing_ok=True)
            return
        (policies / "backup.yaml").write_text(
            "# Check each lab host's backup of /etc: restic hosts and borg hosts\n"
            "# (docs/backups.md).\n" + yaml.safe_dump_all(documents, sort_keys=False)
        )

    def _wait_until_answering(self, state: dict[str, Any], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        waiting = [entry for entry in state["hosts"] if entry["pid"] is not None]
        while waiting:
            failed = [e for e in waiting if not alive(e["pid"])]  # before: another may answer
            waiting = [e for e in waiting if ssh_banner(e["address"], timeout=1) is None]
            if failed or (waiting and time.monotonic() > deadline):
                entry = (failed or waiting)[0]
                log = self.directory / "logs" / f"{entry['name']}.log"
                last = log.read_text().strip().splitlines()[-1:] if log.exists() else []
                raise LabError(
                    f"{entry['name']} ({entry['address']}) did not start sshd"
                    + (f": {last[0]}" if last else "")
                )
            if waiting:
                time.sleep(0.1)

    def _restart_missing(self, state: dict[str, Any], say: Callable[[str], None]) -> None:
        for key, base, name in (
            ("repo", "base", "repository"),
            ("rpm_repo", "dnf_base", "rpm-repository"),
        ):
            repo = state.get(key)
            if repo is not None and not alive(repo["pid"]):
                # On the same port when it is free, so the hosts' sources stay right.
                address, port = repo["url"].split("/")[2].split(":")
                state[key] = self._start_repository(
                    Base(Path(state[base])), address, int(port), name
                )
        restarted = 0
        for entry in state["hosts"]:
            if entry["fault"] == "sshd-down" or self._running(entry):
                continue
            entry["pid"] = self._host(_plan(entry)).start()
            restarted += 1
        self._save(state)
        self._wait_until_answering(state)
        say(
            f"lab already up in {self.directory}: {len(state['hosts'])} hosts"
            + (f", restarted {restarted}" if restarted else "")
        )

    # --- down ---------------------------------------------------------------------

    def down(self, say: Callable[[str], None] = print) -> None:
        """Stop every process, unmount every mount and delete every file the lab made."""
        state = self.state()
        if state is None:
            # Without our state file this folder is not a lab: touch nothing in it.
            say(f"no lab in {self.directory}")
            return
        for entry in state["hosts"]:
            LabHost.stop(self._running(entry))
        for repo in (state.get("repo"), state.get("rpm_repo")):
            if repo and _is_lab_process(repo["pid"], Path(repo["directory"])):
                kill_and_wait([repo["pid"]], signal.SIGTERM)
        # Whatever the state file missed (a crash mid-way): anything started for this lab.
        kill_and_wait(_processes_mentioning(self.directory / "hosts"), signal.SIGKILL)
        unmount_all_under(self.directory)
        if mounts_under(self.directory):
            raise LabError(f"could not unmount everything under {self.directory}")
        for name in _MADE:
            path = self.directory / name
            if path.is_dir():
                _remove_tree(path)
            elif path.exists():
                path.unlink()
        if self.directory.exists() and not any(self.directory.iterdir()):
            self.directory.rmdir()
        say(f"lab down: removed {self.directory}")

    # --- status and faults ----------------------------------------------------------

    def status(self) -> list[HostStatus]:
        """Each host: is its sshd running, and does it answer on port 22?"""
        state = self.state()
        if state is None:
            return []
        statuses = []
        for entry in state["hosts"]:
            running = self._running(entry) is not None
            answers = running and ssh_banner(entry["address"], timeout=1) is not None
            statuses.append(HostStatus(_plan(entry), running, answers))
        return statuses

    def _entry(self, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
        state = self.state()
        if state is None:
            raise LabError(f"no lab is up in {self.directory}")
        for entry in state["hosts"]:
            if entry["name"] == name:
                return state, entry
        names = ", ".join(e["name"] for e in state["hosts"])
        raise LabError(f"no lab host named '{name}' (hosts: {names})")

    def stop_host(self, name: str) -> None:
        """Stop one host's sshd (and everything running in the host)."""
        state, entry = self._entry(name)
        LabHost.stop(self._running(entry))
        entry["pid"] = None
        self._save(state)

    def start_host(self, name: str) -> None:
        """Start one host's sshd again."""
        state, entry = self._entry(name)
        if self._running(entry):
            return
        entry["pid"] = self._host(_plan(entry)).start()
        self._save(state)
        self._wait_until_answering({"hosts": [entry]})

    def freeze_host(self, name: str) -> None:
        """Pause every process of a host: connections open but nothing answers."""
        self._signal_host(name, signal.SIGSTOP)

    def thaw_host(self, name: str) -> None:
        """Resume a frozen host."""
        self._signal_host(name, signal.SIGCONT)

    def _signal_host(self, name: str, sig: int) -> None:
        _, entry = self._entry(name)
        pid = self._running(entry)
        if pid is None:
            raise LabError(f"{name} is not running")
        LabHost.signal_all(pid, sig)

    def fill_disk(self, name: str) -> int:
        """Fill a host's disk; returns the bytes written."""
        _, entry = self._entry(name)
        return self._host(_plan(entry)).fill_disk()

    def free_disk(self, name: str) -> None:
        """Undo :meth:`fill_disk`."""
        _, entry = self._entry(name)
        self._host(_plan(entry)).free_disk()


def _plan(entry: dict[str, Any]) -> HostPlan:
    return HostPlan(**{k: v for k, v in entry.items() if k != "pid"})


def _uid_of(rootfs: Path, user: str) -> int:
    for line in (rootfs / "etc" / "passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2])
    raise LabError(f"the base image has no user {user}; remove the lab cache to rebuild it")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _is_lab_process(pid: int, directory: Path) -> bool:
    """Guard against PID reuse: only signal a PID whose command line names our folder."""
    return str(directory) in _cmdline(pid)


def _processes_mentioning(path: Path) -> list[int]:
    me = os.getpid()
    return [
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and int(p.name) != me and str(path) in _cmdline(int(p.name))
    ]


def _remove_tree(path: Path) -> None:
    """Delete a folder, refusing to cross into a mount (never delete a host's base)."""
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            if os.path.ismount(child):
                raise LabError(f"{child} is still mounted; not deleting through it")
            _remove_tree(child)
        else:
            child.unlink()
    path.rmdir()


def _port_open(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def _port_free(address: str, port: int) -> bool:
    with socket.socket() as probe:
        # As the server will: a port in TIME_WAIT from a previous lab is free to reuse.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError:
            return False
    return True


def _free_port(address: str) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        port: int = probe.getsockname()[1]
        return port
