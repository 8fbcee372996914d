"""Spec x profile -> an ai-toolkit job YAML for Z-Image-Turbo (`python run.py CONFIG -l LOG`)."""

from __future__ import annotations

from pathlib import Path

from zlt.profiles import HardwareProfile
from zlt.render.base import RenderContext, RenderResult
from zlt.render.common import bucket_resolutions, compute_precision, sample_prompts
from zlt.render.jinja import render_template
from zlt.spec.models import JobSpec

CONFIG_NAME = "ai_toolkit.yaml"
_TIMESTEPS = {"sigmoid": "sigmoid", "weighted": "weighted", "uniform": "linear"}


def _optimizer(spec: JobSpec) -> str:
    opt = spec.training.optimizer
    if opt.type == "adamw":
        return "adamw8bit" if opt.use_8bit else "adamw"
    if opt.type == "prodigy":
        return "prodigy8bit" if opt.use_8bit else "prodigy"
    return "adafactor"


def _scheduler(spec: JobSpec, warnings: list[str]) -> tuple[str, dict]:
    tr = spec.training
    if tr.scheduler == "constant":
        if tr.warmup_steps:
            return "constant_with_warmup", {"num_warmup_steps": tr.warmup_steps}
        return "constant", {}
    if tr.warmup_steps:
        warnings.append(
            f"training.warmup_steps: ai-toolkit's {tr.scheduler} schedule has no warmup; {tr.warmup_steps} ignored"
        )
    return tr.scheduler, {}


def _levers(spec: JobSpec, profile: HardwareProfile) -> dict:
    lev = profile.ai_toolkit
    mode = spec.model.base.quantize
    q = lev.quantize if mode == "auto" else mode == "float8"
    q_te = lev.quantize_te if mode == "auto" else mode == "float8"
    return {"quantize": q, "qtype": lev.qtype, "quantize_te": q_te, "qtype_te": lev.qtype_te,
            "low_vram": lev.low_vram, "cache_text_embeddings": lev.cache_text_embeddings}


def render_aitoolkit(spec: JobSpec, profile: HardwareProfile, ctx: RenderContext) -> RenderResult:
    warnings: list[str] = []
    tr = spec.training
    ts = _TIMESTEPS.get(tr.timestep_type)
    if ts is None:
        warnings.append(f"training.timestep_type: ai-toolkit has no '{tr.timestep_type}'; using 'weighted'")
        ts = "weighted"
    lr_scheduler, lr_params = _scheduler(spec, warnings)
    dtype = compute_precision(spec, profile, warnings)
    if spec.model.lora.dropout:
        warnings.append("model.lora.dropout: ai-toolkit's LoRA network has no dropout; ignored")
    if spec.dataset.augment.color_jitter:
        warnings.append("dataset.augment.color_jitter: not supported by ai-toolkit; ignored")
    dataset_dir = ctx.dataset_dir or Path(spec.dataset.path)
    values = {
        "name": spec.name,
        "training_folder": str(ctx.output_dir),
        "device": "cuda",
        "trigger_word": spec.trigger,
        "rank": spec.model.lora.rank,
        "alpha": int(spec.model.lora.alpha) if float(spec.model.lora.alpha).is_integer() else spec.model.lora.alpha,
        "only_if_contains": list(spec.model.lora.target_modules),
        "pretrained_lora_path": str(ctx.init_lora) if ctx.init_lora else None,
        "save_dtype": spec.output.save.dtype,
        "save_every": spec.output.save.every,
        "keep": spec.output.save.keep,
        "folder_path": str(dataset_dir),
        "caption_ext": spec.dataset.caption.caption_ext,
        "default_caption": spec.dataset.caption.default_caption,
        "caption_dropout": spec.dataset.caption.dropout,
        "resolutions": bucket_resolutions(spec, profile),
        "repeats": spec.dataset.repeats,
        "flip_x": spec.dataset.augment.horizontal_flip,
        "batch_size": tr.batch_size,
        "steps": tr.max_steps,
        "gradient_accumulation": tr.gradient_accumulation,
        "gradient_checkpointing": tr.gradient_checkpointing,
        "optimizer": _optimizer(spec),
        "optimizer_params": {"weight_decay": tr.optimizer.weight_decay},
        "lr": tr.learning_rate,
        "lr_scheduler": lr_scheduler,
        "lr_scheduler_params": lr_params,
        "timestep_type": ts,
        "content_or_style": tr.content_or_style,
        "train_dtype": dtype,
        "disable_sampling": not tr.sample.enable,
        "model_path": spec.model.base.name,
        "assistant_lora_path": spec.adapter_path(),
        "sample_every": tr.sample.every,
        "sample_size": min(spec.dataset.resolution, profile.resolution_cap),
        "sample_prompts": sample_prompts(spec),
        "sample_seed": tr.sample.seed,
        "guidance_scale": tr.sample.guidance_scale,
        "sample_steps": tr.sample.steps,
        **_levers(spec, profile),
    }
    text = render_template("ai-toolkit/zimage_lora.yaml.j2", **values)
    argv = [ctx.python, "run.py", ctx.config_path(CONFIG_NAME)]
    if ctx.log_path is not None:
        argv += ["-l", str(ctx.log_path)]
    return RenderResult(
        backend="ai-toolkit",
        profile=profile.name,
        files={CONFIG_NAME: text},
        argv=[argv],
        cwd=str(ctx.trainer_root) if ctx.trainer_root else None,
        warnings=warnings,
        step_names=["train"],
    )
