"""Images in and out: checked input loading, sizes snapped to 16, PNGs carrying their parameters, contact sheets.

Inputs are checked from their header before any pixel is decoded: a 20000x20000 PNG of a few KB is refused by its
declared size, not after it filled the memory.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

from zlt.core.errors import BadInputError

SNAP = 16  # Z-Image: VAE 8x down, then 2x2 patches
MAX_INPUT_SIDE = 16384
MAX_INPUT_PIXELS = 64_000_000
# PNG text chunks every output carries (and `read_png_params` reads back).
TEXT_KEYS = ("prompt", "negative_prompt", "seed", "steps", "guidance", "scale", "artifact_id", "lora_sha256",
             "base_model", "width", "height", "mode", "strength", "input", "checkpoint")


def snap16(n: float) -> int:
    return max(SNAP, int(round(n / SNAP)) * SNAP)


def fit_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The input's size, scaled down (aspect kept) so its longer side is at most max_side, snapped to 16."""
    k = min(1.0, max_side / max(width, height))
    return snap16(width * k), snap16(height * k)


def open_input(source: Path | bytes, label: str, field_name: str = "transfer.images"):
    """A PIL RGB image from a file or bytes; BadInputError naming the field for anything that is not a sane image."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        if not path.is_file():
            raise BadInputError(f"{field_name}: {label} does not exist", hint="give the path of a PNG, JPEG or WebP file")
        opener: Any = path
    else:
        opener = io.BytesIO(source)
    try:
        with Image.open(opener) as im:
            w, h = im.size
            if w < 1 or h < 1:
                raise BadInputError(f"{field_name}: {label} is {w}x{h} pixels", hint="give a non-empty image")
            if max(w, h) > MAX_INPUT_SIDE or w * h > MAX_INPUT_PIXELS:
                raise BadInputError(f"{field_name}: {label} declares {w}x{h} pixels; the limit is {MAX_INPUT_SIDE} "
                                    f"per side and {MAX_INPUT_PIXELS // 1_000_000} MP", hint="scale it down first")
            im.load()
            return im.convert("RGB")
    except BadInputError:
        raise
    except Image.DecompressionBombError:
        raise BadInputError(f"{field_name}: {label} declares too many pixels (decompression bomb)",
                            hint="scale it down first") from None
    except UnidentifiedImageError:
        raise BadInputError(f"{field_name}: {label} is not an image PIL can read",
                            hint="give a PNG, JPEG or WebP file") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise BadInputError(f"{field_name}: {label} cannot be decoded ({e})", hint="the file may be cut short") from None


def png_bytes(image, params: dict[str, Any]) -> bytes:
    """PNG with one text chunk per parameter plus `zlt` (all of them as JSON)."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key in TEXT_KEYS:
        if params.get(key) is not None:
            info.add_text(key, str(params[key]))
    info.add_text("zlt", json.dumps(params, sort_keys=True, default=str))
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def read_png_params(path: Path) -> dict[str, Any]:
    """The parameters a zlt PNG carries (its `zlt` chunk), or the plain text chunks of any other PNG."""
    from PIL import Image

    with Image.open(path) as im:
        text = dict(getattr(im, "text", {}) or {})
    if "zlt" in text:
        try:
            return json.loads(text["zlt"])
        except json.JSONDecodeError:
            pass
    return text


def contact_sheet(images: list, captions: list[str], *, cell: int = 256, columns: int | None = None, title: str = ""):
    """A grid of the images (longer side `cell`) with a caption under each and an optional title line on top."""
    import textwrap

    from PIL import Image, ImageDraw, ImageFont

    n = len(images)
    cols = columns or min(n, max(1, math.ceil(math.sqrt(n))))
    rows = math.ceil(n / cols)
    cell = min(cell, max(max(im.size) for im in images)) if images else cell
    cell = max(cell, 128)  # room for a caption under tiny test images
    font = ImageFont.load_default()
    line_h = 12
    cap_h = 3 * line_h + 6
    chars = max(8, cell // 6)
    title_lines = textwrap.wrap(title, max(16, cols * cell // 6)) if title else []
    top = len(title_lines) * line_h + (6 if title_lines else 0)
    sheet = Image.new("RGB", (cols * cell, top + rows * (cell + cap_h)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, line in enumerate(title_lines):
        draw.text((3, 3 + k * line_h), line, fill="black", font=font)
    for i, (im, cap) in enumerate(zip(images, captions, strict=True)):
        r, c = divmod(i, cols)
        k_up = cell // max(im.size)
        thumb = im.resize((im.width * k_up, im.height * k_up), Image.Resampling.NEAREST) if k_up > 1 else im.copy()
        thumb.thumbnail((cell, cell))
        x0, y0 = c * cell, top + r * (cell + cap_h)
        sheet.paste(thumb, (x0 + (cell - thumb.width) // 2, y0 + (cell - thumb.height) // 2))
        for k, line in enumerate(textwrap.wrap(cap, chars)[:3]):
            draw.text((x0 + 3, y0 + cell + 3 + k * line_h), line, fill="black", font=font)
    return sheet


def edge_map(image):
    """A canny-like edge map (PIL FIND_EDGES on the grey image) for a canny ControlNet when no map is given."""
    from PIL import ImageFilter, ImageOps

    return ImageOps.autocontrast(image.convert("L").filter(ImageFilter.FIND_EDGES)).convert("RGB")
