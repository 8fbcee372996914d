"""Spec x profile -> `trainer.json` for the built-in trainer (`python -m zlt.trainer trainer.json`). Pure."""

from __future__ import annotations

from zlt.backends.base import Backend
from zlt.backends.lightning.memory import resolve_quantize, runtime_config, speed_notes
from zlt.core.errors import FieldError, SpecError
from zlt.core.paths import cache_dir, zlt_home
from zlt.profiles import HardwareProfile
from zlt.render.base import FieldNote, RenderContext, RenderResult, about
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


def _precision(spec: JobSpec, profile: HardwareProfile, runtime: RuntimeConfig, warnings: list[FieldNote]) -> tuple[str, str]:
    """(Fabric precision, base weight dtype)."""
    if runtime.accelerator == "cpu":
        if spec.is_tiny or spec.model.base.precision == "fp32":
            return "32-true", "fp32"
        # a real-size base stays in bf16 on the CPU: an fp32 copy would need twice the host memory (24.6 GB for the
        # transformer alone); found by bench/realsize.py
        if spec.training.mixed_precision not in ("fp32", "no"):
            warnings.append(about("training.mixed_precision", "the CPU trains without autocast (32-true): the bf16 "
                                  "base layers compute in bf16, the LoRA in fp32"))
        return "32-true", "bf16"
    compute = compute_precision(spec, profile, warnings)
    weights = spec.model.base.precision
    if weights == "fp16" and profile.bf16:
        weights = "bf16"  # Z-Image ships bf16 weights; fp16 would overflow in the attention
    if compute == "fp32":
        return "32-true", "fp32"
    if compute == "fp16" and weights == "bf16":
        weights = "fp16"
    return _FABRIC_PRECISION[compute], weights


def _model_name(spec: JobSpec, warnings: list[FieldNote]) -> str:
    name, extras = variant_model(spec)
    if extras is not None:
        warnings.append(about("model.base.variant", f"the built-in trainer loads every part from one repo; {name} has only "
                        f"the transformer (its VAE and text encoder are {extras}'s): give model.base.name a local "
                        "diffusers folder that holds all of them"))
    return name


def gradient_checkpointing_lever(profile: HardwareProfile) -> tuple[bool, str]:
    return profile.lightning.gradient_checkpointing and not profile.is_cpu, f"profile {profile.name} (lightning lever)"


def render_lightning(spec: JobSpec, profile: HardwareProfile, ctx: RenderContext, backend: Backend) -> RenderResult:
    warnings: list[FieldNote] = spec_warnings(spec, "lightning", multi_gpu=True, reads_weight_files=False)
    notes: list[FieldNote] = []
    tr, ds, base, lora = spec.training, spec.dataset, spec.model.base, spec.model.lora
    runtime = runtime_config(spec, profile)
    precision, weight_dtype = _precision(spec, profile, runtime, warnings)
    if spec.is_tiny:
        warnings.append(FieldNote(TINY_LABEL))  # about the model as a whole, no one field
    float8, float8_source = resolve_quantize(spec, profile, backend)
    if float8 and base.quantize == "auto":
        # filed under no field, as --explain always has: the speed note below says the same under model.base.quantize
        warnings.append(FieldNote(f"model.base.quantize auto: the built-in trainer stores the base in float8 "
                                  f"({float8_source})"))
    if tr.optimizer.use_8bit and tr.optimizer.type == "adamw" and runtime.accelerator == "cpu":
        warnings.append(about("training.optimizer.use_8bit", "AdamW 8-bit needs CUDA; the CPU run uses 32-bit AdamW"))
    eight_bit_note(spec, warnings)
    lr = optimizer_lr(spec, warnings)
    gc, gc_why = resolve_gradient_checkpointing(spec, gradient_checkpointing_lever(profile))
    notes.append(about("training.gradient_checkpointing", f"{'on' if gc else 'off'} ({gc_why})"))
    notes += [about(field, note) for field, note in speed_notes(spec, profile, float8, float8_source, gc)]
    resolution = min(ds.resolution, profile.resolution_cap)
    if resolution < ds.resolution:
        warnings.append(about("dataset.resolution", f"{ds.resolution} capped to {resolution} by profile {profile.name}"))
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
