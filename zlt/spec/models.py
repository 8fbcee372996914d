"""The compact job spec: five sections (model, dataset, training, job, output) plus name and preset.

Every model forbids unknown keys and documents every field; `zlt schema` prints the JSON Schema.
Defaults here are neutral; the presets in `presets.py` fill in expert values before validation.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from zlt.core.constants import DEFAULT_CAPTIONER, PICKLE_SUFFIXES, TINY_CAPTIONER, TINY_MODEL, TURBO_MODEL
from zlt.core.errors import BadInputError
from zlt.core.naming import parse_pattern

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
TURBO_ADAPTER_V2 = "ostris/zimage_turbo_training_adapter/zimage_turbo_training_adapter_v2.safetensors"

Precision = Literal["fp16", "bf16", "fp32"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BaseModelSpec(Strict):
    name: str = Field(
        TURBO_MODEL,
        description=f"Base model: '{TURBO_MODEL}' (needs a GPU), another hub id or a local diffusers folder, or "
        f"'{TINY_MODEL}', the built-in tiny random test model (trains on the CPU in minutes; its source and the "
        "job's GPU needs are filled in).",
    )
    source: Literal["huggingface", "local", "modelscope", "builtin"] = Field(
        "huggingface", description=f"Where the base model comes from; left out: 'builtin' for {TINY_MODEL}, else "
        "'huggingface'."
    )
    precision: Precision = Field("bf16", description="Dtype the frozen base weights are loaded in.")
    variant: Literal["turbo", "base", "deturbo"] = Field(
        "turbo", description="Model variant; 'turbo' trains with the turbo training adapter merged in."
    )
    training_adapter: str = Field(
        "auto",
        description="Turbo training adapter: 'auto' (v2 for the turbo variant), 'none', a local .safetensors "
        "path or 'owner/repo/file.safetensors'.",
    )
    quantize: Literal["auto", "none", "float8"] = Field(
        "auto", description="Quantise the transformer and text encoder: 'auto' lets the hardware profile decide."
    )
    dit: str | None = Field(
        None, description="Local single-file transformer weights (musubi --dit); default under $ZLT_HOME/models."
    )
    vae: str | None = Field(None, description="Local single-file VAE weights (musubi --vae).")
    text_encoder: str | None = Field(None, description="Local single-file Qwen3 text encoder weights (musubi).")

    @field_validator("training_adapter", "dit", "vae", "text_encoder")
    @classmethod
    def _no_pickle(cls, value: str | None) -> str | None:
        # zlt never loads a pickle (.bin/.ckpt/.pt can run code when loaded), whoever wrote the spec.
        if value and value.lower().endswith(PICKLE_SUFFIXES):
            raise PydanticCustomError("pickle", "{value} is a pickle file, which can run code when loaded; give a "
                                      ".safetensors file", {"value": repr(value)})
        return value


class LoraSpec(Strict):
    enable: bool = Field(True, description="Train a LoRA (the only training mode zlt offers today).")
    rank: int = Field(16, ge=1, le=256, description="LoRA rank (network dim), 1..256.")
    alpha: float = Field(16, gt=0, description="LoRA alpha; the update is scaled by alpha/rank.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the LoRA path, 0 <= p < 1.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["attention.to_q", "attention.to_k", "attention.to_v", "attention.to_out"],
        min_length=1,
        description="Transformer modules that get a LoRA: attention.to_q/to_k/to_v/to_out, "
        "feed_forward.w1/w2/w3, adaLN_modulation.",
    )


class ModelSection(Strict):
    base: BaseModelSpec = Field(default_factory=BaseModelSpec, description="The frozen base model.")
    lora: LoraSpec = Field(default_factory=LoraSpec, description="The LoRA adapter to train.")


class AutoCaptionSpec(Strict):
    """`dataset.caption.auto`: caption the images with a vision-language model before the dataset is prepared."""

    enable: bool = Field(False, description="Caption the images before preparing (zlt.caption); sidecars are "
                         "written beside the images.")
    model: str = Field(DEFAULT_CAPTIONER, description=f"Captioner: a hub id, a local folder, or '{TINY_CAPTIONER}' "
                       "(tiny random model for tests).")
    mode: Literal["missing", "all"] = Field(
        "missing", description="missing: only images without a caption; all: every image, the old text kept "
        "beside it as NAME.txt.bak.")
    prefix: str = Field("", max_length=200, description="Text put before every generated caption.")
    suffix: str = Field("", max_length=200, description="Text put after every generated caption.")
    max_words: int | None = Field(None, ge=1, le=300, description="Cut generated captions to this many words.")


class CaptionSpec(Strict):
    strategy: Literal["filename_or_txt", "txt", "filename", "metadata"] = Field(
        "filename_or_txt",
        description="Caption source: .txt sidecar, the file name, sidecar else file name, or metadata.csv/.jsonl.",
    )
    trigger_token: str | None = Field(
        "<zstyle>", description="Token inserted once into every caption (null for none); '[trigger]' is honoured."
    )
    trigger_position: Literal["prefix", "suffix"] = Field(
        "prefix", description="Where the trigger goes when a caption has no '[trigger]' placeholder."
    )
    caption_ext: str = Field("txt", pattern=r"^[A-Za-z0-9_]{1,16}$", description="Sidecar caption extension.")
    default_caption: str = Field("", description="Caption used when an image has none.")
    dropout: float = Field(0.05, ge=0.0, le=1.0, description="Caption dropout rate during training.")
    auto: AutoCaptionSpec = Field(default_factory=AutoCaptionSpec, description="Auto-captioning before prepare.")


class AugmentSpec(Strict):
    horizontal_flip: bool = Field(False, description="Also train on mirrored images.")
    color_jitter: bool = Field(False, description="Random colour jitter (built-in trainer only).")


class DatasetSpec(Strict):
    path: str = Field("dataset", description="Image folder; relative paths are relative to the spec file.")
    type: Literal["image_only_with_caption"] = Field(
        "image_only_with_caption", description="Dataset kind: images with captions."
    )
    resolution: int = Field(1024, ge=16, le=2048, description="Training resolution (longest edge), multiple of 16.")
    center_crop: bool = Field(False, description="Center-crop to the bucket's aspect ratio while preparing.")
    upscale: bool = Field(False, description="Upscale images smaller than the resolution (off: never upscale).")
    caption: CaptionSpec = Field(default_factory=CaptionSpec, description="How captions are found and edited.")
    repeats: int = Field(1, ge=1, le=1000, description="How often each image is seen per epoch.")
    shuffle: bool = Field(True, description="Shuffle the image order each epoch.")
    augment: AugmentSpec = Field(default_factory=AugmentSpec, description="Augmentations.")
    strict: bool = Field(
        False, description="Refuse to train (exit 2, naming the files) when an image cannot be read; off: prepare "
        "skips and reports such images and training goes on with the rest.",
    )


class OptimizerSpec(Strict):
    type: Literal["adamw", "prodigy", "adafactor"] = Field(
        "adamw",
        description="Optimizer family. prodigy adapts its own step size: training.learning_rate is its multiplier "
        "and a value below 0.1 means 1.0, on every backend.",
    )
    use_8bit: bool = Field(True, description="8-bit optimizer states (bitsandbytes) where supported.")
    weight_decay: float = Field(1e-4, ge=0.0, lt=1.0, description="Decoupled weight decay.")


class SampleSpec(Strict):
    enable: bool = Field(False, description="Generate samples while training (off by default, as the guide says).")
    every: int = Field(250, ge=1, description="Sample every N steps.")
    prompts: list[str] = Field(
        default_factory=lambda: ["[trigger] a lighthouse on a cliff at dusk", "[trigger] a portrait of a woman reading"],
        description="Prompts to sample; '[trigger]' is replaced by the trigger token.",
    )
    steps: int | None = Field(
        None, ge=1, le=200, description="Inference steps; null: by model.base.variant (turbo 9, deturbo 25, base 30)."
    )
    guidance_scale: float | None = Field(
        None, ge=0.0,
        description="Classifier-free guidance in diffusers' ZImagePipeline convention (0: off); null: by "
        "model.base.variant (turbo 0, deturbo 2, base 4).",
    )
    seed: int = Field(42, description="Sampling seed.")

    @model_validator(mode="after")
    def _prompts_when_enabled(self) -> SampleSpec:
        # Every backend samples exactly the spec's prompts; none are made up.
        if self.enable and not [p for p in self.prompts if p.strip()]:
            raise PydanticCustomError("no_prompts", "training.sample.prompts is empty while sampling is on; "
                                      "give at least one prompt, or set enable: false")
        return self


class TrainingSpec(Strict):
    # A name, not a Literal: the backend registry (zlt.backends, a layer above) is the one list of trainers; the gate
    # (zlt/flows/gate.py) checks the name and the registry's rules, and `zlt schema` lists the names as an enum.
    backend: str = Field(
        "lightning", description="Trainer: 'lightning' (built in) or a trainer from your checkout; "
        "`zlt schema` lists every name."
    )
    batch_size: int = Field(1, ge=1, le=64, description="Images per step per GPU.")
    gradient_accumulation: int = Field(1, ge=1, le=256, description="Steps accumulated before an update.")
    effective_batch_size: int | None = Field(
        None, ge=1, description="Derived: batch_size x gradient_accumulation; rejected when inconsistent."
    )
    max_steps: int = Field(2000, ge=1, le=1_000_000, description="Optimizer steps to train.")
    warmup_steps: int = Field(0, ge=0, description="Linear learning-rate warmup steps, fewer than max_steps.")
    learning_rate: float = Field(1e-4, gt=0.0, lt=1.0, description="Peak learning rate, 0 < lr < 1.")
    scheduler: Literal["constant", "cosine", "linear"] = Field("constant", description="LR schedule after warmup.")
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec, description="Optimizer settings.")
    compile: Literal["auto", "on", "off"] = Field(
        "auto", description="Built-in trainer: torch.compile the repeated transformer blocks; auto: on for CUDA GPUs."
    )
    mixed_precision: Literal["fp16", "bf16", "fp32", "no"] = Field(
        "bf16", description="Compute precision; fp16 maps to bf16 where the GPU supports it."
    )
    gradient_checkpointing: bool | None = Field(
        None,
        description="Trade compute for activation memory; null: the hardware profile decides. A value set here "
        "always wins over the profile, on every backend.",
    )
    timestep_type: Literal["sigmoid", "weighted", "uniform", "shift"] = Field(
        "weighted", description="How flow-matching timesteps are sampled."
    )
    timestep_shift: float = Field(
        3.0, gt=0.0, le=100.0,
        description="Flow-matching shift for timestep_type 'shift' (Z-Image's scheduler: 3.0); one value on every "
        "backend (musubi --discrete_flow_shift).",
    )
    content_or_style: Literal["balanced", "style", "content"] = Field(
        "balanced", description="ai-toolkit's timestep bias towards style (late) or content (early) noise."
    )
    seed: int = Field(42, ge=0, description="Random seed.")
    stop_on_nan: bool = Field(
        True, description="Stop the trainer and fail the job (cause 'diverged') after 5 logged steps in a row with a "
        "nan/inf loss; checkpoints saved before stay. Off: only warn.",
    )
    sample: SampleSpec = Field(default_factory=SampleSpec, description="Sampling during training.")


class RetrySpec(Strict):
    max_retries: int = Field(1, ge=0, le=20, description="Automatic retries after a failure, resuming.")
    on_oom: Literal["fail", "lower_profile"] = Field(
        "fail", description="After a CUDA OOM: retry as is, or step down one hardware profile."
    )


class ResourcesSpec(Strict):
    gpu: int = Field(1, ge=0, le=64, description="GPUs the job needs.")
    min_vram_gb: float | None = Field(None, ge=0, description="Refuse GPUs with less memory than this.")


class LoggingSpec(Strict):
    level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log verbosity.")


class JobSection(Strict):
    type: Literal["async", "sync"] = Field("async", description="async: submit returns a job id at once.")
    timeout_hours: float = Field(6.0, gt=0, le=720, description="Stop the job after this many hours.")
    priority: int = Field(0, ge=-100, le=100, description="Queue priority; higher runs first.")
    retry: RetrySpec = Field(default_factory=RetrySpec, description="Retry policy.")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="What the job needs.")
    logging: LoggingSpec = Field(default_factory=LoggingSpec, description="Logging.")
    callback_url: str | None = Field(None, description="Webhook that receives state changes (zlt serve).")


class SaveSpec(Strict):
    lora_weights: bool = Field(True, description="Keep the LoRA weights.")
    config: bool = Field(True, description="Keep the spec and the rendered trainer config.")
    training_meta: bool = Field(True, description="Write training_meta.json.")
    every: int = Field(250, ge=1, description="Save a checkpoint every N steps.")
    keep: int = Field(4, ge=1, le=1000, description="Intermediate checkpoints to keep (the final one is extra).")
    dtype: Literal["bf16", "fp16", "fp32"] = Field("bf16", description="Dtype of saved LoRA weights.")


class RegistrySpec(Strict):
    type: Literal["local"] = Field("local", description="Registry kind; 'local' folder today.")
    path: str | None = Field(None, description="Registry folder; default <ZLT_HOME>/artifacts/lora.")


class NamingSpec(Strict):
    pattern: str = Field(
        "{job_id}_{style_name}_v0",
        description="Artifact folder name: {job_id} {style_name} {preset} {rank} {steps} {date} {version}.",
    )

    @field_validator("pattern")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        # Checked with the spec, not after the training when the artifact is named.
        try:
            parse_pattern(value)
        except BadInputError as e:
            text = e.message.removeprefix("output.naming.pattern: ") + (f" ({e.hint})" if e.hint else "")
            raise PydanticCustomError("naming_pattern", "{text}", {"text": text}) from None
        return value


class OutputSection(Strict):
    format: Literal["safetensors"] = Field("safetensors", description="Weights file format (no pickle).")
    key_format: Literal["diffusers", "comfyui", "kohya"] = Field(
        "diffusers", description="Key layout of lora.safetensors."
    )
    save: SaveSpec = Field(default_factory=SaveSpec, description="What to keep and how often.")
    registry: RegistrySpec = Field(default_factory=RegistrySpec, description="Where artifacts go.")
    naming: NamingSpec = Field(default_factory=NamingSpec, description="Artifact naming.")


class EvalModelsSpec(Strict):
    clip: str = Field(
        "openai/clip-vit-large-patch14",
        description="CLIP model for the metrics: a local transformers folder or a hub id (never downloaded offline).",
    )


class EarlyStopSpec(Strict):
    """`eval.early_stop`; `true`/`false` is short for `{enable: ...}`."""

    enable: bool = Field(
        False, description="Stop training once style similarity has plateaued and prompt alignment is falling "
        "(scored during training at eval.every, default output.save.every).",
    )
    patience: int = Field(
        2, ge=1, le=50, description="Plateau: this many evaluations in a row without a style-similarity gain of "
        "min_delta over the best before them.",
    )
    min_delta: float = Field(0.005, ge=0.0, le=1.0, description="Smallest style-similarity gain that counts as progress.")
    min_step: int = Field(0, ge=0, description="Never stop before this training step.")

    @model_validator(mode="before")
    @classmethod
    def _bool_shorthand(cls, value: Any) -> Any:
        return {"enable": value} if isinstance(value, bool) else value


class EvalSpec(Strict):
    enable: bool = Field(False, description="Evaluate the artifact when training finishes (what `zlt eval` does).")
    every: Annotated[int, Field(ge=1)] | Literal["save"] | None = Field(
        None, description="Also evaluate while training: the first checkpoint saved at or after every N steps, or "
        "'save' for every checkpoint (the artifact's evaluation then reuses those rows). null: only after training "
        "(or at each save with early_stop).",
    )
    early_stop: EarlyStopSpec = Field(default_factory=EarlyStopSpec, description="Stop early on a plateau.")

    @field_validator("every", mode="before")
    @classmethod
    def _every(cls, value: Any) -> Any:
        ok = value is None or value == "save" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1)
        if not ok:
            raise PydanticCustomError("eval_every", "{value} is not a step count >= 1, 'save' (every checkpoint) or "
                                      "null (after training only)", {"value": repr(value)})
        return value
    prompts: list[str] = Field(
        default_factory=list, description="Held-out prompts ('[trigger]' marks the trigger); empty: 8 varied subjects."
    )
    seeds: int = Field(2, ge=1, le=16, description="Images per prompt, each with its own seed.")
    checkpoints: str = Field(
        "all", pattern=r"^(all|last|\d+(,\d+)*)$", description="Checkpoints to evaluate: all, last, or steps '250,500'."
    )
    scale: float = Field(1.0, ge=0.0, le=4.0, description="LoRA scale the checkpoints are drawn at.")
    size: int | None = Field(None, ge=16, le=2048, description="Image side (multiple of 16); default: dataset.resolution.")
    alignment_tolerance: float = Field(
        0.10, ge=0.0, le=1.0, description="Best checkpoint: prompt alignment may fall at most this fraction below the base model's."
    )
    memorisation_max: float = Field(
        0.95, gt=0.0, le=1.0, description="Best checkpoint: its nearest-training-image similarity must stay below this."
    )
    models: EvalModelsSpec = Field(default_factory=EvalModelsSpec, description="Models the metrics use.")

    def during_training_every(self, save_every: int) -> int | None:
        """Steps between evaluations while training runs, or None when nothing is scored until the end."""
        if self.every == "save" or (self.every is None and self.early_stop.enable):
            return save_every
        return self.every if isinstance(self.every, int) else None


class JobSpec(Strict):
    """A zlt job spec. `zlt init` writes a commented one; `zlt validate` checks one."""

    name: str = Field(
        "zstyle", pattern=NAME_PATTERN, description="Style name: lowercase letters, digits, '_' and '-', max 64."
    )
    preset: Literal["style", "character"] = Field("style", description="Expert defaults to start from.")
    model: ModelSection = Field(default_factory=ModelSection, description="Base model and LoRA.")
    dataset: DatasetSpec = Field(default_factory=DatasetSpec, description="Images and captions.")
    training: TrainingSpec = Field(default_factory=TrainingSpec, description="Optimisation settings.")
    job: JobSection = Field(default_factory=JobSection, description="How the job runs.")
    output: OutputSection = Field(default_factory=OutputSection, description="What the job leaves.")
    eval: EvalSpec = Field(default_factory=EvalSpec, description="Evaluation of the checkpoints (zlt eval).")

    @property
    def is_tiny(self) -> bool:
        return self.model.base.name == TINY_MODEL

    @property
    def effective_batch(self) -> int:
        return self.training.batch_size * self.training.gradient_accumulation

    @property
    def trigger(self) -> str | None:
        return self.dataset.caption.trigger_token or None

    def adapter_path(self) -> str | None:
        """The turbo training adapter to merge, or None."""
        a = self.model.base.training_adapter
        if a == "none":
            return None
        if a == "auto":
            return TURBO_ADAPTER_V2 if self.model.base.variant == "turbo" and not self.is_tiny else None
        return a
