"""Images in and out: checked input loading, sizes snapped to 16, PNGs carrying their parameters, contact sheets.

Inputs are checked from their header before any pixel is decoded: a 20000x20000 PNG of a few KB is refused by its
declared size, not after it filled the memory; a request's images are all checked (count, size, the per-request
pixel budget) before the first is decoded. Only PNG, JPEG and WebP are ever opened.
"""

from __future__ import annotations

import io
import json
import math
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from zlt.core.constants import TINY_MODEL
from zlt.core.errors import BadInputError
from zlt.dataset.images import USER_FORMATS, formats_text, open_user_image, sniff_format
from zlt.infer.params import MAX_IMAGES, MAX_SIDE
from zlt.trainer.tiny import TRANSFORMER_CONFIG

SNAP = 16  # Z-Image: VAE 8x down, then 2x2 patches
MAX_INPUT_SIDE = 16384
MAX_INPUT_PIXELS = 64_000_000  # an input must hold fewer pixels than this: 8000x8000 is refused, 7999x8000 is not
MAX_REQUEST_PIXELS = 128_000_000  # all input images of one request together (control maps included)
ACCEPTED = formats_text(USER_FORMATS)
# PNG text chunks every output carries (and `read_png_params` reads back).
TEXT_KEYS = ("prompt", "negative_prompt", "seed", "steps", "guidance", "scale", "artifact_id", "lora_sha256",
             "base_model", "width", "height", "mode", "strength", "input", "checkpoint")


DEFAULT_MAX_SIDE = 2048  # transfer inputs are scaled down to this longer side unless the request says otherwise


def snap16(n: float) -> int:
    """Down to a multiple of 16 (at least 16): a side never grows, so a drawn image never exceeds max_side."""
    return max(SNAP, int(n + 1e-6) // SNAP * SNAP)


def fit_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The input's size, scaled down (aspect kept) so its longer side is at most max_side, each side then snapped
    down to a multiple of 16 (96x72 -> 96x64)."""
    k = min(1.0, max_side / max(width, height))
    return snap16(width * k), snap16(height * k)


def resize_note(src: tuple[int, int], drawn: tuple[int, int], max_side: int) -> str | None:
    """Why an input was drawn at another size (None: it was not)."""
    if tuple(src) == tuple(drawn):
        return None
    k = min(1.0, max_side / max(src))
    why = [f"scaled down to the {max_side} px longer side"] if k < 1.0 else []
    if any(abs(n * k - d) > 1e-6 for n, d in zip(src, drawn, strict=True)):
        why.append("each side snapped down to a multiple of 16")
    return f"{src[0]}x{src[1]} drawn at {drawn[0]}x{drawn[1]}: " + ", ".join(why)


def drawable_side(base_name: str) -> int:
    """The largest image side the base model can draw. The tiny test model's position table (axes_lens 32 patches
    of 16 px) ends at 512 px; Z-Image's (512 patches) beyond the 4096 px any request may ask for."""
    if base_name == TINY_MODEL:
        return min(TRANSFORMER_CONFIG["axes_lens"][1:]) * SNAP
    return MAX_SIDE


Input = tuple[Path | bytes, str, str]  # an input image: (its file or bytes, its name in messages, the request field)


def _check_size(w: int, h: int, label: str, field_name: str) -> None:
    if w < 1 or h < 1:
        raise BadInputError(f"{field_name}: {label} is {w}x{h} pixels", hint="give a non-empty image")
    if max(w, h) > MAX_INPUT_SIDE or w * h >= MAX_INPUT_PIXELS:
        raise BadInputError(f"{field_name}: {label} declares {w}x{h} pixels ({w * h / 1e6:.1f} MP): too many pixels; "
                            f"an input must be at most {MAX_INPUT_SIDE} px a side and under "
                            f"{MAX_INPUT_PIXELS // 1_000_000} MP", hint="scale it down first")


def _head(source: Path | bytes) -> bytes:
    if isinstance(source, bytes):
        return source[:16]
    with open(source, "rb") as f:
        return f.read(16)


@contextmanager
def _opened(source: Path | bytes, label: str, field_name: str) -> Iterator[Any]:
    """The image opened by its header alone (only PNG, JPEG and WebP are tried: an EPS never reaches Ghostscript),
    its declared size checked before the caller decodes anything; every Pillow failure -> BadInputError."""
    from PIL import Image, UnidentifiedImageError  # lazy: pulls PIL

    if isinstance(source, (str, Path)):
        source = Path(source).expanduser()
        if not source.is_file():
            raise BadInputError(f"{field_name}: {label} does not exist", hint=f"give the path of a {ACCEPTED} file")
    try:
        with open_user_image(source if isinstance(source, Path) else io.BytesIO(source), USER_FORMATS) as im:
            _check_size(*im.size, label, field_name)
            yield im
    except BadInputError:
        raise
    except Image.DecompressionBombError:
        raise BadInputError(f"{field_name}: {label} declares too many pixels (decompression bomb)",
                            hint="scale it down first") from None
    except UnidentifiedImageError:
        other = sniff_format(_head(source))
        what = f"is an image in {other} format, which zlt does not open" if other else "is not an image PIL can read"
        raise BadInputError(f"{field_name}: {label} {what}", hint=f"give a {ACCEPTED} file") from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as e:
        raise BadInputError(f"{field_name}: {label} cannot be decoded ({e})", hint="the file may be cut short") from None


def input_size(source: Path | bytes, label: str, field_name: str = "transfer.images") -> tuple[int, int]:
    """An input's declared size, checked (format, caps, PNG chunk structure) without decoding a pixel."""
    with _opened(source, label, field_name) as im:
        size = im.size
        im.verify()  # PNG: chunk CRCs and a missing end (a cut-short file); reads bytes, inflates nothing
        return size


def check_inputs(inputs: list[Input]) -> list[tuple[int, int]]:
    """All of a request's input images checked from their headers before any is decoded: at most MAX_IMAGES per
    field, each under the per-image caps, and MAX_REQUEST_PIXELS for all of them together. Their sizes."""
    for field_name in dict.fromkeys(f for *_, f in inputs):
        n = sum(1 for *_, f in inputs if f == field_name)
        if n > MAX_IMAGES:
            raise BadInputError(f"{field_name}: {n} images; a request may hold at most {MAX_IMAGES}",
                                hint="split them over several requests")
    sizes = [input_size(*x) for x in inputs]
    total = sum(w * h for w, h in sizes)
    if total > MAX_REQUEST_PIXELS:
        raise BadInputError(f"{inputs[0][2]}: the {len(inputs)} input images hold {total / 1e6:.1f} MP together; "
                            f"a request may hold at most {MAX_REQUEST_PIXELS // 1_000_000} MP (the per-request "
                            "pixel budget)", hint="scale them down (outputs are at most max_side a side anyway), "
                            "or split them over several requests")
    return sizes


def open_input(source: Path | bytes, label: str, field_name: str = "transfer.images"):
    """A PIL RGB image from a file or bytes, decoded only after its header passed; BadInputError naming the field
    for anything that is not a sane PNG, JPEG or WebP image."""
    with _opened(source, label, field_name) as im:
        im.load()
        return im.convert("RGB")


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
    with open_user_image(path, ("PNG",)) as im:
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
