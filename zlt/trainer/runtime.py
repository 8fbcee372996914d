"""Fabric set-up: which accelerator and precision a run really gets, said in warnings when it differs from the
config (no bf16 on the GPU, no mixed precision on the CPU)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from zlt.core.errors import EnvNotReadyError
from zlt.trainer.config import TrainerConfig


@dataclass
class Resolved:
    accelerator: str  # cpu | cuda
    precision: str  # Fabric precision string
    weight_dtype: str  # fp32 | bf16 | fp16


def resolve(cfg: TrainerConfig, warn: Callable[[str], None], *, cuda_available: bool, bf16_supported: bool) -> Resolved:
    """Pure: the config plus what the machine offers -> what runs."""
    acc = cfg.runtime.accelerator
    if acc == "auto":
        acc = "cuda" if cuda_available else "cpu"
    if acc == "cuda" and not cuda_available:
        raise EnvNotReadyError(
            "the built-in trainer was asked for CUDA but no CUDA GPU is visible",
            hint="check nvidia-smi / CUDA_VISIBLE_DEVICES, or use the cpu profile with model zlt/tiny-zimage",
        )
    precision, weights = cfg.training.precision, cfg.model.weight_dtype
    if acc == "cpu":
        if precision != "32-true":
            warn(f"precision {precision} -> 32-true: mixed precision is for GPUs; this run is on the CPU")
            precision = "32-true"
        if weights != "fp32" and cfg.model.is_tiny:
            warn(f"base weights {weights} -> fp32 on the CPU")
            weights = "fp32"
        elif weights == "fp16":  # a real-size base stays in half precision: fp32 would double the host memory
            warn("base weights fp16 -> bf16 on the CPU")
            weights = "bf16"
        return Resolved("cpu", precision, weights)
    if precision == "bf16-mixed" and not bf16_supported:
        warn("precision bf16-mixed -> 16-mixed: this GPU has no bf16; fp16 uses a loss scaler")
        precision = "16-mixed"
        if weights == "bf16":
            weights = "fp16"
    if precision == "32-true" and weights != "fp32":
        weights = "fp32"  # 32-true means fp32 matmuls; half weights would only be upcast each step
    return Resolved("cuda", precision, weights)


def make_fabric(cfg: TrainerConfig, r: Resolved):
    from lightning_fabric import Fabric

    strategy = cfg.runtime.strategy
    if strategy == "auto" and cfg.runtime.devices * cfg.runtime.num_nodes > 1:
        strategy = "ddp"
    fabric = Fabric(
        accelerator=r.accelerator, devices=cfg.runtime.devices, num_nodes=cfg.runtime.num_nodes,
        strategy=strategy, precision=r.precision,
    )
    fabric.launch()
    return fabric
