"""The built-in trainer's own config (`trainer.json`): everything resolved, nothing left to presets.

`zlt.backends.lightning.render` writes it from spec x profile; `python -m zlt.trainer trainer.json` reads it. This module
imports no torch so the renderer and `zlt schema` stay fast.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from zlt.core.constants import TINY_MODEL
from zlt.core.errors import BadInputError

CONFIG_VERSION = 1
ADALN_TARGET = "adaLN_modulation"
# The block adaLN linears only: `all_final_layer.*.adaLN_modulation` is Sequential(SiLU, Linear) so a plain
# suffix `adaLN_modulation.0` would hit the SiLU there, which peft cannot wrap.
ADALN_REGEX = r".*(layers|noise_refiner)\.\d+\.adaLN_modulation\.0"

# Spec names (and friendly short forms) -> the module suffixes peft matches in ZImageTransformer2DModel.
SPEC_TO_PEFT: dict[str, list[str]] = {
    "attention.to_q": ["attention.to_q"],
    "attention.to_k": ["attention.to_k"],
    "attention.to_v": ["attention.to_v"],
    "attention.to_out": ["attention.to_out.0"],
    "attention.to_out.0": ["attention.to_out.0"],
    "attention": ["attention.to_q", "attention.to_k", "attention.to_v", "attention.to_out.0"],
    "feed_forward.w1": ["feed_forward.w1"],
    "feed_forward.w2": ["feed_forward.w2"],
    "feed_forward.w3": ["feed_forward.w3"],
    "feed_forward": ["feed_forward.w1", "feed_forward.w2", "feed_forward.w3"],
    "adaLN_modulation": [ADALN_TARGET],
    "adaLN_modulation.0": [ADALN_TARGET],
    "adaLN": [ADALN_TARGET],
}
for _short in ("to_q", "to_k", "to_v", "to_out"):
    SPEC_TO_PEFT[_short] = SPEC_TO_PEFT[f"attention.{_short}"]
for _short in ("w1", "w2", "w3"):
    SPEC_TO_PEFT[_short] = SPEC_TO_PEFT[f"feed_forward.{_short}"]
PEFT_TARGETS = sorted({t for ts in SPEC_TO_PEFT.values() for t in ts})


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(Strict):
    name: str = Field(description="Hub id, local diffusers folder, or 'zlt/tiny-zimage' (tiny random test model).")
    source: Literal["huggingface", "local", "modelscope", "builtin"] = Field(
        "huggingface", description="Where the base model comes from."
    )
    weight_dtype: Literal["fp32", "bf16", "fp16"] = Field("bf16", description="Dtype of the frozen base weights.")
    quantize: Literal["none", "float8"] = Field(
        "none", description="float8: store the frozen transformer and text encoder weights in float8_e4m3fn and "
        "compute in weight_dtype (diffusers layerwise casting).",
    )
    training_adapter: str | None = Field(
        None, description="LoRA merged into the base before ours (turbo training adapter): local file or "
        "'owner/repo/file.safetensors'; null for none.",
    )

    @property
    def is_tiny(self) -> bool:
        return self.name == TINY_MODEL


class LoraConfig(Strict):
    rank: int = Field(16, ge=1, le=256, description="LoRA rank.")
    alpha: float = Field(16, gt=0, description="LoRA alpha; updates are scaled by alpha/rank.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the LoRA path.")
    target_modules: list[str] = Field(
        default_factory=lambda: list(SPEC_TO_PEFT["attention"]),
        min_length=1,
        description=f"Module suffixes peft wraps ({', '.join(PEFT_TARGETS)}); '{ADALN_TARGET}' means the blocks' "
        "adaLN linears.",
    )


class DataConfig(Strict):
    path: str = Field(description="Image folder with sidecar captions (the prepared dataset).")
    caption_ext: str = Field("txt", description="Sidecar caption extension.")
    caption_strategy: Literal["filename_or_txt", "txt", "filename", "metadata"] = Field(
        "filename_or_txt", description="Where a caption comes from when the folder was not prepared by zlt."
    )
    default_caption: str = Field("", description="Caption for images without one.")
    trigger: str | None = Field(None, description="Trigger token ensured once in every caption (null: none).")
    trigger_position: Literal["prefix", "suffix"] = Field("prefix", description="Where a missing trigger goes.")
    resolution: int = Field(1024, ge=16, le=2048, description="Bucket area is about resolution^2 pixels.")
    upscale: bool = Field(False, description="Upscale small images to the full bucket size.")
    repeats: int = Field(1, ge=1, description="Times each image is seen per epoch.")
    shuffle: bool = Field(True, description="Shuffle the order each epoch.")
    horizontal_flip: bool = Field(False, description="Also train on mirrored images.")
    color_jitter: bool = Field(False, description="Train on colour-jittered variants (cached like the originals).")
    color_jitter_variants: int = Field(4, ge=1, le=32, description="Jittered variants cached per image.")
    caption_dropout: float = Field(0.0, ge=0.0, le=1.0, description="Probability of training with the empty caption.")


class OptimizerConfig(Strict):
    type: Literal["adamw", "prodigy", "adafactor"] = Field("adamw", description="Optimizer family.")
    use_8bit: bool = Field(False, description="AdamW 8-bit (bitsandbytes, CUDA only; falls back with a warning).")
    weight_decay: float = Field(1e-4, ge=0.0, lt=1.0, description="Decoupled weight decay.")
    betas: tuple[float, float] = Field((0.9, 0.999), description="Adam betas.")
    eps: float = Field(1e-8, gt=0, description="Adam epsilon.")


class TrainingConfig(Strict):
    batch_size: int = Field(1, ge=1, description="Images per micro-batch per device.")
    gradient_accumulation: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    max_steps: int = Field(ge=1, description="Optimizer steps.")
    warmup_steps: int = Field(0, ge=0, description="Linear warmup steps.")
    learning_rate: float = Field(1e-4, gt=0, description="Peak learning rate.")
    scheduler: Literal["constant", "cosine", "linear"] = Field("constant", description="Schedule after warmup.")
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig, description="Optimizer.")
    precision: Literal["bf16-mixed", "16-mixed", "32-true"] = Field("bf16-mixed", description="Fabric precision.")
    gradient_checkpointing: bool = Field(False, description="Recompute block activations in backward (resolved: "
                                         "the spec's value, else the profile's).")
    compile: Literal["auto", "on", "off"] = Field(
        "auto", description="Regional torch.compile of the repeated transformer blocks; auto: on for CUDA."
    )
    attention_backend: Literal["auto", "sdpa", "flash"] = Field(
        "auto", description="Attention kernels; auto: FlashAttention 2 when installed (CUDA, batch 1), else SDPA."
    )
    timestep_type: Literal["sigmoid", "weighted", "uniform", "shift"] = Field(
        "weighted", description="How sigma is sampled (see docs/trainer.md)."
    )
    timestep_shift: float = Field(
        3.0, gt=0, description="Shift for timestep_type 'shift' (default 3.0, Z-Image-Turbo's scheduler); the spec's "
        "training.timestep_shift when rendered.",
    )
    content_or_style: Literal["balanced", "style", "content"] = Field(
        "balanced", description="Cubic bias towards low noise (style) or high noise (content); balanced: off."
    )
    seed: int = Field(42, ge=0, description="Seed for LoRA init, noise, timesteps and data order.")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Gradient clipping norm; null: no clipping.")
    stop_on_nan: bool = Field(
        True, description="Fail after zlt.run.divergence.NAN_PATIENCE steps in a row with a nan/inf loss (no save).",
    )
    stop_after_step: int | None = Field(
        None, ge=1, description="Stop as on SIGINT once this step is done (checkpoint + resume state, exit 0).",
    )


class RuntimeConfig(Strict):
    accelerator: Literal["cpu", "cuda", "auto"] = Field("auto", description="Fabric accelerator.")
    devices: int = Field(1, ge=1, description="Devices per node.")
    num_nodes: int = Field(1, ge=1, description="Nodes (multi-node launch).")
    strategy: Literal["auto", "ddp", "fsdp"] = Field("auto", description="Fabric strategy.")


class CacheConfig(Strict):
    dir: str = Field(description="Latent/text cache folder, shared across runs (keyed by content hash).")
    text_embeddings: bool = Field(True, description="Cache caption embeddings and free the text encoder.")


class OutputConfig(Strict):
    dir: str = Field(description="Checkpoints, resume states, samples and loss log go here.")
    save_every: int = Field(250, ge=1, description="Save a checkpoint every N steps.")
    keep: int = Field(4, ge=1, description="Step checkpoints (and resume states) to keep; the final is extra.")
    save_dtype: Literal["bf16", "fp16", "fp32"] = Field("bf16", description="Dtype of saved LoRA weights.")
    resume: bool = Field(False, description="Continue from the latest resume state in dir.")
    init_lora: str | None = Field(
        None, description="Start the LoRA from these weights (transformer.<module>.lora_A/B keys, same rank, alpha "
        "already accounted for); the optimizer and schedule start fresh. A resume state wins over it.",
    )


class SampleConfig(Strict):
    enable: bool = Field(False, description="Draw samples at checkpoints.")
    every: int = Field(250, ge=1, description="Sample every N steps (and at the end).")
    prompts: list[str] = Field(default_factory=list, description="Prompts, trigger already filled in.")
    steps: int = Field(9, ge=1, description="Inference steps.")
    guidance_scale: float = Field(0.0, ge=0, description="Guidance scale.")
    seed: int = Field(42, description="Sampling seed.")
    width: int = Field(1024, ge=16, description="Sample width.")
    height: int = Field(1024, ge=16, description="Sample height.")


class TrainerConfig(Strict):
    """What `python -m zlt.trainer` runs. Written by `render_lightning`; `zlt render --backend lightning` shows it."""

    version: Literal[1] = Field(CONFIG_VERSION, description="Config format version.")
    name: str = Field(description="Output name: <name>.safetensors and <name>_<step:09d>.safetensors.")
    job_id: str | None = Field(None, description="The zlt job this run belongs to (informational).")
    model: ModelConfig = Field(description="Base model.")
    lora: LoraConfig = Field(default_factory=LoraConfig, description="The adapter we train.")
    data: DataConfig = Field(description="Dataset.")
    training: TrainingConfig = Field(description="Optimisation.")
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig, description="Devices and strategy.")
    cache: CacheConfig = Field(description="Pre-pass cache.")
    output: OutputConfig = Field(description="Outputs.")
    sample: SampleConfig = Field(default_factory=SampleConfig, description="Samples during training.")
    progress_interval_s: float = Field(0.5, ge=0, description="Least time between two progress events.")


def map_target_modules(spec_targets: list[str]) -> tuple[list[str], list[tuple[int, str]]]:
    """Spec target names -> peft suffixes (deduplicated, in order), plus (index, name) of unknown ones."""
    out: list[str] = []
    unknown: list[tuple[int, str]] = []
    for i, name in enumerate(spec_targets):
        mapped = SPEC_TO_PEFT.get(name.strip())
        if mapped is None:
            unknown.append((i, name))
            continue
        out.extend(t for t in mapped if t not in out)
    return out, unknown


def peft_target(targets: list[str]) -> list[str] | str:
    """What `LoraConfig(target_modules=...)` gets: a suffix list, or one full-match regex when adaLN is in."""
    plain = [t for t in targets if t != ADALN_TARGET]
    if ADALN_TARGET not in targets:
        return plain
    parts = [ADALN_REGEX]
    if plain:
        parts.insert(0, r"(.*\.)?(" + "|".join(re.escape(t) for t in plain) + ")")
    return "|".join(parts)


def load_trainer_config(path: str | Path) -> TrainerConfig:
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInputError(f"{p}: trainer config not found", hint="render one with 'zlt render SPEC --backend lightning'") from None
    except json.JSONDecodeError as e:
        raise BadInputError(f"{p}: not valid JSON (line {e.lineno}: {e.msg})") from None
    try:
        return TrainerConfig.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors())
        raise BadInputError(f"{p}: invalid trainer config: {problems}", hint="re-render it from the spec") from None
