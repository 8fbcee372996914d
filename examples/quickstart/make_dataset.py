"""Draw the quick start's style dataset: a dozen small pictures in one made-up style, with captions.

The style: a five-colour sunset palette, thick ink outlines, a hatched background. Every picture is a different
subject in that style, so the subject is in the caption and the style is what a LoRA would have to learn.

    python examples/quickstart/make_dataset.py OUT_DIR [--size 256]

Deterministic: the same command always writes the same files.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from pathlib import Path

from PIL import Image, ImageDraw

PALETTE = [(38, 70, 83), (42, 157, 143), (233, 196, 106), (244, 162, 97), (231, 111, 81)]
INK = (20, 20, 28)


def _hatch(d: ImageDraw.ImageDraw, size: int, rng: random.Random) -> None:
    d.rectangle([0, 0, size, size], fill=PALETTE[2])
    step = size // 12
    for x in range(-size, size, step):
        d.line([(x, size), (x + size, 0)], fill=PALETTE[3], width=max(2, size // 64))
    for _ in range(6):
        r = rng.randint(size // 40, size // 20)
        x, y = rng.randint(0, size), rng.randint(0, size)
        d.ellipse([x - r, y - r, x + r, y + r], fill=PALETTE[4])


def _poly(d, pts, fill, w):
    d.polygon(pts, fill=fill, outline=INK, width=w)


def draw(subject: str, size: int, seed: int) -> Image.Image:
    rng = random.Random(seed)
    im = Image.new("RGB", (size, size))
    d = ImageDraw.Draw(im)
    _hatch(d, size, rng)
    s, w = size, max(3, size // 28)
    c = s // 2
    if subject == "sun":
        for k in range(12):
            a = k * math.pi / 6
            d.line([(c, c), (c + math.cos(a) * s * 0.45, c + math.sin(a) * s * 0.45)], fill=INK, width=w)
        d.ellipse([c - s // 5, c - s // 5, c + s // 5, c + s // 5], fill=PALETTE[4], outline=INK, width=w)
    elif subject == "house":
        d.rectangle([s * 0.25, s * 0.45, s * 0.75, s * 0.85], fill=PALETTE[1], outline=INK, width=w)
        _poly(d, [(s * 0.2, s * 0.47), (c, s * 0.2), (s * 0.8, s * 0.47)], PALETTE[4], w)
        d.rectangle([s * 0.45, s * 0.62, s * 0.57, s * 0.85], fill=PALETTE[0], outline=INK, width=w)
    elif subject == "tree":
        d.rectangle([s * 0.45, s * 0.55, s * 0.55, s * 0.9], fill=PALETTE[0], outline=INK, width=w)
        d.ellipse([s * 0.2, s * 0.15, s * 0.8, s * 0.65], fill=PALETTE[1], outline=INK, width=w)
    elif subject == "mountain":
        _poly(d, [(0, s * 0.9), (s * 0.35, s * 0.25), (s * 0.7, s * 0.9)], PALETTE[0], w)
        _poly(d, [(s * 0.35, s * 0.9), (s * 0.7, s * 0.4), (s, s * 0.9)], PALETTE[1], w)
    elif subject == "fish":
        d.ellipse([s * 0.2, s * 0.35, s * 0.7, s * 0.65], fill=PALETTE[3], outline=INK, width=w)
        _poly(d, [(s * 0.68, c), (s * 0.88, s * 0.32), (s * 0.88, s * 0.68)], PALETTE[4], w)
        d.ellipse([s * 0.3, s * 0.44, s * 0.36, s * 0.5], fill=INK)
    elif subject == "flower":
        for k in range(6):
            a = k * math.pi / 3
            x, y = c + math.cos(a) * s * 0.2, c + math.sin(a) * s * 0.2
            d.ellipse([x - s * 0.12, y - s * 0.12, x + s * 0.12, y + s * 0.12], fill=PALETTE[4], outline=INK, width=w)
        d.ellipse([c - s * 0.1, c - s * 0.1, c + s * 0.1, c + s * 0.1], fill=PALETTE[2], outline=INK, width=w)
    elif subject == "boat":
        _poly(d, [(s * 0.15, s * 0.65), (s * 0.85, s * 0.65), (s * 0.7, s * 0.82), (s * 0.3, s * 0.82)], PALETTE[0], w)
        _poly(d, [(c, s * 0.15), (c, s * 0.62), (s * 0.78, s * 0.62)], PALETTE[4], w)
    elif subject == "moon":
        d.ellipse([s * 0.25, s * 0.2, s * 0.75, s * 0.7], fill=PALETTE[2], outline=INK, width=w)
        d.ellipse([s * 0.4, s * 0.15, s * 0.9, s * 0.65], fill=PALETTE[0], outline=INK, width=w)
    elif subject == "cup":
        d.rectangle([s * 0.3, s * 0.35, s * 0.65, s * 0.8], fill=PALETTE[1], outline=INK, width=w)
        d.arc([s * 0.55, s * 0.45, s * 0.8, s * 0.7], -90, 90, fill=INK, width=w)
    elif subject == "star":
        pts = []
        for k in range(10):
            r = s * (0.4 if k % 2 == 0 else 0.17)
            a = -math.pi / 2 + k * math.pi / 5
            pts.append((c + math.cos(a) * r, c + math.sin(a) * r))
        _poly(d, pts, PALETTE[4], w)
    elif subject == "cloud":
        for x0, y0, r in ((0.35, 0.5, 0.15), (0.5, 0.42, 0.18), (0.65, 0.5, 0.15)):
            d.ellipse([s * (x0 - r), s * (y0 - r), s * (x0 + r), s * (y0 + r)], fill=PALETTE[1], outline=INK, width=w)
    elif subject == "cat":
        _poly(d, [(s * 0.28, s * 0.4), (s * 0.33, s * 0.15), (s * 0.45, s * 0.33)], PALETTE[3], w)
        _poly(d, [(s * 0.72, s * 0.4), (s * 0.67, s * 0.15), (s * 0.55, s * 0.33)], PALETTE[3], w)
        d.ellipse([s * 0.25, s * 0.28, s * 0.75, s * 0.78], fill=PALETTE[3], outline=INK, width=w)
        for ex in (0.4, 0.6):
            d.ellipse([s * (ex - 0.04), s * 0.45, s * (ex + 0.04), s * 0.53], fill=INK)
    d.rectangle([0, 0, s - 1, s - 1], outline=INK, width=w)  # the style's ink frame
    return im


SUBJECTS = {
    "sun": "a sun with long rays", "house": "a small house with a red roof", "tree": "a round tree",
    "mountain": "two mountains", "fish": "a fish swimming", "flower": "a flower with six petals",
    "boat": "a sailing boat", "moon": "a crescent moon", "cup": "a cup of tea", "star": "a five-pointed star",
    "cloud": "a fluffy cloud", "cat": "a cat's face",
}


def make_dataset(out: Path, size: int = 256) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, (subject, caption) in enumerate(SUBJECTS.items()):
        path = out / f"{i:02d}_{subject}.png"
        draw(subject, size, seed=i).save(path)
        (out / f"{i:02d}_{subject}.txt").write_text(f"{caption}, flat hatched poster style\n", encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    args = ap.parse_args(argv)
    files = make_dataset(args.out_dir, args.size)
    print(f"wrote {len(files)} images with captions to {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
