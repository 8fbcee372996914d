"""Generations and transfers as async jobs, in the same store and worker as training.

A generation job is a row of kind `generate` (zlt.core.kinds.JobKind); its snapshot holds the request and which of
the two it is (`{"kind": "generate"|"transfer", "request": ...}`). The worker runs such jobs in a thread of its own
process, where one `PipelineCache` lives for as long as the worker: the second job on the same base model finds the
pipeline loaded and only swaps LoRAs. Before a training job takes a GPU the cache is emptied, so the trainer gets
the memory.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zlt.core.constants import TINY_MODEL
from zlt.core.events import EventStream, Finished, Phase, Progress, Sample
from zlt.core.kinds import JobKind
from zlt.flows.fences import Roots
from zlt.flows.inprocess import Done, InProcessRun, queue_inprocess_job, snapshot_kind
from zlt.flows.request_gate import LOCAL, admit_request
from zlt.infer.params import KINDS, GenerateParams, TransferParams, parse_request
from zlt.infer.pipeline import PipelineCache, cuda_ordinal
from zlt.infer.resolve import resolve_loras
from zlt.infer.run import check_request, check_transfer_inputs, generate, transfer
from zlt.jobs.api import check_priority
from zlt.jobs.states import JobStatus

BACKEND = "infer"  # the jobs table's backend column for generation jobs


def job_kind(snapshot_json: str | None) -> str | None:
    """Which request a generation job holds (generate or transfer), from its snapshot; None for any other job."""
    kind = snapshot_kind(snapshot_json)
    return kind if kind in KINDS else None


def submit_generation(home: Path, kind: str, params: GenerateParams | TransferParams | dict[str, Any], *,
                      priority: int = 0, start_worker: bool = True, roots: Roots = LOCAL,
                      own: Path | None = None) -> dict[str, Any]:
    """Check the request (the request gate: its paths fenced to `roots`; artifacts, checkpoints, input images),
    freeze it into a new queued job, return its status.

    `roots`: the caller's fence (the local CLI: none); `own`: the server's upload folder of this request. Input
    images are checked and copied into the job folder, so the job does not depend on files that may change or
    vanish (HTTP uploads live in a temporary folder). Nothing is queued when anything is wrong.
    """
    home = Path(home)
    params = admit_request(kind, params, roots, own=own)
    check_priority(priority, f"{kind}.priority")
    loras = resolve_loras(params.loras, home, prefix=kind)
    if isinstance(params, TransferParams):
        check_transfer_inputs(params)  # every image's header (format, caps, pixel budget); nothing decoded
    check_request(params, loras)  # a size the base model cannot draw, a prompt longer than it reads (tiny model)
    art = loras[0].artifact
    tiny = art.base_name == TINY_MODEL
    # Freeze what the references mean now: `latest` or a prefix must not name another artifact when the job runs.
    params = params.model_copy(update={"loras": [
        use.model_copy(update={"artifact": r.artifact.id}) for use, r in zip(params.loras, loras, strict=True)]})

    def prepare(jdir: Path) -> dict[str, Any]:
        frozen = _copy_inputs(params, jdir / "inputs") if isinstance(params, TransferParams) else params
        return frozen.model_dump(mode="json")

    status = queue_inprocess_job(home, job_kind=JobKind.GENERATE, kind=kind, name=f"{kind}_{art.id}", backend=BACKEND, request={},
                                 snapshot={"artifact_id": art.id}, on_cpu=tiny, priority=priority,
                                 start_worker=start_worker, prepare=prepare)
    return {**status, "kind": kind}


def _copy_inputs(params: TransferParams, folder: Path) -> TransferParams:
    folder.mkdir(parents=True)

    def copy(paths: list[str], tag: str) -> list[str]:
        out = []
        for i, p in enumerate(paths):
            dest = folder / f"{tag}{i:03d}_{Path(p).name}"
            shutil.copyfile(p, dest)
            out.append(str(dest))
        return out

    update: dict[str, Any] = {"images": copy(params.images, "")}
    if params.control_images:
        update["control_images"] = copy(params.control_images, "control_")
    return params.model_copy(update=update)


def run_generation_job(store: Any, job_id: str, token: str, *, cache: PipelineCache,
                       stop: threading.Event | None = None, heartbeat_s: float = 5.0, poll_s: float = 1.0,
                       gpus: list[int] | None = None) -> str:
    """Run a claimed generation job to its end and record it. Returns the job's final state."""
    job = InProcessRun(store, job_id, token, stop=stop, heartbeat_s=heartbeat_s, poll_s=poll_s)
    row = job.row
    snap = json.loads(row["snapshot_json"] or "{}")
    kind = snap.get("kind")
    events = EventStream(job_id, Path(row["job_dir"]) / "events.jsonl")  # what GET /v1/jobs/{id}/events streams
    events.add_sink(_log_sink(Path(row["job_dir"]) / "train.log"))  # what `zlt logs` shows
    t0 = time.monotonic()

    def progress(done: int, total: int) -> None:
        elapsed = time.monotonic() - t0
        ev = events.emit(Progress(step=done, total=total, elapsed_s=round(elapsed, 2),
                                  it_s=round(done / elapsed, 3) if elapsed > 0 else None))
        store.update_progress(job_id, token, phase="generating",
                              progress={k: ev.get(k) for k in ("step", "total", "it_s", "elapsed_s")})
        job.check_stop()

    def body() -> Done:
        params = parse_request(kind, json.loads(row["request_json"] or "{}"))
        store.transition(job_id, JobStatus.RUNNING, token=token, message=f"{kind}: loading the pipeline")
        events.emit(Phase(phase="generating", message=f"{kind} with {params.loras[0].artifact}"))
        fn: Callable[..., Any] = generate if kind == "generate" else transfer
        result = fn(params, store.home, cache=cache, generation_id=job_id, progress=progress,
                    gpu=cuda_ordinal(gpus))
        (Path(row["job_dir"]) / "result.json").write_text(json.dumps(
            {"job_id": job_id, "status": "succeeded", "kind": kind, "folder": str(result.folder),
             "images": [e["file"] for e in result.outputs["images"]]}, indent=2), encoding="utf-8")
        for entry in result.outputs["images"]:
            events.emit(Sample(path=str(result.folder / entry["file"]), step=None))
        events.emit(Finished(status="succeeded", exit_code=0, artifact=str(result.folder)))
        return Done(artifact_id=result.outputs["artifact_id"], artifact_path=str(result.folder),
                    message=f"succeeded: {len(result.images)} image(s) in {result.folder}")

    def on_end(end: dict[str, Any]) -> None:
        if end["state"] in ("failed", "cancelled") and end["lease_token"] is None:
            events.emit(Finished(status=end["state"], cause=end["error_cause"], message=end["error_message"]))
        events.close()

    return job.run(body, on_end)


def _log_sink(path: Path) -> Callable[[dict[str, Any]], None]:
    """One readable line per event in the job's log (`zlt logs JOB`); the events themselves are in events.jsonl."""

    def write(ev: dict[str, Any]) -> None:
        kind = ev.get("type")
        if kind == "phase":
            text = f"{ev.get('phase')}: {ev.get('message', '')}"
        elif kind == "progress":
            text = f"image {ev.get('step')}/{ev.get('total')} ({ev.get('elapsed_s')} s)"
        elif kind == "sample":
            text = f"wrote {ev.get('path')}"
        elif kind == "finished":
            text = f"{ev.get('status')}" + (f": {ev['message']}" if ev.get("message") else "") + \
                   (f" -> {ev['artifact']}" if ev.get("artifact") else "")
        else:
            text = json.dumps(ev)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(time.strftime("%Y-%m-%d %H:%M:%S ", time.gmtime(ev.get("ts", time.time()))) + text + "\n")

    return write


def run_generation(store: Any, claim: Any, stop: threading.Event, cache: PipelineCache) -> str:
    """The kind registry's runner for generation jobs (zlt.flows.kinds)."""
    return run_generation_job(store, claim.job_id, claim.token, cache=cache, stop=stop, gpus=claim.gpus)
