"""Spec x profile -> `trainer.json` for the built-in trainer (`python -m zlt.trainer trainer.json`). Pure."""

from __future__ import annotations

from zlt.core.errors import FieldError, SpecError
from zlt.core.paths import cache_dir, zlt_home
from zlt.profiles import HardwareProfile
from zlt.render.base import RenderContext, RenderResult
from zlt.render.common import (
    PRODIGY_EPS,
    compute_precision,
    eight_bit_note,
    optimizer_lr,
    resolve_gradient_checkpointing,
    sample_prompts,
    sample_steps_guidance,
    spec_warnings,
    trained_summary,
    variant_model,
)
from zlt.spec.models import JobSpec
from zlt.trainer.config import (
    CacheConfig,
    DataConfig,
    LoraConfig,
    ModelConfig,
    OptimizerConfig,
    OutputConfig,
    RuntimeConfig,
    SampleConfig,
    TrainerConfig,
    TrainingConfig,
    map_target_modules,
)
from zlt.trainer.tiny import TINY_LABEL

CONFIG_NAME = "trainer.json"
_FABRIC_PRECISION = {"bf16": "bf16-mixed", "fp16": "16-mixed", "fp32": "32-true"}


def _targets(spec: JobSpec) -> list[str]:
    targets, unknown = map_target_modules(spec.model.lora.target_modules)
    if unknown:
        raise SpecError([
            FieldError(f"model.lora.target_modules[{i}]", f"unknown module {name!r}",
                       "use attention.to_q/to_k/to_v/to_out, feed_forward.w1/w2/w3 or adaLN_modulation")
            for i, name in unknown
        ], "spec")
    return targets


def _runtime(spec: JobSpec, profile: HardwareProfile) -> RuntimeConfig:
    on_cpu = profile.is_cpu or spec.job.resources.gpu == 0 or profile.lightning.device == "cpu"
    if on_cpu:
        return RuntimeConfig(accelerator="cpu", devices=1)
    gpus = max(1, spec.job.resources.gpu)
    return RuntimeConfig(accelerator="cuda", devices=gpus, strategy="ddp" if gpus > 1 else "auto")


def _precision(spec: JobSpec, profile: HardwareProfile, runtime: RuntimeConfig, warnings: list[str]) -> tuple[str, str]:
    """(Fabric precision, base weight dtype)."""
    if runtime.accelerator == "cpu":
        if spec.training.mixed_precision not in ("fp32", "no") and not spec.is_tiny:
            warnings.append("training.mixed_precision: the CPU trains in fp32 (32-true)")
        return "32-true", "fp32"
    compute = compute_precision(spec, profile, warnings)
    weights = spec.model.base.precision
    if weights == "fp16" and profile.bf16:
        weights = "bf16"  # Z-Image ships bf16 weights; fp16 would overflow in the attention
    if compute == "fp32":
        return "32-true", "fp32"
    if compute == "fp16" and weights == "bf16":
        weights = "fp16"
    return _FABRIC_PRECISION[compute], weights


def _model_name(spec: JobSpec, warnings: list[str]) -> str:
    name, extras = variant_model(spec)
    if extras is not None:
        warnings.append(f"model.base.variant: the built-in trainer loads every part from one repo; {name} has only "
                        f"the transformer (its VAE and text encoder are {extras}'s): give model.base.name a local "
                        "diffusers folder that holds all of them")
    return name



def speed_notes(spec: JobSpec, profile: HardwareProfile, float8: bool, float8_source: str,
                gradient_checkpointing: bool) -> list[tuple[str, str]]:
    """(field, note) for each of the built-in trainer's speed switches under this profile: float8 storage, compile,
    attention kernel, DDP. `zlt render --explain` and the VRAM estimate (`zlt preflight --explain`) print these
    same lines; the trainer decides again with the same functions where it runs."""
    from zlt.trainer.accel import decide_attention, decide_compile

    tr = spec.training
    runtime = _runtime(spec, profile)
    if float8:
        storage = (f"float8 storage ({float8_source}): transformer and text encoder weights in float8, each layer cast "
                   "to bf16 for its forward" + ("" if gradient_checkpointing else
                                                "; without checkpointing autograd keeps every bf16 copy"))
    else:
        storage = f"base weights stored in their dtype ({float8_source})"
    out = [("model.base.quantize", storage)]
    compiled, _ = decide_compile(tr.compile, runtime.accelerator, float8)
    why = ("float8 storage cannot be compiled" if float8 and tr.compile != "off" else
           f"training.compile {tr.compile}" + (f", {runtime.accelerator}" if tr.compile == "auto" else ""))
    out.append(("training.compile", f"torch.compile of the repeated blocks {'on' if compiled else 'off'} ({why})"))
    if runtime.accelerator == "cuda":
        attention, _ = decide_attention("auto", "cuda", tr.batch_size)
        told = {"flash": "flash_attn is installed here, batch 1", "sdpa": "torch SDPA"}[attention]
        out.append(("training.batch_size", f"attention {attention} ({told}; decided again where the trainer runs)"))
    if runtime.devices > 1:
        n, b, a = runtime.devices, tr.batch_size, tr.gradient_accumulation
        out.append(("job.resources.gpu", f"DDP on {n} GPUs, one process each (Fabric, dataset sharded), every GPU needs "
                    f"this estimate; effective batch {b * a * n} = batch {b} x accumulation {a} x {n} GPUs"))
    return out


