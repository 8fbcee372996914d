"""Optimizers (AdamW, AdamW 8-bit, Prodigy, Adafactor) and the warmup + constant/cosine/linear schedule."""

from __future__ import annotations

import math
from collections.abc import Callable

from zlt.core.errors import EnvNotReadyError
from zlt.trainer.config import TrainingConfig


def lr_factor(i: int, warmup: int, total: int, kind: str) -> float:
    """Multiplier of the peak lr for the i-th optimizer update (0-based): the curve of transformers'
    get_{constant,cosine,linear}_schedule_with_warmup, which musubi is rendered to use and ai-toolkit's
    constant_with_warmup follows, so one spec gives one LR curve on every backend. Warmup ramps i/W (update 0 at
    lr 0, as upstream); after it, constant stays at 1, cosine and linear decay towards 0 at `total`."""
    if i < warmup:
        return i / warmup
    if kind == "constant":
        return 1.0
    progress = min(1.0, (i - warmup) / max(1, total - warmup))
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if kind == "linear":
        return 1.0 - progress
    raise ValueError(f"unknown scheduler {kind!r}")


def build_optimizer(params: list, cfg: TrainingConfig, device_type: str, warn: Callable[[str], None]):
    import torch

    o = cfg.optimizer
    lr = cfg.learning_rate
    if o.type == "prodigy":
        try:
            from prodigyopt import Prodigy
        except ImportError:
            raise EnvNotReadyError(
                "training.optimizer.type prodigy needs the prodigyopt package", hint="pip install prodigyopt"
            ) from None
        return Prodigy(params, lr=lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay,
                       use_bias_correction=True, safeguard_warmup=cfg.warmup_steps > 0)
    if o.type == "adafactor":
        return torch.optim.Adafactor(params, lr=lr, weight_decay=o.weight_decay)
    if o.use_8bit:
        bnb = _bitsandbytes() if device_type == "cuda" else None
        if bnb is not None:
            return bnb.optim.AdamW8bit(params, lr=lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)
        why = "bitsandbytes is not installed" if device_type == "cuda" else f"it needs CUDA, this run is on {device_type}"
        warn(f"training.optimizer.use_8bit: AdamW 8-bit is off because {why}; using 32-bit AdamW (more memory)")
    fused = device_type == "cuda"
    return torch.optim.AdamW(params, lr=lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay, fused=fused or None)


def _bitsandbytes():
    try:
        import bitsandbytes
    except Exception:  # a broken CUDA setup raises more than ImportError
        return None
    return bitsandbytes


def build_scheduler(optimizer, cfg: TrainingConfig):
    import torch

    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: lr_factor(i, cfg.warmup_steps, cfg.max_steps, cfg.scheduler)
    )
