"""Spec x profile -> musubi-tuner's dataset TOML plus the argv of its steps (convert the turbo adapter when one is
merged, cache latents, cache text-encoder outputs, train). What each spec field becomes: MUSUBI_MAP in
`zlt.backends.parity_musubi`; docs/parity.md is generated from it."""

from __future__ import annotations

import json
import re
from pathlib import Path

from zlt.backends.musubi.adapter import CONVERTED_NAME, check_adapter_file
from zlt.core.paths import cache_dir, zlt_home
from zlt.profiles import HardwareProfile
from zlt.render.base import FieldNote, RenderContext, RenderResult, about, about_parts
from zlt.render.common import (
    BLOCKS,
    PRODIGY_EPS,
    compute_precision,
    eight_bit_note,
    optimizer_lr,
    resolve_gradient_checkpointing,
    sample_prompts,
    sample_steps_guidance,
    spec_warnings,
    target_children,
    trained_summary,
    weight_dtype_note,
)
from zlt.render.jinja import render_template
from zlt.spec.models import JobSpec

DATASET_TOML = "musubi_dataset.toml"
SAMPLE_PROMPTS = "musubi_sample_prompts.json"
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
# musubi builds any scheduler named by --lr_scheduler_type from --lr_scheduler_args alone, so the schedule's length
# is the whole run's even when a retry trains only the remaining steps (musubi's get_lr_scheduler).
SCHEDULE_FUNCTIONS = {
    "constant": "transformers.optimization.get_constant_schedule_with_warmup",
    "cosine": "transformers.optimization.get_cosine_schedule_with_warmup",
    "linear": "transformers.optimization.get_linear_schedule_with_warmup",
}
OFFICIAL_NAMES = {"Tongyi-MAI/Z-Image-Turbo", "Tongyi-MAI/Z-Image", "ostris/Z-Image-De-Turbo"}


def _models_dir(ctx: RenderContext) -> Path:
    if ctx.models_dir is not None:
        return ctx.models_dir
    return zlt_home() / "models" / "z-image"


def _weights(spec: JobSpec, ctx: RenderContext, warnings: list[FieldNote]) -> dict[str, str | None]:
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
        warnings.append(about_parts("model.base", missing, f"musubi needs local weight files; using {root} "
                                    "(set model.base.dit/vae/text_encoder to your files)"))
    if not base.dit and base.name not in OFFICIAL_NAMES:
        warnings.append(about("model.base.name", f"musubi cannot load {base.name!r}; it trains the DiT file {out['dit']} "
                        "(set model.base.dit)"))
    if base.source not in ("huggingface", "local"):
        warnings.append(about("model.base.source", f"musubi reads local weight files only; '{base.source}' is not used"))
    adapter = spec.adapter_path()
    is_hub_file = bool(adapter) and adapter.count("/") == 2 and not adapter.startswith(("/", ".", "~"))
    if adapter and is_hub_file and not Path(adapter).exists():
        local = root / Path(adapter).name
        warnings.append(about("model.base.training_adapter", f"musubi cannot download {adapter}; expecting it at {local}"))
        adapter = str(local)
    out["adapter"] = adapter
    return out


def _optimizer(spec: JobSpec, warnings: list[FieldNote]) -> tuple[str, list[str]]:
    """(--optimizer_type, --optimizer_args). Values are Python literals: musubi reads them with ast.literal_eval."""
    tr = spec.training
    opt = tr.optimizer
    eight_bit_note(spec, warnings)
    args = [f"weight_decay={opt.weight_decay!r}"]
    if opt.type == "adamw":
        # ai-toolkit hard-codes eps=1e-6 for AdamW (toolkit/optimizer.py); every backend uses it
        return ("adamw8bit" if opt.use_8bit else "adamw"), args + ["eps=1e-06"]
    if opt.type == "prodigy":
        return "prodigyopt.Prodigy", args + [f"eps={PRODIGY_EPS!r}", "use_bias_correction=True",
                                             f"safeguard_warmup={tr.warmup_steps > 0}"]
    # relative_step=True (musubi's default) would replace the spec's lr and scheduler with Adafactor's own
    return "adafactor", args + ["relative_step=False", "scale_parameter=False", "warmup_init=False"]