def render_lightning(spec: JobSpec, profile: HardwareProfile, ctx: RenderContext) -> RenderResult:
    warnings: list[str] = spec_warnings(spec, "lightning")
    notes: list[str] = []
    tr, ds, base, lora = spec.training, spec.dataset, spec.model.base, spec.model.lora
    runtime = _runtime(spec, profile)
    precision, weight_dtype = _precision(spec, profile, runtime, warnings)
    if spec.is_tiny:
        warnings.append(TINY_LABEL)
    from zlt.preflight.vram import resolve_lightning_quantize

    float8, float8_source = resolve_lightning_quantize(spec, profile)
    if float8 and base.quantize == "auto":
        warnings.append(f"model.base.quantize auto: the built-in trainer stores the base in float8 ({float8_source})")
    if tr.optimizer.use_8bit and tr.optimizer.type == "adamw" and runtime.accelerator == "cpu":
        warnings.append("training.optimizer.use_8bit: AdamW 8-bit needs CUDA; the CPU run uses 32-bit AdamW")
    eight_bit_note(spec, warnings)
    lr = optimizer_lr(spec, warnings)
    gc, gc_why = resolve_gradient_checkpointing(spec, profile, "lightning")
    notes.append(f"training.gradient_checkpointing: {'on' if gc else 'off'} ({gc_why})")
    notes += [f"{field}: {note}" for field, note in speed_notes(spec, profile, float8, float8_source, gc)]
    resolution = min(ds.resolution, profile.resolution_cap)
    if resolution < ds.resolution:
        warnings.append(f"dataset.resolution: {ds.resolution} capped to {resolution} by profile {profile.name}")
    prompts = sample_prompts(spec) if tr.sample.enable else []
    sample_steps, guidance = sample_steps_guidance(spec)
    model_name = _model_name(spec, warnings) if not spec.is_tiny else base.name

    cfg = TrainerConfig(
        name=spec.name,
        job_id=ctx.job_id,
        model=ModelConfig(name=model_name, source=base.source, weight_dtype=weight_dtype,
                          training_adapter=spec.adapter_path(), quantize="float8" if float8 else "none"),
        lora=LoraConfig(rank=lora.rank, alpha=lora.alpha, dropout=lora.dropout, target_modules=_targets(spec)),
        data=DataConfig(
            path=str(ctx.dataset_dir or ds.path), caption_ext=ds.caption.caption_ext,
            caption_strategy=ds.caption.strategy, default_caption=ds.caption.default_caption,
            trigger=spec.trigger, trigger_position=ds.caption.trigger_position, resolution=resolution,
            upscale=ds.upscale, repeats=ds.repeats, shuffle=ds.shuffle, horizontal_flip=ds.augment.horizontal_flip,
            color_jitter=ds.augment.color_jitter, caption_dropout=ds.caption.dropout,
        ),
        training=TrainingConfig(
            batch_size=tr.batch_size, gradient_accumulation=tr.gradient_accumulation, max_steps=tr.max_steps,
            warmup_steps=tr.warmup_steps, learning_rate=lr, scheduler=tr.scheduler,
            # eps 1e-6: ai-toolkit passes it itself for AdamW and Prodigy and cannot be told otherwise
            optimizer=OptimizerConfig(type=tr.optimizer.type, use_8bit=tr.optimizer.use_8bit,
                                      weight_decay=tr.optimizer.weight_decay, eps=PRODIGY_EPS),
            precision=precision, gradient_checkpointing=gc, timestep_type=tr.timestep_type,
            timestep_shift=tr.timestep_shift,
            content_or_style=tr.content_or_style, seed=tr.seed, stop_on_nan=tr.stop_on_nan,
            compile=tr.compile,
        ),
        runtime=runtime,
        # latents go to <cache>/latents/, caption embeddings to <cache>/text/ (zlt.trainer.cache.DiskCache)
        cache=CacheConfig(dir=str(ctx.cache_dir or cache_dir(zlt_home())),
                          text_embeddings=profile.lightning.cache_text_embeddings),
        output=OutputConfig(dir=str(ctx.output_dir), save_every=spec.output.save.every, keep=spec.output.save.keep,
                            save_dtype=spec.output.save.dtype, resume=ctx.resume,
                            init_lora=str(ctx.init_lora) if ctx.init_lora else None),
        sample=SampleConfig(enable=tr.sample.enable, every=tr.sample.every, prompts=prompts, steps=sample_steps,
                            guidance_scale=guidance, seed=tr.sample.seed, width=resolution,
                            height=resolution),
    )
    return RenderResult(
        backend="lightning",
        profile=profile.name,
        files={CONFIG_NAME: cfg.model_dump_json(indent=2) + "\n"},
        argv=[[ctx.python, "-m", "zlt.trainer", ctx.config_path(CONFIG_NAME)]],
        warnings=warnings,
        step_names=["train"],
        notes=notes,
        trained=trained_summary(spec, alpha=lora.alpha, gradient_checkpointing=gc, timestep_type=tr.timestep_type,
                                timestep_shift=tr.timestep_shift, learning_rate=lr),
    )


def trainer_config_from_render(result: RenderResult) -> TrainerConfig:
    """The typed config back from a render (tests, `zlt render --explain`)."""
    return TrainerConfig.model_validate_json(result.files[CONFIG_NAME])


__all__ = ["CONFIG_NAME", "render_lightning", "trainer_config_from_render"]
