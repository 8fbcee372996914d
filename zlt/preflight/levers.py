"""Levers that lower a job's VRAM estimate, in the order to try them, each with the exact change to make.

Order: (gradient checkpointing, when off), quantise, lower resolution, cached text embeddings, low_vram /
block swap, smaller rank, (batch size 1 with the same effective batch). A lever is reported with the estimate
when applied alone and together with every lever before it, so a caller can say "these first k make it fit".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from zlt import backends
from zlt.preflight.vram import estimate, plan
from zlt.profiles import HardwareProfile, gpu_profiles
from zlt.spec.models import JobSpec

_RESOLUTION_STEPS = (1536, 1280, 1024, 768, 512)


@dataclass
class Lever:
    """One change that lowers the estimate, with the exact way to make it."""

    name: str  # gradient_checkpointing | quantize | resolution | cache_text_embeddings | low_vram | rank | batch_size
    title: str
    change: str  # what to pass: '--set model.base.quantize=float8', '--profile 16gb', or a profile field
    estimate_gb: float  # the estimate with this lever alone
    cumulative_gb: float  # with this lever and every lever listed before it
    fits: bool
    fits_cumulative: bool
    set_args: list[str] = field(default_factory=list)
    profile: str | None = None  # bundled profile that pulls this lever

    def __str__(self) -> str:
        return self.change

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "change": self.change, "set": self.set_args,
                "profile": self.profile, "estimate_gb": round(self.estimate_gb, 2),
                "cumulative_gb": round(self.cumulative_gb, 2), "fits": self.fits,
                "fits_cumulative": self.fits_cumulative}


@dataclass
class _Move:
    """A candidate lever: spec fields to set and/or one profile field to change."""

    name: str
    title: str
    change: str
    sets: dict[str, Any] = field(default_factory=dict)
    profile_field: tuple[str, str, Any] | None = None  # (section, key, value)
    profile_name: str | None = None

    @property
    def set_args(self) -> list[str]:
        return [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in self.sets.items()]

    def apply(self, spec: JobSpec, profile: HardwareProfile) -> tuple[JobSpec, HardwareProfile]:
        if self.sets:
            spec = _with_spec(spec, self.sets)
        if self.profile_field:
            section, key, value = self.profile_field
            profile = _with_profile(profile, section, **{key: value})
        return spec, profile


def _with_spec(spec: JobSpec, sets: dict[str, Any]) -> JobSpec:
    out = spec.model_copy(deep=True)
    for path, value in sets.items():
        node: Any = out
        keys = path.split(".")
        for k in keys[:-1]:
            node = getattr(node, k)
        setattr(node, keys[-1], value)
    return out


def _with_profile(profile: HardwareProfile, section: str, **values: Any) -> HardwareProfile:
    sub = getattr(profile, section).model_copy(update=values)
    return profile.model_copy(update={section: sub})


def _bundled_with(section: str, key: str, value: Any, below: float) -> HardwareProfile | None:
    """The largest bundled GPU profile, no bigger than `below` GB, whose `section.key` is `value`."""
    hits = [p for p in gpu_profiles() if getattr(getattr(p, section), key) == value and p.vram_gb <= below]
    return hits[-1] if hits else None


def _profile_move(name: str, title: str, profile: HardwareProfile, section: str, key: str, value: Any) -> _Move:
    bundled = _bundled_with(section, key, value, profile.vram_gb)
    shown = str(value).lower() if isinstance(value, bool) else value
    if bundled is not None and bundled.name != profile.name:
        change = f"--profile {bundled.name} (it sets {section}.{key}: {shown})"
    else:
        change = f"profile field {section}.{key}: {shown}"
    return _Move(name, title, change, profile_field=(section, key, value),
                 profile_name=bundled.name if bundled is not None else None)


def _set_move(name: str, title: str, sets: dict[str, Any]) -> _Move:
    move = _Move(name, title, "", sets=sets)
    move.change = " ".join(f"--set {a}" for a in move.set_args)
    return move


def _moves(spec: JobSpec, profile: HardwareProfile, backend: str, budget: float) -> list[_Move]:
    """Candidate levers in the order they should be tried, each sized against `budget` where it has a choice."""
    p = plan(spec, profile, backend)
    q8 = profile.estimator.quant_bytes_per_param
    out: list[_Move] = []
    if not p.gradient_checkpointing:
        out.append(_set_move("gradient_checkpointing", "gradient checkpointing on",
                             {"training.gradient_checkpointing": True}))
    quantizable = p.transformer_bytes > q8 or (
        backends.get(backend).quantizes_text_encoder and p.text_encoder_resident and p.text_encoder_bytes > q8)
    if quantizable:
        out.append(_set_move("quantize", "quantise to float8",
                             {"model.base.quantize": "float8"}))
    # from the spec's own resolution: a spec above the profile's cap is refused even if the estimate fits
    lower = [r for r in _RESOLUTION_STEPS if r < spec.dataset.resolution]
    if lower:
        fitting = [r for r in lower if _fits(_with_spec(spec, {"dataset.resolution": r}), profile, backend, budget)]
        capped = [r for r in lower if r <= profile.resolution_cap]
        res = fitting[0] if fitting else (capped or lower)[0]  # nothing fits alone: one step down, not the floor
        out.append(_set_move("resolution", f"train at {res} px", {"dataset.resolution": res}))
    def fits(variant: HardwareProfile) -> bool:
        return estimate(spec, variant, backend).total_gb <= budget

    for lever in backends.get(backend).profile_levers(profile, fits):
        out.append(_profile_move(lever.name, lever.title, profile, lever.section, lever.key, lever.value))
    rank = spec.model.lora.rank
    if rank > 4:
        ranks = [r for r in (rank // 2, rank // 4, rank // 8) if r >= 4] or [4]
        fitting = [r for r in ranks if estimate(_with_spec(spec, {"model.lora.rank": r}), profile, backend).total_gb
                   <= budget]
        r = fitting[0] if fitting else ranks[0]
        sets: dict[str, Any] = {"model.lora.rank": r}
        if spec.model.lora.alpha > r:
            sets["model.lora.alpha"] = r  # keep alpha/rank <= 1 so the update scale does not grow
        out.append(_set_move("rank", f"LoRA rank {r}", sets))
    bs = spec.training.batch_size
    if bs > 1:
        ga = spec.training.gradient_accumulation * bs
        out.append(_set_move("batch_size", f"batch 1 x accumulation {ga}",
                             {"training.batch_size": 1, "training.gradient_accumulation": ga,
                              "training.effective_batch_size": ga}))
    return out


def _cap_problems(spec: JobSpec, profile: HardwareProfile) -> int:
    return int(spec.dataset.resolution > profile.resolution_cap) + int(spec.training.batch_size > profile.max_batch_size)


def _fits(spec: JobSpec, profile: HardwareProfile, backend: str, budget: float) -> bool:
    """Within the profile's caps (as the renderer demands) and within the memory budget."""
    return not _cap_problems(spec, profile) and estimate(spec, profile, backend).total_gb <= budget


