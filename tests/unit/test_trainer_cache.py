"""The latent/text cache: content-hash keys, reuse across runs, encoders loaded only on a miss."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from tests.unit.test_trainer_fixtures import make_images  # noqa: E402
from zlt.trainer.cache import DiskCache, PipelineEncoder, prepare  # noqa: E402
from zlt.trainer.config import DataConfig  # noqa: E402
from zlt.trainer.data import scan  # noqa: E402


class CountingEncoder:
    """Deterministic fake encoder that counts its calls."""

    def __init__(self) -> None:
        self.images = 0
        self.texts = 0

    def encode_images(self, pixels):
        self.images += pixels.shape[0]
        b, _, h, w = pixels.shape
        return pixels.mean(1, keepdim=True).repeat(1, 16, 1, 1)[:, :, : h // 8, : w // 8].reshape(b, 16, h // 8, w // 8)

    def encode_texts(self, captions):
        self.texts += len(captions)
        return [torch.full((len(c) + 1, 16), float(len(c))) for c in captions]


def _run(items, cfg, cache, counter: dict, **kw):
    enc = CountingEncoder()

    def factory():
        counter["factory"] = counter.get("factory", 0) + 1
        return enc

    return prepare(items, cfg, 0, cache, factory, **kw), enc


def test_second_run_encodes_nothing(tmp_path: Path):
    make_images(tmp_path / "ds", n=4)
    cfg = DataConfig(path=str(tmp_path / "ds"), resolution=32, horizontal_flip=True, trigger="<z>")
    items = scan(cfg, 16)
    cache = DiskCache(tmp_path / "cache", "tiny:test")
    counter: dict = {}
    first, enc1 = _run(items, cfg, cache, counter, extra_texts=["<z> a sample prompt"])
    assert counter["factory"] == 1
    assert enc1.images == 8 and first.stats.latents_encoded == 8  # 4 images x (plain, mirrored)
    assert enc1.texts == 4 + 1 + 1  # captions, the empty caption (dropout), the sample prompt
    assert set(first.texts) >= {"", "<z> a sample prompt", items[0].caption}
    counter.clear()
    second, enc2 = _run(items, cfg, cache, counter, extra_texts=["<z> a sample prompt"])
    assert counter == {} and enc2.images == 0 and enc2.texts == 0  # encoders never even loaded
    assert second.stats.latents_cached == 8 and second.stats.texts_cached == 6
    for key, lat in first.latents.items():
        assert torch.equal(second.latents[key], lat)


def test_changed_image_or_caption_is_a_new_key(tmp_path: Path):
    make_images(tmp_path / "ds", n=3)
    cfg = DataConfig(path=str(tmp_path / "ds"), resolution=32)
    cache = DiskCache(tmp_path / "cache", "tiny:test")
    _run(scan(cfg, 16), cfg, cache, {})
    (tmp_path / "ds" / "img_01.txt").write_text("a brand new caption")
    from PIL import Image

    Image.new("RGB", (48, 48), (200, 10, 10)).save(tmp_path / "ds" / "img_02.png")  # new pixels, same name
    counter: dict = {}
    _, enc = _run(scan(cfg, 16), cfg, cache, counter)
    assert enc.images == 1 and enc.texts == 1
    other_model = DiskCache(tmp_path / "cache", "tiny:other")
    _, enc = _run(scan(cfg, 16), cfg, other_model, {})
    assert enc.images == 3  # another model never reads this model's latents


def test_text_cache_can_stay_in_memory(tmp_path: Path):
    make_images(tmp_path / "ds", n=2)
    cfg = DataConfig(path=str(tmp_path / "ds"), resolution=32)
    cache = DiskCache(tmp_path / "cache", "tiny:test")
    _run(scan(cfg, 16), cfg, cache, {}, persist_texts=False)
    assert not (tmp_path / "cache" / "text").exists()
    _, enc = _run(scan(cfg, 16), cfg, cache, {}, persist_texts=False)
    assert enc.images == 0 and enc.texts == 3


def test_torn_cache_file_is_re_encoded(tmp_path: Path):
    make_images(tmp_path / "ds", n=1)
    cfg = DataConfig(path=str(tmp_path / "ds"), resolution=32)
    cache = DiskCache(tmp_path / "cache", "tiny:test")
    _run(scan(cfg, 16), cfg, cache, {})
    for f in (tmp_path / "cache" / "latents").rglob("*.safetensors"):
        f.write_bytes(b"\x00" * 10)
    _, enc = _run(scan(cfg, 16), cfg, cache, {})
    assert enc.images == 1


def test_pipeline_encoder_matches_the_pipeline(tmp_path: Path):
    from zlt.trainer.tiny import build_tiny_pipeline

    pipe = build_tiny_pipeline()
    enc = PipelineEncoder(pipe, torch.device("cpu"))
    [emb] = enc.encode_texts(["<z> a cat"])
    ref = pipe.encode_prompt("<z> a cat", do_classifier_free_guidance=False)[0][0]
    assert torch.equal(emb, ref.float())
    lat = enc.encode_images(torch.zeros(1, 3, 32, 48))
    assert lat.shape == (1, 16, 4, 6)
    raw = pipe.vae.encode(torch.zeros(1, 3, 32, 48)).latent_dist.mean
    assert torch.allclose(lat, (raw - pipe.vae.config.shift_factor) * pipe.vae.config.scaling_factor)
