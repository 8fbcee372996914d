"""`zlt doctor`: the environment part of preflight alone, no spec needed. GPUs and driver, trainer installs
(checkout, commit against vendor/, their Python and torch), zlt's own packages, config file and HF cache, and the metric model of `zlt eval`."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass, field
from typing import Any

from zlt import __version__, backends
from zlt.core.errors import EXIT_ENV_NOT_READY, EXIT_OK
from zlt.core.paths import user_config_path, zlt_home
from zlt.preflight.clip_model import DEFAULT_CLIP, TINY_CLIP, check_clip, fix_hint
from zlt.preflight.environment import config_check
from zlt.preflight.gpu import GpuInfo, GpuProbe, NvmlProbe, scan_gpus
from zlt.preflight.home import home_problem
from zlt.preflight.install import locate_trainer
from zlt.preflight.models import hf_cache_dir, hub_offline
from zlt.preflight.report import Check, Status

_PACKAGES = ("torch", "diffusers", "peft", "transformers", "lightning-fabric", "accelerate", "nvidia-ml-py", "psutil")


@dataclass
class DoctorReport:
    rows: list[Check]
    gpus: list[GpuInfo] = field(default_factory=list)
    installs: dict[str, Any] = field(default_factory=dict)  # backend -> TrainerInstall
    driver: str | None = None
    cuda_driver: str | None = None

    @property
    def ready_backends(self) -> list[str]:
        """Backends that can train here: installed, and a GPU for the real model (lightning: the tiny one too)."""
        return [b for b, inst in self.installs.items() if inst.ok and (self.gpus or b == "lightning")]

    @property
    def home_ok(self) -> bool:
        return not any(r.name == "home" and r.status == "fail" for r in self.rows)

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.ready_backends and self.home_ok else EXIT_ENV_NOT_READY

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.exit_code == EXIT_OK, "exit_code": self.exit_code, "ready_backends": self.ready_backends,
                "driver": self.driver, "cuda_driver": self.cuda_driver, "gpus": [g.to_dict() for g in self.gpus],
                "trainers": {b: i.to_dict() for b, i in self.installs.items()},
                "checks": [r.to_dict() for r in self.rows]}


def _package_versions() -> dict[str, str | None]:
    import importlib.metadata

    out: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def environment_report(*, probe: GpuProbe | None = None, ai_toolkit: str | None = None, musubi: str | None = None,
                       check_python: bool = True, home_dir: Any = None) -> DoctorReport:

    rows = [Check("zlt", "pass", f"zlt {__version__}, Python {platform.python_version()} ({sys.executable}), "
                  f"{platform.system()} {platform.machine()}")]

    home = zlt_home(home_dir)
    bad_home = home_problem(home, create=False)
    rows.append(Check("home", "fail", bad_home[0], bad_home[1]) if bad_home else
                Check("home", "pass", f"{home}" + ("" if home.exists() else " (created at first use)")))
    broken = config_check()
    cfg = user_config_path()
    rows.append(broken or Check("config", "pass", f"{cfg}" + ("" if cfg.is_file() else " (not present: defaults)")))
    probe = probe or NvmlProbe()
    scan = scan_gpus(probe)
    driver = getattr(probe, "driver_version", lambda: None)()
    cuda_driver = getattr(probe, "cuda_driver_version", lambda: None)()
    if scan.devices:
        what = f"driver {driver}" if driver else "driver version unknown"
        what += f", CUDA {cuda_driver}" if cuda_driver else ""
        rows.append(Check("gpu", "pass", f"{len(scan.devices)} visible ({what})"
                          + (f"; {scan.hidden} hidden by CUDA_VISIBLE_DEVICES" if scan.hidden else "")))
        for g in scan.devices:
            cc = ".".join(map(str, g.compute_capability)) if g.compute_capability else "?"
            procs = f", {len(g.processes)} process(es) using {g.used_by_others_gb:.1f} GiB" if g.processes else ""
            rows.append(Check(f"gpu{g.index}", "pass", f"{g.name}: {g.total_gb:.1f} GiB, {g.free_gb:.1f} free, "
                              f"compute {cc}, bf16 {'yes' if g.bf16 else 'no'}{procs}", details=g.to_dict()))
    else:
        rows.append(Check("gpu", "fail", f"no usable GPU: {scan.reason}",
                          "install the NVIDIA driver and nvidia-ml-py ('zlt[gpu]'); check CUDA_VISIBLE_DEVICES"))
    installs = {}
    for backend, explicit in (("lightning", None), ("ai-toolkit", ai_toolkit), ("musubi", musubi)):
        inst = locate_trainer(backend, explicit, check_python=check_python)
        installs[backend] = inst
        external = backends.get(backend).install is not None  # a checkout of its own (not built in): optional
        if not inst.ok and inst.root is None and external:  # none configured: not installed, not broken
            rows.append(Check(backend, "skip", f"not installed (optional): {'; '.join(inst.problems)}", inst.fix,
                              inst.to_dict()))
            continue
        if not inst.ok:
            rows.append(Check(backend, "fail", "; ".join(inst.problems), inst.fix, inst.to_dict()))
            continue
        versions = ", ".join(f"{k} {v}" for k, v in inst.versions.items())
        where = str(inst.root) if inst.root else "built in"
        status: Status = "warn" if inst.warnings else "pass"
        cuda = "" if inst.cuda is None else f", CUDA {'available' if inst.cuda else 'NOT available'}"
        rows.append(Check(backend, status, f"{where}: {versions}{cuda}"
                          + (f"; commit {inst.commit[:10]}" if inst.commit else ""),
                          "; ".join(inst.warnings), inst.to_dict()))
    pkgs = _package_versions()
    rows.append(Check("packages", "pass", ", ".join(f"{k} {v or '-'}" for k, v in pkgs.items()), details=pkgs))
    endpoint = os.environ.get("HF_ENDPOINT")
    rows.append(Check("hf_cache", "pass", f"{hf_cache_dir()}" + (", HF_HUB_OFFLINE=1" if hub_offline() else "")
                      + (f", HF_ENDPOINT={endpoint}" if endpoint else "")))
    rows.append(clip_row())
    return DoctorReport(rows, scan.devices, installs, driver, cuda_driver)


def clip_row() -> Check:
    """The metric model `zlt eval` uses by default: present (cache or folder) or missing, and how to get it. Never
    downloads, never asks the network; evaluation is optional, so a missing model is a warning."""
    c = check_clip(DEFAULT_CLIP, probe=False)
    if c.source in ("cache", "local"):
        return Check("eval_clip", "pass", f"{c.message} (zlt eval's default metric model)", details=c.to_dict())
    return Check("eval_clip", "warn", f"{DEFAULT_CLIP} (zlt eval's default metric model) is not in the Hugging Face "
                 f"cache: zlt eval needs it (or --clip {TINY_CLIP} for a smoke test)", fix_hint(DEFAULT_CLIP),
                 c.to_dict())
