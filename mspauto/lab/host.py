"""One lab host: its root filesystem, the state planted in it, and its sshd.

A host's writable layer lives on its own small tmpfs, so ``df /`` inside the host shows
a disk that can really fill up, and removing the host frees everything at once. The
host runs in new mount, PID and UTS namespaces, after ``pivot_root`` into the host's
tree, so processes in it see only their own filesystem and processes. PID 1 of those
namespaces is a small supervisor that "boots" the host: the host's sshd runs as PID 1
of a PID and mount namespace of its own under the supervisor, made anew at each boot,
so the host can be rebooted (``shutdown -r``) as Ansible's reboot module reboots a
Linux host: a new boot id, a fresh sshd, the same address, host keys and disk.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mspauto.lab.backups import BORG_PASSPHRASE, RESTIC_PASSWORD
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

__all__ = ["POWER_COMMAND", "LabHost"]

HOST_DISK = "256m"
FILL_FILE = "var/tmp/lab-disk-filler"

# Runs inside the new mount, UTS and PID namespaces made for the host: make the host's
# tree the root, give it a minimal /dev and its own /run, then stay as the host's
# supervisor. The supervisor (PID 1 of these namespaces) "boots" the host: it runs the
# host in PID and mount namespaces of its own under it (_BOOT_SCRIPT), where sshd is
# PID 1, and boots it again when the host's `shutdown -r` (_POWER_COMMAND) ends that
# sshd. Processes in the host never see the supervisor, so cannot signal or trace it.
_START_SCRIPT = r"""
trap 'exit 0' TERM  # LabHost.stop: PID 1 exits, and the kernel kills the whole host
set -e
root="$1"; name="$2"; address="$3"; caps="$4"; boot_id="$5"; boot="$6"
mount --make-rprivate /
mount -t tmpfs -o mode=0755,size=16m lab-run "$root/run"
[ -e "$boot_id" ] || { cat /proc/sys/kernel/random/uuid > "$boot_id"; chmod 0444 "$boot_id"; }
cd "$root"
mkdir -p .lab-oldroot
pivot_root . .lab-oldroot
cd /
mount -t proc proc /proc
# The host's boot id: a file on its disk, outside its tree, over the kernel's (which is
# the machine's: the same in every host, and it never changes).
mount --bind "/.lab-oldroot$boot_id" /proc/sys/kernel/random/boot_id
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
set +e
request=/run/lab-shutdown  # what the host's shutdown asked for (see _POWER_COMMAND)
while :; do
    # What a boot starts afresh: /run and /dev/shm are tmpfs on a real host, and
    # Debian 12 empties /tmp at boot (tmpfiles.d/tmp.conf); /var/tmp and the rest stay.
    find /run /tmp /dev/shm -xdev -mindepth 1 -delete
    mkdir -m 0755 /run/sshd
    cat /proc/sys/kernel/random/uuid 1<> /proc/sys/kernel/random/boot_id
    unshare --pid --mount --fork --kill-child /bin/sh -c "$boot" lab-boot "$address" "$caps" &
    wait $!
    status=$?
    what=$(cat "$request" 2>/dev/null)
    case $what in
        reboot) echo "lab: $name is rebooting" >&2 ;;
        poweroff) echo "lab: $name powered off" >&2; exit 0 ;;
        *) exit "$status" ;;  # sshd ended on its own (or never started): the host stops
    esac
done
"""

# One boot of the host, as PID 1 of its own PID and mount namespaces: a /proc of its
# own (with the host's boot id and the kernel's settings read-only, as they are the
# machine's, shared by every host), then its sshd.
_BOOT_SCRIPT = r"""
set -e
address="$1"; caps="$2"
mkdir /run/.lab-proc
mount -t proc proc /run/.lab-proc
mount --bind /run/.lab-proc/sys /run/.lab-proc/sys
mount -o remount,bind,ro /run/.lab-proc/sys
mount --bind /proc/sys/kernel/random/boot_id /run/.lab-proc/sys/kernel/random/boot_id
mount -o remount,bind,ro /run/.lab-proc/sys/kernel/random/boot_id
umount -l /proc
mount --move /run/.lab-proc /proc
rmdir /run/.lab-proc
# dnf needs-restarting takes the time of /proc/1 as the boot time: look it up now, at
# boot (the inode's time is when it is first looked up).
[ -d /proc/1 ]
# No process in the host, root included, may ever hold the capabilities in $caps: it
# cannot touch the machine's firewall, mounts, kernel, clock or modules.
exec setpriv --bounding-set "$caps" /usr/sbin/sshd -D -e -o "ListenAddress=$address"
"""

# The host's shutdown (with reboot, poweroff and halt as links to it): it asks the
# supervisor outside the host (see _START_SCRIPT) to boot the host again, or to stop it.
POWER_COMMAND = "/usr/local/sbin/shutdown"
_POWER_COMMAND = r"""#!/bin/sh
# mspauto lab: shutdown, reboot, poweroff and halt for a lab host, which has no kernel
# or init system of its own (docs/lab.md, "Rebooting a lab host"). `shutdown -r` ends
# the host's sshd (its PID 1) and with it every process in the host; the lab then
# boots the host again: a new boot id, empty /run and /tmp, a fresh sshd. Its address,
# host keys and disk stay, as on a real machine. `shutdown -h`/`-P`, `poweroff` and
# `halt` stop the host until `mspauto lab fault start`.
set -eu
request=/run/lab-shutdown
pending=/run/lab-shutdown.pending
command=${0##*/}
fail() { echo "$command: $*" >&2; exit 1; }

case $command in
    reboot) action=reboot when=now ;;
    poweroff | halt) action=poweroff when=now ;;
    *) action=poweroff when=+1 ;;  # as systemd's shutdown: in a minute
