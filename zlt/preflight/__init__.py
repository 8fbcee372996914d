"""Preflight: will this job run here? GPU (NVML), VRAM estimate, host RAM/disk/CPU, trainer install, model
files and the dataset, all checked before a model is loaded. Importing this package imports no torch,
pynvml or psutil; the checks do when they run.

Names are resolved lazily (PEP 562) so that `zlt render`, which needs only the VRAM estimate, does not pay for
importing the checks.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "run_preflight": "zlt.preflight.checks",
    "GpuInfo": "zlt.preflight.gpu",
    "GpuProbe": "zlt.preflight.gpu",
    "GpuUnavailable": "zlt.preflight.gpu",
    "NvmlProbe": "zlt.preflight.gpu",
    "StaticProbe": "zlt.preflight.gpu",
    "detect_gpus": "zlt.preflight.gpu",
    "parse_assume_gpu": "zlt.preflight.gpu",
    "TrainerInstall": "zlt.preflight.install",
    "locate_trainer": "zlt.preflight.install",
    "Check": "zlt.preflight.report",
    "PreflightReport": "zlt.preflight.report",
    "VramEstimate": "zlt.preflight.vram",
    "estimate": "zlt.preflight.vram",
    "smallest_fitting_profile": "zlt.preflight.vram",
    "suggest_levers": "zlt.preflight.levers",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'zlt.preflight' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
