"""Spec x profile -> musubi-tuner's dataset TOML plus the argv of its three steps
(cache latents, cache text-encoder outputs, train)."""

from __future__ import annotations

from pathlib import Path

from zlt.profiles import HardwareProfile
from zlt.render.base import RenderContext, RenderResult
from zlt.render.common import compute_precision
from zlt.render.jinja import render_template
from zlt.spec.models import JobSpec

DATASET_TOML = "musubi_dataset.toml"
SCRIPTS = "src/musubi_tuner"
# Comfy-Org/z_image split-file names; used when the spec names no local weight files.
DEFAULT_FILES = {
    "turbo": "z_image_turbo_bf16.safetensors",
    "deturbo": "z_image_de_turbo_v1_bf16.safetensors",
    "base": "z_image_bf16.safetensors",
    "vae": "ae.safetensors",
    "text_encoder": "qwen_3_4b.safetensors",
    "adapter": "zimage_turbo_training_adapter_v2.safetensors",
}
_TIMESTEPS = {"sigmoid": "sigmoid", "uniform": "uniform", "shift": "shift"}


def _models_dir(ctx: RenderContext) -> Path:
    if ctx.models_dir is not None:
        return ctx.models_dir
    from zlt.paths import zlt_home

    return zlt_home() / "models" / "z-image"


def _weights(spec: JobSpec, ctx: RenderContext, warnings: list[str]) -> dict[str, str | None]:
    base = spec.model.base
    root = _models_dir(ctx)
    out: dict[str, str | None] = {
        "dit": base.dit, "vae": base.vae, "text_encoder": base.text_encoder,
    }
    defaults = {"dit": DEFAULT_FILES[base.variant], "vae": DEFAULT_FILES["vae"],
                "text_encoder": DEFAULT_FILES["text_encoder"]}
    missing = [k for k, v in out.items() if not v]
    for k in missing:
        out[k] = str(root / defaults[k])
    if missing:
        warnings.append(
            f"model.base.{'/'.join(missing)}: musubi needs local weight files; using {root} "
            "(set model.base.dit/vae/text_encoder to your files)"
        )
    adapter = spec.adapter_path()
    is_hub_file = bool(adapter) and adapter.count("/") == 2 and not adapter.startswith(("/", ".", "~"))
    if adapter and is_hub_file and not Path(adapter).exists():
        local = root / Path(adapter).name
        warnings.append(f"model.base.training_adapter: musubi cannot download {adapter}; expecting it at {local}")
        adapter = str(local)
    out["adapter"] = adapter
    return out


def _optimizer(spec: JobSpec) -> str:
    opt = spec.training.optimizer
    if opt.type == "adamw":
        return "adamw8bit" if opt.use_8bit else "adamw"
    if opt.type == "prodigy":
        return "prodigyopt.Prodigy"
    return "adafactor"


