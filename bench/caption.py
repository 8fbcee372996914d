"""Captioning throughput: zlt's `caption_folder` against a bare `transformers` loop, same model, same images.

Both read the same PNG files from disk and caption them in batches of the same size with the same loaded model
and generation settings; zlt also checks each image (decode caps, EXIF), hashes it for resume, applies the
style filter, and writes each sidecar atomically with its captions.jsonl record. Prints images/s of each and the
ratio (target >= 0.9x). Best of --repeats runs each, alternating, after one warm-up batch; one torch thread
by default, so a busy machine disturbs the figures less.

    python bench/caption.py                       # the tiny captioner on the CPU
    python bench/caption.py --model florence-community/Florence-2-large --device cuda --images 256 --size 768

The GPU figure is "not measured" until someone runs the second line on a GPU and records it in
docs/performance.md.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path


def make_images(folder: Path, n: int, size: int) -> list[Path]:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        rng = np.random.RandomState(i)
        arr = (rng.rand(size, size + 8 * (i % 3), 3) * 255).astype("uint8")
        p = folder / f"img{i:04d}.png"
        Image.fromarray(arr).save(p)
        out.append(p)
    return out


def bare_loop(loaded, files: list[Path], prompt: str, batch: int) -> list[str]:
    """What a user writes with transformers alone: open, process, generate, decode."""
    import torch
    from PIL import Image

    texts: list[str] = []
    for i in range(0, len(files), batch):
        images = [Image.open(p).convert("RGB") for p in files[i:i + batch]]
        inputs = loaded.processor(text=[prompt] * len(images), images=images, return_tensors="pt").to(loaded.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(loaded.dtype)
        with torch.inference_mode():
            out = loaded.model.generate(**inputs, **loaded.info.generate)
        texts += loaded.processor.batch_decode(out, skip_special_tokens=True)
    return texts


def fresh_copy(src: Path, work: Path) -> Path:
    """The images without captions or records (outside the timed part)."""
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(src, work)
    return work


def zlt_run(loaded, work: Path, batch: int) -> int:
    from zlt.caption import CaptionOptions, caption_folder

    rep = caption_folder(work, CaptionOptions(model=loaded.info.name, batch_size=batch), loaded=loaded)
    return rep.captioned


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="zlt/tiny-captioner")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--size", type=int, default=64, help="image side in pixels")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (both sides; steadier figures)")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)

    from zlt.caption.models import load_captioner
    from zlt.caption.text import prompt_for

    loaded = load_captioner(args.model, device=args.device)
    prompt = prompt_for(loaded.info, "style")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        files = make_images(src, args.images, args.size)
        bare_loop(loaded, files[: args.batch], prompt, args.batch)  # warm-up: first-call costs out of both
        best_bare = best_zlt = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            n = len(bare_loop(loaded, files, prompt, args.batch))
            best_bare = min(best_bare, time.perf_counter() - t0)
            work = fresh_copy(src, Path(tmp) / "work")
            t0 = time.perf_counter()
            m = zlt_run(loaded, work, args.batch)
            best_zlt = min(best_zlt, time.perf_counter() - t0)
            assert n == m == args.images, (n, m)
    bare_ips, zlt_ips = args.images / best_bare, args.images / best_zlt
    ratio = zlt_ips / bare_ips
    where = f"{args.device}" + (" (GPU)" if args.device.startswith("cuda") else "")
    print(f"model {args.model}, {args.images} images of {args.size}px, batch {args.batch}, device {where}, "
          f"best of {args.repeats}")
    print(f"bare transformers loop: {bare_ips:8.1f} images/s")
    print(f"zlt caption_folder:     {zlt_ips:8.1f} images/s  ({ratio:.2f}x the bare loop; target >= 0.9x)")
    if not args.device.startswith("cuda"):
        print("GPU: not measured (run with --device cuda on a GPU machine)")
    return 0 if ratio >= 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())
