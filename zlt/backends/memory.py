"""Peak-VRAM arithmetic for spec x profile x backend (each backend says which levers it has in force; preflight's
`zlt.preflight.vram.estimate` and its levers call this).

A small additive model in GiB. `plan()` resolves which memory levers are in force (what each trainer does
with the spec and the profile); `estimate_plan()` adds up the parts with the coefficients of the profile's
`estimator:` block. docs/vram.md gives the reasoning and checks the result against published figures.

    training = transformer + text_encoder (unless cached) + vae + lora_train_state
               + max(activations, sampling) - block_swap + overhead
    loading  = the text encoder as loaded (+ the transformer, when it is already on the GPU) + overhead
    total    = max(training, loading) x (1 + margin)

- transformer / text encoder: parameters x bytes (2 bf16/fp16, 4 fp32, `quant_bytes_per_param` for 8-bit).
- lora_train_state: LoRA parameters x (weight + gradient + optimizer state) bytes.
- activations: (image tokens (res/16)^2 + caption tokens) / 1000 x batch x a per-1k-token coefficient,
  twelve times larger without gradient checkpointing.
- sampling: generating a preview image frees the training activations but decodes a full-size image.
- block_swap: musubi keeps N of the 30 blocks in host memory and streams them in one at a time.
- float8_upcast: the built-in trainer's float8 storage casts each layer to bf16 for its forward; autograd keeps
  those copies until backward, so one block's worth is live with gradient checkpointing, all of them without.
- loading: ai-toolkit moves the text encoder to the GPU in bf16 and quantises it there; with low_vram the
  transformer waits in host memory meanwhile. musubi and the built-in trainer encode captions first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from zlt.backends.base import Backend
from zlt.profiles import EstimatorCoefficients, HardwareProfile
from zlt.spec.models import JobSpec

GIB = float(1 << 30)
N_BLOCKS = 30  # main transformer blocks (musubi swaps and adapts these)
N_REFINERS = 4  # 2 noise + 2 context refiner blocks; substring targets reach them in ai-toolkit and peft
_CAPTION_TOKENS = 128  # a chat-templated caption; Z-Image passes only the real tokens, not 512 of padding
_DIM, _FFN, _ADALN_IN = 3840, 10240, 256
# in + out features of each targetable Linear in one Z-Image block
_MODULE_IO: dict[str, int] = {
    "attention.to_q": 2 * _DIM,
    "attention.to_k": 2 * _DIM,
    "attention.to_v": 2 * _DIM,
    "attention.to_out": 2 * _DIM,
    "feed_forward.w1": _DIM + _FFN,
    "feed_forward.w2": _FFN + _DIM,
    "feed_forward.w3": _DIM + _FFN,
    "adaLN_modulation": _ADALN_IN + 4 * _DIM,
}
TINY_GB = 0.3


@dataclass
class VramEstimate:
    """Estimated peak GPU memory, GiB. `parts` add up to `total_gb`; `phases` are the peaks of each phase."""

    total_gb: float
    parts: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def allocated_gb(self) -> float:
        """Tensors alone at the peak (what torch.cuda.max_memory_allocated reports): no overhead, no margin."""
        return sum(v for k, v in self.parts.items() if k not in ("overhead", "margin"))

    def to_dict(self) -> dict[str, Any]:
        return {"total_gb": round(self.total_gb, 2), "parts": {k: round(v, 2) for k, v in self.parts.items()},
                "phases": {k: round(v, 2) for k, v in self.phases.items()}, "notes": list(self.notes)}


@dataclass
class MemoryPlan:
    """The memory levers in force for one spec x profile x backend: what the trainer will actually do."""

    backend: str
    transformer_bytes: float  # bytes per transformer parameter while training
    text_encoder_bytes: float  # bytes per text-encoder parameter while it is resident
    text_encoder_resident: bool  # stays on the GPU during training (captions not cached)
    load_text_encoder_bytes: float  # bytes per text-encoder parameter while captions are encoded
    transformer_on_gpu_while_loading: bool  # ai-toolkit without low_vram
    vae_resident: bool
    gradient_checkpointing: bool
    gradient_checkpointing_source: str  # 'spec', 'profile <name>' or the backend's own default
    activation_cpu_offload: bool  # musubi --gradient_checkpointing_cpu_offload
    swapped_blocks: int
    upcast_fraction: float  # share of the transformer held as bf16 copies of float8 weights (built-in float8)
    resolution: int
    batch_size: int
    sample_resolution: int | None  # None: no sampling during training
    lora_params: int
    lora_bytes_per_param: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def lora_param_count(spec: JobSpec, backend: Backend) -> int:
    """Trainable LoRA parameters: rank x (in + out) for every targeted Linear in every block the backend adapts."""
    matched: set[str] = set()
    unknown = 0
    for target in spec.model.lora.target_modules:
        hits = [k for k in _MODULE_IO if k.startswith(target) or target.startswith(k)]
        matched.update(hits)
        unknown += 0 if hits else 1
    per_block = sum(_MODULE_IO[k] for k in matched) + unknown * 2 * _DIM
    return spec.model.lora.rank * per_block * backend.lora_blocks


def _precision_bytes(precision: str) -> float:
    return 4.0 if precision == "fp32" else 2.0


def _optimizer_bytes(spec: JobSpec) -> float:
    opt = spec.training.optimizer
    if opt.type == "adamw":
        return 2.0 if opt.use_8bit else 8.0
    if opt.type == "prodigy":
        return 16.0  # exp_avg, exp_avg_sq, s and the initial weights, fp32
    return 1.0  # adafactor: factored second moments, tiny for LoRA matrices


def plan(spec: JobSpec, profile: HardwareProfile, backend: Backend, *, quantize: bool | None = None) -> MemoryPlan:
    """Resolve what the trainer does with this spec under this profile (quantisation, caching, offload).
    `quantize` overrides the built-in trainer's float8 decision (used to decide 'auto')."""
    c = profile.estimator
    notes: list[str] = []
    base = _precision_bytes(spec.model.base.precision)
    res = min(spec.dataset.resolution, profile.resolution_cap)
    if res < spec.dataset.resolution:
        notes.append(f"resolution capped at {res} by profile {profile.name}")
    sample_res = res if spec.training.sample.enable else None
    gc, gc_source = backend.gradient_checkpointing(spec, profile)  # the spec's value, else the profile's
    levers: dict[str, Any] = {
        "transformer_bytes": base, "text_encoder_bytes": base, "text_encoder_resident": False,
        "load_text_encoder_bytes": base, "transformer_on_gpu_while_loading": False, "vae_resident": True,
        "activation_cpu_offload": False, "swapped_blocks": 0, "upcast_fraction": 0.0,
    }
    levers.update(backend.memory_levers(spec, profile, base=base, q8=c.quant_bytes_per_param, gc=gc,
                                        gc_source=gc_source, sample_res=sample_res, quantize=quantize, notes=notes))
    if not gc:
        notes.append("gradient checkpointing is off: activations dominate")
    return MemoryPlan(
        backend=backend.name, **levers, gradient_checkpointing=gc, gradient_checkpointing_source=gc_source,
        resolution=res, batch_size=spec.training.batch_size, sample_resolution=sample_res,
        lora_params=lora_param_count(spec, backend),
        lora_bytes_per_param=backend.lora_weight_grad_bytes + _optimizer_bytes(spec), notes=notes,
    )


