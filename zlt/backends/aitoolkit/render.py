"""Spec x profile -> an ai-toolkit job YAML for Z-Image (`SEED=<seed> python run.py CONFIG -l LOG`). What each spec
field becomes: AITOOLKIT_MAP in `zlt.backends.parity_maps`; docs/parity.md is generated from it."""

from __future__ import annotations

from pathlib import Path

from zlt.profiles import HardwareProfile
from zlt.render.base import FieldNote, RenderContext, RenderResult, about
from zlt.render.common import (
    bucket_resolutions,
    compute_precision,
    eight_bit_note,
    optimizer_lr,
    resolve_gradient_checkpointing,
    sample_prompts,
    sample_steps_guidance,
    spec_warnings,
    trained_summary,
    variant_model,
    weight_dtype_note,
)
from zlt.render.jinja import render_template
from zlt.spec.models import JobSpec

CONFIG_NAME = "ai_toolkit.yaml"
_TIMESTEPS = {"sigmoid": "sigmoid", "weighted": "weighted", "uniform": "linear", "shift": "shift"}
# extensions_built_in/diffusion_models/z_image/z_image.py: scheduler_config shift, fixed for every Z-Image variant
AITOOLKIT_SHIFT = 3.0
PERFORMANCE_LOG_EVERY_DEBUG = 10


def _optimizer(spec: JobSpec, warnings: list[FieldNote]) -> tuple[str, dict]:
    """(train.optimizer, train.optimizer_params). ai-toolkit passes eps=1e-6 itself for AdamW and Prodigy."""
    tr = spec.training
    opt = tr.optimizer
    eight_bit_note(spec, warnings)
    params: dict = {"weight_decay": opt.weight_decay}
    if opt.type == "adamw":
        return ("adamw8bit" if opt.use_8bit else "adamw"), params
    if opt.type == "prodigy":
        # 'prodigy8bit' is ai-toolkit's own variant; plain Prodigy is what musubi and the built-in trainer run
        return "prodigy", {**params, "use_bias_correction": True, "safeguard_warmup": tr.warmup_steps > 0}
    return "adafactor", {**params, "relative_step": False, "scale_parameter": False, "warmup_init": False}


def _scheduler(spec: JobSpec, warnings: list[FieldNote]) -> tuple[str, dict]:
    """toolkit/scheduler.py: cosine is torch CosineAnnealingLR(T_max=steps), linear is torch LinearLR(total_iters=
    steps) whose default start_factor 1/3 would make the LR rise; neither has a warmup."""
    tr = spec.training
    if tr.scheduler == "constant":
        if tr.warmup_steps:
            return "constant_with_warmup", {"num_warmup_steps": tr.warmup_steps}
        return "constant", {}
    if tr.warmup_steps:
        warnings.append(
            about("training.warmup_steps", f"ai-toolkit's {tr.scheduler} schedule has no warmup; {tr.warmup_steps} ignored")
        )
    if tr.scheduler == "linear":
        return "linear", {"start_factor": 1.0, "end_factor": 0.0}
    return "cosine", {"eta_min": 0.0}


def _levers(spec: JobSpec, profile: HardwareProfile) -> dict:
    lev = profile.ai_toolkit
    mode = spec.model.base.quantize
    q = lev.quantize if mode == "auto" else mode == "float8"
    q_te = lev.quantize_te if mode == "auto" else mode == "float8"
    return {"quantize": q, "qtype": lev.qtype, "quantize_te": q_te, "qtype_te": lev.qtype_te,
            "low_vram": lev.low_vram, "cache_text_embeddings": lev.cache_text_embeddings,
            # training.compile on: ai-toolkit's own block-level torch.compile (BaseSDTrainProcess, model.compile +
            # block_compile); auto keeps upstream's default (off), since its compile of quantised weights is
            # experimental upstream
            "compile": spec.training.compile == "on"}


def _model(spec: JobSpec, warnings: list[FieldNote]) -> tuple[str, str | None]:
    if spec.model.base.source == "modelscope":
        warnings.append(about("model.base.source", "ai-toolkit downloads from the Hugging Face hub only; 'modelscope' "
                        "is not used (hf-mirror.com works through HF_ENDPOINT)"))
    return variant_model(spec)


