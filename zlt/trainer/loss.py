"""Flow matching as Z-Image was trained: x_t = (1 - s) x0 + s noise, the model gets t = 1 - s and predicts
-(noise - x0); plus the timestep samplers.

Samplers draw sigma in (0, 1) from a torch.Generator so the stream is saved and restored with a resume state.
"""

from __future__ import annotations

from zlt.trainer.weighting_table import AITOOLKIT_WEIGHTED

SIGMA_EPS = 1e-4  # keeps sigma off 0 and 1, where the target degenerates

N_TRAIN_TIMESTEPS = 1000  # ai-toolkit trains on linspace(1000, 1, 1000); its weight table has one value per step


_TABLES: dict = {}  # device -> the weight table on it (built once, looked up every micro-step)


def _table(device):
    import torch

    if device not in _TABLES:
        _TABLES[device] = torch.tensor(AITOOLKIT_WEIGHTED, dtype=torch.float32, device=device)
    return _TABLES[device]


def timestep_weights(sigmas, kind: str):
    """Per-sample loss weights (B,), float32: ai-toolkit's table for 'weighted' (looked up at the table index of
    each sigma, index 0 = sigma 1), ones for every other kind."""
    import torch

    if kind != "weighted":
        return torch.ones_like(sigmas, dtype=torch.float32)
    table = _table(sigmas.device)
    idx = torch.round((1 - sigmas.double()) * N_TRAIN_TIMESTEPS).long().clamp(0, N_TRAIN_TIMESTEPS - 1)
    return table[idx]


def shift_sigmas(s, shift: float):
    """The time shift of FlowMatchEulerDiscreteScheduler: s' = shift*s / (1 + (shift-1)*s)."""
    return shift * s / (1 + (shift - 1) * s)


def sample_sigmas(
    n: int, kind: str, generator, *, shift: float = 3.0, content_or_style: str = "balanced"
):
    """n sigmas in (0, 1) on the CPU, float32.

    uniform: U(0,1). sigmoid: sigmoid(N(0,1)) (logit-normal, mass in the middle). shift: sigmoid(N(0,1)) then
    shifted towards noise like Z-Image-Turbo's scheduler. weighted: U(0,1) like ai-toolkit's `weighted`, whose
    loss is then weighted by `timestep_weights` (ai-toolkit samples its 1000 timesteps uniformly).
    content_or_style overrides the kind with ai-toolkit's cubic bias: content -> mostly high noise (composition),
    style -> mostly low noise (texture and colour).
    """
    import torch

    if content_or_style == "content":
        s = 1 - torch.rand(n, generator=generator) ** 3
    elif content_or_style == "style":
        s = torch.rand(n, generator=generator) ** 3
    elif kind in ("uniform", "weighted"):
        s = torch.rand(n, generator=generator)
    elif kind == "sigmoid":
        s = torch.sigmoid(torch.randn(n, generator=generator))
    elif kind == "shift":
        s = shift_sigmas(torch.sigmoid(torch.randn(n, generator=generator)), shift)
    else:
        raise ValueError(f"unknown timestep_type {kind!r}")
    return s.float().clamp(SIGMA_EPS, 1 - SIGMA_EPS)


def flow_matching_loss(model, latents: list, cap_feats: list, sigmas, noise: list, dtype=None, *, weights=None,
                       timestep=lambda t: t):
    """Mean squared error of -model(x_t) against (noise - x0), per sample times `weights` (B,), averaged.

    latents/noise: lists of (C, H, W) tensors on the model's device; sigmas: (B,) float32 on that device.
    `timestep` wraps t = 1 - sigma before the call (the trainer boxes it so precision plugins keep it fp32).
    """
    import torch

    x_t = [((1 - s) * x0 + s * n).unsqueeze(1) for x0, n, s in zip(latents, noise, sigmas, strict=True)]
    if dtype is not None and x_t[0].dtype != dtype:
        x_t = [x.to(dtype) for x in x_t]
    out = model(x_t, timestep(1 - sigmas.float()), cap_feats, return_dict=False)[0]
    losses = [
        torch.nn.functional.mse_loss(-o.squeeze(1).float(), (n - x0).float()) for o, n, x0 in zip(out, noise, latents, strict=True)
    ]
    per_sample = torch.stack(losses)
    if weights is not None:
        per_sample = per_sample * weights.to(per_sample.device, per_sample.dtype)
    return per_sample.mean()
