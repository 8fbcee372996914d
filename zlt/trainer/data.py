"""The dataset as the trainer sees it: images with captions, aspect-ratio buckets, and a deterministic order.

The order of every epoch is a pure function of (seed, epoch), so a resumed run sees exactly the batches an
uninterrupted run would have seen.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from pathlib import Path

from zlt.core.errors import BadInputError
from zlt.trainer.config import DataConfig

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
# The only decoders Pillow may try on a dataset file, whatever its name says (an EPS never reaches Ghostscript):
# zlt.dataset.images.DATASET_FORMATS, repeated here because the trainer child imports only zlt.core and itself.
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP")
MAX_ASPECT = 4.0


@dataclass(frozen=True)
class ImageItem:
    path: Path
    caption: str
    sha256: str
    size: tuple[int, int]  # original (width, height)
    bucket: tuple[int, int]  # training (width, height)


@dataclass(frozen=True)
class Sample:
    """One entry of an epoch: which image, mirrored or not, which colour variant (-1: none)."""

    image: int
    flip: bool
    jitter: int


def ensure_trigger(caption: str, trigger: str | None, position: str) -> str:
    """Insert the trigger once: '[trigger]' is replaced; a caption that already has it is left alone."""
    if not trigger:
        return caption.replace("[trigger]", "").strip()
    if "[trigger]" in caption:
        return caption.replace("[trigger]", trigger).strip()
    if trigger in caption:
        return caption
    if not caption:
        return trigger
    return f"{trigger} {caption}" if position == "prefix" else f"{caption} {trigger}"


def read_caption(image: Path, cfg: DataConfig) -> str:
    side = image.with_suffix("." + cfg.caption_ext)
    text = None
    if cfg.caption_strategy in ("txt", "filename_or_txt", "metadata") and side.is_file():
        text = side.read_text(encoding="utf-8").strip()
    if not text and cfg.caption_strategy in ("filename", "filename_or_txt"):
        text = image.stem.replace("_", " ").replace("-", " ").strip()
    return ensure_trigger(text or cfg.default_caption, cfg.trigger, cfg.trigger_position)


def bucket_sizes(resolution: int, divisor: int) -> list[tuple[int, int]]:
    """(w, h) with w*h close to resolution^2, both multiples of `divisor`, aspect within 1:4..4:1."""
    area = resolution * resolution
    out = set()
    w = divisor
    while w <= resolution * 2:
        h = max(divisor, int(area / w) // divisor * divisor)
        if 1 / MAX_ASPECT <= w / h <= MAX_ASPECT and h <= resolution * 2:
            out.add((w, h))
        w += divisor
    return sorted(out)


def choose_bucket(size: tuple[int, int], resolution: int, divisor: int, upscale: bool) -> tuple[int, int]:
    """The bucket closest in aspect ratio; without upscale, small images get a smaller bucket, never a larger one."""
    w, h = size
    res = resolution
    if not upscale and w * h < resolution * resolution:
        res = max(divisor, int(math.sqrt(w * h)) // divisor * divisor)
    target = math.log(w / h)
    return min(bucket_sizes(res, divisor), key=lambda b: (abs(math.log(b[0] / b[1]) - target), -b[0] * b[1]))


def scan(cfg: DataConfig, divisor: int) -> list[ImageItem]:
    """Every readable image in the folder (sorted by name); unreadable ones are reported, all at once."""
    from PIL import Image

    root = Path(cfg.path).expanduser()
    if not root.is_dir():
        raise BadInputError(f"dataset folder {root} does not exist", hint="check dataset.path or run 'zlt dataset prepare'")
    items, bad = [], []
    for p in sorted(q for q in root.iterdir() if q.suffix.lower() in IMAGE_EXTS and q.is_file()):
        data = p.read_bytes()
        try:
            with Image.open(p, formats=IMAGE_FORMATS) as im:
                im = _upright(im)
                size = im.size
        except Exception as e:  # PIL raises many types for broken files
            bad.append(f"{p.name}: {e}")
            continue
        bucket = choose_bucket(size, cfg.resolution, divisor, cfg.upscale)
        items.append(ImageItem(p, read_caption(p, cfg), hashlib.sha256(data).hexdigest(), size, bucket))
    if bad:
        raise BadInputError(f"{len(bad)} unreadable image(s) in {root}: " + "; ".join(bad[:5]), hint="remove or fix them")
    if not items:
        raise BadInputError(f"no images in {root}", hint=f"put {', '.join(IMAGE_EXTS)} files there")
    return items


def _upright(im):
    from PIL import ImageOps

    return ImageOps.exif_transpose(im)


def load_pixels(item: ImageItem, flip: bool, jitter: int, seed: int):
    """The image resized to cover its bucket, center-cropped, maybe mirrored/jittered: a (3, H, W) tensor in [-1, 1]."""
    import numpy as np
    import torch
    from PIL import Image, ImageEnhance

    bw, bh = item.bucket
    with Image.open(item.path, formats=IMAGE_FORMATS) as im:
        im = _upright(im).convert("RGB")
        scale = max(bw / im.width, bh / im.height)
        rw, rh = max(bw, round(im.width * scale)), max(bh, round(im.height * scale))
        im = im.resize((rw, rh), Image.Resampling.LANCZOS)
        left, top = (rw - bw) // 2, (rh - bh) // 2
        im = im.crop((left, top, left + bw, top + bh))
    if flip:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if jitter >= 0:
        rng = random.Random(f"{seed}:{item.sha256}:{jitter}")
        for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
            im = enhancer(im).enhance(rng.uniform(0.85, 1.15))
    arr = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def epoch_samples(n_images: int, cfg: DataConfig, epoch: int = 0) -> list[Sample]:
    """All samples of one epoch before shuffling: images x (flip variants) x repeats; jitter variants rotate
    with repeat and epoch so every cached variant gets used."""
    flips = (False, True) if cfg.horizontal_flip else (False,)
    out = []
    for r in range(cfg.repeats):
        for i in range(n_images):
            for f in flips:
                out.append(Sample(i, f, ((epoch * cfg.repeats + r) % cfg.color_jitter_variants) if cfg.color_jitter else -1))
    return out


def epoch_batches(items: list[ImageItem], cfg: DataConfig, batch_size: int, seed: int, epoch: int) -> list[list[Sample]]:
    """Batches of one epoch: shuffled by (seed, epoch), each batch from one bucket; leftovers form smaller batches."""
    samples = epoch_samples(len(items), cfg, epoch)
    if cfg.shuffle:
        random.Random(f"order:{seed}:{epoch}").shuffle(samples)
    pending: dict[tuple[int, int], list[Sample]] = {}
    batches: list[list[Sample]] = []
    for s in samples:
        q = pending.setdefault(items[s.image].bucket, [])
        q.append(s)
        if len(q) == batch_size:
            batches.append(q)
            pending[items[s.image].bucket] = []
    batches.extend(q for q in pending.values() if q)
    return batches


def needed_variants(cfg: DataConfig) -> list[tuple[bool, int]]:
    """(flip, jitter) pairs the cache must hold for every image."""
    flips = (False, True) if cfg.horizontal_flip else (False,)
    jitters = range(cfg.color_jitter_variants) if cfg.color_jitter else (-1,)
    return [(f, j) for f in flips for j in jitters]
