"""One image: validation, description, conversion to clean RGB, sizing, perceptual hash."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from tests.unit.test_dataset_factory import (
    cmyk_jpeg,
    corrupt_png,
    exif_rotated_jpeg,
    gray16_png,
    pattern,
    png_bomb,
    rgb16_png,
    rgba_png,
    truncated_jpeg,
)
from zlt.dataset.images import bucket_crop_box, bucket_step, decode, fit_size, perceptual_hash, to_rgb


def _decode(path: Path, **kw):
    return decode(path.read_bytes(), **kw)


@pytest.mark.parametrize(("make", "code", "detail"), [
    (truncated_jpeg, "truncated", "image file is truncated"),
    (corrupt_png, "corrupt", "broken PNG file"),
    (png_bomb, "decompression_bomb", "10000000000 pixels"),
])
def test_broken_files(tmp_path: Path, make, code: str, detail: str) -> None:
    probe, im = _decode(make(tmp_path / "x"))
    assert (probe.ok, probe.error, im) == (False, code, None)
    assert detail in probe.error_detail


def test_zero_bytes_and_garbage() -> None:
    assert decode(b"")[0].error == "zero_byte"
    probe, _ = decode(b"hello, not an image")
    assert (probe.error, probe.error_detail) == ("corrupt", "Pillow cannot identify the image format")


def test_pixel_cap_stops_before_decoding(tmp_path: Path) -> None:
    probe, _ = _decode(png_bomb(tmp_path / "b.png", 12_000, 12_000))  # 144 MP: Pillow itself would open it
    assert probe.error == "decompression_bomb"
    assert probe.error_detail == "header claims 12000x12000 = 144 MP, above the 128 MP cap"
    probe, _ = decode(_png_bytes((100, 100)), max_pixels=5_000)
    assert probe.error == "decompression_bomb"


def _png_bytes(size, mode="RGB") -> bytes:
    buf = io.BytesIO()
    pattern(size, 1).convert(mode).save(buf, "PNG")
    return buf.getvalue()


def test_healthy_image_description(tmp_path: Path) -> None:
    probe, im = decode(_png_bytes((120, 80)))
    assert probe.ok and im is not None
    assert (probe.format, probe.mode, probe.width, probe.height, probe.bit_depth) == ("PNG", "RGB", 120, 80, 8)
    assert (probe.exif_orientation, probe.has_alpha, probe.alpha_used, probe.frames) == (1, False, False, 1)
    assert len(probe.sha256) == 64 and len(probe.phash or "") == 16


def test_exif_rotation_swaps_the_size_and_keeps_the_hash(tmp_path: Path) -> None:
    probe, _ = _decode(exif_rotated_jpeg(tmp_path / "r.jpg", (600, 400), orientation=6))
    assert (probe.exif_orientation, probe.width, probe.height) == (6, 400, 600)
    upright = pattern((600, 400), 4).transpose(Image.Transpose.ROTATE_270)
    buf = io.BytesIO()
    upright.save(buf, "JPEG", quality=90)
    straight, _ = decode(buf.getvalue())
    assert (int(probe.phash, 16) ^ int(straight.phash, 16)).bit_count() <= 2


def test_modes(tmp_path: Path) -> None:
    probe, im = _decode(cmyk_jpeg(tmp_path / "c.jpg"))
    assert probe.mode == "CMYK" and to_rgb(im).mode == "RGB"
    probe, _ = _decode(rgb16_png(tmp_path / "r16.png"))
    assert (probe.mode, probe.bit_depth) == ("RGB", 16)
    probe, im = _decode(rgba_png(tmp_path / "a.png"))
    assert probe.has_alpha and probe.alpha_used
    probe, _ = _decode(rgba_png(tmp_path / "o.png", transparent=False))
    assert probe.has_alpha and not probe.alpha_used


def test_sixteen_bit_gray_is_scaled_not_clipped(tmp_path: Path) -> None:
    probe, im = _decode(gray16_png(tmp_path / "g.png", (257, 10)))
    assert probe.mode.startswith("I;16") and probe.bit_depth == 16
    rgb = to_rgb(im)
    assert rgb.getpixel((0, 5)) == (0, 0, 0)
    assert rgb.getpixel((256, 5)) == (255, 255, 255)
    assert rgb.getpixel((128, 5))[0] in range(125, 131)  # mid-grey, where a plain convert gives 255
    assert im.convert("RGB").getpixel((128, 5)) == (255, 255, 255)


def test_transparency_is_composited_on_white(tmp_path: Path) -> None:
    _, im = _decode(rgba_png(tmp_path / "a.png", (40, 20)))
    rgb = to_rgb(im)
    assert rgb.mode == "RGB" and rgb.getpixel((5, 5)) == (255, 255, 255)  # the left half is transparent
    assert rgb.getpixel((35, 5)) == im.getpixel((35, 5))[:3]


def test_flat_image_has_no_perceptual_hash() -> None:
    assert perceptual_hash(Image.new("RGB", (200, 100), (40, 80, 120))) is None
    assert perceptual_hash(pattern((200, 100), 3)) is not None


@pytest.mark.parametrize(("size", "res", "upscale", "want"), [
    ((4000, 3000), 1024, False, (1024, 768)),
    ((3000, 4000), 1024, False, (768, 1024)),
    ((800, 600), 1024, False, (800, 600)),
    ((800, 600), 1024, True, (1024, 768)),
    ((1024, 1024), 1024, True, (1024, 1024)),
    ((5000, 10), 512, False, (512, 1)),
])
def test_fit_size(size, res, upscale, want) -> None:
    assert fit_size(*size, res, upscale) == want


def test_bucket_crop_box() -> None:
    assert bucket_step(1024) == 64 and bucket_step(512) == 64 and bucket_step(64) == 16
    assert bucket_crop_box(1024, 683, 64) == (0, 21, 1024, 661)
    assert bucket_crop_box(1024, 768, 64) == (0, 0, 1024, 768)
    assert bucket_crop_box(40, 100, 64) == (0, 18, 40, 82)  # a side below the step is left alone