def _alpha(spec: JobSpec, warnings: list[FieldNote], notes: list[FieldNote]) -> int:
    """toolkit/lora_special.py builds transformer LoRAs in peft format and sets alpha = rank ("no alpha for
    peft"), whatever linear_alpha says."""
    lora = spec.model.lora
    if lora.alpha != lora.rank:
        warnings.append(about("model.lora.alpha", f"ai-toolkit trains Z-Image LoRAs with alpha = rank ({lora.rank}); "
                        f"{lora.alpha:g} is not used (updates scale by 1, not {lora.alpha / lora.rank:g})"))
    notes.append(about("model.lora.alpha", f"trained with alpha {lora.rank} (= rank)"))
    return lora.rank


def gradient_checkpointing_lever(profile: HardwareProfile) -> tuple[bool, str]:
    return profile.ai_toolkit.gradient_checkpointing, f"profile {profile.name} (ai_toolkit lever)"


def render_aitoolkit(spec: JobSpec, profile: HardwareProfile, ctx: RenderContext) -> RenderResult:
    warnings: list[FieldNote] = spec_warnings(spec, "ai-toolkit", multi_gpu=False, reads_weight_files=False)
    notes: list[FieldNote] = []
    tr = spec.training
    ts = _TIMESTEPS[tr.timestep_type]
    if tr.timestep_shift != AITOOLKIT_SHIFT:
        warnings.append(about("training.timestep_shift", f"ai-toolkit fixes the Z-Image shift at {AITOOLKIT_SHIFT:g} "
                        f"(z_image.py scheduler_config); {tr.timestep_shift:g} is not used"))
    lr_scheduler, lr_params = _scheduler(spec, warnings)
    dtype = compute_precision(spec, profile, warnings)
    weight_dtype_note(spec, profile, dtype, "ai-toolkit loads the model in train.dtype", warnings)
    if spec.dataset.augment.color_jitter:
        warnings.append(about("dataset.augment.color_jitter", "not supported by ai-toolkit; ignored"))
    if not spec.dataset.shuffle:
        warnings.append(about("dataset.shuffle", "ai-toolkit always shuffles; false ignored"))
    gc, gc_why = resolve_gradient_checkpointing(spec, gradient_checkpointing_lever(profile))
    notes.append(about("training.gradient_checkpointing", f"{'on' if gc else 'off'} ({gc_why})"))
    model_path, extras = _model(spec, warnings)
    sample_steps, guidance = sample_steps_guidance(spec)
    optimizer, optimizer_params = _optimizer(spec, warnings)
    lr = optimizer_lr(spec, warnings)
    alpha = _alpha(spec, warnings, notes)
    dataset_dir = ctx.dataset_dir or Path(spec.dataset.path)
    values = {
        "name": spec.name,
        "training_folder": str(ctx.output_dir),
        "trigger_word": spec.trigger,
        "performance_log_every": PERFORMANCE_LOG_EVERY_DEBUG if spec.job.logging.level == "debug" else 0,
        "rank": spec.model.lora.rank,
        "alpha": alpha,
        "dropout": spec.model.lora.dropout,
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
        "gradient_checkpointing": gc,
        "optimizer": optimizer,
        "optimizer_params": optimizer_params,
        "lr": lr,
        "lr_scheduler": lr_scheduler,
        "lr_scheduler_params": lr_params,
        "timestep_type": ts,
        "content_or_style": tr.content_or_style,
        "train_dtype": dtype,
        "disable_sampling": not tr.sample.enable,
        "model_path": model_path,
        "extras_name_or_path": extras,
        "assistant_lora_path": spec.adapter_path(),
        "sample_every": tr.sample.every,
        "sample_size": min(spec.dataset.resolution, profile.resolution_cap),
        "sample_prompts": sample_prompts(spec),
        "sample_seed": tr.sample.seed,
        # z_image.py samples with guidance_scale - 1 ("CFG is 0 normalized"); the spec uses diffusers' scale
        "guidance_scale": guidance + 1.0,
        "sample_steps": sample_steps,
        **_levers(spec, profile),
    }
    text = render_template("ai-toolkit/zimage_lora.yaml.j2", **values)
    # run.py seeds torch/numpy/random from the SEED environment variable only
    argv = ["env", f"SEED={tr.seed}", ctx.python, "run.py", ctx.config_path(CONFIG_NAME)]
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
        notes=notes,
        trained=trained_summary(spec, alpha=alpha, gradient_checkpointing=gc, timestep_type=tr.timestep_type,
                                timestep_shift=AITOOLKIT_SHIFT, learning_rate=lr),
    )
