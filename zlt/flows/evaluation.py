"""Evaluations as async jobs, in the same store and worker as training and generation.

An evaluation job is a row of kind `evaluate` (zlt.core.kinds.JobKind) whose snapshot holds the artifact and the
request. Everything that can be refused is checked at submit (artifact, checkpoints, prompts, training images,
metric model: zlt.eval.request.check_request), so a client gets exit 2/3 or HTTP 4xx at once; the worker runs the
job in a thread of its own process.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zlt.artifacts.resolve import resolve_id
from zlt.core.constants import TINY_MODEL
from zlt.core.fsutil import atomic_write_json
from zlt.core.kinds import JobKind
from zlt.eval.evaluate import evaluate_artifact
from zlt.eval.options import options_for
from zlt.eval.plan import open_artifact
from zlt.eval.request import EvalRequest, check_request
from zlt.flows.fences import Roots
from zlt.flows.inprocess import Done, InProcessRun, queue_inprocess_job
from zlt.flows.request_gate import LOCAL, admit_request
from zlt.infer.pipeline import cuda_ordinal
from zlt.jobs.api import check_priority
from zlt.jobs.states import JobStatus

KIND = "evaluate"
BACKEND = "eval"  # the jobs table's backend column for evaluation jobs


def submit_evaluation(home: Path, artifact_id: str, request: EvalRequest | dict[str, Any] | None = None, *,
                      priority: int = 0, start_worker: bool = True, roots: Roots = LOCAL) -> dict[str, Any]:
    """Check (the request gate fences `clip` to `roots`, the local CLI has none; then everything an evaluation can
    meet), then queue an evaluation of an artifact. Returns the job's status (with `kind`)."""
    home = Path(home)
    request = admit_request(KIND, request, roots)  # local paths absolute: the worker runs elsewhere
    check_priority(priority, "evaluate.priority")
    art_id = resolve_id(home, artifact_id)
    opts = check_request(home, art_id, request)
    view = open_artifact(home, art_id)
    tiny = view.spec is not None and view.spec.model.base.name == TINY_MODEL
    data = request.model_dump(mode="json")
    status = queue_inprocess_job(home, job_kind=JobKind.EVALUATE, kind=KIND, name=f"eval_{art_id}", backend=BACKEND,
                                 request=data, snapshot={"artifact_id": art_id, "clip": opts.clip}, on_cpu=tiny,
                                 priority=priority, start_worker=start_worker)
    return {**status, "kind": KIND, "evaluates": art_id}


def run_evaluation_job(store: Any, job_id: str, token: str, *, stop: threading.Event | None = None,
                       heartbeat_s: float = 5.0, poll_s: float = 1.0, gpus: list[int] | None = None,
                       cache: Any = None, evaluate: Callable[..., dict[str, Any]] | None = None) -> str:
    """Run a claimed evaluation job to its end and record it. Returns the job's final state."""
    job = InProcessRun(store, job_id, token, stop=stop, heartbeat_s=heartbeat_s, poll_s=poll_s)
    row = job.row
    snap = json.loads(row["snapshot_json"] or "{}")

    started: list[float] = []

    def rows_done(done: int, total: int) -> None:
        job.check_stop()
        store.update_progress(job_id, token, phase="evaluating", progress=eval_progress(done, total, started))

    def body() -> Done:
        art_id = snap["artifact_id"]
        request = EvalRequest.model_validate(json.loads(row["request_json"] or "{}"))
        store.transition(job_id, JobStatus.RUNNING, token=token, message=f"evaluating {art_id}")
        opts = options_for(store.home, art_id, **request.model_dump())
        opts.gpu = cuda_ordinal(gpus)
        opts.job_id = job_id
        report = (evaluate or evaluate_artifact)(store.home, art_id, opts, rows_done=rows_done, pipeline_cache=cache)
        best = report["best"]
        n = len(report["checkpoints"])
        store.update_progress(job_id, token, phase="evaluating", progress=eval_progress(n, n, started))
        atomic_write_json(Path(row["job_dir"]) / "result.json", {
            "job_id": job_id, "status": "succeeded", "kind": KIND, "artifact_id": art_id,
            "report": report["eval_dir"] + "/report.json", "best": best})
        caveat = "" if not best.get("caveat") else f" ({best['caveat'].split(':')[0]})"
        return Done(artifact_id=art_id, artifact_path=report["eval_dir"],
                    message=f"succeeded: best checkpoint step {best['step']}{caveat}")

    return job.run(body)


def eval_progress(done: int, total: int, started: list[float]) -> dict[str, Any]:
    """An evaluation job's progress: `step`/`total` count rows (checkpoints, the base model included; `unit` says
    so), the ETA from the mean time of the rows scored so far (`started` holds when the first row began)."""
    now = time.time()
    if not started:
        started.append(now)
    elapsed = now - started[0]
    rate = done / elapsed if done and elapsed > 0 else None
    return {"step": done, "total": total, "unit": "checkpoints", "elapsed_s": round(elapsed, 1),
            "it_s": None if rate is None else round(rate, 4),
            "eta_s": None if rate is None else round((total - done) / rate, 1), "ts": now}


def run_evaluation(store: Any, claim: Any, stop: threading.Event, cache: Any) -> str:
    """The kind registry's runner for evaluation jobs (zlt.flows.kinds)."""
    return run_evaluation_job(store, claim.job_id, claim.token, stop=stop, gpus=claim.gpus, cache=cache)
