"""Files of a job folder the runner owns: log and output rotation, sample images.

Nothing is deleted: a re-run moves the previous `train.log` to `train.log.1` (and so on), and a fresh
(non-resume) re-run moves a previous `output/` with checkpoints to `output.1/`.
"""

from __future__ import annotations

import re
from pathlib import Path

LOG_NAME = "train.log"
SAMPLE_DIRS = ("samples", "sample")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
_SAMPLE_STEP = re.compile(r"(?:__|_)(\d{6,9})(?:_|\.)")


def rotate(path: Path, keep: int = 20) -> Path | None:
    """Move `path` to `path.1`, shifting older ones up; returns the new name of `path`, if it existed."""
    if not path.exists():
        return None
    n = 1
    while path.with_name(f"{path.name}.{n}").exists() and n < 10_000:
        n += 1
    for i in range(n, 1, -1):
        path.with_name(f"{path.name}.{i - 1}").rename(path.with_name(f"{path.name}.{i}"))
    target = path.with_name(f"{path.name}.1")
    path.rename(target)
    return target


def has_safetensors(folder: Path) -> bool:
    return folder.is_dir() and any(folder.rglob("*.safetensors"))


def sample_step(name: str) -> int | None:
    m = _SAMPLE_STEP.search(name)
    return int(m.group(1)) if m else None


def find_samples(output_dir: Path, seen: set[str]) -> list[Path]:
    """Sample images (ai-toolkit `samples/`, musubi `sample/`) not reported yet, oldest first."""
    found: list[Path] = []
    if not output_dir.is_dir():
        return found
    for folder in output_dir.rglob("*"):
        if folder.is_dir() and folder.name in SAMPLE_DIRS:
            for p in folder.iterdir():
                if p.suffix.lower() in IMAGE_SUFFIXES and str(p) not in seen:
                    found.append(p)
    found.sort(key=lambda p: (p.stat().st_mtime, p.name))
    return found
