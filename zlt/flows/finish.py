"""The one place a job's end is recorded, whatever its kind: end state, cause, history, retry.

A training's job process and an in-process job (generation, evaluation) both describe how their run ended as an
outcome (`status`, `cause`, `message`, the artifact) plus the reason the job was asked to stop, if it was, and call
`record_end`. So the same error gets the same cause (zlt.core.causes.cause_of) and the same history line in every
kind, and a retry is decided by one rule.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zlt.core.causes import cause_of, retryable
from zlt.core.errors import ZltError
from zlt.core.events import EventStream, Warning_
from zlt.core.kinds import JobKind
from zlt.jobs.db import Row
from zlt.jobs.faults import requeue_after_fault
from zlt.jobs.lease import CANCEL, SHUTDOWN, WORKER_LOST
from zlt.jobs.states import JobStatus
from zlt.jobs.store import JobStore
from zlt.profiles import gpu_profiles


def failed(err: BaseException, *, cause: str | None = None) -> dict[str, Any]:
    """The outcome of a run that raised `err` before (or instead of) finishing: its cause from `cause_of` unless the
    runner already decided one, its message with the hint."""
    if isinstance(err, ZltError):
        message = err.message + (f" (hint: {err.hint})" if err.hint else "")
        return {"status": "failed", "cause": cause or cause_of(err).value, "message": message}
    # the job must always end recorded, whatever the runner raised
    return {"status": "failed", "cause": cause or cause_of(err).value, "message": f"{type(err).__name__}: {err}"}


def emit_warning(job_id: str, job_dir: Path, message: str) -> None:
    """Append a warning to the job's event stream (only while no runner is writing it)."""
    stream = EventStream(job_id, job_dir / "events.jsonl")
    try:
        stream.emit(Warning_(message=message))
    finally:
        stream.close()


def lower_profile(name: str | None) -> str | None:
    """The next smaller GPU profile than `name`, or None."""
    names = [p.name for p in gpu_profiles()]
    if name not in names:
        return None
    i = names.index(name)
    return names[i - 1] if i > 0 else None


def _resolved_profile(job_dir: Path) -> str | None:
    try:
        return json.loads((job_dir / "result.json").read_text(encoding="utf-8")).get("profile")
    except (OSError, ValueError, AttributeError):
        return None


def record_end(store: JobStore, job_id: str, token: str, outcome: dict[str, Any], reason: str | None,
               warnings: list[str] | None = None) -> str:
    """Turn a run's outcome into the job's next state, in one transaction; returns that state.

    `outcome`: `status` (succeeded, failed, cancelled, timeout, ...), `cause`, `message`, `hint`, `artifact_id`,
    `artifact_path`; for a success `summary` replaces the default history line. This is where a job records the
    artifact it left (the registry names the job by id and never writes the jobs table; an artifact collected or
    re-indexed after the job's end is linked by zlt.flows.job_artifacts). `reason`: why the job was asked to
    stop (zlt.jobs.lease: CANCEL, SHUTDOWN, WORKER_LOST), or None. Raises LeaseLost when the job is no longer ours.
    """
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
        emit_warning(job_id, job_dir, w)

    if status == "succeeded":
        summary = outcome.get("summary")
        if summary is None:
            summary = "succeeded" + (f": artifact {outcome.get('artifact_id')}" if outcome.get("artifact_id") else "")
            if outcome.get("stopped_early"):
                summary += f"; stopped early at step {outcome.get('last_step')} (eval.early_stop)"
        new = store.transition(job_id, JobStatus.SUCCEEDED, token=token, message=summary, **common)
    elif reason == CANCEL or (status == "cancelled" and reason is None):
        new = store.transition(job_id, JobStatus.CANCELLED, token=token, message="cancelled by user",
                               error_cause="cancelled", error_message=message or "cancelled", **common)
    elif reason == SHUTDOWN:
        resumes = row["kind"] == JobKind.TRAIN.value
        note = "worker shut down; requeued" + (" to resume from the latest checkpoint" if resumes else "")
        new = store.transition(job_id, JobStatus.QUEUED, token=token, message=note, **common,
                               **({"resume": 1} if resumes else {}))
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
        if cause == "cuda_oom" and _on_oom(row) == "lower_profile":
            current = common.get("profile")
            lower = lower_profile(current)
            if lower:
                common["profile"] = lower
                note += f"; hardware profile {current} -> {lower} after CUDA OOM"
            else:
                note += f"; no hardware profile below {current}: retrying as is"
        emit_warning(job_id, Path(row["job_dir"]), note)
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


def _on_oom(row: Row) -> str | None:
    """The spec's job.retry.on_oom (a training's spec; other kinds hold a request there and have none)."""
    try:
        return json.loads(row["spec_json"]).get("job", {}).get("retry", {}).get("on_oom")
    except (ValueError, AttributeError):
        return None