def render_musubi(spec: JobSpec, profile: HardwareProfile, ctx: RenderContext) -> RenderResult:
    warnings: list[str] = []
    tr = spec.training
    lev = profile.musubi
    mode = spec.model.base.quantize
    fp8 = lev.fp8_base if mode == "auto" else mode == "float8"
    fp8_scaled = lev.fp8_scaled and fp8
    fp8_llm = lev.fp8_llm if mode == "auto" else mode == "float8"
    precision = compute_precision(spec, profile, warnings)
    mp = {"bf16": "bf16", "fp16": "fp16", "fp32": "no"}[precision]
    res = min(spec.dataset.resolution, profile.resolution_cap)
    dataset_dir = ctx.dataset_dir or Path(spec.dataset.path)
    cache_dir = (ctx.cache_dir / "musubi" / spec.name) if ctx.cache_dir else Path("cache") / spec.name
    toml_text = render_template(
        "musubi/dataset.toml.j2",
        resolution=[res, res],
        caption_extension="." + spec.dataset.caption.caption_ext,
        batch_size=tr.batch_size,
        bucket_no_upscale=not spec.dataset.upscale,
        image_directory=str(dataset_dir),
        cache_directory=str(cache_dir),
        num_repeats=spec.dataset.repeats,
    )
    if spec.dataset.augment.color_jitter:
        warnings.append("dataset.augment.color_jitter: not supported by musubi-tuner; ignored")
    if set(spec.model.lora.target_modules) - {"attention.to_q", "attention.to_k", "attention.to_v", "attention.to_out"}:
        warnings.append("model.lora.target_modules: musubi's networks.lora_zimage picks its own targets "
                        "(attention and feed-forward of the main layers)")

    w = _weights(spec, ctx, warnings)
    py = ctx.python
    dcfg = ctx.config_path(DATASET_TOML)
    cache_latents = [py, f"{SCRIPTS}/zimage_cache_latents.py", "--dataset_config", dcfg, "--vae", str(w["vae"]),
                     "--skip_existing"]
    cache_te = [py, f"{SCRIPTS}/zimage_cache_text_encoder_outputs.py", "--dataset_config", dcfg,
                "--text_encoder", str(w["text_encoder"]), "--batch_size", "16", "--skip_existing"]
    if fp8_llm:
        cache_te.append("--fp8_llm")

    ts = _TIMESTEPS.get(tr.timestep_type)
    if ts is None:
        warnings.append(f"training.timestep_type: musubi has no '{tr.timestep_type}'; using 'shift' (its Z-Image default)")
        ts = "shift"
    steps_left = max(tr.max_steps - ctx.resume_step, 1)
    scheduler = tr.scheduler
    if scheduler == "constant" and tr.warmup_steps:
        scheduler = "constant_with_warmup"
    train = [
        py, "-m", "accelerate.commands.launch", "--num_cpu_threads_per_process", "1", "--mixed_precision", mp,
        f"{SCRIPTS}/zimage_train_network.py",
        "--dit", str(w["dit"]), "--vae", str(w["vae"]), "--text_encoder", str(w["text_encoder"]),
        "--dataset_config", dcfg, "--sdpa", "--mixed_precision", mp,
        "--timestep_sampling", ts, "--weighting_scheme", "none", "--discrete_flow_shift", "2.0",
        "--optimizer_type", _optimizer(spec),
        "--optimizer_args", f"weight_decay={tr.optimizer.weight_decay}",
        "--learning_rate", repr(tr.learning_rate),
        "--lr_scheduler", scheduler, "--lr_warmup_steps", str(min(tr.warmup_steps, steps_left - 1)),
        "--gradient_accumulation_steps", str(tr.gradient_accumulation),
        "--max_data_loader_n_workers", "2", "--persistent_data_loader_workers",
        "--network_module", "networks.lora_zimage",
        "--network_dim", str(spec.model.lora.rank), "--network_alpha", f"{spec.model.lora.alpha:g}",
        "--max_train_steps", str(steps_left),
        "--save_every_n_steps", str(spec.output.save.every),
        "--save_last_n_steps", str(spec.output.save.every * spec.output.save.keep),
        "--save_state", "--save_last_n_steps_state", str(spec.output.save.every * spec.output.save.keep),
        "--save_precision", {"bf16": "bf16", "fp16": "fp16", "fp32": "float"}[spec.output.save.dtype],
        "--seed", str(tr.seed),
        "--output_dir", str(ctx.output_dir), "--output_name", spec.name,
    ]
    if spec.model.lora.dropout:
        train += ["--network_dropout", f"{spec.model.lora.dropout:g}"]
    if tr.gradient_checkpointing or lev.gradient_checkpointing:
        train.append("--gradient_checkpointing")
    if lev.gradient_checkpointing_cpu_offload:
        train.append("--gradient_checkpointing_cpu_offload")
    if fp8:
        train.append("--fp8_base")
    if fp8_scaled:
        train.append("--fp8_scaled")
    if lev.blocks_to_swap:
        train += ["--blocks_to_swap", str(lev.blocks_to_swap)]
    if w["adapter"]:
        train += ["--base_weights", str(w["adapter"]), "--base_weights_multiplier", "1.0"]
    if ctx.resume_from is not None:
        train += ["--resume", str(ctx.resume_from)]
    elif ctx.init_lora is not None:
        train += ["--network_weights", str(ctx.init_lora)]
    return RenderResult(
        backend="musubi",
        profile=profile.name,
        files={DATASET_TOML: toml_text},
        argv=[cache_latents, cache_te, train],
        cwd=str(ctx.trainer_root) if ctx.trainer_root else None,
        warnings=warnings,
        step_names=["cache_latents", "cache_text_encoder_outputs", "train"],
    )
