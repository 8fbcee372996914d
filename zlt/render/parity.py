"""What every spec field becomes on each backend: the one mapping per backend that docs/parity.md is generated from
and that `zlt render --explain` prints. A test renders every backend with every leaf field changed and fails when a
backend's output neither changes nor warns, unless its entry says zlt itself carries the field out (before or
after the trainer runs, the same way on every backend)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from zlt.spec.models import BACKENDS, JobSpec

TRAINER = "trainer"  # the rendered config/argv carries it out, or the render warns where it cannot
ZLT = "zlt"  # zlt does it itself (dataset prepare, job runner, registry), identically on every backend


@dataclass(frozen=True)
class Carried:
    kind: str
    where: str


def T(where: str) -> Carried:
    return Carried(TRAINER, where)


def Z(where: str) -> Carried:
    return Carried(ZLT, where)


# Fields zlt carries out itself, whatever the backend.
_COMMON: dict[str, Carried] = {
    "preset": Z("spec loader: fills in the preset's values before validation"),
    "dataset.type": Z("spec loader (one kind today)"),
    "dataset.center_crop": Z("dataset prepare: crops to the bucket's aspect ratio"),
    "training.backend": Z("picks the renderer"),
    "training.effective_batch_size": Z("spec loader: checked against batch_size x gradient_accumulation"),
    "training.stop_on_nan": Z("job runner: stops the trainer after 5 logged nan/inf losses in a row, cause diverged"),
    "job.type": Z("job runner: submit returns at once (async) or waits (sync)"),
    "job.timeout_hours": Z("job runner: stops the trainer after this long"),
    "job.priority": Z("job queue order"),
    "job.retry.max_retries": Z("job runner: retries resume from the last checkpoint/state"),
    "job.retry.on_oom": Z("job runner: retry with the next smaller hardware profile"),
    "job.resources.min_vram_gb": Z("hardware profile selection and preflight"),
    "job.callback_url": Z("zlt serve: webhook on state changes"),
    "output.format": Z("artifact registry (safetensors only)"),
    "output.key_format": Z("artifact registry: converts lora.safetensors to this key layout"),
    "output.save.lora_weights": Z("artifact registry"),
    "output.save.config": Z("artifact registry"),
    "output.save.training_meta": Z("artifact registry"),
    "output.registry.type": Z("artifact registry"),
    "output.registry.path": Z("artifact registry"),
    "output.naming.pattern": Z("artifact registry: the artifact folder name"),
    "eval.enable": Z("job runner: zlt eval on the artifact once it is collected"),
    "eval.prompts": Z("zlt eval: held-out prompts (default set when empty)"),
    "eval.seeds": Z("zlt eval: images per prompt"),
    "eval.checkpoints": Z("zlt eval: which kept checkpoints are scored"),
    "eval.scale": Z("zlt eval: LoRA scale of the drawn images"),
    "eval.size": Z("zlt eval: image side"),
    "eval.alignment_tolerance": Z("zlt eval: best-checkpoint rule"),
    "eval.memorisation_max": Z("zlt eval: best-checkpoint rule"),
    "eval.every": Z("job runner: scores a checkpoint every N steps while the trainer runs (zlt/eval/live.py); "
                    "the artifact's evaluation reuses those rows"),
    "eval.early_stop.enable": Z("job runner: stops the trainer (its stop ladder, as a cancel) when the rule says so; "
                                "the job succeeds and is collected"),
    "eval.early_stop.patience": Z("early-stop rule (zlt/eval/early_stop.py)"),
    "eval.early_stop.min_delta": Z("early-stop rule (zlt/eval/early_stop.py)"),
    "eval.early_stop.min_step": Z("early-stop rule (zlt/eval/early_stop.py)"),
    "eval.models.clip": Z("zlt eval: the CLIP model of the metrics (local path or hub id, never downloaded offline)"),
}
_PREPARED = "dataset prepare writes the final captions (.txt) the trainer reads"

AITOOLKIT_MAP: dict[str, Carried] = {
    "name": T("config.name, meta.name (output file names)"),
    "model.base.name": T("model.name_or_path (the default Turbo name with another variant: that variant's repo)"),
    "model.base.source": T("hub or local path in model.name_or_path; 'modelscope': warned"),
    "model.base.precision": T("loaded in train.dtype; a different weight dtype: warned"),
    "model.base.variant": T("model.name_or_path + extras_name_or_path (De-Turbo: ostris/Z-Image-De-Turbo with "
                            "Tongyi-MAI/Z-Image-Turbo extras, as upstream's recipe)"),
    "model.base.training_adapter": T("model.assistant_lora_path (merged for training, off while sampling)"),
    "model.base.quantize": T("model.quantize / quantize_te (auto: the profile's levers)"),
    "model.base.dit": T("not supported: warned (musubi only)"),
    "model.base.vae": T("not supported: warned (musubi only)"),
    "model.base.text_encoder": T("not supported: warned (musubi only)"),
    "model.lora.enable": T("not supported when false: warned"),
    "model.lora.rank": T("network.linear"),
    "model.lora.alpha": T("network.linear_alpha; ai-toolkit forces alpha = rank for Z-Image (lora_special.py "
                          "peft format): warned when they differ, the render records the trained alpha"),
    "model.lora.dropout": T("network.dropout"),
    "model.lora.target_modules": T("network.network_kwargs.only_if_contains, transformer_only: false (main layers "
                                   "and refiners), ignore_if_contains: all_final_layer"),
    "dataset.path": T("datasets[0].folder_path (the prepared folder)"),
    "dataset.resolution": T("datasets[0].resolution (buckets up to the profile's cap)"),
    "dataset.upscale": Z("dataset prepare upscales small images"),
    "dataset.caption.strategy": Z(_PREPARED),
    "dataset.caption.trigger_token": T("trigger_word"),
    "dataset.caption.trigger_position": Z(_PREPARED),
    "dataset.caption.caption_ext": T("datasets[0].caption_ext"),
    "dataset.caption.default_caption": T("datasets[0].default_caption"),
    "dataset.caption.dropout": T("datasets[0].caption_dropout_rate"),
    "dataset.repeats": T("datasets[0].num_repeats"),
    "dataset.shuffle": T("always shuffles: false warned"),
    "dataset.augment.horizontal_flip": T("datasets[0].flip_x"),
    "dataset.augment.color_jitter": T("not supported: warned"),
    "training.batch_size": T("train.batch_size"),
    "training.gradient_accumulation": T("train.gradient_accumulation"),
    "training.max_steps": T("train.steps"),
    "training.warmup_steps": T("constant: lr_scheduler constant_with_warmup + num_warmup_steps; cosine/linear "
                               "have no warmup: warned"),
    "training.learning_rate": T("train.lr (prodigy: a multiplier, < 0.1 means 1.0)"),
    "training.scheduler": T("train.lr_scheduler: constant, cosine (CosineAnnealingLR eta_min 0), linear "
                            "(LinearLR start_factor 1.0, end_factor 0.0: decays)"),
    "training.optimizer.type": T("train.optimizer adamw/adamw8bit, prodigy (use_bias_correction, safeguard_warmup), "
                                 "adafactor (relative_step/scale_parameter/warmup_init false)"),
    "training.optimizer.use_8bit": T("adamw8bit; other optimizers: warned"),
    "training.optimizer.weight_decay": T("train.optimizer_params.weight_decay"),
    "training.mixed_precision": T("train.dtype (fp16 -> bf16 where the card has bf16: warned)"),
    "training.gradient_checkpointing": T("train.gradient_checkpointing (null: the profile's ai_toolkit lever)"),
    "training.timestep_type": T("train.timestep_type (uniform -> linear)"),
    "training.timestep_shift": T("fixed at 3.0 in z_image.py: any other value warned"),
    "training.compile": T("on: model.compile + block_compile (block-level torch.compile); auto: upstream's default, "
                          "off"),
    "training.content_or_style": T("train.content_or_style"),
    "training.seed": T("SEED environment variable (run.py seeds from it)"),
    "training.sample.enable": T("train.disable_sampling"),
    "training.sample.every": T("sample.sample_every"),
    "training.sample.prompts": T("sample.prompts"),
    "training.sample.steps": T("sample.sample_steps (null: by variant)"),
    "training.sample.guidance_scale": T("sample.guidance_scale = spec + 1 (z_image.py subtracts 1)"),
    "training.sample.seed": T("sample.seed (walk_seed: +1 per prompt)"),
    "job.resources.gpu": T("one process on one GPU: more than 1 warned"),
    "job.logging.level": T("performance_log_every 10 at debug, else 0 (off)"),
    "output.save.every": T("save.save_every"),
    "output.save.keep": T("save.max_step_saves_to_keep"),
    "output.save.dtype": T("save.dtype"),
}

MUSUBI_MAP: dict[str, Carried] = {
    "name": T("--output_name"),
    "model.base.name": T("local files only: an unknown name without model.base.dit warned"),
    "model.base.source": T("local files only: modelscope/builtin warned"),
    "model.base.precision": T("DiT loaded in the --mixed_precision dtype; a different weight dtype: warned"),
    "model.base.variant": T("--dit default file (turbo, de-turbo or base weights)"),
    "model.base.training_adapter": T("zlt.render.musubi_adapter converts it to musubi's lora_unet_ keys (cached by content "
                                     "hash, keys checked) -> --base_weights"),
    "model.base.quantize": T("--fp8_base --fp8_scaled, --fp8_llm (auto: the profile's levers)"),
    "model.base.dit": T("--dit"),
    "model.base.vae": T("--vae (both caching and training)"),
    "model.base.text_encoder": T("--text_encoder (text-encoder caching and training)"),
    "model.lora.enable": T("not supported when false: warned"),
    "model.lora.rank": T("--network_dim"),
    "model.lora.alpha": T("--network_alpha"),
    "model.lora.dropout": T("--network_dropout"),
    "model.lora.target_modules": T("--network_args exclude_patterns=['.*'] include_patterns=[(layers|noise_refiner|"
                                   "context_refiner)\\.\\d+\\.MODULE]"),
    "dataset.path": T("dataset TOML image_directory (the prepared folder)"),
    "dataset.resolution": T("dataset TOML resolution (capped by the profile)"),
    "dataset.upscale": T("dataset TOML bucket_no_upscale"),
    "dataset.caption.strategy": Z(_PREPARED),
    "dataset.caption.trigger_token": Z(_PREPARED),
    "dataset.caption.trigger_position": Z(_PREPARED),
    "dataset.caption.caption_ext": T("dataset TOML caption_extension"),
    "dataset.caption.default_caption": Z(_PREPARED),
    "dataset.caption.dropout": T("not supported (cached text-encoder outputs): warned"),
    "dataset.repeats": T("dataset TOML num_repeats"),
    "dataset.shuffle": T("always shuffles: false warned"),
    "dataset.augment.horizontal_flip": T("no flip in musubi: zlt's dataset prepare writes a mirrored copy of every "
                                         "image (as ai-toolkit's flip_x does); a bare render is warned"),
    "dataset.augment.color_jitter": T("not supported: warned"),
    "training.batch_size": T("dataset TOML batch_size"),
    "training.gradient_accumulation": T("--gradient_accumulation_steps"),
    "training.max_steps": T("--max_train_steps (a retry: the remaining steps) and the schedule's num_training_steps"),
    "training.warmup_steps": T("--lr_scheduler_args num_warmup_steps (and --lr_warmup_steps for metadata)"),
    "training.learning_rate": T("--learning_rate (prodigy: a multiplier, < 0.1 means 1.0)"),
    "training.scheduler": T("--lr_scheduler_type transformers.optimization.get_{constant,cosine,linear}_schedule_"
                            "with_warmup with the whole run's length, so a retry continues the same LR curve"),
    "training.optimizer.type": T("--optimizer_type adamw/adamw8bit, prodigyopt.Prodigy, adafactor + --optimizer_args "
                                 "(adafactor: relative_step=False scale_parameter=False warmup_init=False)"),
    "training.optimizer.use_8bit": T("adamw8bit; other optimizers: warned"),
    "training.optimizer.weight_decay": T("--optimizer_args weight_decay"),
    "training.mixed_precision": T("--mixed_precision (accelerate and the script)"),
    "training.gradient_checkpointing": T("--gradient_checkpointing (null: the profile's musubi lever)"),
    "training.timestep_type": T("--timestep_sampling sigmoid/uniform/shift; weighted: warned, shift"),
    "training.timestep_shift": T("--discrete_flow_shift"),
    "training.compile": T("on: --compile (its block-by-block torch.compile, needs Triton); auto: upstream's default, "
                          "off"),
    "training.content_or_style": T("no timestep bias: anything but balanced warned"),
    "training.seed": T("--seed"),
    "training.sample.enable": T("--sample_prompts musubi_sample_prompts.json --sample_every_n_steps"),
    "training.sample.every": T("--sample_every_n_steps"),
    "training.sample.prompts": T("musubi_sample_prompts.json prompt"),
    "training.sample.steps": T("musubi_sample_prompts.json sample_steps (null: by variant)"),
    "training.sample.guidance_scale": T("musubi_sample_prompts.json cfg_scale (musubi applies CFG above 1.0 only: "
                                        "0 < g <= 1 warned)"),
    "training.sample.seed": T("musubi_sample_prompts.json seed (+1 per prompt)"),
    "job.resources.gpu": T("one process on one GPU: more than 1 warned"),
    "job.logging.level": Z("its own log level (musubi logs at INFO)"),
    "output.save.every": T("--save_every_n_steps"),
    "output.save.keep": T("--save_last_n_steps / --save_last_n_steps_state every x (keep - 1): keeps exactly keep"),
    "output.save.dtype": T("--save_precision"),
}

LIGHTNING_MAP: dict[str, Carried] = {
    "name": T("trainer.json name"),
    "model.base.name": T("model.name (the default Turbo name with variant base: Tongyi-MAI/Z-Image)"),
    "model.base.source": T("model.source"),
    "model.base.precision": T("model.weight_dtype"),
    "model.base.variant": T("model.name; de-turbo needs one local folder with every part: warned"),
    "model.base.training_adapter": T("model.training_adapter (merged, switchable)"),
    "model.base.quantize": T("model.quantize: float8 storage with bf16 compute (diffusers layerwise casting), also "
                             "the text encoder while caching; auto: float8 only where bf16 does not fit the profile"),
    "model.base.dit": T("not supported: warned (musubi only)"),
    "model.base.vae": T("not supported: warned (musubi only)"),
    "model.base.text_encoder": T("not supported: warned (musubi only)"),
    "model.lora.enable": T("not supported when false: warned"),
    "model.lora.rank": T("lora.rank"),
    "model.lora.alpha": T("lora.alpha"),
    "model.lora.dropout": T("lora.dropout"),
    "model.lora.target_modules": T("lora.target_modules (peft suffixes: main layers and refiners)"),
    "dataset.path": T("data.path"),
    "dataset.resolution": T("data.resolution (capped by the profile: warned)"),
    "dataset.upscale": T("data.upscale"),
    "dataset.caption.strategy": T("data.caption_strategy"),
    "dataset.caption.trigger_token": T("data.trigger"),
    "dataset.caption.trigger_position": T("data.trigger_position"),
    "dataset.caption.caption_ext": T("data.caption_ext"),
    "dataset.caption.default_caption": T("data.default_caption"),
    "dataset.caption.dropout": T("data.caption_dropout"),
    "dataset.repeats": T("data.repeats"),
    "dataset.shuffle": T("data.shuffle"),
    "dataset.augment.horizontal_flip": T("data.horizontal_flip"),
    "dataset.augment.color_jitter": T("data.color_jitter"),
    "training.batch_size": T("training.batch_size"),
    "training.gradient_accumulation": T("training.gradient_accumulation"),
    "training.max_steps": T("training.max_steps"),
    "training.warmup_steps": T("training.warmup_steps (ramps i/W, as transformers' schedules on the other backends)"),
    "training.learning_rate": T("training.learning_rate (prodigy: a multiplier, < 0.1 means 1.0)"),
    "training.scheduler": T("training.scheduler"),
    "training.optimizer.type": T("training.optimizer.type (eps 1e-6, as ai-toolkit)"),
    "training.optimizer.use_8bit": T("training.optimizer.use_8bit (AdamW; CPU: warned)"),
    "training.optimizer.weight_decay": T("training.optimizer.weight_decay"),
    "training.mixed_precision": T("training.precision (Fabric)"),
    "training.gradient_checkpointing": T("training.gradient_checkpointing (null: the profile's lightning lever)"),
    "training.timestep_type": T("training.timestep_type"),
    "training.timestep_shift": T("training.timestep_shift"),
    "training.compile": T("training.compile (auto: on for CUDA; float8 storage never compiles: inductor cannot)"),
    "training.content_or_style": T("training.content_or_style"),
    "training.seed": T("training.seed"),
    "training.stop_on_nan": T("training.stop_on_nan (the trainer stops itself after 5 in a row; the runner "
                              "watches too)"),
    "training.sample.enable": T("sample.enable"),
    "training.sample.every": T("sample.every"),
    "training.sample.prompts": T("sample.prompts"),
    "training.sample.steps": T("sample.steps (null: by variant)"),
    "training.sample.guidance_scale": T("sample.guidance_scale (null: by variant)"),
    "training.sample.seed": T("sample.seed"),
    "job.resources.gpu": T("runtime.devices / strategy ddp; 0: CPU"),
    "job.logging.level": Z("its own log level"),
    "output.save.every": T("output.save_every"),
    "output.save.keep": T("output.keep"),
    "output.save.dtype": T("output.save_dtype"),
}

MAPS: dict[str, dict[str, Carried]] = {
    "ai-toolkit": {**_COMMON, **AITOOLKIT_MAP},
    "musubi": {**_COMMON, **MUSUBI_MAP},
    "lightning": {**_COMMON, **LIGHTNING_MAP},
}


def leaf_fields(model: type[BaseModel] = JobSpec, prefix: str = "") -> list[str]:
    """Every leaf field path of the spec, in schema order (lists are leaves)."""
    out: list[str] = []
    for name, info in model.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += leaf_fields(ann, f"{prefix}{name}.")
        else:
            out.append(prefix + name)
    return out


def mapping(backend: str) -> dict[str, Carried]:
    return MAPS[backend]


def _cell(c: Carried) -> str:
    text = c.where.replace("|", "\\|")
    return f"zlt: {text}" if c.kind == ZLT else text


def parity_markdown() -> str:
    """docs/parity.md, generated from MAPS (`python -m zlt.render.parity > docs/parity.md`)."""
    lines = [
        "# Parity: what each spec field becomes on each backend",
        "",
        "Generated from `zlt/render/parity.py` by `python -m zlt.render.parity > docs/parity.md`; "
        "`tests/unit/test_parity.py` keeps this file equal to the generator's output and renders every backend "
        "with each field changed, failing when a backend's output neither changes nor warns. "
        "`zlt render SPEC --explain` prints the same mapping for one spec, with the values and the warnings.",
        "",
        "A cell is the rendered key, flag or code path; \"warned\" means the backend cannot do it and the render "
        "says so (a `warning` event and an `--explain` line). \"zlt: ...\" is done by zlt itself, the same way on "
        "every backend.",
        "",
        "| field | " + " | ".join(BACKENDS) + " |",
        "| --- | " + " | ".join("---" for _ in BACKENDS) + " |",
    ]
    for path in leaf_fields():
        lines.append(f"| `{path}` | " + " | ".join(_cell(MAPS[b][path]) for b in BACKENDS) + " |")
    return "\n".join(lines) + "\n"


def message_fields(message: str) -> set[str]:
    """The spec fields a warning or note is about: its lead `a.b.c:` (or `a.b.c/d/e:`, one field per name)."""
    lead = message.split(":", 1)[0].strip()
    head, _, tail = lead.rpartition(".")
    if not head or " " in lead:
        return {lead} if lead in set(leaf_fields()) else set()
    return {f"{head}.{name}" for name in tail.split("/")}


def explain_rows(loaded: Any, result: Any) -> list[dict[str, Any]]:
    """One row per leaf field of a loaded spec: value, where it came from, what `result.backend` does with it and
    the render's warnings and notes about it."""
    from zlt.spec.load import SOURCE_DEFAULT

    values = loaded.spec.model_dump(mode="json")
    table = MAPS[result.backend]
    rows = []
    for path in leaf_fields():
        node: Any = values
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        about = [m for m in result.warnings if path in message_fields(m)]
        notes = [m for m in result.notes if path in message_fields(m)]
        c = table[path]
        rows.append({"field": path, "value": node, "source": loaded.provenance.get(path, SOURCE_DEFAULT),
                     "backend": result.backend, "carried_by": c.kind, "where": c.where,
                     "warnings": about, "notes": notes})
    return rows


if __name__ == "__main__":
    import sys

    sys.stdout.write(parity_markdown())