def _schedule(spec: JobSpec) -> list[str]:
    tr = spec.training
    name = "constant_with_warmup" if tr.scheduler == "constant" and tr.warmup_steps else tr.scheduler
    sched_args = [f"num_warmup_steps={tr.warmup_steps}"]
    if tr.scheduler != "constant":
        sched_args.append(f"num_training_steps={tr.max_steps}")
    # --lr_scheduler/--lr_warmup_steps only label the run in musubi's metadata; --lr_scheduler_type builds it
    return ["--lr_scheduler", name, "--lr_warmup_steps", str(tr.warmup_steps),
            "--lr_scheduler_type", SCHEDULE_FUNCTIONS[tr.scheduler], "--lr_scheduler_args", *sched_args]


def network_args(spec: JobSpec) -> list[str]:
    """musubi trains every Linear of its blocks unless excluded; `include_patterns` win over `exclude_patterns`
    (networks/lora.py), which also beats lora_zimage.py's own `.*(_modulation|_refiner).*` exclusion."""
    children = target_children(spec)
    blocks = "|".join(BLOCKS)
    include = [rf"({blocks})\.\d+\.{re.escape(child)}" for child in children]
    return [f"exclude_patterns={['.*']!r}", f"include_patterns={include!r}"]


def _sampling(spec: JobSpec, res: int, ctx: RenderContext, warnings: list[FieldNote]) -> tuple[dict[str, str], list[str]]:
    tr = spec.training
    if not tr.sample.enable:
        return {}, []
    steps, guidance = sample_steps_guidance(spec)
    if 0 < guidance <= 1:
        warnings.append(about("training.sample.guidance_scale", f"musubi applies CFG only above 1.0; {guidance:g} samples "
                        "without it"))
    if spec.adapter_path():
        warnings.append(about("training.sample.enable", "musubi merges the training adapter into the weights, so its samples are "
                        "drawn with the adapter on (ai-toolkit and the built-in trainer switch it off)"))
    prompts = [{"prompt": p, "width": res, "height": res, "sample_steps": steps, "cfg_scale": guidance,
                "seed": tr.sample.seed + i, "negative_prompt": ""} for i, p in enumerate(sample_prompts(spec))]
    files = {SAMPLE_PROMPTS: json.dumps(prompts, indent=2, ensure_ascii=False) + "\n"}
    return files, ["--sample_prompts", ctx.config_path(SAMPLE_PROMPTS), "--sample_every_n_steps", str(tr.sample.every)]


def _data_notes(spec: JobSpec, ctx: RenderContext, warnings: list[FieldNote], notes: list[FieldNote]) -> None:
    ds = spec.dataset
    if ds.augment.color_jitter:
        warnings.append(about("dataset.augment.color_jitter", "not supported by musubi-tuner; ignored"))
    if ds.augment.horizontal_flip:
        # musubi has no flip; like ai-toolkit's flip_x and the built-in trainer, each epoch sees both copies
        if ctx.dataset_dir is None:
            warnings.append(about("dataset.augment.horizontal_flip", "musubi cannot flip; run through zlt train/submit, "
                            "whose dataset prepare writes a mirrored copy of every image (musubi alone trains none)"))
        else:
            notes.append(about("dataset.augment.horizontal_flip", "the prepared folder holds a mirrored copy of every image"))
    if ds.caption.dropout:
        warnings.append(about("dataset.caption.dropout", f"musubi trains on cached text-encoder outputs and has no caption "
                        f"dropout; {ds.caption.dropout:g} ignored"))
    if not ds.shuffle:
        warnings.append(about("dataset.shuffle", "musubi always shuffles; false ignored"))


