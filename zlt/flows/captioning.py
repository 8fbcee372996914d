"""Captioning as a job and as a stage of a training job (docs/dataset.md, "Auto-captioning").

- A `caption` job (zlt.core.kinds.JobKind.CAPTION) captions one folder: `zlt dataset caption --submit`,
  `POST /v1/datasets/caption` and the MCP tool `caption_dataset` queue it through `submit_caption`, which runs the
  request gate (the dataset fence on `path`, the model fence on `model`), refuses what the run would refuse (mode
  all without overwrite: exit 2 / HTTP 422) and a captioner that is not on this machine (exit 3) before any job
  exists. The worker runs it in a thread (zlt.flows.kinds); its end is recorded by zlt.flows.finish.record_end.
- A training job whose spec sets `dataset.caption.auto.enable` captions before it prepares (`caption_stage`): a
  `captioning` phase with progress (images done / total) in its events and status, and `captions.json` in the job
  folder, which the artifact's metadata carries (which captions were generated, by what).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from zlt.caption import CaptionOptions, CaptionReport, caption_folder, plan_folder
from zlt.caption.models import CaptionerInfo
from zlt.caption.request import CaptionRequest
from zlt.caption.run import Plan
from zlt.core.events import EventStream, Finished, Phase, Progress, Warning_
from zlt.core.fsutil import atomic_write_json
from zlt.core.kinds import JobKind
from zlt.flows.fences import Roots
from zlt.flows.inprocess import Done, InProcessRun, queue_inprocess_job
from zlt.flows.request_gate import LOCAL, admit_request
from zlt.infer.pipeline import cuda_ordinal
from zlt.jobs.api import check_priority
from zlt.jobs.states import JobStatus
from zlt.preflight.captioner import require_captioner

KIND = "caption"
BACKEND = "caption"  # the jobs table's backend column for caption jobs
CAPTIONS_FILE = "captions.json"  # in a training job's folder: what the captioning stage did


def admit_caption(request: CaptionRequest | dict[str, Any], roots: Roots = LOCAL) -> tuple[CaptionRequest, Plan,
                                                                                            CaptionerInfo]:
    """Every door's check of a caption request, before anything runs or is queued: the request gate (path fenced
    like a dataset, model like a model; local paths absolute), the folder (exit 2: no images, mode all without
    overwrite), the captioner (exit 3: not on this machine, with the command that downloads it)."""
    req = admit_request(KIND, request, roots)
    assert isinstance(req, CaptionRequest)
    plan = plan_folder(Path(req.path), req.options())
    info = require_captioner(req.model, "caption.model")
    return req, plan, info


def caption_now(request: CaptionRequest | dict[str, Any], *, progress: Any = None,
                gpu: int | None = None) -> CaptionReport:
    """Caption a folder in this process (`zlt dataset caption` without --submit), through the same checks."""
    req, plan, _ = admit_caption(request)
    return caption_folder(Path(req.path), req.options(gpu), progress=progress, plan=plan)


def submit_caption(home: Path, request: CaptionRequest | dict[str, Any], *, priority: int = 0,
                   start_worker: bool = True, roots: Roots = LOCAL) -> dict[str, Any]:
    """Check a caption request (the request gate, the folder, the captioner) and queue it; returns the status."""
    home = Path(home)
    check_priority(priority, "caption.priority")
    req, plan, info = admit_caption(request, roots)
    data = req.model_dump(mode="json")
    status = queue_inprocess_job(home, job_kind=JobKind.CAPTION, kind=KIND, name=f"caption_{plan.folder.name}",
                                 backend=BACKEND, request=data, snapshot={"path": str(plan.folder), "model": info.name},
                                 on_cpu=info.is_tiny, priority=priority, start_worker=start_worker)
    return {**status, "kind": KIND, "images": plan.images, "to_caption": len(plan.todo)}


def run_caption_job(store: Any, job_id: str, token: str, *, stop: threading.Event | None = None,
                    heartbeat_s: float = 5.0, poll_s: float = 1.0, gpus: list[int] | None = None) -> str:
    """Run a claimed caption job to its end and record it. Returns the job's final state."""
    job = InProcessRun(store, job_id, token, stop=stop, heartbeat_s=heartbeat_s, poll_s=poll_s)
    row = job.row
    jdir = Path(row["job_dir"])
    events = EventStream(job_id, jdir / "events.jsonl")
    t0 = time.monotonic()

    def progress(done: int, total: int) -> None:
        elapsed = time.monotonic() - t0
        ev = events.emit(Progress(step=done, total=total, elapsed_s=round(elapsed, 2),
                                  it_s=round(done / elapsed, 3) if elapsed > 0 and done else None))
        store.update_progress(job_id, token, phase="captioning",
                              progress={**{k: ev.get(k) for k in ("step", "total", "it_s", "elapsed_s")},
                                        "unit": "images"})
        job.check_stop()

    def body() -> Done:
        req = CaptionRequest.model_validate(json.loads(row["request_json"] or "{}"))
        store.transition(job_id, JobStatus.RUNNING, token=token, message=f"captioning {req.path} with {req.model}")
        events.emit(Phase(phase="captioning", message=f"{req.path} with {req.model}"))
        report = caption_folder(Path(req.path), req.options(cuda_ordinal(gpus)), progress=progress,
                                should_stop=job.check_stop)
        doc = {"job_id": job_id, "status": "succeeded", "kind": KIND, **report.to_dict()}
        atomic_write_json(jdir / "result.json", doc)
        for w in report.warnings:
            events.emit(Warning_(message=w))
        events.emit(Finished(status="succeeded", exit_code=0, artifact=report.folder))
        return Done(artifact_id=None, artifact_path=report.folder, message=summary(report))

    def on_end(end: dict[str, Any]) -> None:
        if end["state"] in ("failed", "cancelled") and end["lease_token"] is None:
            events.emit(Finished(status=end["state"], cause=end["error_cause"], message=end["error_message"]))
        events.close()

    return job.run(body, on_end)


