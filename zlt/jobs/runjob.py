"""Run one claimed job to its end: the body of the per-job process the worker starts.

The process keeps the job's lease alive, turns a cancel flag in the store into the runner's graceful
stop, and decides what the outcome means for the job: succeeded, cancelled, failed, or back to the
queue for a retry that resumes from the latest checkpoint (one hardware profile lower after a CUDA OOM
when the spec allows). A worker that dies closes our stdin: we stop the trainer and end the job as
abandoned (or requeue it) ourselves, so nothing stays `running`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zlt.core.causes import cause_of
from zlt.core.errors import ZltError
from zlt.jobs.db import Row
from zlt.jobs.faults import INPUT_ERROR_CAUSES, NOT_RETRIED_CAUSES, requeue_after_fault, retryable
from zlt.jobs.progress import StoreSink
from zlt.jobs.states import JobStatus
from zlt.jobs.store import JobStore, LeaseLost

# Causes a retry cannot fix: the same input fails the same way. `zlt retry` still runs them again.
NOT_RETRYABLE = INPUT_ERROR_CAUSES | NOT_RETRIED_CAUSES

# Why the job was asked to stop, if it was: the user's cancel, the worker shutting down (requeue),
# the worker gone (abandoned), or the lease taken away (someone else owns the job now).
CANCEL, SHUTDOWN, WORKER_LOST, LEASE_LOST = "cancel", "shutdown", "worker_lost", "lease_lost"


class StopControl:
    """One stop event for the runner plus the first reason anyone gave for it."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason: str | None = None
        self._lock = threading.Lock()

    def stop(self, reason: str) -> None:
        with self._lock:
            if self.reason is None:
                self.reason = reason
        self.event.set()


class LeaseKeeper(threading.Thread):
    """Renews the lease every `heartbeat_s` and polls the cancel flag every `poll_s`."""

    def __init__(self, store: JobStore, job_id: str, token: str, control: StopControl, *,
                 heartbeat_s: float = 5.0, poll_s: float = 1.0) -> None:
        super().__init__(name=f"lease-{job_id}", daemon=True)
        self.store, self.job_id, self.token, self.control = store, job_id, token, control
        self.heartbeat_s, self.poll_s = heartbeat_s, poll_s
        self.done = threading.Event()

    def run(self) -> None:
        last_beat = last_renewed = time.monotonic()
        while not self.done.wait(self.poll_s):
            try:
                if time.monotonic() - last_beat >= self.heartbeat_s:
                    last_beat = time.monotonic()
                    beat = self.store.heartbeat(self.job_id, self.token)
                    if not beat.alive:
                        self.control.stop(LEASE_LOST)
                        return
                    last_renewed = last_beat
                    cancel = beat.cancel_requested
                else:
                    cancel = self.store.cancel_requested(self.job_id)
            except sqlite3.OperationalError:
                # Store busy or unreachable: try again next tick. Once the lease may have expired, another
                # host may run the job: stop our trainer rather than ever run two (fencing by lease time).
                if time.monotonic() - last_renewed > self.store.lease_ttl:
                    self.control.stop(LEASE_LOST)
                    return
                continue
            if cancel:
                self.control.stop(CANCEL)


def watch_parent(fd: int, control: StopControl) -> threading.Thread:
    """The worker writes `stop` to ask for a shutdown; end of file means the worker is gone.

    Reads the raw descriptor: a daemon thread blocked in a buffered stdin read would hold its lock
    and abort the interpreter at exit.
    """

    def run() -> None:
        data = b""
        try:
            while not data.endswith(b"\n"):
                chunk = os.read(fd, 64)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        control.stop(SHUTDOWN if data.strip() == b"stop" else WORKER_LOST)

    t = threading.Thread(target=run, name="parent-watch", daemon=True)
    t.start()
    return t


def _default_request_factory():
    from zlt.run import TrainRequest

    return TrainRequest


def _default_run_fn():
    from zlt.run import run_training

    return run_training


def run_claimed_job(
    store: JobStore, job_id: str, token: str, gpus: list[int], *, attempt: int, resume: bool,
    run_fn: Callable[..., Any] | None = None, request_factory: Callable[..., Any] | None = None,
    control: StopControl | None = None, heartbeat_s: float = 5.0, poll_s: float = 1.0,
) -> str:
    """Run the job and record its end. Returns the job's state afterwards."""
    import psutil

    from zlt.spec import load_spec_data

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
        loaded = load_spec_data(json.loads(row["spec_json"]), source=f"job {job_id}")
        _check_dataset_drift(store, row, job_dir)
        factory = request_factory or _default_request_factory()
        req = factory(
            loaded=loaded, home=store.home, job_id=job_id, job_dir=job_dir, backend=row["backend"],
            profile=row["profile"] or "auto", vram_gb=opts.get("vram_gb"),
            skip_preflight=bool(opts.get("skip_preflight")), resume=resume, attempt=attempt, gpus=gpus,
            ai_toolkit=opts.get("ai_toolkit"), musubi=opts.get("musubi"),
            stop_grace_s=float(opts.get("stop_grace_s", 120.0)),
        )
        result = (run_fn or _default_run_fn())(req, sinks=[sink], stop=control.event)
        outcome = result.to_dict() if hasattr(result, "to_dict") else dict(vars(result))
    # Errors before the trainer starts: the runner's `finished` event carries the cause it decided on.
    except ZltError as e:
        outcome = _failure(_said_cause(sink) or cause_of(e).value, e)
    except Exception as e:  # the job process must always record an end, whatever the runner raised
        outcome = {"status": "failed", "cause": "unknown", "message": f"{type(e).__name__}: {e}"}
    finally:
        keeper.done.set()
        keeper.join(timeout=5)  # its next store call must not race the caller closing the store
    sink.flush()
    if sink.lost or control.reason == LEASE_LOST:
        return JobStatus(store.get(job_id)["state"]).value
    try:
        return finish_job(store, job_id, token, outcome, control.reason, sink.warnings)
    except LeaseLost:
        return JobStatus(store.get(job_id)["state"]).value


