"""A job row as the stable status object that `zlt status --json`, the HTTP API and MCP all return."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any

from zlt.core.kinds import JobKind
from zlt.jobs.records import parse_gpus

# What the status's `backend` says for a job that runs no training backend: the names clients knew before the
# jobs table had a `kind` column (the column itself holds NULL for these).
_RUNS_ON = {JobKind.GENERATE.value: "infer", JobKind.EVALUATE.value: "eval", JobKind.CAPTION.value: "caption"}

STATUS_KEYS: tuple[str, ...] = (
    "job_id", "name", "state", "phase", "step", "total", "percent", "loss", "lr", "it_s", "eta_s", "attempts",
    "max_retries", "priority", "backend", "profile", "created_at", "started_at", "ended_at", "last_checkpoint",
    "artifact_id", "artifact_path", "error_cause", "error_message", "job_dir", "gpus", "host", "infra_retries",
    "waiting", "kind", "unit",
)


def iso(ts: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC with milliseconds, e.g. 2025-05-01T12:00:00.123Z."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _planned_steps(row: Any) -> int | None:
    """training.max_steps of a training job's spec (None for other kinds, or an unreadable spec)."""
    if row["kind"] not in (None, JobKind.TRAIN.value) or not row["spec_json"]:
        return None
    try:
        steps = json.loads(row["spec_json"]).get("training", {}).get("max_steps")
    except (ValueError, AttributeError):
        return None
    return steps if isinstance(steps, int) and not isinstance(steps, bool) else None


def _steps(row: Any, prog: dict[str, Any]) -> tuple[Any, Any]:
    """(step, total): the trainer's last report; before its first one a training job is at step 0 of its spec's
    max_steps (not null), so a client sees the total from the moment the job is queued."""
    step, total = prog.get("step"), prog.get("total")
    if step is None:
        planned = _planned_steps(row)
        if planned is not None:
            return 0, total if total is not None else planned
    return step, total


def status_dict(row: Any, now: float | None = None, waiting: str | None = None) -> dict[str, Any]:
    """The status object of a job row; `waiting` is why a queued job cannot be taken (zlt/jobs/placement.py)."""
    now = time.time() if now is None else now
    prog: dict[str, Any] = json.loads(row["progress_json"]) if row["progress_json"] else {}
    step, total = _steps(row, prog)
    state = row["state"]
    percent = None
    if isinstance(step, int) and isinstance(total, int) and total > 0:
        percent = round(min(100.0, 100.0 * step / total), 1)
    eta = None
    if state == "running":
        eta = prog.get("eta_s")
        if eta is None and prog.get("it_s") and isinstance(step, int) and isinstance(total, int):
            eta = (total - step) / prog["it_s"]
        if eta is not None and prog.get("ts"):
            eta = max(0.0, eta - (now - prog["ts"]))  # progress may be a few seconds old
        eta = None if eta is None else round(eta, 1)
    elif state == "succeeded":
        eta = 0.0
    return {
        "job_id": row["id"],
        "name": row["name"],
        "state": state,
        # The phase says what an active job is doing; an ended or queued job is doing nothing.
        "phase": row["phase"] if state in ("preparing", "running") else None,
        "step": step,
        "total": total,
        "percent": percent,
        "loss": prog.get("loss"),
        "lr": prog.get("lr"),
        "it_s": prog.get("it_s"),
        "eta_s": eta,
        "attempts": row["attempts"],
        "max_retries": row["max_retries"],
        "priority": row["priority"],
        "backend": row["backend"] or _RUNS_ON.get(row["kind"]),
        "profile": row["profile"],
        "created_at": iso(row["created_at"]),
        "started_at": iso(row["started_at"]),
        "ended_at": iso(row["ended_at"]),
        "last_checkpoint": row["last_checkpoint"],
        "artifact_id": row["artifact_id"],
        "artifact_path": row["artifact_path"],
        "error_cause": row["error_cause"],
        "error_message": row["error_message"],
        "job_dir": row["job_dir"],
        # A worker on a machine without GPUs hands out plain slot 0; a run on the cpu profile used no GPU.
        "gpus": [] if row["profile"] == "cpu" else parse_gpus(row["gpus"]),
        "host": row["host"],
        "infra_retries": row["infra_retries"],
        "waiting": waiting,
        "kind": row["kind"] or JobKind.TRAIN.value,
        # What `step`/`total` count: a training job's optimiser steps, an evaluation's checkpoints (base included).
        "unit": prog.get("unit") or ("steps" if row["kind"] in (None, JobKind.TRAIN.value) else None),
    }
