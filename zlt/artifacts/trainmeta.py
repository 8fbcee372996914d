"""training_meta.json: everything needed to compare, retrain or audit an artifact, in one JSON file."""

from __future__ import annotations

import platform
from typing import Any

from zlt import __version__
from zlt.artifacts.jobdir import JobFiles, to_timestamp
from zlt.artifacts.metadata import iso_date
from zlt.run.curve import Curve, summarize

SCHEMA = "zlt.training_meta/1"


def _gpu(result: dict[str, Any]) -> dict[str, Any]:
    """GPU name and peak VRAM when the runner recorded them (result.json `gpu`, `gpu_name`, `peak_vram_gb|mb`)."""
    gpu = result.get("gpu")
    info: dict[str, Any] = dict(gpu) if isinstance(gpu, dict) else {}
    if isinstance(gpu, str):
        info["name"] = gpu
    if isinstance(result.get("gpu_name"), str):
        info.setdefault("name", result["gpu_name"])
    peak = result.get("peak_vram_gb")
    if peak is None and isinstance(result.get("peak_vram_mb"), (int, float)):
        peak = round(result["peak_vram_mb"] / 1024, 3)
    if peak is not None:
        info.setdefault("peak_vram_gb", peak)
    return {"name": info.get("name"), "peak_vram_gb": info.get("peak_vram_gb"), **info}


def _times(job: JobFiles) -> tuple[float | None, float | None]:
    started = to_timestamp(job.result.get("started_at"))
    ended = to_timestamp(job.result.get("ended_at"))
    stamps = [e["ts"] for e in job.events if isinstance(e.get("ts"), (int, float))]
    if started is None and stamps:
        started = min(stamps)
    if ended is None and stamps:
        ended = max(stamps)
    return started, ended


def build_training_meta(
    job: JobFiles,
    *,
    created_at: float,
    attempts: int,
    curve: Curve,
    lora: dict[str, Any] | None,
    checkpoints: list[dict[str, Any]],
    samples: list[str],
    notes: list[str],
    spec_sha256: str,
    files: dict[str, dict[str, Any]],
    trained: Any = None,
) -> dict[str, Any]:
    """`lora_config` and `trained` describe what was trained (zlt.artifacts.trained: saved keys, trainer output,
    render/); `lora_config_spec` is what the spec asked for."""
    spec = job.spec
    started, ended = _times(job)
    duration = round(ended - started, 3) if started is not None and ended is not None else None
    summary = summarize(curve)
    final_step = (lora or {}).get("step") or summary.get("final_step")
    it_s = curve.it_s
    if it_s is None and duration and final_step:
        it_s = round(final_step / duration, 4)  # includes model loading; better than nothing
    ds = job.dataset
    result_attempt = job.result.get("attempt")
    return {
        "schema": SCHEMA,
        "job_id": job.job_id,
        "name": spec.name,
        "preset": spec.preset,
        "status": job.result.get("status"),
        "cause": job.result.get("cause"),
        "created_at": iso_date(created_at),
        "started_at": iso_date(started) if started is not None else None,
        "ended_at": iso_date(ended) if ended is not None else None,
        "duration_s": duration,
        "attempts": max(attempts, int(result_attempt) if isinstance(result_attempt, int) else 0, 1),
        "backend": {
            "name": job.backend,
            "version": job.result.get("backend_version"),
            "commit": job.result.get("backend_commit"),
            "profile": job.result.get("profile"),
        },
        "zlt_version": __version__,
        "python": platform.python_version(),
        "gpu": _gpu(job.result),
        "base_model": spec.model.base.model_dump(mode="json"),
        "lora_config": trained.lora_config() if trained is not None else spec.model.lora.model_dump(mode="json"),
        "lora_config_spec": spec.model.lora.model_dump(mode="json"),
        "trained": trained.to_dict() if trained is not None else None,
        "key_format": spec.output.key_format,
        "spec_sha256": spec_sha256,
        "dataset": {
            "source": ds.get("source") or spec.dataset.path,
            "prepared_dir": ds.get("prepared_dir"),
            "manifest": ds.get("manifest"),
            "dataset_sha256": ds.get("dataset_sha256"),
            "num_images": ds.get("num_images"),
            # files prepare left out: unreadable images (by default skipped, dataset.strict refuses), duplicates, ...
            "skipped": [{"file": x.get("file"), "reason": x.get("reason")} for x in ds.get("skipped") or []
                        if isinstance(x, dict)],
            "repeats": spec.dataset.repeats,
            "resolution": spec.dataset.resolution,
            "auto_captions": ds.get("auto_captions"),  # dataset.caption.auto: model, prompt, files captioned
        },
        "training": {
            "max_steps": spec.training.max_steps,
            "final_step": final_step,
            "learning_rate": spec.training.learning_rate,
            "batch_size": spec.training.batch_size,
            "gradient_accumulation": spec.training.gradient_accumulation,
            "scheduler": spec.training.scheduler,
            # what the spec asked for and what the trainer ran (the CPU trains in 32-true whatever the spec says)
            "precision_requested": spec.training.mixed_precision,
            "precision_used": getattr(trained, "precision", None),
            "precision_source": (getattr(trained, "sources", None) or {}).get("precision"),
        },
        "eval_during_training": job.result.get("eval_during_training"),
        "final_loss": summary.get("final_loss"),
        "final_loss_avg": summary.get("final_loss_avg"),
        "min_loss": summary.get("min_loss"),
        "it_s": it_s,
        "curve_summary": summary,
        "curve": curve.to_dict(),
        "lora": lora,
        "checkpoints": checkpoints,
        "samples": samples,
        "warnings": notes,
        "files": files,
    }
