"""One lab host: its root filesystem, the state planted in it, and its sshd.

A host's writable layer lives on its own small tmpfs, so ``df /`` inside the host shows
a disk that can really fill up, and removing the host frees everything at once. The
host's sshd runs as PID 1 of new mount, PID and UTS namespaces, after ``pivot_root``
into the host's tree, so processes in it see only their own filesystem and processes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mspauto.lab.plan import (
    BORG_PASSPHRASE_FILE,
    BORG_REPOSITORY,
    RESTIC_PASSWORD_FILE,
    RESTIC_REPOSITORY,
    HostPlan,
)
from mspauto.lab.rpm import RPM_REPOSITORIES
from mspauto.lab.system import (
    LabError,
    alive,
    children_of,
    kill_and_wait,
    mount,
    run,
    send_signal,
)

__all__ = ["LabHost"]

HOST_DISK = "256m"
FILL_FILE = "var/tmp/lab-disk-filler"

# Runs inside the new namespaces: make the host's tree the root, give it fresh /proc,
# a minimal /dev and its own /run, then become its sshd.
_START_SCRIPT = r"""
set -e
root="$1"; name="$2"; address="$3"
mount --make-rprivate /
mount -t tmpfs -o mode=0755,size=16m lab-run "$root/run"
cd "$root"
mkdir -p .lab-oldroot
pivot_root . .lab-oldroot
cd /
mount -t proc proc /proc
mount -t tmpfs -o mode=0755,size=1m lab-dev /dev
for device in null zero full random urandom tty; do
    : > "/dev/$device"
    mount --bind "/.lab-oldroot/dev/$device" "/dev/$device"
