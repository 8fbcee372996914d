"""Pick a hardware profile and refuse a spec x profile that cannot work, naming the nearest working alternative."""

from __future__ import annotations

from dataclasses import dataclass, field

from zlt import backends
from zlt.core.errors import BadInputError
from zlt.preflight.gpu import detect_gpus
from zlt.preflight.levers import levers_to_fit, suggest_levers
from zlt.preflight.vram import estimate
from zlt.profiles import HardwareProfile, get_profile, gpu_profiles, largest_profile_within, load_profiles
from zlt.spec.models import JobSpec

DEFAULT_PROFILE = "24gb"


@dataclass
class FitCheck:
    profile: str
    fits: bool
    estimate_gb: float
    problems: list[str] = field(default_factory=list)


def check_fit(spec: JobSpec, profile: HardwareProfile, backend: str | None = None) -> FitCheck:
    """Does `spec` train under `profile` with `backend`? Pure: no GPU is looked at."""
    backend = backend or spec.training.backend
    problems: list[str] = []
    if profile.is_cpu:
        if not spec.is_tiny:
            problems.append(f"profile {profile.name} has no GPU; {spec.model.base.name} needs one")
        if not backends.get(backend).trains_tiny_model:
            cpu_ones = " or ".join(b for b in backends.names() if backends.get(b).trains_tiny_model)
            problems.append(f"profile {profile.name} runs only the built-in trainer (backend {cpu_ones})")
        return FitCheck(profile.name, not problems, 0.0, problems)
    if spec.dataset.resolution > profile.resolution_cap:
        problems.append(f"dataset.resolution {spec.dataset.resolution} > the profile's cap {profile.resolution_cap}")
    if spec.training.batch_size > profile.max_batch_size:
        problems.append(f"training.batch_size {spec.training.batch_size} > the profile's max {profile.max_batch_size}")
    est = estimate(spec, profile, backend)
    if est.total_gb > profile.vram_gb:
        problems.append(f"estimated peak VRAM {est.total_gb:.1f} GiB > {profile.vram_gb:g} GiB")
    return FitCheck(profile.name, not problems, est.total_gb, problems)


def _alternatives(spec: JobSpec, profile: HardwareProfile, backend: str) -> list[str]:
    """Changes that make the spec fit: levers that fit alone (or the first ones that fit together), then a profile."""
    alts: list[str] = []
    if not profile.is_cpu:
        levers = suggest_levers(spec, profile, backend, profile.vram_gb)
        alts = [lv.change for lv in ([lv for lv in levers if lv.fits] or levers_to_fit(levers))[:3]]
    for over, fix in ((spec.dataset.resolution > profile.resolution_cap, f"--set dataset.resolution={profile.resolution_cap}"),
                      (spec.training.batch_size > profile.max_batch_size, f"--set training.batch_size={profile.max_batch_size}")):
        if over and fix not in alts:
            alts.append(fix)
    bigger = next((p for p in gpu_profiles() if p.vram_gb > profile.vram_gb and check_fit(spec, p, backend).fits), None)
    if bigger is not None:
        # Only a fix on a card with that much memory: say so, not just the flag.
        alts.append(f"a GPU with {bigger.vram_gb:g} GiB (--profile {bigger.name})")
    return alts


def ensure_fits(spec: JobSpec, profile: HardwareProfile, backend: str | None = None) -> FitCheck:
    backend = backend or spec.training.backend
    fit = check_fit(spec, profile, backend)
    if fit.fits:
        return fit
    alts = _alternatives(spec, profile, backend)
    hint = ("nearest working: " + ", or ".join(alts)) if alts else "no bundled profile fits this spec; lower resolution or rank"
    raise BadInputError(
        f"spec does not fit hardware profile {profile.name} with backend {backend}: " + "; ".join(fit.problems), hint
    )


def _detected_vram_gb(spec: JobSpec) -> float | None:
    gpus = detect_gpus()
    need = max(spec.job.resources.gpu, 1)
    if len(gpus) < need:
        return None
    return min(g.total_gb for g in gpus[:need])


def planned_profile(spec: JobSpec, name: str = "auto") -> str:
    """The profile a submitted job records: `auto` is the cpu profile for the tiny test model asking for no GPU (its
    default, zlt.spec.load.TINY_DEFAULTS) on any host; otherwise `name`, and the worker's preflight resolves `auto`
    from its own GPUs."""
    cpu = spec.is_tiny and spec.job.resources.gpu == 0
    return load_profiles()["cpu"].name if name == "auto" and cpu else name


def select_profile(
    spec: JobSpec, backend: str | None = None, name: str = "auto", vram_gb: float | None = None, *, detect: bool = True
) -> tuple[HardwareProfile, list[str]]:
    """The profile to render with, and notes on how it was chosen. Raises BadInputError when nothing fits."""
    backend = backend or spec.training.backend
    notes: list[str] = []
    if name != "auto":
        profile = get_profile(name)
        ensure_fits(spec, profile, backend)
        return profile, notes
    if spec.is_tiny:
        return load_profiles()["cpu"], ["tiny test model: cpu profile"]
    if vram_gb is None and detect:
        vram_gb = _detected_vram_gb(spec)
        if vram_gb is not None:
            notes.append(f"detected GPU with {vram_gb:.0f} GB")
    if vram_gb is None:
        floor = spec.job.resources.min_vram_gb
        profile = largest_profile_within(floor) if floor else None
        profile = profile or get_profile(DEFAULT_PROFILE)
        notes.append(f"no GPU detected; rendering for profile {profile.name} (pass --profile or --vram-gb)")
    else:
        found = largest_profile_within(vram_gb)
        if found is None:
            smallest = gpu_profiles()[0]
            raise BadInputError(
                f"--vram-gb {vram_gb:g}: no hardware profile fits a GPU this small",
                f"the smallest profile is {smallest.name} ({smallest.vram_gb:g} GB)",
            )
        profile = found
    ensure_fits(spec, profile, backend)
    return profile, notes
