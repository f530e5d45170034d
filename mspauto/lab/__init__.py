"""The lab fleet: real Linux hosts on one machine, for tests, demos and benchmarks.

Each lab host is an overlay of one cached Debian root filesystem, with its own mount,
PID and UTS namespaces and its own loopback address (``127.0.0.N``), running a real
sshd. A local apt repository on loopback gives the hosts real pending updates;
profiles plant baseline drift, backup states and access faults. See ``docs/lab.md``.
"""

from mspauto.lab.system import LabError

__all__ = ["LabError"]
