"""The run's one loss/speed series: every training progress the parser saw, unthrottled, one line per step.

`<job>/progress.jsonl` gets `{"step", "total", "loss", "lr", "it_s", "t", "attempt"}` (t: unix seconds when the
line was parsed; `loss_nonfinite: true` with a null loss for nan/inf). Redraws of one step are folded into the
last. Where the trainer writes its own per-step log (the built-in trainer's `loss_log.jsonl`, ai-toolkit's
`loss_log.db`) that log is preferred (`zlt.run.curve.load_curve`); this file is the fallback that every
backend has. The result summary, training_meta.json, loss.png and the CLI line all read the same curve.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

from zlt.core.events import Progress, finite_or_none, read_events
from zlt.run.curve import load_curve, summarize

SERIES_FILE = "progress.jsonl"


class SeriesWriter:
    def __init__(self, path: Path, attempt: int = 1, clock=time.time) -> None:
        self.path, self.attempt, self.clock = path, attempt, clock
        self._fh: IO[str] | None = None
        self._pending: dict | None = None

    def add(self, ev: Progress) -> None:
        row = {"step": ev.step, "total": ev.total, "loss": finite_or_none(ev.loss), "lr": finite_or_none(ev.lr),
               "it_s": finite_or_none(ev.it_s), "t": round(self.clock(), 3), "attempt": self.attempt}
        if ev.loss_nonfinite:
            row["loss_nonfinite"] = True
        if self._pending is not None and self._pending["step"] != ev.step:
            self._write(self._pending)
        self._pending = row

    def _write(self, row: dict) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")
        self._fh.write(json.dumps(row, allow_nan=False) + "\n")

    def close(self) -> None:
        if self._pending is not None:
            self._write(self._pending)
            self._pending = None
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def series_sink(series: SeriesWriter, loss_is_next_steps: bool = False) -> Callable[[Progress], None]:
    """What the interpreter calls with every training progress. `loss_is_next_steps`: the trainer sets a step's
    loss on its bar before moving the bar on (ai-toolkit's jobs/process/BaseSDTrainProcess.py: set_postfix_str, then
    update(step + 1 - n)), so the loss last drawn at n=k is step k+1's; musubi moves its bar first (update, then
    set_postfix). The backend says which (`Backend.loss_is_next_steps`)."""
    if not loss_is_next_steps:
        return series.add
    return lambda ev: series.add(replace(ev, step=min(ev.step + 1, ev.total)))


def summarize_run(job_dir: Path, output_roots: list[Path]) -> tuple[dict[str, Any], str | None]:
    """The run's one series summarised (first/final loss, average it/s, source): what the result, the CLI line,
    training_meta.json and loss.png share. Returns (summary, a problem to warn about or None)."""

    try:
        curve, _notes = load_curve(read_events(job_dir / "events.jsonl"), output_roots, job_dir)
    except (OSError, ValueError) as e:  # a summary must never hide the outcome it summarises
        return {}, f"loss summary unavailable: {e}"
    return summarize(curve), None
