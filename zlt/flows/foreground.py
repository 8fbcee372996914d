"""`zlt train` as a job like any other: recorded in the store, so status, logs, events, cancel, retry and jobs
all work on it, while it runs in this process with the caller's progress display.

The run goes through `run_claimed_job`, the same body a worker's job process runs: lease, cancel flag, store
progress, and the same decision of the job's end state (zlt.flows.finish.record_end).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zlt.core.errors import BadInputError, NotFoundError
from zlt.flows.gate import with_backend
from zlt.flows.job_process import run_claimed_job
from zlt.flows.training import TrainRequest
from zlt.flows.training import run_training as default_run_training
from zlt.jobs.lease import StopControl
from zlt.jobs.records import NewJob
from zlt.jobs.store import JobStore

Sink = Callable[[dict], None]


@dataclass
class ForegroundRun:
    """What `zlt train` asked for; `sinks` see every event (progress bar or NDJSON)."""

    loaded: Any  # LoadedSpec
    home: Path
    job_id: str
    job_dir: Path
    backend: str | None = None
    profile: str = "auto"
    vram_gb: float | None = None
    skip_preflight: bool = False
    resume: bool = False
    gpus: list[int] | None = None
    ai_toolkit: str | None = None
    musubi: str | None = None
    stop_grace_s: float = 120.0
    sinks: Sequence[Sink] = field(default_factory=tuple)


def _new_job(run: ForegroundRun):
    loaded = with_backend(run.loaded, run.backend)
    spec = loaded.spec
    # No dataset listing here: the runner checks the dataset itself, and a missing folder is its error to report.
    return NewJob(
        job_id=run.job_id, name=spec.name, priority=spec.job.priority, backend=spec.training.backend,
        profile=run.profile, spec_json=spec.model_dump_json(), job_dir=str(run.job_dir),
        gpus_needed=len(run.gpus) if run.gpus else spec.job.resources.gpu, max_retries=0,
        options={k: v for k, v in {"vram_gb": run.vram_gb, "ai_toolkit": run.ai_toolkit, "musubi": run.musubi,
                                   "stop_grace_s": run.stop_grace_s}.items() if v is not None}
        | ({"skip_preflight": True} if run.skip_preflight else {}),
        snapshot={"source": loaded.source, "warnings": loaded.warnings, "foreground": True},
    )


def run_foreground(run: ForegroundRun, *, stop: threading.Event, force: threading.Event | None = None,
                   run_training: Callable[..., Any] | None = None) -> Any:
    """Record the job, run it here, record its end; returns the runner's outcome.

    An error the runner raised before training (bad input, environment) is recorded as the job's failure and
    raised again, so the CLI exits with its code. `stop` is the caller's Ctrl+C; `zlt cancel` sets it too.
    """
    run_training = run_training or default_run_training
    store = JobStore(run.home)
    try:
        store.reap()  # a previous run of this job killed outright is ended first, so --resume can take it
        try:
            existing = store.get(run.job_id) if run.resume else None
        except NotFoundError:
            existing = None  # a job folder from before jobs were recorded: record it now
        worker = f"foreground-{os.getpid()}"
        gpus = list(run.gpus or [])
        if existing is not None:
            claim = store.claim_here(existing["id"], worker, gpus)
        else:
            claim = store.claim_here(run.job_id, worker, gpus, new=_new_job(run))
        box: dict[str, Any] = {}

        def factory(**kw: Any):
            kw.update(loaded=run.loaded, backend=run.backend, gpus=run.gpus)  # the caller's, not the stored copy
            return TrainRequest(**kw)

        def run_fn(req: Any, *, sinks: Sequence[Sink], stop: threading.Event) -> Any:
            try:
                box["outcome"] = run_training(req, sinks=[*sinks, *run.sinks], stop=stop, force=force)
            except Exception as e:  # re-raised below: a ZltError becomes its exit code, a bug its traceback
                box["error"] = e
                raise
            return box["outcome"]

        control = StopControl()
        control.event = stop
        run_claimed_job(store, claim.job_id, claim.token, gpus, attempt=claim.attempt, resume=run.resume,
                        run_fn=run_fn, request_factory=factory, control=control, admitted=run.loaded)
    finally:
        store.close()
    if "error" in box:
        raise box["error"]
    if "outcome" not in box:
        raise BadInputError(f"job {run.job_id}: the run ended before it started", hint=f"see 'zlt logs {run.job_id}'")
    return box["outcome"]