def _said_cause(sink: StoreSink) -> str | None:
    return (sink.finished or {}).get("cause")


def _failure(cause: str, err: ZltError) -> dict[str, Any]:
    msg = err.message + (f" (hint: {err.hint})" if err.hint else "")
    return {"status": "failed", "cause": cause, "message": msg}


def _check_dataset_drift(store: JobStore, row: Row, job_dir: Path) -> None:
    """The dataset folder should still be what was submitted; say so in the history if it changed."""
    from zlt.jobs.snapshot import dataset_listing

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
        _emit_warning(row["id"], job_dir, msg)


def _emit_warning(job_id: str, job_dir: Path, message: str) -> None:
    """Append a warning to the job's event stream (only while no runner is writing it)."""
    from zlt.core.events import EventStream, Warning_

    stream = EventStream(job_id, job_dir / "events.jsonl")
    try:
        stream.emit(Warning_(message=message))
    finally:
        stream.close()


def _resolved_profile(job_dir: Path) -> str | None:
    try:
        return json.loads((job_dir / "result.json").read_text(encoding="utf-8")).get("profile")
    except (OSError, ValueError, AttributeError):
        return None


def lower_profile(name: str | None) -> str | None:
    """The next smaller GPU profile than `name`, or None."""
    from zlt.profiles import gpu_profiles

    names = [p.name for p in gpu_profiles()]
    if name not in names:
        return None
    i = names.index(name)
    return names[i - 1] if i > 0 else None


def finish_job(store: JobStore, job_id: str, token: str, outcome: dict[str, Any], reason: str | None,
               warnings: list[str] | None = None) -> str:
    """Turn a run's outcome into the job's next state, in one transaction."""
    row = store.get(job_id)
    job_dir = Path(row["job_dir"])
    status = outcome.get("status")
    cause = outcome.get("cause") or ("timeout" if status == "timeout" else None)
    message = outcome.get("message") or ""
    if outcome.get("hint") and status != "succeeded":
        message += f" (hint: {outcome['hint']})"
    profile = _resolved_profile(job_dir) or row["profile"]
    common: dict[str, Any] = {"artifact_id": outcome.get("artifact_id"), "artifact_path": outcome.get("artifact_path"),
                              "profile": profile, "stop_reason": reason}
    for w in warnings or []:
        _emit_warning(job_id, job_dir, w)

    if status == "succeeded":
        where = f": artifact {outcome.get('artifact_id')}" if outcome.get("artifact_id") else ""
        if outcome.get("stopped_early"):
            where += f"; stopped early at step {outcome.get('last_step')} (eval.early_stop)"
        new = store.transition(job_id, JobStatus.SUCCEEDED, token=token, message=f"succeeded{where}", **common)
    elif reason == CANCEL or (status == "cancelled" and reason is None):
        new = store.transition(job_id, JobStatus.CANCELLED, token=token, message="cancelled by user",
                               error_cause="cancelled", error_message=message or "cancelled", **common)
    elif reason == SHUTDOWN:
        new = store.transition(job_id, JobStatus.QUEUED, token=token, resume=1,
                               message="worker shut down; requeued to resume from the latest checkpoint", **common)
    elif reason == WORKER_LOST:
        common["stop_reason"] = WORKER_LOST
        new = requeue_after_fault(store, row, token, "the worker process died", **common)
    else:
        new = _fail_or_retry(store, row, token, cause or "unknown", message or f"trainer {status}", common)
    return new["state"]


def _fail_or_retry(store: JobStore, row: Row, token: str, cause: str, message: str,
                   common: dict[str, Any]) -> Row:
    job_id = row["id"]
    if retryable(cause) and row["auto_retries"] < row["max_retries"]:
        n = row["auto_retries"] + 1
        note = f"retry {n}/{row['max_retries']} after {cause}"
        step = row["last_checkpoint_step"]
        note += f", resuming from step {step}" if step else ", no checkpoint yet: starting over"
        if cause == "cuda_oom" and json.loads(row["spec_json"]).get("job", {}).get("retry", {}).get("on_oom") == "lower_profile":
            current = common.get("profile")
            lower = lower_profile(current)
            if lower:
                common["profile"] = lower
                note += f"; hardware profile {current} -> {lower} after CUDA OOM"
            else:
                note += f"; no hardware profile below {current}: retrying as is"
        _emit_warning(job_id, Path(row["job_dir"]), note)
        return store.transition(job_id, JobStatus.QUEUED, token=token, resume=1, auto_retries=n,
                                error_cause=cause, error_message=message, message=f"{cause}: {note}", **common)
    if not retryable(cause):
        tail = " (not retried: the same input would fail the same way; 'zlt retry' runs it again)"
    elif row["max_retries"]:
        tail = f" (after {row['auto_retries']} retr{'y' if row['auto_retries'] == 1 else 'ies'})"
    else:
        tail = ""
    return store.transition(job_id, JobStatus.FAILED, token=token, error_cause=cause, error_message=message,
                            message=f"failed: {cause}{tail}", **common)
