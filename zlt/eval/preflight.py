"""The preflight check for `eval.enable`: the metric model must be loadable when training ends, so it is checked
before training starts (a missing one fails the job at once, not hours later)."""

from __future__ import annotations

from typing import Any

from zlt.infer.pipeline import gpu_plan
from zlt.preflight.clip_model import check_clip
from zlt.preflight.report import Check


def eval_checks(spec: Any, profile: Any, report: Any) -> list[Any]:
    """The preflight checks evaluation adds to a training job: the metric model, and the second pipeline of
    `eval.every` / `eval.early_stop` beside the trainer (`run_preflight(extra_checks=...)`)."""
    if not (spec.eval.enable or spec.eval.during_training_every(spec.output.save.every)):
        return []
    training_gb = report.estimate.total_gb if report.estimate else None
    return [eval_model_check(spec), *live_eval_checks(spec, profile, training_gb, report.budget_gb)]


def eval_model_check(spec: Any) -> Any:
    """A preflight Check named `eval_model` (pass, warn when it would be downloaded, fail when it cannot load)."""
    c = check_clip(spec.eval.models.clip)
    status = "fail" if not c.ok else "warn" if c.source == "download" else "pass"
    return Check("eval_model", status, f"eval.models.clip: {c.message}", c.hint if not c.ok else "",
                 details={"model": c.name, "source": c.source})


CLIP_L_PARAMS_B = 0.428  # openai/clip-vit-large-patch14, loaded in fp32 by ClipScorer
GIB = float(1 << 30)
CUDA_CONTEXT_GB = 0.5  # a second process's CUDA context (cuBLAS workspace, kernels), not measured here (no GPU)


def live_pipeline_gb(spec: Any, profile: Any, free_gb: float) -> dict[str, float]:
    """GiB a second Z-Image pipeline and the metric model hold on the training GPU while checkpoints are scored.
    The pipeline is placed as `zlt generate` places it on a card with `free_gb` (what training leaves; the evaluator
    asks CUDA for the real free memory when it starts): float8 transformer where a profile of that size quantises,
    model CPU offload below 24 GB (zlt/infer/pipeline.py `gpu_plan`)."""
    c = profile.estimator
    plan = gpu_plan(max(free_gb, 0.0))
    transformer = c.transformer_params_b * 1e9 * (c.quant_bytes_per_param if plan.float8 else 2.0) / GIB
    text_encoder = c.text_encoder_params_b * 1e9 * 2.0 / GIB
    size = spec.eval.size or spec.dataset.resolution
    drawing = c.sample_gb * (size / 1024) ** 2
    if plan.offload:  # one component on the GPU at a time
        pipeline = max(text_encoder, transformer + drawing) + c.vae_gb
    else:
        pipeline = transformer + text_encoder + c.vae_gb + drawing
    clip = CLIP_L_PARAMS_B * 1e9 * 4.0 / GIB
    context = CUDA_CONTEXT_GB  # the runner's own process touches CUDA too, once it draws
    return {"pipeline": round(pipeline, 2), "metric_model": round(clip, 2), "cuda_context": context,
            "total": round(pipeline + clip + context, 2), "float8": plan.float8, "offload": plan.offload}


def live_eval_checks(spec: Any, profile: Any, training_gb: float | None, budget_gb: float | None) -> list[Any]:
    """Checks for `eval.every` / `eval.early_stop`: the GPU must hold the trainer and a second pipeline at once,
    and the checkpoints the early-stop rule compares should outlive the run."""
    every = spec.eval.during_training_every(spec.output.save.every)
    if not every:
        return []
    out = []
    early = spec.eval.early_stop
    if early.enable and spec.output.save.keep < early.patience + 1:
        out.append(Check("eval_during_training", "warn",
                         f"eval.early_stop compares the last {early.patience + 1} evaluations but output.save.keep "
                         f"is {spec.output.save.keep}: the best checkpoint may be gone when the run stops",
                         f"--set output.save.keep={early.patience + 1}"))
    if every % spec.output.save.every:
        out.append(Check("eval_during_training", "warn",
                         f"eval.every {every} is not a multiple of output.save.every {spec.output.save.every}: the "
                         f"first checkpoint saved at or after each multiple is scored",
                         f"--set eval.every={max(spec.output.save.every, every // spec.output.save.every * spec.output.save.every)}"))
    if spec.is_tiny or profile.is_cpu:
        out.append(Check("eval_during_training", "pass",
                         f"checkpoints are scored every {every} steps on the CPU while the tiny model trains"))
        return out
    need = live_pipeline_gb(spec, profile, (budget_gb or profile.vram_gb) - (training_gb or 0.0))
    details = {"every": every, "eval_gb": need, "training_gb": training_gb, "budget_gb": budget_gb}
    if training_gb is None or budget_gb is None:
        out.append(Check("eval_during_training", "warn",
                         f"scoring checkpoints while training needs about {need['total']:.1f} GiB beside the trainer "
                         "(no training estimate to add it to)", "", details))
        return out
    total = training_gb + need["total"]
    if total > budget_gb:
        out.append(Check("eval_during_training", "fail",
                         f"eval.every/eval.early_stop load a second pipeline on the training GPU: estimated "
                         f"{training_gb:.1f} GiB training + {need['total']:.1f} GiB evaluation = {total:.1f} GiB > "
                         f"{budget_gb:.1f} GiB",
                         "set eval.every: null and eval.early_stop: false (with eval.enable: true the artifact is "
                         f"evaluated after training, when the GPU is free), or use a GPU with {total:.0f} GiB or more",
                         details))
        return out
    out.append(Check("eval_during_training", "pass",
                     f"training {training_gb:.1f} GiB + evaluation {need['total']:.1f} GiB = {total:.1f} GiB fits "
                     f"{budget_gb:.1f} GiB; checkpoints are scored every {every} steps", details=details))
    return out
