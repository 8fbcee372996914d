"""`run_training`: validate -> preflight -> prepare dataset -> render -> run the trainer's steps ->
checkpoints -> artifact, with events all the way and always a final `finished` event.

The async worker, the HTTP API and `zlt train` all call this one function. Errors before launch
(preflight, dataset, a spec x profile that cannot fit) end the job with a `finished` event and are
raised as ZltError so the caller can map them to exit codes 2 and 3; a trainer that runs and fails
is a RunOutcome with status failed/cancelled/timeout, never an exception.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from zlt.flows.training_context import RunOutcome, Sink, TrainRequest
from zlt.flows.training_run import JobRun

__all__ = ["RunOutcome", "TrainRequest", "run_training"]


def run_training(
    req: TrainRequest,
    *,
    sinks: Sequence[Sink] = (),
    stop: threading.Event | None = None,
    force: threading.Event | None = None,
) -> RunOutcome:
    """Run one training job to its end. `stop.set()` from another thread cancels it gracefully;
    `force.set()` (a second Ctrl+C) skips the wait for a save and the grace period."""
    return JobRun(req, sinks=sinks, stop=stop, force=force).run()
