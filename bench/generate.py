"""Generation with the pipeline kept loaded vs loaded per request, and LoRA swap vs full reload (CPU).

    python bench/generate.py [--rounds 5] [--dim 32 --layers 2] [--size 64] [--steps 4]

Writes a random Z-Image as a diffusers folder (the tiny model's encoders and VAE; a transformer of `--dim` and
`--layers`, the tiny model's own at the defaults) and two rank-16 attention LoRAs for it, then times, round by round
so machine load hits all alike, the same `PipelineCache` calls `zlt.infer.generate` makes:
  - cold: a fresh cache per image (from_pretrained + LoRA loaded + one image), as a process per job would;
  - warm: one image on a cache that holds the pipeline and the LoRA;
  - swap: switching to a LoRA the pipeline has not loaded yet (load_lora_weights + set_adapters, the old one
    deleted) on a loaded pipeline;
  - reload: from_pretrained of the base folder and loading that LoRA: what a swap replaces.
Prints medians, images/s warm vs cold, and swap / reload (target: < 5%). Reload cost grows with the model, swap
cost with the LoRA; the real 6B model on a GPU is not measured here.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def build_model(folder: Path, dim: int, layers: int, lora_dir: Path) -> list[Path]:
    """The base model folder and two LoRA files for it."""
    import torch
    from diffusers import ZImagePipeline, ZImageTransformer2DModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from zlt.trainer.tiny import TRANSFORMER_CONFIG, build_tiny_components

    parts = build_tiny_components(transformer=False)
    heads = max(2, dim // 64)
    head_dim = dim // heads
    cfg = {**TRANSFORMER_CONFIG, "dim": dim, "n_layers": layers, "n_heads": heads, "n_kv_heads": heads,
           "axes_dims": [head_dim // 2, head_dim // 4, head_dim // 4]}
    torch.manual_seed(0)
    transformer = ZImageTransformer2DModel(**cfg)
    ZImagePipeline(transformer=transformer, **parts).save_pretrained(folder)
    files = []
    for i in range(2):
        torch.manual_seed(10 + i)
        transformer.add_adapter(LoraConfig(r=16, lora_alpha=16, target_modules=["to_q", "to_k", "to_v", "to_out.0"]),
                                adapter_name=f"a{i}")
        with torch.no_grad():
            for name, p in transformer.named_parameters():
                if f"lora_B.a{i}" in name:
                    p.copy_(torch.randn_like(p) * 0.05)
        state = get_peft_model_state_dict(transformer, adapter_name=f"a{i}")
        ZImagePipeline.save_lora_weights(lora_dir / f"l{i}", transformer_lora_layers=state)
        files.append(lora_dir / f"l{i}" / "pytorch_lora_weights.safetensors")
    return files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dim", type=int, default=32, help="Transformer width (tiny: 32; Z-Image-Turbo: 3840).")
    ap.add_argument("--layers", type=int, default=2, help="Transformer blocks (tiny: 2; Z-Image-Turbo: 30).")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=4)
    args = ap.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()
    import torch

    from zlt.core.fsutil import sha256_file
    from zlt.infer.pipeline import DevicePlan, PipelineCache
    from zlt.infer.resolve import ArtifactRef, ResolvedLora

    tmp = Path(tempfile.mkdtemp(prefix="zlt-bench-generate-"))
    files = build_model(tmp / "base", args.dim, args.layers, tmp / "loras")
    base = {"name": str(tmp / "base"), "source": "local"}
    art = ArtifactRef(id="bench", path=tmp, base_model=base, trigger="")
    loras = [[ResolvedLora(artifact=art, file=f, sha256=sha256_file(f), scale=1.0)] for f in files]
    plan = DevicePlan("cpu", "fp32", False)
    n_params = sum(p.numel() for p in PipelineCache().entry(base, plan).pipe.transformer.parameters())

    def image(cache: PipelineCache, lora: list) -> None:
        entry = cache.entry(base, plan)
        cache.activate(entry, lora)
        entry.pipe(prompt="a lighthouse", height=args.size, width=args.size, num_inference_steps=args.steps,
                   guidance_scale=0.0, generator=torch.Generator().manual_seed(0))

    image(PipelineCache(), loras[0])  # imports and first-call costs out of the way
    warm_cache = PipelineCache()
    image(warm_cache, loras[0])
    cold, warm, swap, switch, reload = [], [], [], [], []
    for r in range(args.rounds):
        t = time.perf_counter()
        image(PipelineCache(), loras[0])
        cold.append(time.perf_counter() - t)

        t = time.perf_counter()
        image(warm_cache, loras[0])
        warm.append(time.perf_counter() - t)

        swap_cache = PipelineCache(max_adapters=1)
        swap_cache.activate(swap_cache.entry(base, plan), loras[0])
        entry = swap_cache.entry(base, plan)
        t = time.perf_counter()
        swap_cache.activate(entry, loras[1])
        swap.append(time.perf_counter() - t)

        both = PipelineCache()
        for lora in (loras[1], loras[0]):
            both.activate(both.entry(base, plan), lora)
        t = time.perf_counter()
        both.activate(both.entry(base, plan), loras[1])
        switch.append(time.perf_counter() - t)

        t = time.perf_counter()
        fresh = PipelineCache()
        fresh.activate(fresh.entry(base, plan), loras[1])
        reload.append(time.perf_counter() - t)
        print(f"round {r + 1}: cold {cold[-1]:.3f}s warm {warm[-1]:.3f}s swap {swap[-1] * 1000:.1f}ms "
              f"switch {switch[-1] * 1000:.1f}ms reload {reload[-1] * 1000:.1f}ms", file=sys.stderr)

    med = statistics.median
    print(f"random Z-Image dim {args.dim} x {args.layers} layers ({n_params / 1e6:.2f}M transformer params), "
          f"{args.size}x{args.size}, {args.steps} steps, CPU, {args.rounds} rounds (medians)")
    print(f"images/s warm {1 / med(warm):.2f}, cold {1 / med(cold):.2f}: warm is {med(cold) / med(warm):.1f}x faster")
    print(f"LoRA swap {med(swap) * 1000:.1f} ms vs full reload {med(reload) * 1000:.1f} ms: "
          f"swap / reload {100 * med(swap) / med(reload):.1f}% (target < 5%)")
    print(f"switch between loaded LoRAs {med(switch) * 1000:.2f} ms: switch / reload "
          f"{100 * med(switch) / med(reload):.1f}%")
    print("Z-Image-Turbo (6B) on a GPU: not measured (no GPU)")


if __name__ == "__main__":
    main()
