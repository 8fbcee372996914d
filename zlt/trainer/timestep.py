"""Keep the timestep in fp32 on its way into the transformer.

Fabric's mixed-precision plugins cast every floating tensor argument of a set-up module to bf16/fp16, so
t = 0.87654 would reach the timestep embedding as 0.875 (the pipeline passes fp32 at inference). A `Fp32Box` is
not a tensor, so the plugin passes it through untouched; `TimestepFp32` opens it inside the wrapped forward.
"""

from __future__ import annotations

from typing import Any

import torch  # imported lazily by zlt.trainer.loop, never by the CLI or the renderers


class Fp32Box:
    """A tensor the precision plugin must not convert."""

    __slots__ = ("value",)

    def __init__(self, value) -> None:
        self.value = value


def box(t) -> Fp32Box:
    return Fp32Box(t.float())


class TimestepFp32(torch.nn.Module):
    """Wraps the transformer for `fabric.setup_module`: same call, t may come boxed."""

    def __init__(self, transformer) -> None:
        super().__init__()
        self.transformer = transformer

    def forward(self, x, t, cap_feats, **kwargs: Any):
        if isinstance(t, Fp32Box):
            t = t.value
        return self.transformer(x, t, cap_feats, **kwargs)