def _pre_steps(spec: JobSpec, ctx: RenderContext, w: dict[str, str | None], fp8_llm: bool,
               notes: list[FieldNote]) -> tuple[list[list[str]], list[str], list[str]]:
    """(argv, step names, the train step's adapter args) of the steps before training."""
    py, dcfg = ctx.python, ctx.config_path(DATASET_TOML)
    argv: list[list[str]] = []
    steps: list[str] = []
    adapter_args: list[str] = []
    if w["adapter"]:
        src = Path(str(w["adapter"]))
        if src.is_file():
            check_adapter_file(src)  # keys must map onto the transformer's modules, or nothing would merge
        converted = ctx.config_path(CONVERTED_NAME)
        cache = (ctx.cache_dir or _default_cache()) / "adapters"
        argv.append([ctx.zlt_python, "-m", "zlt.backends.musubi.adapter", str(src), "--cache", str(cache),
                     "--out", converted])
        steps.append("convert_adapter")
        adapter_args = ["--base_weights", converted, "--base_weights_multiplier", "1.0"]
        notes.append(about("model.base.training_adapter", f"converted to musubi's lora_unet_* keys before training ({converted})"))
    argv.append([py, f"{SCRIPTS}/zimage_cache_latents.py", "--dataset_config", dcfg, "--vae", str(w["vae"]),
                 "--skip_existing"])
    cache_te = [py, f"{SCRIPTS}/zimage_cache_text_encoder_outputs.py", "--dataset_config", dcfg,
                "--text_encoder", str(w["text_encoder"]), "--batch_size", "16", "--skip_existing"]
    if fp8_llm:
        cache_te.append("--fp8_llm")
    argv.append(cache_te)
    steps += ["cache_latents", "cache_text_encoder_outputs"]
    return argv, steps, adapter_args


def gradient_checkpointing_lever(profile: HardwareProfile) -> tuple[bool, str]:
    return profile.musubi.gradient_checkpointing, f"profile {profile.name} (musubi lever)"


