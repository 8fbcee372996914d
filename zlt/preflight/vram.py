"""Peak-VRAM estimate for spec x profile x backend.

A deliberately small additive model; the coefficients live in each profile's `estimator` block and
docs/vram.md lists the published figures they are checked against:

    peak = (transformer + text_encoder + vae + lora_train_state + activations + overhead - offload) x (1 + margin)

- transformer / text encoder: parameters x bytes per parameter (2 bf16/fp16, 1 float8, 4 fp32);
  the text encoder counts 0 when its outputs are cached and it is unloaded before training
  (musubi always caches in a separate process; the built-in trainer always caches).
- lora_train_state: LoRA parameters x (fp32 weight 4 + grad 4 + optimizer states 8, or 2 when 8-bit).
- activations: image+caption tokens (in thousands) x batch x a per-ktoken coefficient, much larger
  without gradient checkpointing.
- offload: ai-toolkit's low_vram, musubi's blocks_to_swap move weights to the CPU at peak.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zlt.profiles import HardwareProfile
from zlt.spec.models import JobSpec

# in+out features of each targetable Linear in one Z-Image block (dim 3840, ffn 10240)
_MODULE_IO = {
    "attention.to_q": 7680,
    "attention.to_k": 7680,
    "attention.to_v": 7680,
    "attention.to_out": 7680,
    "feed_forward.w1": 14080,
    "feed_forward.w2": 14080,
    "feed_forward.w3": 14080,
    "adaLN_modulation": 256 + 4 * 3840,
}
_N_LAYERS = 30
_CAPTION_TOKENS = 512
_GB = 1e9


@dataclass
class VramEstimate:
    total_gb: float
    parts: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"total_gb": round(self.total_gb, 2), "parts": {k: round(v, 2) for k, v in self.parts.items()},
                "notes": self.notes}


def lora_param_count(spec: JobSpec) -> int:
    per_layer = 0
    for target in spec.model.lora.target_modules:
        key = next((k for k in _MODULE_IO if target.startswith(k) or k.startswith(target)), None)
        per_layer += _MODULE_IO.get(key or "", 7680)
    return spec.model.lora.rank * per_layer * _N_LAYERS


def _bytes_per_param(precision: str) -> float:
    return {"fp32": 4.0, "float8": 1.0}.get(precision, 2.0)


def estimate(spec: JobSpec, profile: HardwareProfile, backend: str | None = None) -> VramEstimate:
    """Estimated peak GPU memory in GB (1e9 bytes) of training `spec` under `profile` with `backend`."""
    backend = backend or spec.training.backend
    c = profile.estimator
    notes: list[str] = []
    if spec.is_tiny:
        return VramEstimate(0.3, {"tiny_model": 0.3}, ["the tiny test model needs almost no memory"])

    quant_mode = spec.model.base.quantize
    base_bytes = _bytes_per_param(spec.model.base.precision)
    te_bytes = base_bytes
    te_cached = False
    offload = 0.0
    if backend == "ai-toolkit":
        lev = profile.ai_toolkit
        q_tr = lev.quantize if quant_mode == "auto" else quant_mode == "float8"
        q_te = lev.quantize_te if quant_mode == "auto" else quant_mode == "float8"
        base_bytes = 1.0 if q_tr else base_bytes
        te_bytes = 1.0 if q_te else te_bytes
        te_cached = lev.cache_text_embeddings
        if lev.low_vram:
            offload += c.offload_saving_gb
    elif backend == "musubi":
        lev_m = profile.musubi
        fp8 = lev_m.fp8_base if quant_mode == "auto" else quant_mode == "float8"
        base_bytes = 1.0 if fp8 else base_bytes
        te_cached = True
        offload += c.transformer_params_b * base_bytes / _N_LAYERS * lev_m.blocks_to_swap
    else:
        if quant_mode == "float8":
            notes.append("the built-in trainer does not quantise; weights stay at model.base.precision")
        te_cached = profile.lightning.cache_text_embeddings
    gc = spec.training.gradient_checkpointing or (backend == "lightning" and profile.lightning.gradient_checkpointing)
    if backend == "musubi":
        gc = gc or profile.musubi.gradient_checkpointing

    parts = {
        "transformer": c.transformer_params_b * base_bytes,
        "text_encoder": 0.0 if te_cached else c.text_encoder_params_b * te_bytes,
        "vae": c.vae_gb,
    }
    n_lora = lora_param_count(spec)
    opt_bytes = 2.0 if spec.training.optimizer.use_8bit and spec.training.optimizer.type == "adamw" else 8.0
    parts["lora_train_state"] = n_lora * (4 + 4 + opt_bytes) / _GB
    res = min(spec.dataset.resolution, profile.resolution_cap)
    ktokens = ((res // 16) ** 2 + _CAPTION_TOKENS) / 1000.0
    per_k = c.act_gb_per_ktoken if gc else c.act_gb_per_ktoken_no_gc
    parts["activations"] = ktokens * spec.training.batch_size * per_k
    parts["overhead"] = c.overhead_gb
    if offload:
        parts["offload"] = -min(offload, parts["transformer"] * 0.8)
    subtotal = sum(parts.values())
    parts["margin"] = subtotal * c.margin
    if te_cached:
        notes.append("text encoder outputs cached; the encoder is unloaded before training")
    if not gc:
        notes.append("gradient checkpointing off: activations dominate")
    return VramEstimate(subtotal + parts["margin"], parts, notes)
