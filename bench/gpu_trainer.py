"""Speed and memory of the built-in trainer's training step on the real-size Z-Image transformer.

Builds `ZImageTransformer2DModel()` with its default (real, 6.15 B parameter) config and random weights in bf16
(nothing downloaded), adds the default rank-16 attention LoRA, and times `--steps` steps after `--warmup` steps
at each resolution, batch 1, for {gradient checkpointing on/off} x {compile on/off} x {bf16, float8 base}, with
the trainer's own pieces (`zlt.trainer.models.add_lora`, `zlt.trainer.accel`, `zlt.trainer.loss`). Prints it/s,
peak VRAM (`torch.cuda.max_memory_allocated`), model FLOP utilisation and the VRAM estimator's figure.

    python bench/gpu_trainer.py [--json OUT.json]          # CUDA: real size, 512 and 1024 px
    python bench/gpu_trainer.py --ci                       # CPU: the same code at tiny size (CI keeps it working)

Model FLOPs per step (what MFU counts; recomputation under checkpointing is not counted, as usual):
    4 x sum over blocks (Linear parameters of the block x tokens the block sees)      # forward + input gradients;
                                                                                       # frozen weights: no weight grads
  + 12 x sum over blocks (tokens^2 x dim)                                             # attention: QK^T and AV, 2 T^2 d
                                                                                       # each forward, backward twice that
  (+ the LoRA's own matmuls, under 1% at rank 16, not counted)
Tokens: the main layers see image tokens (res/16)^2 + caption tokens (128, Z-Image pads to a multiple of 32);
the noise refiners see the image tokens, the context refiners the caption tokens.
MFU = model FLOPs per step x it/s / the card's dense bf16 peak (table below; unknown card: not computed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CAPTION_TOKENS = 128
CAP_PAD = 32  # Z-Image's SEQ_MULTI_OF
# dense bf16 peak, TFLOP/s, from the vendors' data sheets (no sparsity)
PEAK_TFLOPS = {"H100 SXM": 989.0, "H100 80GB HBM3": 989.0, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H200": 989.0,
               "A100": 312.0, "L40S": 362.0, "RTX 4090": 165.0, "RTX 5090": 209.0}


def peak_tflops(name: str) -> float | None:
    hits = [v for k, v in PEAK_TFLOPS.items() if k.lower() in name.lower()]
    return max(hits) if hits else None


def block_flops(model, image_tokens: int, caption_tokens: int) -> float:
    """Model FLOPs of one training step (formula in the module docstring)."""
    import torch

    def linear_params(block) -> int:
        return sum(m.weight.numel() for m in block.modules() if isinstance(m, torch.nn.Linear))

    dim = model.config.dim
    total = 0.0
    groups = [(model.layers, image_tokens + caption_tokens), (model.noise_refiner, image_tokens),
              (model.context_refiner, caption_tokens)]
    for blocks, tokens in groups:
        for block in blocks:
            total += 4.0 * linear_params(block) * tokens + 12.0 * tokens * tokens * dim
    return total


def build(tiny: bool, device, float8: bool, compiled: bool, compile_backend: str | None):
    import torch
    from diffusers import ZImageTransformer2DModel

    from zlt.trainer.accel import compile_blocks, float8_storage
    from zlt.trainer.config import LoraConfig
    from zlt.trainer.models import add_lora
    from zlt.trainer.tiny import TRANSFORMER_CONFIG

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        old = torch.get_default_dtype()
        torch.set_default_dtype(dtype)  # build directly in the weight dtype: no fp32 copy of 6 B parameters
        try:
            model = ZImageTransformer2DModel(**TRANSFORMER_CONFIG) if tiny else ZImageTransformer2DModel()
        finally:
            torch.set_default_dtype(old)
    model.requires_grad_(False)
    params = add_lora(model, LoraConfig(rank=16, alpha=16), seed=0)
    if float8:
        float8_storage(model, dtype)
    if compiled:
        compile_blocks(model, backend=compile_backend)
    return model.train(), params, dtype


def run_case(model, params, dtype, device, res: int, gc: bool, steps: int, warmup: int) -> dict:
    import torch

    from zlt.trainer.loss import flow_matching_loss, sample_sigmas, timestep_weights

    if gc:
        model.enable_gradient_checkpointing()
    else:
        model.disable_gradient_checkpointing()
    opt = torch.optim.AdamW(params, lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    h = w = res // 8
    lat = [torch.randn(model.config.in_channels, h, w, generator=gen).to(device)]
    cap = [torch.randn(CAPTION_TOKENS, model.config.cap_feat_dim, generator=gen).to(device, dtype)]
    cuda = device.type == "cuda"

    def step() -> None:
        sig = sample_sigmas(1, "weighted", gen).to(device)
        noise = [torch.randn(x.shape, generator=gen).to(device) for x in lat]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = flow_matching_loss(model, lat, cap, sig, noise, dtype=dtype,
                                      weights=timestep_weights(sig, "weighted"))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    image_tokens = (res // 16) ** 2
    caption_tokens = -(-CAPTION_TOKENS // CAP_PAD) * CAP_PAD
    return {"it_s": steps / seconds, "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
            "flops_per_step": block_flops(model, image_tokens, caption_tokens)}


def estimator_gib(res: int, gc: bool, float8: bool) -> float:
    """The VRAM estimator's tensors-only figure (what max_memory_allocated measures) for the real-size model,
    without the VAE (the bench has none) and with 32-bit AdamW as here."""
    from zlt.preflight.vram import estimate
    from zlt.profiles import get_profile
    from zlt.spec.load import load_spec_data

    sets = [f"dataset.resolution={res}", f"training.gradient_checkpointing={str(gc).lower()}",
            f"model.base.quantize={'float8' if float8 else 'none'}", "training.optimizer.use_8bit=false",
            "training.backend=lightning"]
    spec = load_spec_data({"dataset": {"path": "/bench"}}, sets=sets).spec
    est = estimate(spec, get_profile("80gb"), "lightning")
    return est.allocated_gb - est.parts.get("vae", 0.0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ci", action="store_true", help="tiny model on the CPU, few steps (CI)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 50; --ci 3)")
    ap.add_argument("--warmup", type=int, default=None, help="warm-up steps (default 10; --ci 1)")
    ap.add_argument("--resolutions", default=None, help="comma-separated px (default 512,1024; --ci 32,64)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows to this JSON file")
    args = ap.parse_args(argv)

    import torch

    cuda = torch.cuda.is_available() and not args.ci
    if not cuda and not args.ci:
        print("no CUDA GPU: running the CPU CI-size mode (--ci); no GPU figure is measured", file=sys.stderr)
    tiny = not cuda
    device = torch.device("cuda" if cuda else "cpu")
    steps = args.steps or (50 if cuda else 3)
    warmup = args.warmup if args.warmup is not None else (10 if cuda else 1)
    resolutions = [int(r) for r in (args.resolutions or ("512,1024" if cuda else "32,64")).split(",")]
    card = torch.cuda.get_device_name(0) if cuda else "CPU"
    peak = peak_tflops(card) if cuda else None
    # CPU: dynamo traces the real compile path with the eager backend; inductor's C++ build is for the GPU run
    compile_backend = None if cuda else "eager"
    print(f"{'real-size' if not tiny else 'tiny (CI)'} Z-Image transformer on {card}; rank-16 attention LoRA, batch 1, "
          f"{steps} steps after {warmup} warm-up")
    header = f"{'base':<7}{'compile':<9}{'ckpt':<6}{'px':>6}{'it/s':>9}{'peak GiB':>10}{'est GiB':>9}{'MFU':>7}"
    print(header)
    rows = []
    from zlt.trainer.accel import decide_compile

    for float8 in (False, True):
        for compiled in (False, True):
            if compiled and not decide_compile("on", device.type, float8)[0]:
                print(f"{'float8':<7}{'on':<9}  skipped: the trainer never compiles float8 storage "
                      "(inductor cannot; docs/trainer.md)")
                continue
            model, params, dtype = build(tiny, device, float8, compiled, compile_backend)
            for gc in (True, False):
                for res in resolutions:
                    try:
                        r = run_case(model, params, dtype, device, res, gc, steps, warmup)
                    except Exception as e:  # report a failing setting and time the others
                        print(f"{'float8' if float8 else '-':<7}{'on' if compiled else 'off':<9}"
                              f"{'on' if gc else 'off':<6}{res:>6}  failed: {type(e).__name__}: {str(e)[:80]}")
                        if cuda:
                            torch.cuda.empty_cache()
                        continue
                    mfu = r["flops_per_step"] * r["it_s"] / (peak * 1e12) if peak else None
                    est = estimator_gib(res, gc, float8) if not tiny else None
                    plain = "bf16" if cuda else "fp32"  # the CPU computes in fp32
                    row = {"card": card, "size": "tiny" if tiny else "real", "base": "float8" if float8 else plain,
                           "compile": compiled, "gradient_checkpointing": gc, "resolution": res, **r, "mfu": mfu,
                           "estimate_gib": est}
                    rows.append(row)
                    if args.json:  # every finished row is on disk at once: a run stopped by a time budget keeps them
                        args.json.write_text(json.dumps(rows, indent=2))
                    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
                    print(f"{row['base']:<7}{'on' if compiled else 'off':<9}{'on' if gc else 'off':<6}{res:>6}"
                          f"{r['it_s']:>9.2f}{fmt(r['peak_gib'], '.2f'):>10}{fmt(est, '.2f'):>9}"
                          f"{fmt(mfu and mfu * 100, '.1f'):>6}{'%' if mfu else ' '}")
            del model, params
            if cuda:
                torch.cuda.empty_cache()
    if cuda:
        best512 = max((r for r in rows if r["resolution"] == 512), key=lambda r: r["it_s"], default=None)
        if best512:
            print(f"guide's 4000-step 512 px character LoRA (rank 64 there, 16 here), projected from the fastest "
                  f"512 px row: {4000 / best512['it_s'] / 60:.1f} min")
    else:
        print("CPU CI mode: tiny model, so it/s and MFU say nothing about a GPU; peak VRAM and the estimator are "
              "GPU-only (shown as -)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
