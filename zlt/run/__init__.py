"""Launch a trainer subprocess, parse its output into events, supervise it, collect checkpoints.

`run_training(TrainRequest(...))` is the one entry point (zlt train, the job worker, the HTTP API).
"""

from zlt.run.pipeline import RunOutcome, TrainRequest, run_training

__all__ = ["RunOutcome", "TrainRequest", "run_training"]
