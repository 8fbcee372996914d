"""Reading one image: validate it (verify, then a real decode), describe it, convert it to clean RGB.

Pillow is imported inside the functions: `import zlt.dataset` stays cheap for the CLI.
Everything here works on one file and returns plain data, so it runs unchanged in a worker process.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

# What trainers read (ai-toolkit, musubi, the built-in trainer) and what zlt accepts.
SUPPORTED_EXTS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp"})
SUPPORTED_FORMATS: frozenset[str] = frozenset({"PNG", "JPEG", "WEBP", "BMP", "MPO"})  # MPO: JPEG with extra frames
# The only decoders Pillow may try on a user's file (`Image.open(formats=...)`): whatever its name says, an EPS
# never reaches Ghostscript, nor a TIFF, PSD or any other plugin. "JPEG" also opens MPO (JPEG with extra frames).
# Datasets keep BMP (trainers read it; Pillow's own simple decoder); images given to generation take only these:
USER_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP")
DATASET_FORMATS: tuple[str, ...] = (*USER_FORMATS, "BMP")
# Image files people drop into dataset folders that trainers do not read.
UNSUPPORTED_EXTS: frozenset[str] = frozenset({
    ".gif", ".tif", ".tiff", ".heic", ".heif", ".avif", ".jxl", ".psd", ".svg", ".ico", ".jp2", ".tga",
    ".exr", ".hdr", ".raw", ".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf", ".rw2",
})
# A decoded image above this many pixels is treated as a decompression bomb and never decoded.
MAX_PIXELS = 128_000_000
# Pillow's own guard behind zlt's header checks (which come first, with clearer messages): Pillow warns above this
# and refuses above twice this, whatever a library imported later set it to.
PILLOW_MAX_IMAGE_PIXELS = MAX_PIXELS
# A 32x32 thumbnail spanning fewer grey levels than this is flat: no perceptual hash.
FLAT_RANGE = 8
# Modes that convert to RGB losslessly; others are flagged (CMYK shifts colours, 16-bit clips when naive).
PLAIN_MODES: frozenset[str] = frozenset({"RGB", "RGBA", "L", "LA", "P", "PA", "1"})
SIXTEEN_BIT_MODES: frozenset[str] = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})
ALPHA_MODES: frozenset[str] = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
# Pillow warnings that say nothing about the file's health.
_QUIET_WARNINGS = ("Palette images with Transparency",)


@dataclass
class ImageProbe:
    """What one image file is, as read by Pillow. `error` is set when it cannot be used."""

    bytes: int
    sha256: str = ""
    format: str | None = None
    width: int = 0  # after EXIF rotation
    height: int = 0
    mode: str | None = None
    bit_depth: int = 8
    exif_orientation: int = 1
    has_alpha: bool = False
    alpha_used: bool = False  # some pixel is not fully opaque
    frames: int = 1
    phash: str | None = None
    error: str | None = None  # 'zero_byte' | 'corrupt' | 'truncated' | 'decompression_bomb' | 'unreadable'
    error_detail: str = ""
    decoder_warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _classify_decode_error(exc: BaseException) -> str:
    text = str(exc).lower()
    if "truncated" in text or isinstance(exc, EOFError) or "premature end" in text:
        return "truncated"
    return "corrupt"


def _bit_depth(im: Any) -> int:
    if im.mode in SIXTEEN_BIT_MODES:
        return 32 if im.mode in ("I", "F") else 16
    png = getattr(im, "png", None)
    rawmode = getattr(png, "im_rawmode", "") or ""
    return 16 if rawmode.endswith(";16B") or rawmode.endswith(";16") else 8


def _alpha_used(im: Any) -> bool:
    if im.mode in ALPHA_MODES:
        lo, _hi = im.getchannel("A").getextrema()
        return lo < 255
    if "transparency" in im.info:
        lo, _hi = im.convert("RGBA").getchannel("A").getextrema()
        return lo < 255
    return False


def _orientation(im: Any) -> int:
    try:
        value = im.getexif().get(0x0112, 1)
        return int(value) if value in range(1, 9) else 1
    except Exception:  # a broken EXIF block is not a broken image
        return 1


def perceptual_hash(im: Any, orientation: int = 1) -> str | None:
    """64-bit pHash (imagehash) of a decoded image, computed the same way by check and prepare.

    The image is shrunk first (box reduce, then 32x32) so hashing a 4 MP photo costs little; the EXIF
    rotation is applied to the 32x32 thumbnail, which gives the same hash as rotating the full image.
    None for a flat image: its hash bits are noise, and would match other flat images by chance.
    """
    import imagehash
    from PIL import Image

    small = im
    factor = min(im.width, im.height) // 128
    if factor >= 2:
        small = im.reduce(factor)
    if small.mode not in ("L", "RGB"):
        small = to_rgb(small)
    small = small.convert("L").resize((32, 32), Image.Resampling.LANCZOS)
    lo, hi = small.getextrema()
    if hi - lo < FLAT_RANGE:
        return None
    if orientation != 1:
        small = apply_orientation(small, orientation)
    return str(imagehash.phash(small))


def apply_orientation(im: Any, orientation: int) -> Any:
    from PIL import Image

    method = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }.get(orientation)
    return im.transpose(method) if method is not None else im


def open_user_image(source: Any, formats: tuple[str, ...]) -> Any:
    """`PIL.Image.open` for a file a user gave: only `formats` are tried, under Pillow's bomb guard. Lazy: reads
    the header only, so `.size` is known before anything is decoded. UnidentifiedImageError for any other format."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = PILLOW_MAX_IMAGE_PIXELS
    return Image.open(source, formats=formats)


