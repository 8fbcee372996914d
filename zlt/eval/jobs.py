"""Evaluations as async jobs, in the same store and worker as training and generation.

An evaluation job is a row whose snapshot says `{"kind": "evaluate", "artifact_id", "request"}` (no new column).
Everything that can be refused is checked at submit (artifact, checkpoints, prompts, training images, metric
model), so a client gets exit 2/3 or HTTP 4xx at once; the worker runs the job in a thread of its own process.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

KIND = "evaluate"
BACKEND = "eval"  # the jobs table's backend column for evaluation jobs


class EvalRequest(BaseModel):
    """What an agent may set; everything left out comes from the artifact's `eval:` spec section."""

    model_config = ConfigDict(extra="forbid")

    prompts: list[str] | None = Field(None, max_length=64, description="Held-out prompts ('[trigger]' marks the "
                                      "trigger); default: the spec's eval.prompts, else 8 varied subjects.")
    seeds: int | None = Field(None, ge=1, le=16, description="Images per prompt (default 2).")
    checkpoints: str | None = Field(None, pattern=r"^(all|last|\d+(,\d+)*)$",
                                    description="all, last, or steps like '250,500' (default all).")
    clip: str | None = Field(None, max_length=1000, description="CLIP model: a local folder or a hub id already "
                             "downloaded (default: the spec's eval.models.clip).")
    scale: float | None = Field(None, ge=0.0, le=4.0, description="LoRA scale (default 1.0).")
    steps: int | None = Field(None, ge=1, le=200, description="Denoising steps (default: the spec's sampling steps).")
    guidance: float | None = Field(None, ge=0.0, le=30.0, description="Guidance scale (default: the spec's).")
    size: int | None = Field(None, ge=16, le=2048, description="Square image side, a multiple of 16.")


def check_request(home: Path, artifact_id: str, request: EvalRequest) -> Any:
    """Every refusal an evaluation can meet before it draws anything. Returns the EvalOptions."""
    from zlt.eval.clip import require_clip
    from zlt.eval.evaluate import check_grid, draw_settings
    from zlt.eval.options import options_for
    from zlt.eval.plan import open_artifact, select_targets, training_image_dir
    from zlt.eval.prompts import build_prompts

    opts = options_for(home, artifact_id, **request.model_dump())
    view = open_artifact(home, artifact_id)
    select_targets(view, opts.checkpoints)
    check_grid(len(build_prompts(opts.prompts, view.trigger, field="evaluate.prompts")), opts.seeds)
    draw_settings(view, opts)
    training_image_dir(view, opts.train_images)
    require_clip(opts.clip)
    return opts


def submit_evaluation(home: Path, artifact_id: str, request: EvalRequest | None = None, *, priority: int = 0,
                      start_worker: bool = True) -> dict[str, Any]:
    """Check, then queue an evaluation of an artifact. Returns the job's status (with `kind`)."""
    from zlt.artifacts import store as artifact_store
    from zlt.jobs.api import check_priority
    from zlt.jobs.inprocess import queue_inprocess_job
    from zlt.spec.models import TINY_MODEL

    home = Path(home)
    request = request or EvalRequest()
    check_priority(priority, "evaluate.priority")
    art_id = artifact_store.resolve(home, artifact_id)["id"]
    if request.clip and Path(request.clip).expanduser().is_dir():  # the worker runs elsewhere: no relative paths
        request = request.model_copy(update={"clip": str(Path(request.clip).expanduser().resolve())})
    opts = check_request(home, art_id, request)
    from zlt.eval.plan import open_artifact

    view = open_artifact(home, art_id)
    tiny = view.spec is not None and view.spec.model.base.name == TINY_MODEL
    data = request.model_dump(mode="json")
    status = queue_inprocess_job(home, kind=KIND, name=f"eval_{art_id}", backend=BACKEND, request=data,
                                 snapshot={"artifact_id": art_id, "clip": opts.clip}, on_cpu=tiny, priority=priority,
                                 start_worker=start_worker)
    return {**status, "kind": KIND, "evaluates": art_id}


def run_evaluation_job(store: Any, job_id: str, token: str, *, stop: threading.Event | None = None,
                       heartbeat_s: float = 5.0, poll_s: float = 1.0, gpus: list[int] | None = None,
                       cache: Any = None, evaluate: Callable[..., dict[str, Any]] | None = None) -> str:
    """Run a claimed evaluation job to its end and record it. Returns the job's final state."""
    from zlt.core.fsutil import atomic_write_json
    from zlt.eval.evaluate import evaluate_artifact
    from zlt.eval.options import options_for
    from zlt.infer.pipeline import cuda_ordinal
    from zlt.jobs.inprocess import Done, InProcessRun
    from zlt.jobs.states import JobStatus

    job = InProcessRun(store, job_id, token, stop=stop, heartbeat_s=heartbeat_s, poll_s=poll_s)
    row = job.row
    snap = json.loads(row["snapshot_json"] or "{}")

    def rows_done(done: int, total: int) -> None:
        job.check_stop()
        store.update_progress(job_id, token, phase="evaluating", progress={"step": done, "total": total})

    def body() -> Done:
        art_id = snap["artifact_id"]
        request = EvalRequest.model_validate(snap.get("request") or {})
        store.transition(job_id, JobStatus.RUNNING, token=token, message=f"evaluating {art_id}")
        opts = options_for(store.home, art_id, **request.model_dump())
        opts.gpu = cuda_ordinal(gpus)
        report = (evaluate or evaluate_artifact)(store.home, art_id, opts, rows_done=rows_done, pipeline_cache=cache)
        best = report["best"]
        n = len(report["checkpoints"])
        store.update_progress(job_id, token, phase="evaluating", progress={"step": n, "total": n})
        atomic_write_json(Path(row["job_dir"]) / "result.json", {
            "job_id": job_id, "status": "succeeded", "kind": KIND, "artifact_id": art_id,
            "report": report["eval_dir"] + "/report.json", "best": best})
        return Done(artifact_id=art_id, artifact_path=report["eval_dir"],
                    message=f"succeeded: best checkpoint step {best['step']}")

    return job.run(body)


def _run_evaluation(store: Any, claim: Any, stop: threading.Event, cache: Any) -> str:
    return run_evaluation_job(store, claim.job_id, claim.token, stop=stop, gpus=claim.gpus, cache=cache)


RUNNERS = {KIND: _run_evaluation}  # for zlt.jobs.inprocess.inprocess_launcher


def with_eval_jobs(home: Path, fallback: Callable[[Any], Any],
                   store_factory: Callable[[Path], Any] | None = None) -> Callable[[Any], Any]:
    """A worker launcher: evaluation jobs run in a thread of the worker, on the GPU their claim names, anything
    else goes to `fallback`. Set `.cache` on the returned launcher to share a PipelineCache (the worker's
    generation cache) so an evaluation reuses a pipeline a generation loaded."""
    from zlt.jobs.inprocess import inprocess_launcher

    return inprocess_launcher(home, fallback, RUNNERS, store_factory=store_factory)
