"""Launch a trainer subprocess, parse its output into events, supervise it, collect checkpoints.

`run_training(TrainRequest(...))` is the one entry point (zlt train, the job worker, the HTTP API).
"""

from zlt.run.classify import INPUT_ERROR_CAUSES, is_input_error
from zlt.run.pipeline import RunOutcome, TrainRequest, run_training

__all__ = ["INPUT_ERROR_CAUSES", "RunOutcome", "TrainRequest", "is_input_error", "run_training"]
