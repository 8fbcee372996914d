"""What the evaluation while training (zlt.flows.live_eval) leaves behind: its rows, kept in
<job>/eval_live/rows.json, and what the evaluation after training may reuse of them.

Pure data: `zlt eval` (zlt.eval.evaluate) reads a `LivePrior` to skip the checkpoints already scored, the
collector keeps the checkpoints `preserved` names.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zlt.eval.early_stop import StopDecision

LIVE_DIR = "eval_live"
ROWS_FILE = "rows.json"
SCHEMA = "zlt.eval_live/1"


def fingerprint(clip: str, prompts: list[str], seeds: list[int], settings: dict[str, Any], train_dir: Path,
                n_train: int) -> str:
    """What makes two scorings of one checkpoint the same measurement."""
    doc = {"clip": clip, "prompts": prompts, "seeds": seeds, "settings": settings, "train_dir": str(train_dir),
           "n_train": n_train}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def file_stamp(path: Path) -> dict[str, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


@dataclass
class LivePrior:
    """Rows scored while training, for `evaluate_artifact` to reuse."""

    fingerprint: str
    rows: list[dict[str, Any]]
    summary: dict[str, Any] | None = None  # LiveState.summary(): every, evaluated steps, the early-stop verdict
    train_emb: Any = None  # the training images' embeddings, already computed with the same model

    def base_row(self, fp: str) -> dict[str, Any] | None:
        if fp != self.fingerprint:
            return None
        return next((r for r in self.rows if r.get("base")), None)

    def row_for(self, fp: str, step: int, source: str | None) -> dict[str, Any] | None:
        """The row of `step`, when it was the same measurement of the same file: size and mtime equal (a hard link
        zlt kept of a checkpoint the trainer rotated out shares both with it)."""
        if fp != self.fingerprint or not source:
            return None
        stamp = file_stamp(Path(source))
        for r in self.rows:
            if not r.get("base") and r.get("step") == step and stamp is not None and stamp == r.get("source_stamp"):
                return r
        return None


@dataclass
class LiveState:
    """What the evaluation while training leaves for the runner when it is closed."""

    every: int
    fingerprint: str | None
    rows: list[dict[str, Any]]
    decision: StopDecision | None
    failed: str | None
    best_step: int | None = None
    scorer: Any = None  # loaded metric model, handed to the evaluation after training
    cache: Any = None  # loaded pipeline (PipelineCache), likewise
    train_emb: Any = None  # the training images through that model, likewise

    def prior(self) -> LivePrior | None:
        if self.fingerprint is None or not self.rows:
            return None
        return LivePrior(self.fingerprint, self.rows, self.summary(), self.train_emb)

    def summary(self) -> dict[str, Any]:
        """What result.json and training_meta.json record; `best_step` (the best-checkpoint rule of `zlt eval` on
        the rows so far) is kept by the collector even when it falls out of output.save.keep."""
        return {"every": self.every, "evaluated_steps": [r["step"] for r in self.rows if not r.get("base")],
                "best_step": self.best_step, "early_stop": self.decision.to_dict() if self.decision else None,
                "failed": self.failed}

    def release(self) -> None:
        """Free the pipeline and the metric model (the GPU goes back to whoever needs it next)."""
        if self.cache is not None:
            self.cache.clear()
        self.cache = self.scorer = self.train_emb = None
        try:
            import torch  # lazy: pulls torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass


def preserved(rows: list[dict[str, Any]]) -> list[tuple[int, Path]]:
    """Checkpoints zlt holds a link to (the best one scored so far): (step, path) for the collector."""
    return [(int(r["step"]), Path(r["source"])) for r in rows
            if not r.get("base") and r.get("preserved") and Path(str(r["source"])).is_file()]
