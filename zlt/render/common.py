"""Spec -> trainer vocabulary mappings shared by the renderers."""

from __future__ import annotations

from zlt.core.constants import TURBO_MODEL
from zlt.profiles import HardwareProfile
from zlt.render.base import FieldNote, about, about_parts
from zlt.spec.models import JobSpec

BUCKETS = (512, 768, 1024, 1280, 1536, 2048)


def compute_precision(spec: JobSpec, profile: HardwareProfile, warnings: list[FieldNote]) -> str:
    """'bf16' | 'fp16' | 'fp32'. Z-Image is a bf16 model: fp16 is mapped to bf16 where the GPU has it."""
    mp = spec.training.mixed_precision
    if mp in ("fp32", "no"):
        return "fp32"
    if mp == "fp16" and profile.bf16:
        warnings.append(about("training.mixed_precision", f"fp16 mapped to bf16 (Z-Image weights are bf16; profile {profile.name} has bf16)"))
        return "bf16"
    if mp == "bf16" and not profile.bf16:
        warnings.append(about("training.mixed_precision", f"profile {profile.name} has no bf16; using fp16"))
        return "fp16"
    return mp


def bucket_resolutions(spec: JobSpec, profile: HardwareProfile) -> list[int]:
    top = min(spec.dataset.resolution, profile.resolution_cap)
    out = [b for b in BUCKETS if b <= top]
    if top not in out:
        out.append(top)
    return out


def attention_targets(spec: JobSpec) -> list[str]:
    return list(spec.model.lora.target_modules)


def sample_prompts(spec: JobSpec) -> list[str]:
    """The spec's sample prompts with the trigger filled in; never prompts the spec does not have."""
    trig = spec.trigger or ""
    return [p.replace("[trigger]", trig).strip() for p in spec.training.sample.prompts if p.strip()]


def resolve_gradient_checkpointing(spec: JobSpec, lever: tuple[bool, str]) -> tuple[bool, str]:
    """(on, why). A value in the spec always wins; unset (null), the backend's profile lever (`lever`) decides."""
    set_value = spec.training.gradient_checkpointing
    if set_value is not None:
        return set_value, "set in the spec"
    return lever


# Sampling defaults per variant, in diffusers' ZImagePipeline convention (guidance 0 = no CFG). Turbo: the model
# card's 9 steps / 0. Base: ai-toolkit's UI recipe samples 30 steps; musubi's Z-Image trainer defaults CFG to 4.0
# "for Base model". De-Turbo: ai-toolkit's UI recipe, 25 steps and its guidance 3 (= 2 here: it subtracts 1).
VARIANT_SAMPLING = {"turbo": (9, 0.0), "base": (30, 4.0), "deturbo": (25, 2.0)}


def sample_steps_guidance(spec: JobSpec) -> tuple[int, float]:
    steps, guidance = VARIANT_SAMPLING[spec.model.base.variant]
    s = spec.training.sample
    return (s.steps if s.steps is not None else steps), (s.guidance_scale if s.guidance_scale is not None else guidance)


PRODIGY_MIN_LR = 0.1  # ai-toolkit's toolkit/optimizer.py raises any Prodigy lr below this to 1.0
PRODIGY_EPS = 1e-6  # ai-toolkit passes eps=1e-6 to Prodigy and cannot be told otherwise


def optimizer_lr(spec: JobSpec, warnings: list[FieldNote]) -> float:
    """The lr every backend hands its optimizer. For Prodigy the spec's learning_rate is Prodigy's multiplier of its
    own adapted step size; an Adam-sized value (< 0.1) means 1.0, the same rule ai-toolkit applies, on every backend."""
    tr = spec.training
    if tr.optimizer.type == "prodigy" and tr.learning_rate < PRODIGY_MIN_LR:
        warnings.append(about("training.learning_rate", f"{tr.learning_rate:g} is an Adam-sized rate; Prodigy adapts its own step "
                        "size and takes learning_rate as a multiplier, so every backend trains with 1.0"))
        return 1.0
    return tr.learning_rate


def eight_bit_note(spec: JobSpec, warnings: list[FieldNote]) -> None:
    opt = spec.training.optimizer
    if opt.use_8bit and opt.type != "adamw":
        warnings.append(about("training.optimizer.use_8bit", f"only AdamW has an 8-bit form on every backend; "
                        f"{opt.type} runs in 32-bit"))


