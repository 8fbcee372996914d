"""What `submit` freezes into a job: the resolved spec and a cheap listing of the dataset folder.

The listing (relative path, size, mtime of every file) is hashed, not the image bytes, so submit stays
well under half a second; the full content manifest is written when the job prepares its dataset.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from zlt.core.errors import BadInputError

IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})


def dataset_listing(path: Path) -> dict[str, Any]:
    """`{"path", "files", "images", "bytes", "listing_sha256"}` of a dataset folder; BadInputError if unusable."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"dataset.path: {path} does not exist", hint="point dataset.path at your image folder")
    if not path.is_dir():
        raise BadInputError(f"dataset.path: {path} is not a folder", hint="point dataset.path at your image folder")
    entries: list[tuple[str, int, int]] = []
    try:
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in files:
                if name.startswith("."):
                    continue
                st = os.stat(os.path.join(root, name))
                rel = os.path.relpath(os.path.join(root, name), path)
                entries.append((rel, st.st_size, st.st_mtime_ns))
    except OSError as e:
        raise BadInputError(f"dataset.path: cannot read {path} ({e})", hint="check its permissions") from None
    entries.sort()
    images = sum(1 for rel, _, _ in entries if os.path.splitext(rel)[1].lower() in IMAGE_EXTS)
    if images == 0:
        raise BadInputError(
            f"dataset.path: no images in {path}",
            hint=f"add {', '.join(sorted(IMAGE_EXTS))} files (captions as .txt beside them)",
        )
    h = hashlib.sha256()
    for rel, size, mtime in entries:
        h.update(f"{rel}\0{size}\0{mtime}\n".encode())
    return {
        "path": str(path),
        "files": len(entries),
        "images": images,
        "bytes": sum(size for _, size, _ in entries),
        "listing_sha256": h.hexdigest(),
    }
