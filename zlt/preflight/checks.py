"""`run_preflight`: every check at once, before a job loads a model. Each check is a small function that
returns `Check`s; nothing here raises for an environment problem (only for bad input: exit 2)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zlt import backends
from zlt.core.errors import BadInputError
from zlt.core.paths import zlt_home
from zlt.preflight.environment import dataset_checks, host_checks, model_checks, trainer_checks
from zlt.preflight.gpu import GpuInfo, GpuProbe, parse_assume_gpu, scan_gpus
from zlt.preflight.levers import levers_to_fit, suggest_levers
from zlt.preflight.report import Check, PreflightReport
from zlt.preflight.tokenizer import check_musubi_tokenizer
from zlt.preflight.vram import estimate, smallest_fitting_profile
from zlt.profiles import HardwareProfile, get_profile, gpu_profiles, largest_profile_within, load_profiles
from zlt.spec.models import JobSpec

_DEFAULT_PLAN_PROFILE = "24gb"


def _gpu_target(spec: JobSpec, assume_gpu: str | None, vram_gb: float | None, probe: GpuProbe | None,
                visible: Any) -> tuple[list[GpuInfo], Check | None, dict[str, Any]]:
    """The GPUs the job would use, a check describing them (None: decided later), and scan facts."""
    need = max(spec.job.resources.gpu, 1)
    if assume_gpu:
        gpu = parse_assume_gpu(assume_gpu)
        gpus = [GpuInfo(**{**gpu.__dict__, "index": i}) for i in range(need)]
        return gpus, Check("gpu", "pass", f"planning for {need} x {gpu.name} ({gpu.total_gb:g} GiB), "
                           "assumed: this machine's GPUs were not checked", details={"assumed": True}), {}
    if vram_gb is not None:
        if vram_gb <= 0:
            raise BadInputError(f"--vram-gb {vram_gb:g}: must be positive", hint="e.g. --vram-gb 24")
        gpus = [GpuInfo(i, f"GPU with {vram_gb:g} GB", vram_gb, vram_gb, None, [], True, assumed=True)
                for i in range(need)]
        return gpus, Check("gpu", "pass", f"planning for {need} GPU(s) with {vram_gb:g} GiB (--vram-gb); "
                           "this machine's GPUs were not checked", details={"assumed": True}), {}
    scan = scan_gpus(probe) if visible is None else scan_gpus(probe, visible)
    facts = {"reason": scan.reason, "visible": scan.visible, "hidden": scan.hidden, "unknown_ids": scan.unknown_ids,
             "devices": [g.to_dict() for g in scan.devices]}
    return scan.devices, None, facts


def gpu_checks(spec: JobSpec, backend: str, gpus: list[GpuInfo], facts: dict[str, Any], cpu_ok: bool) -> list[Check]:
    need = max(spec.job.resources.gpu, 1)
    if not gpus:
        reason = facts.get("reason") or "profile cpu"
        if cpu_ok:
            return [Check("gpu", "pass", f"no GPU needed: the tiny test model trains on the CPU ({reason})",
                          details=facts)]
        return [Check("gpu", "fail", f"no usable GPU: {reason}",
                      "install the NVIDIA driver and nvidia-ml-py, check CUDA_VISIBLE_DEVICES, or plan for another "
                      "machine: zlt preflight SPEC --assume-gpu \"RTX 4090:24\"", details=facts)]
    out = []
    if spec.job.resources.gpu == 0 and not spec.is_tiny:
        out.append(Check("gpu", "fail", f"job.resources.gpu is 0, but {spec.model.base.name} trains only on a GPU",
                         "set job.resources.gpu to 1"))
        return out
    names = ", ".join(f"{g.index}: {g.name} {g.total_gb:.1f} GiB ({g.free_gb:.1f} free)" for g in gpus)
    if len(gpus) < need:
        out.append(Check("gpu", "fail", f"job.resources.gpu asks for {need} GPUs, {len(gpus)} visible ({names})",
                         f"set job.resources.gpu to {len(gpus)} or make more GPUs visible (CUDA_VISIBLE_DEVICES)",
                         details=facts))
    else:
        out.append(Check("gpu", "pass", f"{len(gpus)} visible: {names}", details=facts))
    chosen = gpus[:need]
    floor = spec.job.resources.min_vram_gb
    small = [g for g in chosen if floor is not None and g.total_gb + 0.5 < floor]
    if small:
        g = small[0]
        out.append(Check("min_vram", "fail", f"job.resources.min_vram_gb is {floor:g} GiB; GPU {g.index} "
                         f"({g.name}) has {g.total_gb:.1f} GiB",
                         f"run on a GPU with at least {floor:g} GiB, or lower job.resources.min_vram_gb "
                         "(the VRAM check below says what the job needs)"))
    elif floor is not None:
        out.append(Check("min_vram", "pass", f"every GPU has at least job.resources.min_vram_gb {floor:g} GiB"))
    if spec.training.mixed_precision == "bf16" and not all(g.bf16 for g in chosen):
        out.append(Check("bf16", "warn", "a chosen GPU has no bf16 (compute capability < 8.0); training runs in fp16",
                         "use an Ampere or newer GPU for bf16, or set training.mixed_precision=fp16"))
    if facts.get("unknown_ids"):
        out.append(Check("cuda_visible_devices", "warn", f"CUDA_VISIBLE_DEVICES={facts['visible']!r}: "
                         f"{facts['unknown_ids'][0]!r} names no GPU; CUDA ignores it and everything after it",
                         "use indexes or UUIDs from `nvidia-smi -L`"))
    if len({g.name for g in gpus}) > 1 and len(gpus) > 1 and os.environ.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID":
        out.append(Check("cuda_device_order", "warn", "GPUs of different kinds: CUDA numbers them fastest-first, "
                         "nvidia-smi by PCI bus", "export CUDA_DEVICE_ORDER=PCI_BUS_ID so the indexes agree"))
    return out


def _choose_profile(spec: JobSpec, backend: str, name: str, gpus: list[GpuInfo], cpu_ok: bool
                    ) -> tuple[HardwareProfile, str]:
    if name != "auto":
        return get_profile(name), "named"
    if cpu_ok and not gpus:
        return load_profiles()["cpu"], "the tiny test model without a GPU"
    if gpus:
        size = min(g.total_gb for g in gpus[: max(spec.job.resources.gpu, 1)])
        found = largest_profile_within(size)
        return (found, f"largest within {size:.1f} GiB") if found else (gpu_profiles()[0], "smallest (GPU too small)")
    floor = spec.job.resources.min_vram_gb
    found = largest_profile_within(floor) if floor else None
    return found or get_profile(_DEFAULT_PLAN_PROFILE), "no GPU: planning only"


def vram_check(spec: JobSpec, backend: str, profile: HardwareProfile, gpus: list[GpuInfo],
               facts: dict[str, Any], report: PreflightReport) -> Check:
    est = estimate(spec, profile, backend)
    report.estimate = est
    if profile.is_cpu:
        ok = spec.is_tiny and backends.get(backend).trains_tiny_model
        return Check("vram", "pass" if ok else "fail",
                     "tiny test model on the CPU: no GPU memory needed" if ok else
                     f"profile cpu cannot train {spec.model.base.name} with {backend}",
                     "" if ok else "pick a GPU profile (--profile auto on a GPU machine)")
    chosen = gpus[: max(spec.job.resources.gpu, 1)]
    if chosen:
        target = min(chosen, key=lambda g: g.free_gb)
        budget, where = target.free_gb, f"GPU {target.index} ({target.name})"
    else:
        budget, where = profile.vram_gb, f"profile {profile.name}"
    report.budget_gb = budget
    report.levers = suggest_levers(spec, profile, backend, budget)
    smallest = smallest_fitting_profile(spec, backend)
    report.smallest_profile = smallest.name if smallest else None
    details = {"estimate": est.to_dict(), "budget_gb": round(budget, 2), "profile": profile.name,
               "levers": [lv.to_dict() for lv in report.levers], "smallest_profile": report.smallest_profile}
    caps = []
    if spec.dataset.resolution > profile.resolution_cap:
        caps.append(f"dataset.resolution {spec.dataset.resolution} > profile {profile.name}'s cap "
                    f"{profile.resolution_cap}")
    if spec.training.batch_size > profile.max_batch_size:
        caps.append(f"training.batch_size {spec.training.batch_size} > profile {profile.name}'s max "
                    f"{profile.max_batch_size}")
    fits = est.total_gb <= budget
    if not chosen and not spec.is_tiny:
        # the gpu check already fails; this one only reports what the job would need
        return Check("vram", "warn", f"estimated peak {est.total_gb:.1f} GiB (profile {profile.name}); no GPU to "
                     "hold it against", "plan with: zlt preflight SPEC --assume-gpu \"NAME:GB\", or run on a GPU machine", details)
    if fits and not caps:
        others = sum(g.used_by_others_gb for g in chosen)
        extra = f"; other processes hold {others:.1f} GiB" if others else ""
        return Check("vram", "pass", f"estimated peak {est.total_gb:.1f} GiB of {budget:.1f} GiB free on {where} "
                     f"(profile {profile.name}){extra}", details=details)
    return Check("vram", "fail", _misfit_message(est.total_gb, budget, where, profile, caps),
                 _misfit_fix(spec, chosen, facts, est.total_gb, levers_to_fit(report.levers), report, profile, budget),
                 details)


def _misfit_message(total: float, budget: float, where: str, profile: HardwareProfile, caps: list[str]) -> str:
    parts = list(caps)
    if total > budget:
        parts.insert(0, f"estimated peak {total:.1f} GiB > {budget:.1f} GiB free on {where} (profile {profile.name})")
    return "; ".join(parts)


def _misfit_fix(spec: JobSpec, chosen: list[GpuInfo], facts: dict[str, Any], total: float, to_fit: list[Any],
                report: PreflightReport, profile: HardwareProfile, budget: float) -> str:
    busy = [p for g in chosen for p in g.processes if p.get("used_gb")]
    if chosen and all(g.total_gb >= total for g in chosen) and busy:
        procs = ", ".join(f"pid {p['pid']} ({p.get('name') or '?'}, {p['used_gb']:.1f} GiB)" for p in busy[:3])
        roomy = [d for d in facts.get("devices", []) if d["free_gb"] >= total]
        alt = f", or use GPU {roomy[0]['index']}: CUDA_VISIBLE_DEVICES={roomy[0]['index']}" if roomy else ""
        return f"free the GPU: stop {procs}{alt}"
    fixes = []
    if to_fit:
        fixes.append("apply " + ", then ".join(lv.change for lv in to_fit) + f" (-> {to_fit[-1].cumulative_gb:.1f} GiB)")
    if spec.dataset.resolution > profile.resolution_cap:
        fixes.append(f"--set dataset.resolution={profile.resolution_cap} (profile {profile.name}'s cap)")
    if spec.training.batch_size > profile.max_batch_size:
        fixes.append(f"--set training.batch_size={profile.max_batch_size} (profile {profile.name}'s max)")
    if report.smallest_profile:
        need = get_profile(report.smallest_profile).vram_gb
        # A bigger profile is a fix only for a card that has its memory; else it is what the job needs.
        if need <= budget:
            fixes.append(f"smallest profile that fits as written: --profile {report.smallest_profile}")
        else:
            fixes.append(f"a GPU with {need:g} GiB runs it as written (profile {report.smallest_profile})")
    return "; or ".join(fixes) or "no lever or bundled profile makes it fit: lower dataset.resolution and model.lora.rank"


def run_preflight(spec: JobSpec, *, backend: str | None = None, profile: str = "auto", vram_gb: float | None = None,
                  assume_gpu: str | None = None, ai_toolkit: str | None = None, musubi: str | None = None,
                  home: Path | None = None, probe: GpuProbe | None = None, check_data: bool = True,
                  disk_usage: Any = None, memory: Any = None, check_python: bool = True,
                  gpus: list[int] | None = None,
                  extra_checks: Callable[[JobSpec, HardwareProfile, PreflightReport], list[Check]] | None = None,
                  spec_path: str | Path | None = None,
                  ) -> PreflightReport:
    """Every check at once. Raises BadInputError only for bad arguments (unknown backend/profile, bad
    --assume-gpu); environment problems are failed checks (`report.exit_code` 3).

    `gpus`: the GPU indexes the trainer will get (the runner's --gpus); default: $CUDA_VISIBLE_DEVICES.
    `disk_usage` / `memory` describe the host instead of asking it (tests); `check_python=False` skips
    starting the trainer's Python to see what it imports. `extra_checks(spec, profile, report)` adds the checks of
    stages above this one (zlt.flows.preflight passes evaluation's). `spec_path`: the spec file, named in hints."""
    b = backends.get(backend or spec.training.backend)  # BadInputError naming training.backend
    backend = b.name
    home = zlt_home(home)
    cpu_ok = spec.is_tiny and b.trains_tiny_model and profile in ("auto", "cpu")
    visible = ",".join(str(i) for i in gpus) if gpus is not None else None
    devices, gpu_check, facts = _gpu_target(spec, assume_gpu, vram_gb, probe, visible)
    chosen_profile, _why = _choose_profile(spec, backend, profile, devices, cpu_ok)
    if chosen_profile.is_cpu and cpu_ok:
        devices = []  # the tiny model on the CPU: whatever GPUs exist are not used
    report = PreflightReport([], chosen_profile.name, None, backend, gpus=devices[: max(spec.job.resources.gpu, 1)])
    checks = report.checks
    if gpu_check is not None:
        checks.append(gpu_check)
        checks.extend(c for c in gpu_checks(spec, backend, devices, facts, cpu_ok) if c.name != "gpu")
    else:
        checks.extend(gpu_checks(spec, backend, devices, facts, cpu_ok))
    checks.append(vram_check(spec, backend, chosen_profile, devices, facts, report))
    model_results = model_checks(spec, backend, home)
    if b.needs_hub_tokenizer and not spec.is_tiny:
        t = check_musubi_tokenizer()
        model_results.append(Check("model", t.status, f"{t.what} {t.ref}: {t.message}",
                                   t.fix if t.status != "pass" else "", details=t.to_dict()))
    checks.extend(model_results)
    download = sum(float(c.details.get("download_gb") or 0.0) for c in model_results)
    checks.extend(host_checks(spec, backend, chosen_profile, home, download, disk_usage, memory))
    explicit = {"ai_toolkit": ai_toolkit, "musubi": musubi}.get(b.install.config_key) if b.install else None
    checks.extend(trainer_checks(backend, explicit, devices, check_python,
                                 assumed=bool(assume_gpu or vram_gb is not None), tiny=spec.is_tiny))
    if extra_checks is not None:  # the stages above preflight (evaluation) add theirs: zlt.flows.preflight
        checks.extend(extra_checks(spec, chosen_profile, report))
    if check_data:
        checks.extend(dataset_checks(spec, spec_path))
    return report
