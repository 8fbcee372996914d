"""Preflight: will this job run here? GPU (NVML), VRAM estimate, host RAM/disk/CPU, trainer install, model
files and the dataset, all checked before a model is loaded. Importing this package imports no torch,
pynvml or psutil; the checks do when they run."""

from zlt.preflight.checks import run_preflight
from zlt.preflight.gpu import (
    GpuInfo,
    GpuProbe,
    GpuUnavailable,
    NvmlProbe,
    StaticProbe,
    detect_gpus,
    parse_assume_gpu,
)
from zlt.preflight.install import TrainerInstall, locate_trainer
from zlt.preflight.report import Check, PreflightReport
from zlt.preflight.vram import VramEstimate, estimate, smallest_fitting_profile, suggest_levers

__all__ = [
    "Check", "GpuInfo", "GpuProbe", "GpuUnavailable", "NvmlProbe", "PreflightReport", "StaticProbe", "TrainerInstall",
    "VramEstimate", "detect_gpus", "estimate", "locate_trainer", "parse_assume_gpu", "run_preflight",
    "smallest_fitting_profile", "suggest_levers",
]
