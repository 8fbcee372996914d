"""The pre-pass: VAE latents and caption embeddings, computed once and kept on disk as safetensors.

Keys are content hashes (image bytes, bucket, flip/jitter variant, caption text, model identity), so any run or
retry on the same data and model reuses them, and a changed image or caption is simply a new key. The encoders
are loaded only when something is missing, and freed by the caller right after.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from zlt.core.fsutil import atomic_write_bytes, sha256_json
from zlt.trainer.config import DataConfig
from zlt.trainer.data import ImageItem, load_pixels, needed_variants

CACHE_VERSION = 1
MAX_SEQUENCE_LENGTH = 512  # what ZImagePipeline uses by default
TEXT_BATCH = 8


class Encoder(Protocol):
    def encode_images(self, pixels: Any) -> Any:
        """(B, 3, H, W) in [-1, 1] -> (B, C, h, w) latents, already shifted and scaled."""

    def encode_texts(self, captions: list[str]) -> list[Any]:
        """captions -> one (seq_i, dim) embedding per caption."""


class PipelineEncoder:
    """Encodes exactly as ZImagePipeline does: chat template, hidden_states[-2], masked; latents shifted+scaled."""

    def __init__(self, pipe, device) -> None:
        self.pipe = pipe
        self.device = device
        pipe.vae.to(device)
        pipe.text_encoder.to(device)

    def encode_images(self, pixels):
        import torch

        vae = self.pipe.vae
        with torch.no_grad():
            dist = vae.encode(pixels.to(self.device, vae.dtype)).latent_dist
            lat = (dist.mean.float() - vae.config.shift_factor) * vae.config.scaling_factor
        return lat.cpu()

    def encode_texts(self, captions):
        import torch

        with torch.no_grad():
            embeds, _ = self.pipe.encode_prompt(
                list(captions), device=self.device, do_classifier_free_guidance=False,
                max_sequence_length=MAX_SEQUENCE_LENGTH,
            )
        return [e.float().cpu() for e in embeds]


@dataclass
class CacheStats:
    latents_encoded: int = 0
    latents_cached: int = 0
    texts_encoded: int = 0
    texts_cached: int = 0
    seconds: float = 0.0


@dataclass
class Prepared:
    """Everything training needs from the data, in memory (CPU)."""

    latents: dict[tuple[int, bool, int], Any] = field(default_factory=dict)  # (image, flip, jitter) -> (C, h, w)
    texts: dict[str, Any] = field(default_factory=dict)  # caption -> (seq, dim)
    stats: CacheStats = field(default_factory=CacheStats)


class DiskCache:
    def __init__(self, root: Path, identity: str, text_identity: str | None = None) -> None:
        self.root = Path(root).expanduser()
        self.identity = identity
        # a float8-stored text encoder gives slightly different embeddings: its own keys, the latents shared
        self.text_identity = text_identity or identity

    def latent_key(self, item: ImageItem, flip: bool, jitter: int, seed: int) -> str:
        jitter_seed = seed if jitter >= 0 else None  # jittered pixels depend on the seed, plain ones do not
        return sha256_json(["latent", CACHE_VERSION, self.identity, item.sha256, item.bucket, flip, jitter, jitter_seed])

    def text_key(self, caption: str) -> str:
        return sha256_json(["text", CACHE_VERSION, self.text_identity, MAX_SEQUENCE_LENGTH, caption])

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key[:2] / f"{key}.safetensors"

    def load(self, kind: str, key: str):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        p = self.path(kind, key)
        if not p.is_file():
            return None
        try:
            return load_file(str(p))["value"]
        except (SafetensorError, OSError, KeyError):
            return None  # a torn or foreign file is re-encoded

    def store(self, kind: str, key: str, tensor) -> None:
        from safetensors.torch import save

        atomic_write_bytes(self.path(kind, key), save({"value": tensor.contiguous()}, metadata={"identity": self.identity}))


def prepare(
    items: list[ImageItem],
    data: DataConfig,
    seed: int,
    cache: DiskCache,
    encoder_factory: Callable[[], Encoder],
    *,
    extra_texts: list[str] = (),
    persist_texts: bool = True,
    on_phase: Callable[[str, str], None] = lambda phase, msg: None,
) -> Prepared:
    """Fill `Prepared` from the cache, encoding (and storing) only what is missing."""
    t0 = time.monotonic()
    out = Prepared()
    encoder: Encoder | None = None

    def get_encoder() -> Encoder:
        nonlocal encoder
        if encoder is None:
            encoder = encoder_factory()
        return encoder

    missing = []
    for i, item in enumerate(items):
        for flip, jitter in needed_variants(data):
            key = cache.latent_key(item, flip, jitter, seed)
            lat = cache.load("latents", key)
            if lat is None:
                missing.append((i, flip, jitter, key))
            else:
                out.latents[(i, flip, jitter)] = lat
    out.stats.latents_cached = len(out.latents)
    on_phase("caching_latents", f"{len(missing)} to encode, {len(out.latents)} from cache")
    for i, flip, jitter, key in missing:
        pixels = load_pixels(items[i], flip, jitter, seed).unsqueeze(0)
        lat = get_encoder().encode_images(pixels)[0]
        cache.store("latents", key, lat)
        out.latents[(i, flip, jitter)] = lat
        out.stats.latents_encoded += 1

    captions = list(dict.fromkeys([it.caption for it in items] + [""] + list(extra_texts)))
    todo = []
    for cap in captions:
        emb = cache.load("text", cache.text_key(cap)) if persist_texts else None
        if emb is None:
            todo.append(cap)
        else:
            out.texts[cap] = emb
    out.stats.texts_cached = len(out.texts)
    on_phase("caching_text", f"{len(todo)} to encode, {len(out.texts)} from cache")
    for start in range(0, len(todo), TEXT_BATCH):
        chunk = todo[start:start + TEXT_BATCH]
        for cap, emb in zip(chunk, get_encoder().encode_texts(chunk), strict=True):
            if persist_texts:
                cache.store("text", cache.text_key(cap), emb)
            out.texts[cap] = emb
            out.stats.texts_encoded += 1
    out.stats.seconds = time.monotonic() - t0
    return out