CAPTIONS_CACHED_NOTE = "captions are encoded once and the text encoder is unloaded before training"


def estimate_plan(p: MemoryPlan, c: EstimatorCoefficients) -> VramEstimate:
    """Add up a plan's parts (GiB). Pure arithmetic on the plan and the coefficients."""
    transformer = c.transformer_params_b * 1e9 * p.transformer_bytes / GIB
    te_load = c.text_encoder_params_b * 1e9 * p.load_text_encoder_bytes / GIB
    ktokens = ((p.resolution // 16) ** 2 + _CAPTION_TOKENS) / 1000.0
    per_k = c.act_gb_per_ktoken if p.gradient_checkpointing else c.act_gb_per_ktoken_no_gc
    activations = ktokens * p.batch_size * per_k
    if p.activation_cpu_offload:
        activations *= 0.5  # the checkpointed block inputs (about half) wait in host memory
    parts: dict[str, float] = {
        "transformer": transformer,
        "text_encoder": c.text_encoder_params_b * 1e9 * p.text_encoder_bytes / GIB if p.text_encoder_resident else 0.0,
        "vae": c.vae_gb if p.vae_resident else 0.0,
        "lora_train_state": p.lora_params * p.lora_bytes_per_param / GIB,
        "activations": activations,
    }
    if p.sample_resolution:
        parts["sampling"] = max(0.0, c.sample_gb * (p.sample_resolution / 1024) ** 2 - activations)
    if p.upcast_fraction:
        parts["float8_upcast"] = c.transformer_params_b * 1e9 * 2.0 * p.upcast_fraction / GIB
    if p.swapped_blocks:
        # one swapped block stays on the GPU as the landing slot for the next
        parts["block_swap"] = -transformer * max(p.swapped_blocks - 1, 0) / N_BLOCKS
    parts["overhead"] = c.overhead_gb
    training = sum(parts.values())
    loading = te_load + (transformer if p.transformer_on_gpu_while_loading else 0.0) + c.overhead_gb
    notes = list(p.notes)
    if loading > training:
        parts["loading_extra"] = loading - training
        notes.append(f"the peak is while loading and encoding captions ({loading:.1f} GiB before margin)")
    peak = max(training, loading)
    parts["margin"] = peak * c.margin
    factor = 1.0 + c.margin
    return VramEstimate(peak * factor, parts, notes, {"training": training * factor, "loading": loading * factor})