def suggest_levers(
    spec: JobSpec, profile: HardwareProfile, backend: str | None = None, budget_gb: float | None = None
) -> list[Lever]:
    """Levers that lower the estimate, in the order to try them: (gradient checkpointing when off), quantise,
    lower resolution, cached text embeddings, low_vram / block swap, smaller rank, (batch size 1).

    Each carries the estimate with that lever alone and with every lever before it, and whether those fit
    `budget_gb` (default: the profile's memory). Levers that change nothing here are left out.
    """
    backend = backend or spec.training.backend
    budget = profile.vram_gb if budget_gb is None else budget_gb
    if spec.is_tiny or profile.is_cpu:
        return []
    base = estimate(spec, profile, backend).total_gb
    base_caps = _cap_problems(spec, profile)
    levers: list[Lever] = []
    cum_spec, cum_profile = spec, profile
    cum_gb, cum_caps = base, _cap_problems(spec, profile)
    for move in _moves(spec, profile, backend, budget):
        one_spec, one_profile = move.apply(spec, profile)
        alone = estimate(one_spec, one_profile, backend).total_gb
        next_spec, next_profile = move.apply(cum_spec, cum_profile)
        cumulative = estimate(next_spec, next_profile, backend).total_gb
        # keep a lever that saves at least 0.1 GiB alone or on top of the ones before it (low_vram only helps
        # once the training phase is smaller than loading), or that clears a profile cap
        helps = (alone <= base - 0.1 or cumulative <= cum_gb - 0.1 or _cap_problems(one_spec, one_profile) < base_caps
                 or _cap_problems(next_spec, next_profile) < cum_caps)
        if not helps:
            continue
        cum_spec, cum_profile, cum_gb, cum_caps = next_spec, next_profile, cumulative, _cap_problems(next_spec,
                                                                                                       next_profile)
        levers.append(Lever(move.name, move.title, move.change, alone, cumulative,
                            _fits(one_spec, one_profile, backend, budget), _fits(cum_spec, cum_profile, backend, budget),
                            move.set_args, move.profile_name))
    return levers


def levers_to_fit(levers: list[Lever]) -> list[Lever]:
    """The prefix of `levers` that, applied together, makes the job fit; [] when even all of them do not."""
    for i, lever in enumerate(levers):
        if lever.fits_cumulative:
            return levers[: i + 1]
    return []


__all__ = ["Lever", "levers_to_fit", "suggest_levers"]
