"""Peak-VRAM estimate for spec x profile x backend, and the profiles that fit. The arithmetic and the plan of
levers in force live in `zlt.backends.memory` (each backend decides its own levers); docs/vram.md gives the
reasoning and checks the result against published figures."""

from __future__ import annotations

from typing import Any

from zlt import backends
from zlt.backends.memory import (
    GIB,
    TINY_GB,
    MemoryPlan,
    VramEstimate,
    estimate_plan,
)
from zlt.backends.memory import lora_param_count as _lora_param_count
from zlt.backends.memory import plan as _plan
from zlt.profiles import HardwareProfile, load_profiles
from zlt.spec.models import JobSpec

__all__ = ["GIB", "MemoryPlan", "VramEstimate", "estimate", "estimate_plan", "fits_profile", "lora_param_count",
           "plan", "smallest_fitting_profile", "with_budget"]


def plan(spec: JobSpec, profile: HardwareProfile, backend: str | None = None, *, quantize: bool | None = None) -> MemoryPlan:
    """What `backend` (default: the spec's) does with this spec under this profile; see `zlt.backends.memory.plan`."""
    return _plan(spec, profile, backends.get(backend or spec.training.backend), quantize=quantize)


def lora_param_count(spec: JobSpec, backend: str | None = None) -> int:
    return _lora_param_count(spec, backends.get(backend or spec.training.backend))


def estimate(spec: JobSpec, profile: HardwareProfile, backend: str | None = None) -> VramEstimate:
    """Estimated peak GPU memory (GiB) of training `spec` under `profile` with `backend`."""
    if spec.is_tiny:
        return VramEstimate(TINY_GB, {"tiny_model": TINY_GB}, ["the tiny test model needs almost no memory"],
                            {"training": TINY_GB})
    return estimate_plan(plan(spec, profile, backend), profile.estimator)


def fits_profile(spec: JobSpec, profile: HardwareProfile, backend: str | None = None) -> bool:
    """The same test the renderer applies: within the profile's caps and its memory."""
    b = backends.get(backend or spec.training.backend)
    if profile.is_cpu:
        return spec.is_tiny and b.trains_tiny_model
    if spec.dataset.resolution > profile.resolution_cap or spec.training.batch_size > profile.max_batch_size:
        return False
    return estimate(spec, profile, b.name).total_gb <= profile.vram_gb


def smallest_fitting_profile(spec: JobSpec, backend: str | None = None) -> HardwareProfile | None:
    """The smallest bundled profile that trains `spec` as written (caps and memory), or None."""
    for profile in load_profiles().values():  # smallest first; cpu (0 GB) first of all
        if fits_profile(spec, profile, backend):
            return profile
    return None


def with_budget(est: VramEstimate, budget_gb: float) -> dict[str, Any]:
    """A JSON-able summary of an estimate against a budget."""
    return {**est.to_dict(), "budget_gb": round(budget_gb, 2), "fits": est.total_gb <= budget_gb,
            "headroom_gb": round(budget_gb - est.total_gb, 2)}