# Spec target names -> the module names under each transformer block (ZImageTransformerBlock) of diffusers'
# ZImageTransformer2DModel. The spec's module set is these modules in every block that has them: the main
# `layers` and the `noise_refiner` / `context_refiner` blocks (the built-in trainer's peft suffix match).
TARGET_CHILDREN: dict[str, tuple[str, ...]] = {
    "attention.to_q": ("attention.to_q",), "attention.to_k": ("attention.to_k",),
    "attention.to_v": ("attention.to_v",), "attention.to_out": ("attention.to_out.0",),
    "attention.to_out.0": ("attention.to_out.0",),
    "attention": ("attention.to_q", "attention.to_k", "attention.to_v", "attention.to_out.0"),
    "feed_forward.w1": ("feed_forward.w1",), "feed_forward.w2": ("feed_forward.w2",),
    "feed_forward.w3": ("feed_forward.w3",), "feed_forward": ("feed_forward.w1", "feed_forward.w2", "feed_forward.w3"),
    "adaLN_modulation": ("adaLN_modulation.0",), "adaLN_modulation.0": ("adaLN_modulation.0",),
    "adaLN": ("adaLN_modulation.0",),
}
for _short in ("to_q", "to_k", "to_v", "to_out"):
    TARGET_CHILDREN[_short] = TARGET_CHILDREN[f"attention.{_short}"]
for _short in ("w1", "w2", "w3"):
    TARGET_CHILDREN[_short] = TARGET_CHILDREN[f"feed_forward.{_short}"]
BLOCKS = ("layers", "noise_refiner", "context_refiner")


def target_children(spec: JobSpec) -> list[str]:
    """The spec's targets as module names inside a block (deduplicated, in order); unknown names are skipped
    (the lightning render reports them as spec errors)."""
    out: list[str] = []
    for name in spec.model.lora.target_modules:
        for child in TARGET_CHILDREN.get(name.strip(), ()):
            if child not in out:
                out.append(child)
    return out


def spec_warnings(spec: JobSpec, backend: str, *, multi_gpu: bool, reads_weight_files: bool) -> list[FieldNote]:
    """Warnings every backend gives for the same reason (`multi_gpu`, `reads_weight_files`: what it can do)."""
    out: list[FieldNote] = []
    if not spec.model.lora.enable:
        out.append(about("model.lora.enable", "false is not a training mode; zlt trains a LoRA (the only mode it offers)"))
    gpus = spec.job.resources.gpu
    if not multi_gpu and gpus > 1:
        out.append(about("job.resources.gpu", f"{backend} is launched as one process; it trains on one of the {gpus} GPUs"))
    base = spec.model.base
    if not reads_weight_files:
        for name in ("dit", "vae", "text_encoder"):
            if getattr(base, name):
                out.append(about_parts("model.base", [name], f"only musubi reads single weight files; {backend} loads "
                                       f"model.base.name ({base.name})"))
    return out


def weight_dtype_note(spec: JobSpec, profile: HardwareProfile, compute: str, how: str, warnings: list[FieldNote]) -> None:
    """Trainers that load the frozen weights in the compute dtype: say so when model.base.precision asks otherwise
    (fp16 weights count as bf16 where the GPU has bf16, as in the built-in trainer)."""
    want = spec.model.base.precision
    if want == "fp16" and profile.bf16:
        want = "bf16"
    if want != compute:
        warnings.append(about("model.base.precision", f"{how} ({compute}); {spec.model.base.precision} is not used"))


# Upstream's own recipes (ai-toolkit ui/src/app/jobs/new/options.tsx): the weights each variant trains, and where
# the VAE/text encoder come from (ai-toolkit's `extras_name_or_path`, which defaults to name_or_path).
VARIANT_MODELS: dict[str, tuple[str, str | None]] = {
    "turbo": (TURBO_MODEL, None),
    "base": ("Tongyi-MAI/Z-Image", None),
    "deturbo": ("ostris/Z-Image-De-Turbo", TURBO_MODEL),
}


def variant_model(spec: JobSpec) -> tuple[str, str | None]:
    """(weights, extras): the default name (Turbo) with another variant means that variant's weights."""
    base = spec.model.base
    official, extras = VARIANT_MODELS[base.variant]
    if base.name in (TURBO_MODEL, official):
        return official, extras
    return base.name, None


def trained_summary(spec: JobSpec, *, alpha: float, gradient_checkpointing: bool, timestep_type: str,
                    timestep_shift: float, learning_rate: float, blocks: tuple[str, ...] = BLOCKS) -> dict:
    """What a render makes its trainer train, for the artifact's metadata (the parity mapping applied)."""
    return {
        "lora_rank": spec.model.lora.rank, "lora_alpha": alpha, "lora_dropout": spec.model.lora.dropout,
        "target_modules": target_children(spec), "target_blocks": list(blocks),
        "training_adapter": spec.adapter_path(), "gradient_checkpointing": gradient_checkpointing,
        "timestep_type": timestep_type, "timestep_shift": timestep_shift, "learning_rate": learning_rate,
    }
