"""Run one claimed training job to its end: the body of the per-job process the worker starts.

The process keeps the job's lease alive, turns a cancel flag in the store into the runner's graceful
stop, and hands the outcome to `zlt.flows.finish.record_end`, which decides what it means for the job:
succeeded, cancelled, failed, or back to the queue for a retry that resumes from the latest checkpoint
(one hardware profile lower after a CUDA OOM when the spec allows). A worker that dies closes our stdin:
we stop the trainer and end the job as abandoned (or requeue it) ourselves, so nothing stays `running`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from zlt.core.errors import ZltError
from zlt.dataset.listing import dataset_listing
from zlt.flows.finish import emit_warning, failed, record_end
from zlt.flows.gate import admit
from zlt.flows.training import TrainRequest, run_training
from zlt.jobs.db import Row
from zlt.jobs.lease import LEASE_LOST, LeaseKeeper, StopControl
from zlt.jobs.progress import StoreSink
from zlt.jobs.states import JobStatus
from zlt.jobs.store import JobStore, LeaseLost
from zlt.spec.load import LoadedSpec


def run_claimed_job(
    store: JobStore, job_id: str, token: str, gpus: list[int], *, attempt: int, resume: bool,
    run_fn: Callable[..., Any] | None = None, request_factory: Callable[..., Any] | None = None,
    control: StopControl | None = None, heartbeat_s: float = 5.0, poll_s: float = 1.0,
    admitted: LoadedSpec | None = None,
) -> str:
    """Run the job and record its end. Returns the job's state afterwards.

    The stored spec passes the gate again on the host that runs it (its dataset is checked here), unless the
    caller admitted it itself just now (`admitted`: `zlt train` in the foreground)."""
    control = control or StopControl()
    store.set_runner(job_id, token, os.getpid(), psutil.Process().create_time())
    row = store.get(job_id)
    opts: dict[str, Any] = json.loads(row["options_json"] or "{}")
    job_dir = Path(row["job_dir"])
    sink = StoreSink(store, job_id, token, expected_resume_step=row["last_checkpoint_step"] if resume else None)
    keeper = LeaseKeeper(store, job_id, token, control, heartbeat_s=heartbeat_s, poll_s=poll_s)
    keeper.start()
    outcome: dict[str, Any]
    try:
        loaded = admitted
        if loaded is None:
            spec = json.loads(row["spec_json"])  # admitted at submit with the caller's fence: its paths are trusted
            loaded = admit(spec, trusted=spec, mode="train", label=f"job {job_id}").loaded
        _check_dataset_drift(store, row, job_dir)
        req = (request_factory or TrainRequest)(
            loaded=loaded, home=store.home, job_id=job_id, job_dir=job_dir, backend=row["backend"],
            profile=row["profile"] or "auto", vram_gb=opts.get("vram_gb"),
            skip_preflight=bool(opts.get("skip_preflight")), resume=resume, attempt=attempt, gpus=gpus,
            ai_toolkit=opts.get("ai_toolkit"), musubi=opts.get("musubi"),
            stop_grace_s=float(opts.get("stop_grace_s", 120.0)),
        )
        result = (run_fn or run_training)(req, sinks=[sink], stop=control.event)
        outcome = result.to_dict() if hasattr(result, "to_dict") else dict(vars(result))
    # Errors before the trainer starts: the runner's `finished` event carries the cause it decided on.
    except ZltError as e:
        outcome = failed(e, cause=(sink.finished or {}).get("cause"))
    except Exception as e:  # the job process must always record an end, whatever the runner raised
        outcome = failed(e)
    finally:
        keeper.done.set()
        keeper.join(timeout=5)  # its next store call must not race the caller closing the store
    sink.flush()
    if sink.lost or control.reason == LEASE_LOST:
        return JobStatus(store.get(job_id)["state"]).value
    try:
        return record_end(store, job_id, token, outcome, control.reason, sink.warnings)
    except LeaseLost:
        return JobStatus(store.get(job_id)["state"]).value


def _check_dataset_drift(store: JobStore, row: Row, job_dir: Path) -> None:
    """The dataset folder should still be what was submitted; say so in the history if it changed."""
    snap = json.loads(row["snapshot_json"] or "{}").get("dataset") or {}
    if not snap.get("path"):
        return
    try:
        now = dataset_listing(Path(snap["path"]))
    except ZltError as e:
        store.note(row["id"], f"warning: dataset changed since submit: {e.message}")
        return
    if now["listing_sha256"] != snap.get("listing_sha256"):
        msg = (f"dataset folder changed since submit ({snap.get('files')} -> {now['files']} files); "
               "training uses its current content")
        store.note(row["id"], "warning: " + msg)
        emit_warning(row["id"], job_dir, msg)