done
mkdir /dev/pts /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts /dev/pts
ln -s pts/ptmx /dev/ptmx
ln -s /proc/self/fd /dev/fd
umount -l /.lab-oldroot
rmdir /.lab-oldroot
hostname "$name"
mkdir -p /run/sshd
# Kernel settings are the machine's, shared by every host: read-only in here.
mount --bind /proc/sys /proc/sys
mount -o remount,bind,ro /proc/sys
# No process in the host, root included, may ever hold the capabilities in $4: it
# cannot touch the machine's firewall, mounts, kernel, clock or modules.
exec setpriv --bounding-set "$4" /usr/sbin/sshd -D -e -o "ListenAddress=$address"
"""

# Capabilities a lab host never gets. CAP_SYS_CHROOT, CAP_SETUID and the others that sshd
# and sudo need stay, and so does CAP_AUDIT_CONTROL, which pam_loginuid needs.
DROPPED_CAPABILITIES = ",".join(
    f"-{cap}"
    for cap in (
        "net_admin",
        "sys_admin",
        "sys_module",
        "sys_time",
        "sys_boot",
        "sys_rawio",
        "sys_pacct",
        "sys_resource",
        "mac_admin",
        "mac_override",
        "syslog",
        "bpf",
        "perfmon",
        "wake_alarm",
        "block_suspend",
        "mknod",
        "linux_immutable",
    )
)


@dataclass(frozen=True)
class _BaselineState:
    """Security settings planted on a host (docs/lab.md lists them side by side)."""

    sshd: str
    modes: dict[str, int]
    sysctl: str
    login_defs: dict[str, str]
    settings: dict[str, dict[str, str]]
    """File -> {setting prefix: full line}, set in place or appended."""
    auto_upgrades: int


_BASELINE = {
    "compliant": _BaselineState(
        sshd="PermitRootLogin no\nMaxAuthTries 4\nPermitEmptyPasswords no\n"
        "X11Forwarding no\nLoginGraceTime 60\nClientAliveInterval 300\nIgnoreRhosts yes\n"
        "HostbasedAuthentication no\nLogLevel INFO\nBanner /etc/issue.net\nMaxSessions 10\n"
        "ClientAliveCountMax 3\nPermitUserEnvironment no\nAllowTcpForwarding no\n"
        "GSSAPIAuthentication no\n",
        modes={
            "/etc/shadow": 0o640,
            "/etc/gshadow": 0o640,
            "/etc/passwd": 0o644,
            "/etc/group": 0o644,
            "/etc/crontab": 0o600,
            "/etc/cron.d": 0o700,
            "/etc/ssh/sshd_config": 0o600,
            "/etc/issue.net": 0o644,
        },
        sysctl="kernel.randomize_va_space = 2\nfs.suid_dumpable = 0\nnet.ipv4.ip_forward = 0\n"
        "net.ipv4.conf.all.accept_redirects = 0\nnet.ipv4.conf.all.send_redirects = 0\n"
        "net.ipv4.tcp_syncookies = 1\nnet.ipv4.conf.all.log_martians = 1\n"
        "net.ipv4.icmp_echo_ignore_broadcasts = 1\nnet.ipv4.conf.all.rp_filter = 1\n"
        "net.ipv6.conf.all.accept_ra = 0\n",
        login_defs={
            "PASS_MAX_DAYS": "365",
            "PASS_MIN_DAYS": "1",
            "PASS_WARN_AGE": "7",
            "UMASK": "027",
        },
        settings={
            "/etc/ufw/ufw.conf": {"ENABLED=": "ENABLED=yes"},
            "/etc/default/ufw": {"DEFAULT_INPUT_POLICY=": 'DEFAULT_INPUT_POLICY="DROP"'},
            "/etc/security/pwquality.conf": {"minlen": "minlen = 14"},
            "/etc/security/faillock.conf": {"deny": "deny = 5"},
        },
        auto_upgrades=1,
    ),
    "drifted": _BaselineState(
        # Not PermitEmptyPasswords: it makes sshd try an empty password through PAM on
        # every connection, and PAM's failure delay then slows every login by seconds.
        sshd="PermitRootLogin yes\nMaxAuthTries 10\nIgnoreRhosts no\nX11Forwarding yes\n"
        "LoginGraceTime 600\nClientAliveInterval 0\nHostbasedAuthentication yes\n"
        "LogLevel QUIET\nBanner none\nMaxSessions 20\nClientAliveCountMax 10\n"
        "PermitUserEnvironment yes\nAllowTcpForwarding yes\nGSSAPIAuthentication yes\n",
        modes={
            "/etc/shadow": 0o644,
            "/etc/gshadow": 0o644,
            "/etc/passwd": 0o666,
            "/etc/group": 0o666,
            "/etc/crontab": 0o644,
            "/etc/cron.d": 0o755,
            "/etc/ssh/sshd_config": 0o644,
            "/etc/issue.net": 0o666,
        },
        sysctl="kernel.randomize_va_space = 0\nfs.suid_dumpable = 2\nnet.ipv4.ip_forward = 1\n"
        "net.ipv4.conf.all.accept_redirects = 1\nnet.ipv4.conf.all.send_redirects = 1\n"
        "net.ipv4.tcp_syncookies = 0\nnet.ipv4.conf.all.log_martians = 0\n"
        "net.ipv4.icmp_echo_ignore_broadcasts = 0\nnet.ipv4.conf.all.rp_filter = 0\n"
        "net.ipv6.conf.all.accept_ra = 1\n",
        login_defs={
            "PASS_MAX_DAYS": "99999",
            "PASS_MIN_DAYS": "0",
            "PASS_WARN_AGE": "0",
            "UMASK": "022",
        },
        settings={
            "/etc/ufw/ufw.conf": {"ENABLED=": "ENABLED=no"},
            "/etc/default/ufw": {"DEFAULT_INPUT_POLICY=": 'DEFAULT_INPUT_POLICY="ACCEPT"'},
            "/etc/security/pwquality.conf": {"minlen": "minlen = 8"},
            "/etc/security/faillock.conf": {"deny": "deny = 10"},
        },
        auto_upgrades=0,
    ),
}


# Debian's common-auth with pam_faillock around pam_unix (pam_faillock(8), EXAMPLES).
_COMMON_AUTH = """\
# mspauto lab: failed logins are counted and lock the account (see faillock.conf)
auth\trequired\t\t\tpam_faillock.so preauth
auth\t[success=2 default=ignore]\tpam_unix.so nullok
auth\t[default=die]\t\t\tpam_faillock.so authfail
auth\trequisite\t\t\tpam_deny.so
auth\trequired\t\t\tpam_permit.so
"""


class LabHost:
    """A lab host on disk (``directory``) and, while it runs, its processes."""

    def __init__(self, plan: HostPlan, directory: Path, log: Path) -> None:
        self.plan = plan
        self.directory = directory
        self.root = directory / "root"
        self.log = log

    # --- building ---------------------------------------------------------------

    def create(self, base_rootfs: Path) -> None:
        """Mount the host's disk and its overlay root filesystem."""
        self.directory.mkdir(parents=True, exist_ok=True)
        mount("-t", "tmpfs", "-o", f"size={HOST_DISK},mode=0700", "lab-disk", self.directory)
        for part in ("upper", "work", "root"):
            (self.directory / part).mkdir()
        mount(
            "-t",
            "overlay",
            "overlay",
            "-o",
            f"lowerdir={base_rootfs},upperdir={self.directory / 'upper'},"
            f"workdir={self.directory / 'work'}",
            self.root,
        )

    def path(self, inside: str) -> Path:
        """A path of the host's filesystem, seen from the control node."""
        return self.root / inside.lstrip("/")

    def write(self, inside: str, text: str, mode: int = 0o644, owner: int = 0) -> None:
        """Write a file into the host."""
        target = self.path(inside)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)
        os.chown(target, owner, owner)

    def set_identity(self, repo_url: str | None) -> None:
        """Host name, name resolution and the package sources: the lab's repository
        only (its apt repository, or on a dnf host its dnf repositories); none at all
        when the lab serves none."""
        self.write("/etc/hostname", self.plan.name + "\n")
        self.write("/etc/hosts", f"127.0.0.1 localhost\n{self.plan.address} {self.plan.name}\n")
        if repo_url is None:
            return
        if self.plan.platform == "rhel":
            # Unsigned: the lab's RPMs and repositories carry no signature (see docs/lab.md).
            self.write(
                "/etc/yum.repos.d/lab.repo",
                "".join(
                    f"[{repository}]\n"
                    f"name=mspauto lab {repository.removeprefix('lab-')}\n"
                    f"baseurl={repo_url}{repository}/\n"
                    "enabled=1\n"
                    "gpgcheck=0\n"
                    "repo_gpgcheck=0\n"
                    "metadata_expire=1h\n\n"
                    for repository in RPM_REPOSITORIES
                ),
            )
            return
        self.write(
            "/etc/apt/sources.list.d/lab.sources",
            "Types: deb\n"
            f"URIs: {repo_url}\n"
            "Suites: bookworm bookworm-security\n"
            "Components: main\n"
            "Trusted: yes\n",
        )

    def new_host_key(self) -> str:
        """Give the host a fresh ed25519 host key; returns its public key line."""
        key = self.path("/etc/ssh/ssh_host_ed25519_key")
        for old in (key, key.with_name(key.name + ".pub")):
            old.unlink(missing_ok=True)
        run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                f"root@{self.plan.name}",
                "-f",
                key,
            ]
        )
        return key.with_name(key.name + ".pub").read_text().strip()

    def authorize(self, public_key: str, user_uid: int) -> None:
        """Let ``public_key`` log in as the lab user (and as root, where sshd allows it)."""
        for home, uid in (("/home/mspauto", user_uid), ("/root", 0)):
            ssh_dir = self.path(f"{home}/.ssh")
            ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chown(ssh_dir, uid, uid)
            self.write(f"{home}/.ssh/authorized_keys", public_key + "\n", 0o600, uid)

    def plant_baseline(self) -> None:
        """Write the compliant or drifted security settings the plan asks for (nothing
        on a stock host: it stays as Debian installed it)."""
        if self.plan.baseline == "stock":
            return
        state = _BASELINE[self.plan.baseline]
        self.write(
            "/etc/ssh/sshd_config.d/50-lab-baseline.conf",
            f"# mspauto lab: {self.plan.baseline} baseline\n{state.sshd}",
        )
        self.write("/etc/issue.net", "Authorised use only. Activity may be monitored.\n")
        self.write("/etc/sysctl.d/60-lab-baseline.conf", state.sysctl)
        for name, value in state.login_defs.items():
            _replace_line(self.path("/etc/login.defs"), name, f"{name}\t{value}")
        for path, lines in state.settings.items():
            for prefix, line in lines.items():
                _replace_line(self.path(path), prefix, line)
        # pam_faillock in the auth stack (Debian leaves it out), so `deny` in
        # faillock.conf is what locks accounts: compliant and drifted differ in deny only.
        self.write("/etc/pam.d/common-auth", _COMMON_AUTH)
        flag = state.auto_upgrades
        self.write(
            "/etc/apt/apt.conf.d/20auto-upgrades",
            f'APT::Periodic::Update-Package-Lists "{flag}";\n'
            f'APT::Periodic::Unattended-Upgrade "{flag}";\n',
        )
        if self.plan.baseline == "drifted":
            # A second UID 0 account and an account without a password.
            with self.path("/etc/passwd").open("a") as passwd:
                passwd.write(
                    "toor:x:0:0:root:/root:/bin/bash\nlegacy:x:1999:1999::/home/legacy:/bin/sh\n"
                )
            with self.path("/etc/shadow").open("a") as shadow:
                shadow.write("toor:*:19700:0:99999:7:::\nlegacy::19700:0:99999:7:::\n")
        for path, mode in state.modes.items():  # last: appending above keeps modes
            self.path(path).chmod(mode)

    def plant_backup(self, templates: Path) -> None:
        """Copy the backup repository the plan asks for, with its password file."""
        backup = self.plan.backup
        if backup is None:
            return
        self.write(RESTIC_PASSWORD_FILE, "lab-restic-password\n", 0o600)
        self.write(BORG_PASSPHRASE_FILE, "lab-borg-passphrase\n", 0o600)
        if backup == "none":
            return
        target = RESTIC_REPOSITORY if backup.startswith("restic") else BORG_REPOSITORY
        shutil.copytree(templates / backup, self.path(target), symlinks=True)

    # --- running ----------------------------------------------------------------

    def start(self) -> int:
        """Start the host's sshd in its namespaces; returns the ``unshare`` PID."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            process = subprocess.Popen(
                [
                    "unshare",
                    "--mount",
                    "--uts",
                    "--pid",
                    "--fork",
                    "--kill-child",
                    "/bin/sh",
                    "-c",
                    _START_SCRIPT,
                    "lab-host",
                    str(self.root),
                    self.plan.name,
                    self.plan.address,
                    DROPPED_CAPABILITIES,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        return process.pid

    @staticmethod
    def init_pid(unshare_pid: int) -> int | None:
        """The host's PID 1 (its sshd), seen from the control node."""
        children = children_of(unshare_pid)
        return children[0] if children else None

    @staticmethod
    def stop(unshare_pid: int | None) -> None:
        """Stop the host's sshd; every process in its PID namespace goes with it."""
        if unshare_pid is None or not alive(unshare_pid):
            return
        init = LabHost.init_pid(unshare_pid)
        if init is not None:
            send_signal(init, signal.SIGCONT)  # a frozen host must be able to exit
            kill_and_wait([init], signal.SIGTERM)
        kill_and_wait([unshare_pid], signal.SIGKILL)

    @staticmethod
    def signal_all(unshare_pid: int, sig: int) -> None:
        """Send ``sig`` to every process of the host (to freeze or thaw it)."""
        init = LabHost.init_pid(unshare_pid)
        if init is None:
            raise LabError("the host is not running")
        namespace = os.readlink(f"/proc/{init}/ns/pid")
        if namespace == os.readlink("/proc/self/ns/pid"):
            raise LabError("refusing to signal: that process is not inside a lab host")
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                same = os.readlink(entry / "ns" / "pid") == namespace
            except OSError:
                continue
            if same:
                send_signal(int(entry.name), sig)

    def fill_disk(self) -> int:
        """Fill the host's disk; returns the bytes written."""
        stats = os.statvfs(self.root)
        size = stats.f_bavail * stats.f_frsize
        filler = self.path(FILL_FILE)
        with filler.open("ab") as handle:
            if size:
                os.posix_fallocate(handle.fileno(), 0, size)
        return size

    def free_disk(self) -> None:
        """Remove what :meth:`fill_disk` wrote."""
        self.path(FILL_FILE).unlink(missing_ok=True)


def _replace_line(path: Path, prefix: str, line: str) -> None:
    """Set the first setting line starting with ``prefix`` to ``line`` (else append it)."""
    lines = path.read_text().splitlines()
    for index, current in enumerate(lines):
        if current.startswith(prefix):
            lines[index] = line
            break
    else:
        lines.append(line)
    path.write_text("\n".join(lines) + "\n")