def summary(report: Any) -> str:
    parts = [f"captioned {report.captioned}"]
    if report.reused:
        parts.append(f"{report.reused} from earlier output")
    if report.have_caption:
        parts.append(f"{report.have_caption} already had one")
    if report.unreadable:
        parts.append(f"{len(report.unreadable)} unreadable skipped")
    return f"succeeded: {', '.join(parts)} ({report.model}) in {report.folder}"


def run_caption(store: Any, claim: Any, stop: threading.Event, cache: Any) -> str:
    """The kind registry's runner for caption jobs (zlt.flows.kinds)."""
    return run_caption_job(store, claim.job_id, claim.token, stop=stop, gpus=claim.gpus)


def training_options(spec: Any, gpu: int | None) -> CaptionOptions:
    """`dataset.caption.auto` as caption options: the preset decides the form; spec mode `all` replaces old
    captions (kept beside as NAME.txt.bak), since the spec asked for it."""
    auto, cap = spec.dataset.caption.auto, spec.dataset.caption
    return CaptionOptions(model=auto.model, mode=auto.mode, overwrite=auto.mode == "all", preset=spec.preset,
                          prefix=auto.prefix, suffix=auto.suffix, max_words=auto.max_words,
                          subject="[trigger]" if spec.trigger else spec.name, caption_ext=cap.caption_ext, gpu=gpu)


def caption_stage(run: Any) -> None:
    """The training job's `captioning` stage (before `preparing_dataset`), when `dataset.caption.auto.enable`."""
    spec = run.spec
    if not spec.dataset.caption.auto.enable:
        return
    run.stage = "captioning"
    ctx = run.ctx
    opts = training_options(spec, cuda_ordinal(run.req.gpus))
    ctx.phase_event("captioning", f"{spec.dataset.path} with {opts.model} ({opts.mode})")
    t0 = time.monotonic()

    def progress(done: int, total: int) -> None:
        elapsed = time.monotonic() - t0
        ctx.emit(Progress(step=done, total=total, elapsed_s=round(elapsed, 2),
                          it_s=round(done / elapsed, 3) if elapsed > 0 and done else None))

    def should_stop() -> None:
        reason = run.control.reason(time.monotonic())
        if reason:
            raise CaptioningStopped(reason)

    try:
        report = caption_folder(Path(spec.dataset.path), opts, progress=progress, should_stop=should_stop)
    except CaptioningStopped:
        return  # the run's next stop check ends the job (cancelled or timeout) before anything is prepared
    finally:
        release_gpu()
    ctx.throttle.flush()
    atomic_write_json(ctx.job_dir / CAPTIONS_FILE, captions_doc(report))
    for w in report.warnings:
        ctx.warn(f"captioning: {w}")
    ctx.phase_event("captioning", summary(report).removeprefix("succeeded: "))


def release_gpu() -> None:
    """The captioner's memory back before the trainer (another process) starts."""
    import gc
    import sys

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


class CaptioningStopped(Exception):
    """The job was cancelled (or timed out) while captioning."""


def captions_doc(report: Any) -> dict[str, Any]:
    """What a training job's folder (captions.json) and its artifact's metadata say about the generated captions."""
    d = report.to_dict()
    return {"model": d["model"], "revision": d["revision"], "prompt": d["prompt"], "preset": d["preset"],
            "mode": d["mode"], "tiny": d["tiny"], "generated": sorted(d["written"]), "captioned": d["captioned"],
            "reused": d["reused"], "kept": d["have_caption"], "unreadable": d["unreadable"],
            "truncated": d["truncated"], "records": d["records"]}
