"""Buckets, captions, scanning and the deterministic epoch order of the built-in trainer."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_trainer_fixtures import make_images
from zlt.core.errors import BadInputError
from zlt.trainer.config import DataConfig
from zlt.trainer.data import (
    bucket_sizes,
    choose_bucket,
    ensure_trigger,
    epoch_batches,
    epoch_samples,
    load_pixels,
    needed_variants,
    read_caption,
    scan,
)


def test_buckets_keep_area_and_divisor():
    buckets = bucket_sizes(1024, 16)
    assert (1024, 1024) in buckets
    for w, h in buckets:
        assert w % 16 == 0 and h % 16 == 0
        assert 0.25 <= w / h <= 4
        assert 0.8 * 1024 * 1024 <= w * h <= 1024 * 1024
    assert (1024, 1024) == choose_bucket((3000, 3000), 1024, 16, upscale=False)
    w, h = choose_bucket((1920, 1080), 1024, 16, upscale=False)
    assert abs(w / h - 16 / 9) < 0.1 and w > h


def test_small_images_get_smaller_buckets_unless_upscale():
    assert choose_bucket((40, 40), 64, 16, upscale=False) == (32, 32)
    assert choose_bucket((40, 40), 64, 16, upscale=True) == (64, 64)


@pytest.mark.parametrize("caption,trigger,pos,expected", [
    ("a cat", "<z>", "prefix", "<z> a cat"),
    ("a cat", "<z>", "suffix", "a cat <z>"),
    ("a [trigger] cat", "<z>", "prefix", "a <z> cat"),
    ("<z> a cat", "<z>", "prefix", "<z> a cat"),  # already there: inserted once, never twice
    ("", "<z>", "prefix", "<z>"),
    ("a [trigger] cat", None, "prefix", "a  cat"),
])
def test_ensure_trigger(caption, trigger, pos, expected):
    assert ensure_trigger(caption, trigger, pos) == expected


def test_read_caption_strategies(tmp_path: Path):
    img = tmp_path / "red_barn-day.png"
    img.write_bytes(b"")
    cfg = DataConfig(path=str(tmp_path), trigger="<z>", default_caption="art")
    assert read_caption(img, cfg) == "<z> red barn day"  # no sidecar: the file name
    (tmp_path / "red_barn-day.txt").write_text("a barn\n")
    assert read_caption(img, cfg) == "<z> a barn"
    assert read_caption(img, cfg.model_copy(update={"caption_strategy": "filename"})) == "<z> red barn day"
    (tmp_path / "red_barn-day.txt").unlink()
    assert read_caption(img, cfg.model_copy(update={"caption_strategy": "txt"})) == "<z> art"


def test_scan_reads_images_and_reports_broken_ones(tmp_path: Path):
    make_images(tmp_path / "ds", n=3, size=(80, 40))
    items = scan(DataConfig(path=str(tmp_path / "ds"), resolution=32), 16)
    assert [i.path.name for i in items] == ["img_00.png", "img_01.png", "img_02.png"]
    assert items[0].caption == "a red square" and items[0].size == (80, 40)
    assert items[0].bucket[0] > items[0].bucket[1]
    assert len({i.sha256 for i in items}) == 3
    (tmp_path / "ds" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(BadInputError, match="broken.png"):
        scan(DataConfig(path=str(tmp_path / "ds"), resolution=32), 16)
    with pytest.raises(BadInputError, match="does not exist"):
        scan(DataConfig(path=str(tmp_path / "nope")), 16)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match="no images"):
        scan(DataConfig(path=str(tmp_path / "empty")), 16)


def test_load_pixels_fills_the_bucket(tmp_path: Path):
    make_images(tmp_path, n=1, size=(80, 40))
    item = scan(DataConfig(path=str(tmp_path), resolution=32), 16)[0]
    x = load_pixels(item, flip=False, jitter=-1, seed=0)
    assert tuple(x.shape) == (3, item.bucket[1], item.bucket[0])
    assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert (load_pixels(item, flip=True, jitter=-1, seed=0) == x.flip(-1)).all()
    j = load_pixels(item, flip=False, jitter=1, seed=0)
    assert not (j == x).all() and (j == load_pixels(item, flip=False, jitter=1, seed=0)).all()


def test_epoch_order_is_a_pure_function_of_seed_and_epoch(tmp_path: Path):
    make_images(tmp_path / "a", n=4, size=(48, 48))
    make_images(tmp_path / "b", n=3, size=(96, 32))
    for p in (tmp_path / "b").iterdir():
        p.rename(tmp_path / "a" / ("wide_" + p.name))
    cfg = DataConfig(path=str(tmp_path / "a"), resolution=32, repeats=2, horizontal_flip=True)
    items = scan(cfg, 16)
    b0 = epoch_batches(items, cfg, 3, seed=1, epoch=0)
    assert b0 == epoch_batches(items, cfg, 3, seed=1, epoch=0)
    assert b0 != epoch_batches(items, cfg, 3, seed=1, epoch=1)
    assert b0 != epoch_batches(items, cfg, 3, seed=2, epoch=0)
    flat = [s for b in b0 for s in b]
    assert sorted(flat, key=lambda s: (s.image, s.flip)) == sorted(epoch_samples(7, cfg), key=lambda s: (s.image, s.flip))
    for b in b0:
        assert len({items[s.image].bucket for s in b}) == 1  # a batch never mixes buckets
    assert len(flat) == 7 * 2 * 2


def test_jitter_variants_rotate_and_are_all_cached():
    cfg = DataConfig(path=".", color_jitter=True, color_jitter_variants=3, repeats=2, horizontal_flip=True)
    seen = {s.jitter for e in range(3) for s in epoch_samples(2, cfg, e)}
    assert seen == {0, 1, 2}
    assert set(needed_variants(cfg)) == {(f, j) for f in (False, True) for j in range(3)}
    assert needed_variants(DataConfig(path=".")) == [(False, -1)]
