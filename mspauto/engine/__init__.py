"""The run engine: run one command across a client's hosts and record it as evidence."""

from mspauto.engine.run import EngineError, RunOutcome, RunSpec, run_command

__all__ = ["EngineError", "RunOutcome", "RunSpec", "run_command"]
