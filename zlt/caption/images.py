"""Reading the images to caption: safely (the dataset's format list and pixel cap; EXIF rotation; clean RGB) and
ahead of the model (a reader thread decodes the next batches while the model captions this one)."""

from __future__ import annotations

import hashlib
import io
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from zlt.dataset.images import (
    DATASET_FORMATS,
    MAX_PIXELS,
    apply_orientation,
    formats_text,
    open_user_image,
    to_rgb,
)

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Read:
    """One image file, read: its content sha256 and RGB picture, or why it cannot be used."""

    sha256: str = ""
    image: Any = None
    reason: str | None = None  # zero_byte | too_large | corrupt | unreadable
    detail: str = ""


def read_image(path: Path) -> Read:
    """Read and decode one image the way the dataset does (only its formats, under the pixel cap), for a captioner:
    no perceptual hash, no second verify pass; a file Pillow cannot decode in full is refused."""
    try:
        data = path.read_bytes()
    except OSError as e:
        return Read(reason="unreadable", detail=str(e.strerror or e))
    sha = hashlib.sha256(data).hexdigest()
    if not data:
        return Read(sha, reason="zero_byte", detail="the file is empty (0 bytes)")
    try:
        im = open_user_image(io.BytesIO(data), DATASET_FORMATS)
        w, h = im.size
        if w * h > MAX_PIXELS:
            return Read(sha, reason="too_large", detail=f"{w}x{h} is above the {MAX_PIXELS / 1e6:.0f} MP cap")
        im.load()
        orientation = int(im.getexif().get(0x0112, 1) or 1)
        return Read(sha, to_rgb(apply_orientation(im, orientation)))
    except Exception as e:  # Pillow raises many types on broken data (OSError, SyntaxError, struct.error...)
        if type(e).__name__ == "UnidentifiedImageError":
            return Read(sha, reason="corrupt", detail=f"not a {formats_text(DATASET_FORMATS)} image")
        return Read(sha, reason="corrupt", detail=f"{type(e).__name__}: {e}")


def read_ahead(items: Iterable[T], fn: Callable[[T], R], ahead: int) -> Iterator[tuple[T, R]]:
    """(item, fn(item)) in order, `fn` running in one reader thread up to `ahead` items in front of the consumer."""
    it = iter(items)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="zlt-caption-read") as pool:
        queue: deque[tuple[T, Any]] = deque()

        def top_up() -> None:
            while len(queue) < max(ahead, 1):
                item = next(it, None)
                if item is None:
                    return
                queue.append((item, pool.submit(fn, item)))

        top_up()
        while queue:
            item, fut = queue.popleft()
            top_up()
            yield item, fut.result()
