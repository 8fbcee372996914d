"""Flow matching as Z-Image was trained: x_t = (1 - s) x0 + s noise, the model gets t = 1 - s and predicts
-(noise - x0); plus the timestep samplers.

Samplers draw sigma in (0, 1) from a torch.Generator so the stream is saved and restored with a resume state.
"""

from __future__ import annotations

import math

SIGMA_EPS = 1e-4  # keeps sigma off 0 and 1, where the target degenerates

# "weighted": a bell over sigma centred on 0.5, lowered so its ends are 0 and its mean is 1 (ai-toolkit's
# bell-shaped, mean-normalised timestep weighting). We sample sigma from it rather than weighting the loss by it:
# the same expected gradient, with less variance.
_BELL_BINS = 1000


def _bell_weights():
    import torch

    x = (torch.arange(_BELL_BINS, dtype=torch.float64) + 0.5) / _BELL_BINS
    y = torch.exp(-2 * (x - 0.5) ** 2)
    y = y - math.exp(-0.5)
    return y / y.mean()


def shift_sigmas(s, shift: float):
    """The time shift of FlowMatchEulerDiscreteScheduler: s' = shift*s / (1 + (shift-1)*s)."""
    return shift * s / (1 + (shift - 1) * s)


def sample_sigmas(
    n: int, kind: str, generator, *, shift: float = 3.0, content_or_style: str = "balanced"
):
    """n sigmas in (0, 1) on the CPU, float32.

    uniform: U(0,1). sigmoid: sigmoid(N(0,1)) (logit-normal, mass in the middle). shift: sigmoid(N(0,1)) then
    shifted towards noise like Z-Image-Turbo's scheduler. weighted: the bell above.
    content_or_style overrides the kind with ai-toolkit's cubic bias: content -> mostly high noise (composition),
    style -> mostly low noise (texture and colour).
    """
    import torch

    if content_or_style == "content":
        s = 1 - torch.rand(n, generator=generator) ** 3
    elif content_or_style == "style":
        s = torch.rand(n, generator=generator) ** 3
    elif kind == "uniform":
        s = torch.rand(n, generator=generator)
    elif kind == "sigmoid":
        s = torch.sigmoid(torch.randn(n, generator=generator))
    elif kind == "shift":
        s = shift_sigmas(torch.sigmoid(torch.randn(n, generator=generator)), shift)
    elif kind == "weighted":
        bins = torch.multinomial(_bell_weights(), n, replacement=True, generator=generator)
        s = (bins.double() + torch.rand(n, generator=generator, dtype=torch.float64)) / _BELL_BINS
    else:
        raise ValueError(f"unknown timestep_type {kind!r}")
    return s.float().clamp(SIGMA_EPS, 1 - SIGMA_EPS)


def flow_matching_loss(model, latents: list, cap_feats: list, sigmas, noise: list, dtype=None):
    """Mean squared error of -model(x_t) against (noise - x0), averaged over the batch.

    latents/noise: lists of (C, H, W) tensors on the model's device; sigmas: (B,) on that device.
    """
    import torch

    x_t = [((1 - s) * x0 + s * n).unsqueeze(1) for x0, n, s in zip(latents, noise, sigmas, strict=True)]
    if dtype is not None and x_t[0].dtype != dtype:
        x_t = [x.to(dtype) for x in x_t]
    out = model(x_t, 1 - sigmas, cap_feats, return_dict=False)[0]
    losses = [
        torch.nn.functional.mse_loss(-o.squeeze(1).float(), (n - x0).float()) for o, n, x0 in zip(out, noise, latents, strict=True)
    ]
    return torch.stack(losses).mean()
