"""The run engine: run one command across a client's hosts and record it as evidence."""

from mspauto.engine.run import (
    Claim,
    ClaimHost,
    EngineError,
    Executor,
    RunOutcome,
    RunSpec,
    run_command,
    run_hosts,
)

__all__ = [
    "Claim",
    "ClaimHost",
    "EngineError",
    "Executor",
    "RunOutcome",
    "RunSpec",
    "run_command",
    "run_hosts",
]
