"""Spec -> trainer vocabulary mappings shared by the renderers."""

from __future__ import annotations

from zlt.profiles import HardwareProfile
from zlt.spec.models import JobSpec

BUCKETS = (512, 768, 1024, 1280, 1536, 2048)


def compute_precision(spec: JobSpec, profile: HardwareProfile, warnings: list[str]) -> str:
    """'bf16' | 'fp16' | 'fp32'. Z-Image is a bf16 model: fp16 is mapped to bf16 where the GPU has it."""
    mp = spec.training.mixed_precision
    if mp in ("fp32", "no"):
        return "fp32"
    if mp == "fp16" and profile.bf16:
        warnings.append(f"training.mixed_precision: fp16 mapped to bf16 (Z-Image weights are bf16; profile {profile.name} has bf16)")
        return "bf16"
    if mp == "bf16" and not profile.bf16:
        warnings.append(f"training.mixed_precision: profile {profile.name} has no bf16; using fp16")
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