esac
cancel=
while [ $# -gt 0 ]; do
    case $1 in
        -r | --reboot) action=reboot ;;
        -h | -P | -H | --poweroff | --halt) action=poweroff ;;
        -c) [ "$command" = shutdown ] || fail "unknown option -c"; cancel=1 ;;
        -f | --force | --no-wall) ;;
        --) shift; break ;;
        -*) fail "option $1 is not supported by the lab's $command" ;;
        *) break ;;
    esac
    shift
done
if [ "$command" = shutdown ] && [ $# -gt 0 ]; then
    when=$1  # anything after it is the wall message, which the lab does not send
fi
[ "$(id -u)" -eq 0 ] || fail "must be root"

if [ -f "$pending" ]; then  # a new shutdown replaces a pending one, as with systemd
    kill -TERM "-$(cat "$pending")" 2>/dev/null || true  # its session: the sleep too
    rm -f "$pending"
    [ -z "$cancel" ] || echo "Shutdown cancelled." >&2
fi
[ -z "$cancel" ] || exit 0

case $when in
    now) delay=0 ;;
    *:*)
        target=$(date -d "$when" +%s 2>/dev/null) || fail "invalid time: $when"
        delay=$((target - $(date +%s)))
        [ "$delay" -ge 0 ] || delay=$((delay + 86400))
        ;;
    *)
        minutes=${when#+}
        case $minutes in '' | *[!0-9]*) fail "invalid time: $when" ;; esac
        delay=$((minutes * 60))
        ;;
esac
if [ "$delay" -gt 0 ]; then
    echo "$action scheduled in $delay s, use 'shutdown -c' to cancel." >&2
fi
# In a session of its own, detached from the caller's: the caller (an SSH session, say)
# returns and ends cleanly first, as a real shutdown lets it.
setsid /bin/sh -c 'sleep "$1"; echo "$2" > "$3"; rm -f "$4"; kill -TERM 1' \
    lab-shutdown "$((delay + 1))" "$action" "$request" "$pending" \
    < /dev/null > /dev/null 2>&1 &
echo $! > "$pending"
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

    @property
    def boot_id_file(self) -> Path:
        """The host's boot id (what ``/proc/sys/kernel/random/boot_id`` reads in the
        host), on its disk but outside its tree; new at each boot."""
        return self.directory / "boot_id"

    def create(self, base_rootfs: Path) -> None:
        """Mount the host's disk and its overlay root filesystem, and install the lab's
        ``shutdown`` (with ``reboot``, ``poweroff`` and ``halt``) in it."""
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
        self.write(POWER_COMMAND, _POWER_COMMAND, 0o755)
        for name in ("reboot", "poweroff", "halt"):
            link = self.path(POWER_COMMAND).with_name(name)
            link.unlink(missing_ok=True)
            link.symlink_to("shutdown")

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
        self.write(RESTIC_PASSWORD_FILE, RESTIC_PASSWORD + "\n", 0o600)
        self.write(BORG_PASSPHRASE_FILE, BORG_PASSPHRASE + "\n", 0o600)
        if backup == "none":
            return
        target = RESTIC_REPOSITORY if backup.startswith("restic") else BORG_REPOSITORY
        shutil.copytree(templates / backup, self.path(target), symlinks=True)

    # --- running ----------------------------------------------------------------

    def start(self) -> int:
        """Start the host (its supervisor, which boots it) in its namespaces; returns
        the ``unshare`` PID."""
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
                    str(self.boot_id_file),
                    _BOOT_SCRIPT,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        return process.pid

    def boot_id(self) -> str:
        """The host's current boot id, read from the control node."""
        return self.boot_id_file.read_text().strip()

    @staticmethod
    def init_pid(unshare_pid: int) -> int | None:
        """PID 1 of the host's namespaces (its supervisor), seen from the control node.

        Not the host's own PID 1: inside the host, PID 1 is its sshd, in a PID namespace
        made at each boot under the supervisor (see :meth:`processes`)."""
        children = children_of(unshare_pid)
        return children[0] if children else None

    @staticmethod
    def processes(unshare_pid: int) -> list[int]:
        """Every process of the host, seen from the control node: its supervisor and
        everything in the PID namespaces under it (the current boot's)."""
        init = LabHost.init_pid(unshare_pid)
        if init is None:
            raise LabError("the host is not running")
        own = os.readlink("/proc/self/ns/pid")
        namespaces = {os.readlink(f"/proc/{init}/ns/pid")}
        while True:
            if own in namespaces:
                raise LabError("refusing to signal: that process is not inside a lab host")
            members, nested = [], set()
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    if os.readlink(entry / "ns" / "pid") not in namespaces:
                        continue
                    nested.add(os.readlink(entry / "ns" / "pid_for_children"))
                except OSError:
                    continue
                members.append(int(entry.name))
            if nested <= namespaces:
                return members
            namespaces |= nested

    @staticmethod
    def stop(unshare_pid: int | None) -> None:
        """Stop the host: its supervisor exits, and every process in the host goes with
        it."""
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
        for pid in LabHost.processes(unshare_pid):
            send_signal(pid, sig)

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
