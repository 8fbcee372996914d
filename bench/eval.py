"""Evaluation cost: `zlt eval` per checkpoint vs a bare diffusers loop drawing the same images.

    python bench/eval.py [--rounds 3] [--size 64] [--steps 4] [--prompts 4] [--seeds 2]

Builds a throwaway ZLT_HOME with an artifact on the tiny built-in model (zlt/tiny-zimage: 3 kept checkpoints plus
the final weights, so 5 rows with the base model), 8 training images and a tiny random CLIP model, then, round by
round so machine load hits both alike:
  - eval: a row as `zlt eval` draws and scores it (zlt.infer.generate on its PipelineCache, CLIP embeddings,
    metrics);
  - bare: ZImagePipeline built once; per checkpoint load_lora_weights + set_adapters, the same prompts x seeds
    with the same generators, delete_adapters; nothing scored or written.
Rows alternate between the two, in CPU seconds of this process (the development box is shared; wall time is
noise there). Prints (a) time per checkpoint (eval: drawing through zlt generate + CLIP scoring one row; bare:
drawing it), target <= 1.1x, and (b) the whole `evaluate_artifact` per checkpoint with the models already loaded
(adds embedding the training images and writing eval/). CPU and the tiny model only: with the real 6B model and
CLIP ViT-L/14 on a GPU the ratio is not measured here.
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

PROMPTS = ["a lighthouse on a rocky coast", "a bowl of ramen", "a red fox in snow", "a city street at night",
           "a vintage bicycle", "a mountain lake", "an old fisherman", "a kite on a beach"]


class Bare:
    """The same images drawn by plain diffusers calls on a pipeline built once; nothing scored or written."""

    def __init__(self, folder: Path, size: int, steps: int) -> None:
        from zlt.trainer.tiny import build_tiny_pipeline

        self.pipe, self.folder, self.size, self.steps, self.n = build_tiny_pipeline(), folder, size, steps, 0

    def row(self, rel: str | None, prompts: list[str], seeds: int, seed0: int) -> None:
        import torch

        self.n += 1
        name = f"a{self.n}"
        if rel is not None:
            self.pipe.load_lora_weights(str(self.folder / rel), adapter_name=name)
            self.pipe.set_adapters([name], adapter_weights=[1.0])
        k = 0
        for p in prompts:
            for _ in range(seeds):
                g = torch.Generator(device="cpu").manual_seed(seed0 + k)
                self.pipe(prompt=p, height=self.size, width=self.size, num_inference_steps=self.steps,
                          guidance_scale=0.0, generator=g)
                k += 1
        if rel is not None:
            self.pipe.delete_adapters(name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--seeds", type=int, default=2)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="zlt-bench-eval-"))
    home = tmp / "home"
    os.environ["ZLT_HOME"] = str(home)
    os.environ["HF_HUB_OFFLINE"] = "1"

    import torch
    from PIL import Image

    from tests.fixtures.eval_fixtures import evaluable_artifact, tiny_clip, training_images
    from zlt.eval.clip import ClipScorer
    from zlt.eval.evaluate import EvalOptions, draw_settings, evaluate_artifact, score_images
    from zlt.eval.images import InferImages
    from zlt.eval.plan import list_images, open_artifact
    from zlt.eval.prompts import build_prompts

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    art = evaluable_artifact(tmp / "jobs", home)
    view = open_artifact(home, art)
    train_dir = training_images(Path(view.meta["dataset"]["prepared_dir"]), n=8, size=args.size)
    clip = str(tiny_clip(tmp / "clip"))
    opts = EvalOptions(prompts=PROMPTS[: args.prompts], seeds=args.seeds, clip=clip, steps=args.steps,
                       size=args.size)
    prompts = build_prompts(opts.prompts, view.trigger)
    texts = [p.text for p in prompts]
    seed0 = view.spec.training.sample.seed
    seeds = [seed0 + i for i in range(args.seeds)]
    targets = view.targets()

    # one-time loads, outside the timed rows (both sides have them)
    draw = InferImages(home, art, draw_settings(view, opts))
    draw.warm()
    scorer = ClipScorer(clip)
    train_emb = scorer.images([Image.open(p).convert("RGB") for p in list_images(train_dir)])
    bare = Bare(view.folder, args.size, args.steps)

    cpu = time.process_time  # CPU seconds of this process (all its threads): other load on the box counts less
    eval_s, bare_s = 0.0, 0.0
    for r in range(args.rounds):
        for i, t in enumerate(targets):
            for which in (("eval", "bare") if (r + i) % 2 == 0 else ("bare", "eval")):
                t0 = cpu()
                if which == "eval":
                    images = draw(t, texts, args.seeds, seed0)
                    score_images(scorer, images, prompts, seeds, train_emb)
                    eval_s += cpu() - t0
                else:
                    bare.row(t.file, texts, args.seeds, seed0)
                    bare_s += cpu() - t0
    rows = args.rounds * len(targets)
    e, b = eval_s / rows, bare_s / rows

    whole = []
    for _ in range(args.rounds):
        t0 = cpu()
        evaluate_artifact(home, art, opts, image_fn=draw, scorer=scorer)
        whole.append((cpu() - t0) / len(targets))
    w = statistics.median(whole)
    n = args.prompts * args.seeds
    print(f"tiny model on CPU, {len(targets)} rows (base + {len(targets) - 1} LoRA files), {n} images per row at "
          f"{args.size}px, {args.steps} steps, {args.rounds} rounds, torch threads {torch.get_num_threads()}; "
          "CPU seconds of this process")
    print(f"per checkpoint: eval {e:.3f} s (draw via zlt generate + CLIP scores), bare diffusers {b:.3f} s  "
          f"-> ratio {e / b:.3f}x (target <= 1.1x)")
    print(f"whole evaluation per checkpoint (rows + training-image embeddings + writing eval/: images, sheet, "
          f"curves, report, index), models already loaded: {w:.3f} s -> ratio {w / b:.3f}x")
    print("GPU / real model: not measured (no GPU)")


if __name__ == "__main__":
    main()
