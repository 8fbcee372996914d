"""Where a trainer lives (`TrainerLocation`) and the environment its process starts with.

The checkout and its interpreter come from `zlt.preflight.install.locate` (one rule for
preflight and runner): `--ai-toolkit PATH` / `--musubi PATH`, else `ZLT_AI_TOOLKIT` / `ZLT_MUSUBI`,
else the user config; the interpreter is `ZLT_AI_TOOLKIT_PYTHON` / `ZLT_MUSUBI_PYTHON` (or the
config's `*_python`), else `<checkout>/venv/bin/python`, else `<checkout>/.venv/bin/python`, else
the interpreter running zlt.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class TrainerLocation:
    backend: str
    root: Path | None  # the checkout; None for the built-in trainer
    python: str
    source: str | None  # where the checkout came from, for messages
    commit: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "root": str(self.root) if self.root else None, "python": self.python,
                "source": self.source, "commit": self.commit}


def child_env(gpus: list[int] | None = None, base: dict[str, str] | None = None) -> dict[str, str]:
    """The trainer's environment: ours, unbuffered output, UTF-8 streams, the GPUs it may use."""
    env = dict(os.environ if base is None else base)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("PYTHONIOENCODING", "utf-8")
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpus)
    return env
