"""Overhead of the built-in trainer over a bare diffusers + peft loop doing the same math.

Both run in this process, on the CPU, on the tiny model (`zlt/tiny-zimage`), with the same cached latents and
caption embeddings, batch size, LoRA, optimizer, schedule and gradient clipping. The built-in side is
`Trainer.train_step` plus what `Trainer.run` adds per step (progress event, loss log line); the bare side is a
plain PyTorch loop. Steps alternate in blocks so machine noise hits both alike. Prints ratios, not times.

    python bench/trainer.py [--steps 200] [--block 10] [--threads N]

Target: step-time ratio <= 1.05x.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def make_trainer(tmp: Path, resolution: int, batch: int):
    from examples.quickstart.make_dataset import make_dataset
    from zlt.trainer.config import TrainerConfig
    from zlt.trainer.emit import EventWriter
    from zlt.trainer.loop import Trainer

    make_dataset(tmp / "ds", size=resolution)
    cfg = TrainerConfig.model_validate({
        "name": "bench", "model": {"name": "zlt/tiny-zimage", "source": "builtin", "weight_dtype": "fp32"},
        "lora": {"rank": 8, "alpha": 8},
        "data": {"path": str(tmp / "ds"), "resolution": resolution, "shuffle": True},
        "training": {"max_steps": 100000, "batch_size": batch, "learning_rate": 1e-3, "precision": "32-true",
                     "timestep_type": "sigmoid", "scheduler": "cosine", "warmup_steps": 10, "max_grad_norm": 1.0},
        "runtime": {"accelerator": "cpu"}, "cache": {"dir": str(tmp / "cache")},
        "output": {"dir": str(tmp / "out"), "save_every": 10**6},
    })
    events = EventWriter(io.StringIO(), interval_s=0.5)
    t = Trainer(cfg, events)
    t.setup()
    t.out.mkdir(parents=True, exist_ok=True)
    log = open(t.out / "loss_log.jsonl", "a", encoding="utf-8")
    events.start_training(0)

    def step() -> None:  # what Trainer.run does per step, minus saving
        loss = t.train_step()
        log.write(json.dumps({"step": t.step, "loss": loss, "lr": t.last_lr}) + "\n")
        events.progress(t.step, cfg.training.max_steps, loss, t.last_lr)

    return t, step


def make_bare(t):
    """The same math with nothing but diffusers, peft and torch."""
    import torch
    from peft import LoraConfig

    from zlt.trainer.data import epoch_batches
    from zlt.trainer.tiny import build_tiny_components

    tr = build_tiny_components(encoders=False)["transformer"]
    tr.requires_grad_(False)
    tr.add_adapter(LoraConfig(r=8, lora_alpha=8, target_modules=["attention.to_q", "attention.to_k", "attention.to_v", "attention.to_out.0"]))
    params = [p for p in tr.parameters() if p.requires_grad]
    tr.train()
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-4)
    total, warm = t.cfg.training.max_steps, t.cfg.training.warmup_steps
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: (i + 1) / (warm + 1) if i < warm else 0.5 * (1 + math.cos(math.pi * (i - warm) / (total - warm))))
    gen = torch.Generator().manual_seed(0)
    # the same batches in the same order as the built-in side: sequence lengths (and so the work) then match
    order = {"epoch": 0, "pos": 0, "batches": epoch_batches(t.items, t.cfg.data, t.cfg.training.batch_size, t.cfg.training.seed, 0)}

    def next_batch():
        if order["pos"] >= len(order["batches"]):
            order["epoch"] += 1
            order["pos"] = 0
            order["batches"] = epoch_batches(t.items, t.cfg.data, t.cfg.training.batch_size, t.cfg.training.seed, order["epoch"])
        order["pos"] += 1
        return order["batches"][order["pos"] - 1]

    def step() -> None:
        chosen = [(s.image, s.flip, s.jitter) for s in next_batch()]
        x0 = [t.data.latents[k] for k in chosen]
        caps = [t.data.texts[t.items[k[0]].caption] for k in chosen]
        sig = torch.sigmoid(torch.randn(len(chosen), generator=gen))
        noise = [torch.randn(x.shape, generator=gen) for x in x0]
        xt = [((1 - s) * a + s * n).unsqueeze(1) for a, n, s in zip(x0, noise, sig, strict=True)]
        out = tr(xt, 1 - sig, caps, return_dict=False)[0]
        loss = torch.stack([torch.nn.functional.mse_loss(-o.squeeze(1), n - a) for o, n, a in zip(out, noise, x0, strict=True)]).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        float(loss)

    return step


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="built-in trainer vs bare diffusers+peft loop, step-time ratio")
    ap.add_argument("--steps", type=int, default=200, help="timed steps per side")
    ap.add_argument("--block", type=int, default=10, help="steps per alternating block")
    ap.add_argument("--warmup", type=int, default=20, help="untimed steps per side first")
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        trainer, builtin = make_trainer(Path(tmp), args.resolution, args.batch)
        bare = make_bare(trainer)
        timed(builtin, args.warmup)
        timed(bare, args.warmup)
        a: list[float] = []
        b: list[float] = []
        while len(a) < args.steps:
            a += timed(builtin, args.block)
            b += timed(bare, args.block)
    med = statistics.median(a) / statistics.median(b)
    mean = statistics.fmean(a) / statistics.fmean(b)
    print(f"tiny model, CPU, {args.resolution}px, batch {args.batch}, {len(a)} steps per side, blocks of {args.block}")
    print(f"built-in / bare step time: median {med:.3f}x, mean {mean:.3f}x (target <= 1.05x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
