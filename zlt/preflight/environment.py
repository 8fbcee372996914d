"""Checks of the machine around the GPU: model files, host RAM / disk / CPU, the trainer install, the user
config and the dataset. Each returns `Check`s; none raises for an environment problem."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from zlt import backends
from zlt.config import load_user_config
from zlt.core.errors import ZltError
from zlt.core.paths import default_registry_dir, user_config_path
from zlt.dataset import check_dataset
from zlt.preflight.gpu import GpuInfo
from zlt.preflight.host import cpu_count, disk_needs, ram_check
from zlt.preflight.install import _apply_probe, locate_trainer, probe_python
from zlt.preflight.models import check_model_files, hf_cache_dir
from zlt.preflight.report import Check, Status
from zlt.profiles import HardwareProfile
from zlt.spec.models import JobSpec

MIN_CPUS = 4


def model_checks(spec: JobSpec, backend: str, home: Path) -> list[Check]:
    out = []
    for r in check_model_files(spec, backend, home):
        out.append(Check("model", r.status, f"{r.what} {r.ref}: {r.message}", r.fix if r.status != "pass" else "",
                         details=r.to_dict()))
    return out


def host_checks(spec: JobSpec, backend: str, profile: HardwareProfile, home: Path, download_gb: float,
                disk_usage: Any = None, memory: Any = None) -> list[Check]:
    out = []
    ram = ram_check(spec, profile, backend, memory=memory)
    msg = f"{ram.available_gb:.1f} GiB free of {ram.total_gb:.1f} GiB; loading the model wants ~{ram.need_gb:.0f} GiB"
    fix = {"fail": f"free host memory or use a machine with at least {ram.need_gb:.0f} GiB RAM "
                   f"(the largest model part alone needs {ram.minimum_gb:.0f} GiB)",
           "warn": "close other programs or add swap: loading may page heavily", "pass": ""}[ram.status]
    out.append(Check("ram", ram.status, msg, fix, details=ram.to_dict()))
    registry = Path(spec.output.registry.path).expanduser() if spec.output.registry.path else default_registry_dir(home)
    kwargs: dict[str, Any] = {"registry": registry, "hf_cache": hf_cache_dir(), "download_gb": download_gb}
    if disk_usage is not None:
        kwargs["usage"] = disk_usage
    for need in disk_needs(spec, backend, profile, home, **kwargs):
        where = ", ".join(need.paths)
        msg = f"{need.free_gb:.1f} GiB free for {where}; the job writes ~{need.need_gb:.1f} GiB there"
        biggest = max(need.items, key=lambda k: need.items[k]) if need.items else ""
        fix = {"fail": f"free {need.need_gb - need.free_gb:.1f} GiB on that disk (largest part: {biggest}), or "
                       "move ZLT_HOME / output.registry.path / HF_HOME to a bigger disk",
               "warn": "the disk is nearly full: free some space before long runs", "pass": ""}[need.status]
        out.append(Check("disk", need.status, msg, fix, details=need.to_dict()))
    cpus = cpu_count()
    if cpus < MIN_CPUS and not spec.is_tiny:
        out.append(Check("cpu", "warn", f"{cpus} CPU cores: latent caching and data loading will be slow",
                         f"use a machine with {MIN_CPUS}+ cores", details={"cpus": cpus}))
    else:
        out.append(Check("cpu", "pass", f"{cpus} CPU cores", details={"cpus": cpus}))
    return out


def config_check() -> Check | None:
    """A failed check when the user config file cannot be read; None when it is fine or absent."""
    try:
        load_user_config()
    except ZltError as e:
        return Check("config", "fail", e.message, e.hint or f"fix or remove {user_config_path()}")
    return None


def trainer_checks(backend: str, explicit: str | None, gpus: list[GpuInfo], check_python: bool,
                   assumed: bool = False, tiny: bool = False) -> list[Check]:
    out = []
    broken = config_check()
    if broken is not None:
        out.append(broken)
    inst = locate_trainer(backend, explicit, check_python=check_python)
    details = inst.to_dict()
    where = f"{inst.root}" if inst.root else "built in"
    if not inst.ok:
        out.append(Check("trainer", "fail", f"{backend}: " + "; ".join(inst.problems), inst.fix, details))
        return out
    versions = ", ".join(f"{k} {v}" for k, v in inst.versions.items() if k in ("python", "torch", "accelerate",
                                                                               "diffusers"))
    real_gpus = [g for g in gpus if not g.assumed]
    if backends.get(backend).builtin and inst.ok and real_gpus and check_python and not tiny:
        # the built-in trainer runs in zlt's own Python: ask a child process whether its torch sees CUDA
        _apply_probe(inst, probe_python(inst.python, ["torch"]), ["torch"], "pip install 'zlt[train]'")
        details = inst.to_dict()
        if inst.problems:
            out.append(Check("trainer", "fail", f"{backend}: " + "; ".join(inst.problems), inst.fix, details))
            return out
    if inst.cuda is False and real_gpus and not assumed:
        out.append(Check("trainer", "fail", f"{backend} at {where}: torch in {inst.python} cannot use CUDA",
                         "install a CUDA build of torch into that environment", details))
    else:
        out.append(Check("trainer", "pass", f"{backend} at {where} ({versions or inst.python})", details=details))
    if inst.pinned_commit:
        status: Status = "pass" if inst.commit_matches_pin else "warn"
        msg = (f"checkout at the tested commit {inst.pinned_commit[:10]}" if status == "pass"
               else "; ".join(inst.warnings) or "commit unknown")
        fix = "" if status == "pass" else f"git -C {inst.root} checkout {inst.pinned_commit} (see vendor/README.md)"
        out.append(Check("trainer_version", status, msg, fix, {"commit": inst.commit, "pinned": inst.pinned_commit}))
    return out


def check_command(path: Path, spec_path: str | Path | None) -> str:
    """The `zlt dataset check` that checks PATH as the job will (the spec's resolution, captions and strictness)."""
    return f"zlt dataset check {shlex.quote(str(path))} --spec {shlex.quote(str(spec_path)) if spec_path else 'SPEC'}"


def dataset_checks(spec: JobSpec, spec_path: str | Path | None = None) -> list[Check]:
    """The dataset check, summarised: errors block (exit 2: bad input), images that cannot be read are skipped (a
    warning naming them) unless dataset.strict, warnings are counted. `spec_path` goes into the hints."""
    path = Path(spec.dataset.path)
    try:
        report = check_dataset(path, spec)
    except Exception as e:  # a ZltError for a missing folder, or anything the checker trips on
        message = getattr(e, "message", None) or str(e)
        if not message.startswith(str(path)):
            message = f"{path}: {message}"
        return [Check("dataset", "fail", message, getattr(e, "hint", "") or "fix dataset.path")]
    counts = {s: report.count(s) for s in ("error", "warning", "info")}
    totals = report.totals
    n = totals.get("images_usable", "?")
    summary = f"{path}: {n} usable images, {counts.get('error', 0)} errors, {counts.get('warning', 0)} warnings"
    skipped = report.skipped_files()
    details = {"counts": counts, "totals": {k: totals.get(k) for k in ("images_found", "images_usable",
                                                                        "images_unique", "samples_per_epoch")},
               "errors": [f.to_dict() for f in report.findings if f.severity == "error"][:20],
               "skipped": skipped, "strict": report.strict}
    command = check_command(path, spec_path)
    named = ", ".join(skipped[:5]) + (", ..." if len(skipped) > 5 else "")
    blocking = report.blocking()
    if blocking and report.strict and skipped:
        return [Check("dataset", "fail", f"{summary}; dataset.strict: {len(skipped)} image(s) cannot be read: {named}",
                      f"fix or remove them, or set dataset.strict: false to skip them; {command} lists them all",
                      details)]
    if blocking:
        first = blocking[0]
        where = f" ({first.file})" if getattr(first, "file", None) else ""
        return [Check("dataset", "fail", f"{summary}; first: {first.message}{where}",
                      f"{command} lists them all{'; ' + first.hint if first.hint else ''}", details)]
    if skipped:
        return [Check("dataset", "warn", f"{summary}; prepare skips {len(skipped)} unreadable image(s): {named}",
                      f"fix or remove them, or set dataset.strict: true to refuse instead; {command} lists them all",
                      details)]
    if counts.get("warning"):
        return [Check("dataset", "warn", summary, f"{command} lists the warnings", details)]
    return [Check("dataset", "pass", summary, details=details)]
