"""Speed and memory switches of the built-in trainer: float8 base storage, regional compile, attention backend.

Each is a pure decision (`decide_*`, testable without torch) plus one small function that applies it.

float8: diffusers' layerwise casting (`diffusers.hooks.apply_layerwise_casting`) stores every frozen Linear's
weight in float8_e4m3fn and casts it to the compute dtype (bf16) for the length of that layer's forward. It ships
with diffusers (no extra dependency), runs on the CPU (so tests cover the real path) and leaves peft's adapter
layers alone (`lora_` is skipped, they stay fp32 and trainable). docs/trainer.md says why this path and not
torchao or optimum-quanto, and what it costs.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

FLOAT8_STORAGE = "float8_e4m3fn"
_LORA_SKIP = ("lora_",)  # peft's lora_A / lora_B / lora_dropout stay in fp32

# spec/config name -> diffusers attention backend (diffusers.models.attention_dispatch.AttentionBackendName)
# FlashAttention 3 is left out: diffusers wraps it as a custom op with no autograd kernel (attention_dispatch.py
# `_wrapped_flash_attn_3`), so it cannot train.
ATTENTION_BACKENDS = {"sdpa": "native", "flash": "flash"}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


@dataclass(frozen=True)
class SpeedPlan:
    """What a run does for speed; `describe()` is the line the trainer prints and `--explain` shows."""

    float8: bool
    compile: bool
    attention: str  # sdpa | flash
    gradient_checkpointing: bool
    compute: str = "bf16"  # the dtype float8 weights are cast to for each layer's forward

    def describe(self) -> str:
        return (f"base weights {f'float8 storage, {self.compute} compute' if self.float8 else 'as loaded'}; "
                f"torch.compile {'on the repeated blocks' if self.compile else 'off'}; attention {self.attention}; "
                f"gradient checkpointing {'on' if self.gradient_checkpointing else 'off'}")


COMPILE_FLOAT8_CONFLICT = (
    "torch.compile is off: it cannot compile float8 layerwise casting (inductor traces the per-layer weight casts "
    "wrongly: a float8 weight reaches the matmul, or checkpoint recomputation sees float8 where fp32 was saved)"
)


def decide_compile(setting: str, accelerator: str, float8: bool = False) -> tuple[bool, str | None]:
    """`training.compile` -> (compile, warning or None). auto = on for CUDA (CPU compile costs more than it saves
    on a tiny model) unless the base is stored in float8, which inductor cannot compile (found with torch 2.13 and
    diffusers 0.42 on the CPU: tests/unit/test_trainer_accel.py keeps the decision)."""
    if float8:
        return False, (COMPILE_FLOAT8_CONFLICT if setting == "on" else None)
    if setting == "auto":
        return accelerator == "cuda", None
    return setting == "on", None


def decide_attention(setting: str, accelerator: str, batch_size: int, installed=_installed) -> tuple[str, str | None]:
    """(backend, warning or None). auto: FlashAttention 2 when installed, on CUDA, at batch size 1, else torch
    SDPA. At batch 1 Z-Image passes no attention mask (diffusers >= 0.38 drops it when every sequence has
    the same length), which the flash kernels need; SDPA picks its own flash/cuDNN kernel then too."""
    if setting == "auto":
        if accelerator != "cuda" or batch_size > 1:
            return "sdpa", None
        if installed("flash_attn"):
            return "flash", None
        return "sdpa", None
    if setting != "sdpa":
        if accelerator != "cuda":
            return "sdpa", f"training.attention_backend {setting}: needs CUDA; using sdpa"
        if not installed("flash_attn"):
            return "sdpa", f"training.attention_backend {setting}: flash_attn is not installed; using sdpa"
        if batch_size > 1:
            return "sdpa", (f"training.attention_backend {setting}: batch size {batch_size} needs attention masks, "
                            "which the flash kernels do not take; using sdpa")
    return setting, None


def apply_attention(transformer, backend: str) -> None:
    transformer.set_attention_backend(ATTENTION_BACKENDS[backend])


def float8_storage(module, compute_dtype) -> int:
    """Store `module`'s Linear/Conv/Embedding weights in float8_e4m3fn, computing in `compute_dtype`.

    Call it after the LoRA is injected: adapters added later would be created in float8. Returns the number of
    tensors now stored in float8.
    """
    import torch
    from diffusers.hooks import apply_layerwise_casting
    from diffusers.hooks.layerwise_casting import _PEFT_AUTOCAST_DISABLE_HOOK, DEFAULT_SKIP_MODULES_PATTERN

    skip = tuple(DEFAULT_SKIP_MODULES_PATTERN) + tuple(getattr(module, "_skip_layerwise_casting_patterns", None) or ())
    apply_layerwise_casting(module, storage_dtype=torch.float8_e4m3fn, compute_dtype=compute_dtype,
                            skip_modules_pattern=skip + _LORA_SKIP)
    # diffusers also stops peft from casting a LoRA layer's input to the LoRA's dtype (it expects the LoRA stored and
    # cast like the base). Ours stays fp32, so without autocast (the CPU) a bf16 input met fp32 LoRA weights and the
    # step failed; found by bench/realsize.py. peft's cast back to the base layer's dtype keeps the output in bf16.
    for sub in module.modules():
        registry = getattr(sub, "_diffusers_hook", None)
        if registry is not None and registry.get_hook(_PEFT_AUTOCAST_DISABLE_HOOK) is not None:
            registry.remove_hook(_PEFT_AUTOCAST_DISABLE_HOOK, recurse=False)
    _own_the_rest(module, torch.float8_e4m3fn)
    return sum(1 for p in module.parameters() if p.dtype == torch.float8_e4m3fn)


def _own_the_rest(module, storage_dtype) -> None:
    """Copy the frozen tensors that kept their dtype (norms, embedders: ~22 MB of the real transformer) out of the
    memory-mapped safetensors files. While any tensor still points into a file's mapping, the whole mapping stays,
    and with it every page the float8 cast read: 11.5 GiB of resident bf16 pages beside the 5.7 GiB of float8
    weights at real size (found by bench/realsize.py: peak 20.1 GiB with float8 against 13.4 GiB in bf16)."""
    for sub in module.modules():
        for _name, t in list(sub.named_parameters(recurse=False)) + list(sub.named_buffers(recurse=False)):
            if t is not None and t.dtype != storage_dtype and not t.requires_grad and t.device.type == "cpu":
                t.data = t.data.clone()


def compile_blocks(transformer, backend: str | None = None) -> int:
    """Regional torch.compile: the block class in `_repeated_blocks` is compiled once and reused by every block
    (seconds instead of minutes for the whole model). Returns the number of compiled blocks."""
    kwargs = {"backend": backend} if backend else {}
    transformer.compile_repeated_blocks(**kwargs)
    names = set(getattr(transformer, "_repeated_blocks", ()) or ())
    return sum(1 for m in transformer.modules() if type(m).__name__ in names)


def apply_speed(transformer, cfg, accelerator: str, compute_dtype, warn) -> SpeedPlan:
    """Apply float8 storage, gradient checkpointing, the attention backend and compile, in that order (after the
    LoRA is injected); returns what was applied. `cfg` is the run's TrainerConfig."""
    t = cfg.training
    gc = t.gradient_checkpointing
    f8 = cfg.model.quantize == "float8"
    if f8:
        float8_storage(transformer, compute_dtype)
        if not gc:
            warn("model.base.quantize float8 without gradient checkpointing: autograd keeps each layer's bf16 copy "
                 "until backward, so the weights take about as much memory as bf16; turn checkpointing on to save it")
    if gc:
        transformer.enable_gradient_checkpointing()
    attention, why = decide_attention(t.attention_backend, accelerator, t.batch_size)
    if why:
        warn(why)
    if attention != "sdpa":
        apply_attention(transformer, attention)
    compiled, why = decide_compile(t.compile, accelerator, f8)
    if why:
        warn(why)
    if compiled:
        compile_blocks(transformer)
    compute = {"torch.bfloat16": "bf16", "torch.float16": "fp16", "torch.float32": "fp32"}.get(str(compute_dtype), "bf16")
    return SpeedPlan(float8=f8, compile=compiled, attention=attention, gradient_checkpointing=gc, compute=compute)
