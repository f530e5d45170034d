"""The check pipeline every policy kind runs on (see :mod:`mspauto.checks.pipeline`)."""

from mspauto.checks.pipeline import (
    Change,
    ChangeRun,
    Check,
    CheckRun,
    ClientScope,
    HostScope,
    RunOptions,
    apply_changes,
    run_checks,
    scope_client,
)

__all__ = [
    "Change",
    "ChangeRun",
    "Check",
    "CheckRun",
    "ClientScope",
    "HostScope",
    "RunOptions",
    "apply_changes",
    "run_checks",
    "scope_client",
]