def render_musubi(spec: JobSpec, profile: HardwareProfile, ctx: RenderContext) -> RenderResult:
    warnings: list[FieldNote] = spec_warnings(spec, "musubi", multi_gpu=False, reads_weight_files=True)
    notes: list[FieldNote] = []
    tr = spec.training
    lev = profile.musubi
    mode = spec.model.base.quantize
    fp8 = lev.fp8_base if mode == "auto" else mode == "float8"
    fp8_llm = lev.fp8_llm if mode == "auto" else mode == "float8"
    precision = compute_precision(spec, profile, warnings)
    weight_dtype_note(spec, profile, precision, "musubi loads the DiT in the --mixed_precision dtype", warnings)
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
    _data_notes(spec, ctx, warnings, notes)
    if "adaLN_modulation.0" in target_children(spec):
        notes.append(about("model.lora.target_modules", "adaLN_modulation is included explicitly (lora_zimage.py excludes "
                     "modulation by default)"))

    w = _weights(spec, ctx, warnings)
    argv, steps, adapter_args = _pre_steps(spec, ctx, w, fp8_llm, notes)

    ts = _TIMESTEPS.get(tr.timestep_type)
    if ts is None:
        warnings.append(about("training.timestep_type", f"musubi has no '{tr.timestep_type}'; using 'shift' "
                        f"(shift {tr.timestep_shift:g})"))
        ts = "shift"
    if tr.content_or_style != "balanced":
        warnings.append(about("training.content_or_style", f"musubi has no timestep bias; '{tr.content_or_style}' ignored"))
    opt_type, opt_args = _optimizer(spec, warnings)
    lr = optimizer_lr(spec, warnings)
    gc, gc_why = resolve_gradient_checkpointing(spec, gradient_checkpointing_lever(profile))
    notes.append(about("training.gradient_checkpointing", f"{'on' if gc else 'off'} ({gc_why})"))
    # musubi's step counter restarts at 0 on --resume while the scheduler state comes back: train what is left
    steps_left = max(tr.max_steps - ctx.resume_step, 1)
    every, keep = spec.output.save.every, spec.output.save.keep
    # musubi removes the checkpoint at step - last_n - 1 rounded down to `every` (utils/train_utils.py), so
    # last_n = every * keep would keep keep + 1
    last_n = str(every * (keep - 1))
    sample_files, sample_args = _sampling(spec, res, ctx, warnings)
    train = [
        ctx.python, "-m", "accelerate.commands.launch", "--num_cpu_threads_per_process", "1", "--mixed_precision", mp,
        f"{SCRIPTS}/zimage_train_network.py",
        "--dit", str(w["dit"]), "--vae", str(w["vae"]), "--text_encoder", str(w["text_encoder"]),
        "--dataset_config", ctx.config_path(DATASET_TOML), "--sdpa", "--mixed_precision", mp,
        "--timestep_sampling", ts, "--weighting_scheme", "none", "--discrete_flow_shift", f"{tr.timestep_shift:g}",
        "--optimizer_type", opt_type, "--optimizer_args", *opt_args,
        "--learning_rate", repr(lr),
        *_schedule(spec),
        "--gradient_accumulation_steps", str(tr.gradient_accumulation),
        "--max_data_loader_n_workers", "2", "--persistent_data_loader_workers",
        "--network_module", "networks.lora_zimage",
        "--network_dim", str(spec.model.lora.rank), "--network_alpha", f"{spec.model.lora.alpha:g}",
        "--network_args", *network_args(spec),
        "--max_train_steps", str(steps_left),
        "--save_every_n_steps", str(every),
        "--save_last_n_steps", last_n,
        "--save_state", "--save_last_n_steps_state", last_n,
        "--save_precision", {"bf16": "bf16", "fp16": "fp16", "fp32": "float"}[spec.output.save.dtype],
        "--seed", str(tr.seed),
        "--output_dir", str(ctx.output_dir), "--output_name", spec.name,
    ]
    if spec.model.lora.dropout:
        train += ["--network_dropout", f"{spec.model.lora.dropout:g}"]
    if gc:
        train.append("--gradient_checkpointing")
        if lev.gradient_checkpointing_cpu_offload:
            train.append("--gradient_checkpointing_cpu_offload")
    if fp8:
        train += ["--fp8_base", "--fp8_scaled"]  # musubi's docs: use both; scaled keeps the quality of bf16
    if tr.compile == "on":
        # musubi's trainer_base compiles the refiners and layers block by block (zimage_train_network.py
        # compile_transformer); auto keeps upstream's default (off): it needs Triton on the user's machine
        train.append("--compile")
    if lev.blocks_to_swap:
        train += ["--blocks_to_swap", str(lev.blocks_to_swap)]
    train += adapter_args + sample_args
    if ctx.resume_from is not None:
        train += ["--resume", str(ctx.resume_from)]
    elif ctx.init_lora is not None:
        train += ["--network_weights", str(ctx.init_lora)]
    argv.append(train)
    steps.append("train")
    return RenderResult(
        backend="musubi",
        profile=profile.name,
        files={DATASET_TOML: toml_text, **sample_files},
        argv=argv,
        cwd=str(ctx.trainer_root) if ctx.trainer_root else None,
        warnings=warnings,
        step_names=steps,
        notes=notes,
        trained=trained_summary(spec, alpha=spec.model.lora.alpha, gradient_checkpointing=gc,
                                timestep_type={"sigmoid": "sigmoid", "uniform": "uniform"}.get(ts, "shift"),
                                timestep_shift=tr.timestep_shift, learning_rate=lr),
    )


def _default_cache() -> Path:
    return cache_dir(zlt_home())
