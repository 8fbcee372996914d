"""The built-in trainer's memory decisions: float8 storage ('auto' decided by the estimate), the notes on its
speed switches, and the levers in force for the VRAM estimate. `zlt render --explain` and `zlt preflight
--explain` print the same notes; the trainer decides again with the same functions where it runs."""

from __future__ import annotations

from typing import Any

from zlt.backends.base import Backend
from zlt.backends.memory import CAPTIONS_CACHED_NOTE, N_BLOCKS, estimate_plan, plan
from zlt.profiles import HardwareProfile
from zlt.spec.models import JobSpec
from zlt.trainer.accel import decide_attention, decide_compile
from zlt.trainer.config import RuntimeConfig


def runtime_config(spec: JobSpec, profile: HardwareProfile) -> RuntimeConfig:
    on_cpu = profile.is_cpu or spec.job.resources.gpu == 0 or profile.lightning.device == "cpu"
    if on_cpu:
        return RuntimeConfig(accelerator="cpu", devices=1)
    gpus = max(1, spec.job.resources.gpu)
    return RuntimeConfig(accelerator="cuda", devices=gpus, strategy="ddp" if gpus > 1 else "auto")


def resolve_quantize(spec: JobSpec, profile: HardwareProfile, backend: Backend) -> tuple[bool, str]:
    """Float8 base storage for the built-in trainer: the spec's word, or for 'auto' only when the bf16 weights
    would not fit the profile and float8 would help (quality first). Returns (float8, source)."""
    q = spec.model.base.quantize
    if q != "auto":
        return q == "float8", "spec"
    if profile.is_cpu or spec.is_tiny:
        return False, f"profile {profile.name}"
    bf16 = estimate_plan(plan(spec, profile, backend, quantize=False), profile.estimator).total_gb
    verdict = "needs" if bf16 > profile.vram_gb else "fits in"
    return bf16 > profile.vram_gb, f"profile {profile.name}: bf16 {verdict} {bf16:.1f} of {profile.vram_gb:g} GiB"



def speed_notes(spec: JobSpec, profile: HardwareProfile, float8: bool, float8_source: str,
                gradient_checkpointing: bool) -> list[tuple[str, str]]:
    """(field, note) for each of the built-in trainer's speed switches under this profile: float8 storage, compile,
    attention kernel, DDP. `zlt render --explain` and the VRAM estimate (`zlt preflight --explain`) print these
    same lines; the trainer decides again with the same functions where it runs."""
    tr = spec.training
    runtime = runtime_config(spec, profile)
    if float8:
        storage = (f"float8 storage ({float8_source}): transformer and text encoder weights in float8, each layer cast "
                   "to bf16 for its forward" + ("" if gradient_checkpointing else
                                                "; without checkpointing autograd keeps every bf16 copy"))
    else:
        storage = f"base weights stored in their dtype ({float8_source})"
    out = [("model.base.quantize", storage)]
    compiled, _ = decide_compile(tr.compile, runtime.accelerator, float8)
    why = ("float8 storage cannot be compiled" if float8 and tr.compile != "off" else
           f"training.compile {tr.compile}" + (f", {runtime.accelerator}" if tr.compile == "auto" else ""))
    out.append(("training.compile", f"torch.compile of the repeated blocks {'on' if compiled else 'off'} ({why})"))
    if runtime.accelerator == "cuda":
        attention, _ = decide_attention("auto", "cuda", tr.batch_size)
        told = {"flash": "flash_attn is installed here, batch 1", "sdpa": "torch SDPA"}[attention]
        out.append(("training.batch_size", f"attention {attention} ({told}; decided again where the trainer runs)"))
    if runtime.devices > 1:
        n, b, a = runtime.devices, tr.batch_size, tr.gradient_accumulation
        out.append(("job.resources.gpu", f"DDP on {n} GPUs, one process each (Fabric, dataset sharded), every GPU needs "
                    f"this estimate; effective batch {b * a * n} = batch {b} x accumulation {a} x {n} GPUs"))
    return out


def memory_levers(backend: Backend, spec: JobSpec, profile: HardwareProfile, *, base: float, q8: float, gc: bool,
                  gc_source: str, quantize: bool | None, notes: list[str]) -> dict[str, Any]:
    te_resident = not profile.lightning.cache_text_embeddings
    out: dict[str, Any] = {"text_encoder_resident": te_resident}
    f8, f8_source = resolve_quantize(spec, profile, backend) if quantize is None else (quantize, "what-if estimate")
    if f8:
        out.update(transformer_bytes=q8, load_text_encoder_bytes=q8, text_encoder_bytes=q8,
                   upcast_fraction=1.0 / N_BLOCKS if gc else 1.0)
    notes.append(f"gradient checkpointing {'on' if gc else 'off'} ({gc_source})")
    notes += [note for _, note in speed_notes(spec, profile, f8, f8_source, gc)]
    if not te_resident:
        notes.append(CAPTIONS_CACHED_NOTE)
    return out
