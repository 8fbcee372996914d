"""Image factory for the dataset tests (healthy and broken files made with Pillow), and tests that each
broken file really is broken the way its name says, so the dataset tests test what they claim."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def pattern(size: tuple[int, int], seed: int) -> Image.Image:
    """A distinct picture per seed (coloured ellipses on a background), so no two seeds look alike to
    pHash, while resized or re-encoded copies of one seed do."""
    from PIL import ImageDraw

    rng = np.random.default_rng(seed)
    w, h = size

    def colour() -> tuple[int, int, int]:
        r, g, b = (int(v) for v in rng.integers(0, 256, 3))
        return r, g, b

    im = Image.new("RGB", size, colour())
    draw = ImageDraw.Draw(im)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        ew, eh = (int(v) for v in rng.integers(max(2, w // 24), max(3, w // 2), 2))
        draw.ellipse([x0, y0, x0 + ew, y0 + eh], fill=colour())
    return im


def photo(path: Path, size: tuple[int, int] = (640, 480), seed: int = 0, **save) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pattern(size, seed).save(path, **save)
    return path


def truncated_jpeg(path: Path, seed: int = 1) -> Path:
    buf = io.BytesIO()
    pattern((512, 512), seed).save(buf, "JPEG", quality=90)
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path


def corrupt_png(path: Path, seed: int = 2) -> Path:
    """A PNG with one flipped byte inside its IDAT data: the chunk CRC no longer matches."""
    buf = io.BytesIO()
    pattern((64, 64), seed).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    idat = data.index(b"IDAT")
    data[idat + 10] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def zero_byte(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_bomb(path: Path, width: int = 100_000, height: int = 100_000) -> Path:
    """A tiny PNG whose header claims a huge canvas (10 gigapixels by default)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))
    return path


def cmyk_jpeg(path: Path, seed: int = 3) -> Path:
    pattern((320, 240), seed).convert("CMYK").save(path, "JPEG", quality=90)
    return path


def gray16_png(path: Path, size: tuple[int, int] = (256, 192)) -> Path:
    """16-bit grayscale gradient 0..65535 (mid-grey at the centre): a plain convert('RGB') turns it white."""
    w, h = size
    ramp = np.tile(np.linspace(0, 65535, w, dtype=np.float64), (h, 1)).astype(np.uint16)
    Image.fromarray(ramp).save(path, "PNG")
    return path


def rgb16_png(path: Path, size: tuple[int, int] = (64, 48)) -> Path:
    """48-bit RGB PNG, written by hand (Pillow cannot write it)."""
    w, h = size
    row = np.tile(np.array([40000, 20000, 1000], dtype=">u2"), w).tobytes()
    raw = b"".join(b"\x00" + row for _ in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b""))
    return path


def exif_rotated_jpeg(path: Path, size: tuple[int, int] = (600, 400), orientation: int = 6, seed: int = 4) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    pattern(size, seed).save(path, "JPEG", quality=90, exif=exif.tobytes())
    return path


def rgba_png(path: Path, size: tuple[int, int] = (300, 200), transparent: bool = True, seed: int = 5) -> Path:
    im = pattern(size, seed).convert("RGBA")
    if transparent:
        alpha = Image.new("L", size, 255)
        alpha.paste(0, (0, 0, size[0] // 2, size[1]))
        im.putalpha(alpha)
    im.save(path, "PNG")
    return path


# --- the factory makes what it says ---


def test_truncated_jpeg_fails_only_on_full_decode(tmp_path: Path) -> None:
    p = truncated_jpeg(tmp_path / "t.jpg")
    Image.open(p).verify()  # the header is fine
    with pytest.raises(OSError, match="truncated"):
        Image.open(p).load()


def test_corrupt_png_fails_verify(tmp_path: Path) -> None:
    p = corrupt_png(tmp_path / "c.png")
    with pytest.raises(SyntaxError):
        Image.open(p).verify()


def test_png_bomb_is_refused_by_pillow(tmp_path: Path) -> None:
    with pytest.raises(Image.DecompressionBombError):
        Image.open(png_bomb(tmp_path / "b.png"))


def test_special_modes(tmp_path: Path) -> None:
    assert Image.open(cmyk_jpeg(tmp_path / "c.jpg")).mode == "CMYK"
    g = Image.open(gray16_png(tmp_path / "g.png"))
    assert g.mode.startswith("I;16") and g.getextrema()[1] == 65535
    assert Image.open(rgb16_png(tmp_path / "r.png")).png.im_rawmode == "RGB;16B"
    assert Image.open(exif_rotated_jpeg(tmp_path / "e.jpg")).getexif()[0x0112] == 6
    assert Image.open(rgba_png(tmp_path / "a.png")).getchannel("A").getextrema() == (0, 255)


def test_patterns_differ_by_seed() -> None:
    import imagehash

    hashes = [imagehash.phash(pattern((256, 256), s)) for s in range(20)]
    assert min(a - b for i, a in enumerate(hashes) for b in hashes[i + 1:]) > 8


def clean_dataset(root: Path, n: int = 3, size: tuple[int, int] = (640, 480)) -> Path:
    """n distinct JPEGs with sidecar captions: nothing to report but the image count and resolution."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        photo(root / f"img_{i:02d}.jpg", size, seed=100 + i, quality=92)
        (root / f"img_{i:02d}.txt").write_text(f"a painting of scene {i}", encoding="utf-8")
    return root


def mixed_dataset(root: Path) -> Path:
    """One of every problem `zlt dataset check` reports in a folder (see test_dataset_check)."""
    (root / "sub").mkdir(parents=True)
    photo(root / "red_fox_in-snow_001.jpg", (1200, 900), seed=10, quality=90)
    photo(root / "IMG_1234.jpg", (1100, 800), seed=11, quality=90)
    photo(root / "cat.png", (800, 600), seed=12)
    (root / "cat.txt").write_text("a cat sitting, [trigger] style", encoding="utf-8")
    photo(root / "dog.webp", (1300, 700), seed=13)
    (root / "dog.txt").write_bytes("un chien à la plage".encode("latin-1"))
    (root / "orphan.txt").write_text("nobody has this caption", encoding="utf-8")
    truncated_jpeg(root / "broken.jpg")
    zero_byte(root / "empty.png")
    png_bomb(root / "bomb.png")
    corrupt_png(root / "crc.png")
    cmyk_jpeg(root / "cmyk.jpg")
    gray16_png(root / "gray16.png")
    exif_rotated_jpeg(root / "sub" / "rot.jpg")
    rgba_png(root / "sub" / "alpha.png")
    (root / "sub" / "cat_copy.png").write_bytes((root / "cat.png").read_bytes())
    pattern((1200, 900), 10).resize((600, 450), Image.Resampling.LANCZOS).save(root / "sub" / "fox_small.jpg", quality=80)
    (root / "notes.md").write_text("not an image", encoding="utf-8")
    (root / ".DS_Store").write_bytes(b"\x00")
    photo(root / "anim.gif", (64, 64), seed=3)
    (root / "link.jpg").symlink_to(photo(root.parent / "outside.jpg", (64, 64), seed=20))
    return root