def sniff_format(head: bytes) -> str | None:
    """Which format some other Pillow plugin would claim the file is, from its first 16 bytes only (each plugin's
    prefix test; nothing is opened or decoded): for a clearer refusal ('an EPS file') than 'not an image'."""
    from PIL import Image

    Image.init()
    for fmt, (_factory, accept) in list(Image.OPEN.items()):
        try:
            if accept and accept(head[:16]):
                return fmt
        except Exception:  # a plugin's prefix test that dislikes short input says nothing
            continue
    return None


def formats_text(formats: tuple[str, ...]) -> str:
    """("PNG", "JPEG", "WEBP") -> 'PNG, JPEG or WebP'."""
    names = [{"WEBP": "WebP"}.get(f, f) for f in formats]
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


def decode(data: bytes, max_pixels: int = MAX_PIXELS, sha256: str | None = None) -> tuple[ImageProbe, Any]:
    """Validate and decode image bytes: `verify()` (PNG CRCs, structure), then a full decode.

    Returns the probe and the decoded (not yet rotated or converted) image, or None when it is unusable.
    """
    from PIL import Image, UnidentifiedImageError

    probe = ImageProbe(bytes=len(data), sha256=sha256 or hashlib.sha256(data).hexdigest())
    if not data:
        probe.error, probe.error_detail = "zero_byte", "the file is empty (0 bytes)"
        return probe, None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = open_user_image(io.BytesIO(data), DATASET_FORMATS)
            probe.format = im.format
            w, h = im.size
            if w * h > max_pixels:
                probe.error = "decompression_bomb"
                probe.error_detail = f"header claims {w}x{h} = {w * h / 1e6:.0f} MP, above the {max_pixels / 1e6:.0f} MP cap"
                return probe, None
            im.verify()
            im = open_user_image(io.BytesIO(data), DATASET_FORMATS)
            probe.bit_depth = _bit_depth(im)  # from the PNG header; gone after load()
            im.load()
        except Image.DecompressionBombError as e:
            probe.error, probe.error_detail = "decompression_bomb", f"Pillow refused to open it: {e}"
            return probe, None
        except UnidentifiedImageError:
            other = sniff_format(data)
            probe.error, probe.error_detail = "corrupt", "Pillow cannot identify the image format"
            if other:  # a format zlt never decodes (EPS would run Ghostscript): say which, not "corrupt" alone
                probe.error_detail = (f"an image in {other} format: zlt opens only {formats_text(DATASET_FORMATS)} "
                                      "(convert it to PNG)")
            return probe, None
        except Exception as e:  # Pillow raises many types on broken data (OSError, SyntaxError, struct.error...)
            probe.error, probe.error_detail = _classify_decode_error(e), f"{type(e).__name__}: {e}"
            return probe, None
    probe.decoder_warnings = sorted({
        str(w.message) for w in caught if not any(str(w.message).startswith(q) for q in _QUIET_WARNINGS)
    })
    probe.mode = im.mode
    probe.exif_orientation = _orientation(im)
    swap = probe.exif_orientation in (5, 6, 7, 8)
    probe.width, probe.height = (im.height, im.width) if swap else (im.width, im.height)
    probe.has_alpha = im.mode in ALPHA_MODES or "transparency" in im.info
    probe.alpha_used = probe.has_alpha and _alpha_used(im)
    probe.frames = int(getattr(im, "n_frames", 1) or 1)
    probe.phash = perceptual_hash(im, probe.exif_orientation)
    return probe, im


def to_rgb(im: Any) -> Any:
    """Clean 8-bit RGB: 16-bit scaled (not clipped, as a plain convert does), alpha composited on white."""
    from PIL import Image

    if im.mode == "RGB":
        return im
    if im.mode in SIXTEEN_BIT_MODES:
        if im.mode == "F":
            lo, hi = im.getextrema()
            scale = 255.0 / (hi - lo) if hi > lo else 0.0
            return im.point(lambda v: (v - lo) * scale).convert("L").convert("RGB")
        return im.convert("I").point(lambda v: v * (1 / 257)).convert("L").convert("RGB")
    if im.mode in ALPHA_MODES or (im.mode in ("P", "L", "RGB") and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def fit_size(width: int, height: int, resolution: int, upscale: bool) -> tuple[int, int]:
    """Longest edge -> resolution; never larger than the source unless `upscale`."""
    longest = max(width, height)
    if longest <= resolution and not upscale:
        return width, height
    scale = resolution / longest
    if width >= height:
        return resolution, max(1, round(height * scale))
    return max(1, round(width * scale)), resolution


def bucket_crop_box(width: int, height: int, step: int) -> tuple[int, int, int, int]:
    """Centered box whose sides are multiples of `step` (a trainer's bucket grid); sides below `step` stay."""
    new_w = width - width % step if width >= step else width
    new_h = height - height % step if height >= step else height
    left, top = (width - new_w) // 2, (height - new_h) // 2
    return left, top, left + new_w, top + new_h


def bucket_step(resolution: int) -> int:
    """ai-toolkit buckets on a 64 px grid (musubi on 16, which 64 also satisfies); tiny test sizes use 16."""
    return 64 if resolution >= 256 else 16
