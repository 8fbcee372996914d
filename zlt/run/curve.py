"""The loss and learning-rate curve of a job, its summary, and `loss.png`.

One series per job, from the best source there is: the trainer's own per-step log (the built-in trainer's
`loss_log.jsonl`, ai-toolkit's `loss_log.db`: every step, full precision), else the runner's `progress.jsonl`
(every progress line the parser saw, unthrottled; any backend), else the throttled `events.jsonl` of older jobs.
The result summary, training_meta.json, loss.png and the CLI line all come from it. After a resumed retry a step
can appear twice; the later value wins because it belongs to the attempt that produced the weights.

`it_s` is the average training speed: steps over the time between the first and last logged step of each attempt
(model loading, caching and the gaps between attempts excluded).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_POINTS = 20_000
LOSS_KEYS = ("loss/loss", "loss")
LR_KEYS = ("learning_rate", "lr")


@dataclass
class Curve:
    source: str = "none"  # "loss_log.jsonl", "loss_log.db", "progress.jsonl", "events", or "none"
    steps: list[int] = field(default_factory=list)
    loss: list[float | None] = field(default_factory=list)
    lr: list[float | None] = field(default_factory=list)
    it_s: float | None = None  # average training speed (see average_rate)
    nonfinite_steps: list[int] = field(default_factory=list)  # steps whose logged loss was nan/inf

    def __len__(self) -> int:
        return len(self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "steps": self.steps, "loss": self.loss, "lr": self.lr,
                "nonfinite_steps": self.nonfinite_steps}


def _finite(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if x == x and abs(x) != float("inf") else None


def average_rate(points: list[tuple[int, float, Any]]) -> float | None:
    """Steps per second from (step, time, segment) points in log order: the sum of step and time differences
    within each segment (an attempt); a step or clock that goes back starts a new segment."""
    steps = seconds = 0.0
    for (s0, t0, g0), (s1, t1, g1) in zip(points, points[1:], strict=False):
        if g1 == g0 and s1 > s0 and t1 > t0:
            steps += s1 - s0
            seconds += t1 - t0
    return round(steps / seconds, 4) if seconds > 0 else None


def _from_rows(rows: list[dict[str, Any]], source: str) -> Curve:
    """Per-step rows `{"step", "loss", "lr", "t", ...}` in log order; the later row of a step wins."""
    by_step: dict[int, tuple[float | None, float | None]] = {}
    nonfinite: set[int] = set()
    timed: list[tuple[int, float, Any]] = []
    for row in rows:
        step = row.get("step")
        if not isinstance(step, int) or isinstance(step, bool):
            continue
        loss, lr = _finite(row.get("loss")), _finite(row.get("lr"))
        if row.get("loss_nonfinite") or (isinstance(row.get("loss"), float) and loss is None):
            nonfinite.add(step)
        else:
            nonfinite.discard(step)
        if loss is not None or lr is not None or step in nonfinite:
            by_step[step] = (loss, lr)
        t = _finite(row.get("t"))
        if t is not None:
            timed.append((step, t, row.get("attempt")))
    steps = sorted(by_step)
    return Curve(
        source=source if steps else "none", steps=steps, loss=[by_step[s][0] for s in steps],
        lr=[by_step[s][1] for s in steps], it_s=average_rate(timed), nonfinite_steps=sorted(nonfinite),
    )


def curve_from_jsonl(path: Path, source: str | None = None) -> Curve:
    """The built-in trainer's `loss_log.jsonl` or the runner's `progress.jsonl`; a torn line is skipped."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                rows.append(row)
    return _from_rows(rows, source or path.name)


def curve_from_events(events: list[dict[str, Any]]) -> Curve:
    """Older jobs (no progress.jsonl): the throttled progress events; speed is the median of their rates."""
    rows = [{**ev, "t": None} for ev in events if ev.get("type") == "progress"]
    curve = _from_rows(rows, "events")
    speeds = [v for v in (_finite(ev.get("it_s")) for ev in rows) if v is not None and v > 0]
    curve.it_s = statistics.median(speeds) if speeds else None
    return curve


def curve_from_loss_log(db_path: Path) -> Curve:
    """ai-toolkit's UI logger: tables steps(step, wall_time) and metrics(step, key, value_real, value_text).
    Read from a copy: the file may be in WAL mode and the trainer's folder is not ours to write."""
    with tempfile.TemporaryDirectory(prefix="zlt-losslog-") as tmp:
        copy = Path(tmp) / "loss_log.db"
        shutil.copyfile(db_path, copy)
        wal = db_path.with_name(db_path.name + "-wal")
        if wal.exists():
            shutil.copyfile(wal, copy.with_name(copy.name + "-wal"))
        con = sqlite3.connect(copy)
        try:
            rows = con.execute("SELECT step, key, value_real FROM metrics ORDER BY step").fetchall()
            try:
                walls = con.execute("SELECT step, wall_time FROM steps ORDER BY step").fetchall()
            except sqlite3.Error:
                walls = []
        finally:
            con.close()
    loss: dict[int, float] = {}
    lr: dict[int, float] = {}
    for step, key, value in rows:
        v = _finite(value)
        if v is None or not isinstance(step, int):
            continue
        if key in LOSS_KEYS and (key == LOSS_KEYS[0] or step not in loss):
            loss[step] = v
        elif key in LR_KEYS:
            lr[step] = v
    steps = sorted(set(loss) | set(lr))
    if not loss:
        return Curve()
    timed = [(s, float(t), None) for s, t in walls if isinstance(s, int) and _finite(t) is not None]
    return Curve(source="loss_log.db", steps=steps, loss=[loss.get(s) for s in steps], lr=[lr.get(s) for s in steps],
                 it_s=average_rate(timed))


def _first(roots: list[Path], name: str) -> Path | None:
    found = [p for root in roots if root.is_dir() for p in sorted(root.rglob(name))]
    return found[0] if found else None


def load_curve(events: list[dict[str, Any]], output_roots: list[Path],
               job_dir: Path | None = None) -> tuple[Curve, list[str]]:
    """The job's one series (see the module docstring), with notes about sources that could not be read."""
    notes: list[str] = []
    candidates: list[tuple[Path, Any]] = []
    trainer_jsonl = _first(output_roots, "loss_log.jsonl")
    if trainer_jsonl is not None:
        candidates.append((trainer_jsonl, lambda p: curve_from_jsonl(p, "loss_log.jsonl")))
    db = _first(output_roots, "loss_log.db")
    if db is not None:
        candidates.append((db, curve_from_loss_log))
    runner = job_dir / "progress.jsonl" if job_dir is not None else None
    if runner is not None and runner.is_file():
        candidates.append((runner, lambda p: curve_from_jsonl(p, "progress.jsonl")))
    loaded: list[Curve] = []
    for path, read in candidates:
        try:
            curve = read(path)
        except (OSError, sqlite3.Error, UnicodeDecodeError) as e:
            notes.append(f"{path}: unreadable loss log ({e}); using the next source")
            continue
        if len(curve):
            loaded.append(curve)
    loaded.append(curve_from_events(events))
    best = next((c for c in loaded if len(c)), loaded[-1])
    for other in loaded:  # a source without lr or timing borrows them from the next one that has them
        if other is best:
            continue
        if not any(v is not None for v in best.lr) and any(v is not None for v in other.lr):
            lr_by_step = dict(zip(other.steps, other.lr, strict=True))
            best.lr = [lr_by_step.get(s) for s in best.steps]
        if best.it_s is None and other.it_s is not None:
            best.it_s = other.it_s
    return decimate(best), notes


def decimate(curve: Curve, limit: int = MAX_POINTS) -> Curve:
    """Keep at most `limit` points (evenly spaced, always the last) so training_meta.json stays small."""
    n = len(curve)
    if n <= limit:
        return curve
    idx = sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)})
    return Curve(
        source=curve.source, steps=[curve.steps[i] for i in idx], loss=[curve.loss[i] for i in idx],
        lr=[curve.lr[i] for i in idx], it_s=curve.it_s, nonfinite_steps=curve.nonfinite_steps,
    )


def ema(values: list[float], beta: float = 0.9) -> list[float]:
    """Bias-corrected exponential moving average (what TensorBoard's smoothing shows)."""
    out, avg = [], 0.0
    for i, v in enumerate(values, 1):
        avg = beta * avg + (1 - beta) * v
        out.append(avg / (1 - beta**i))
    return out


def summarize(curve: Curve) -> dict[str, Any]:
    pts = [(s, v) for s, v in zip(curve.steps, curve.loss, strict=True) if v is not None]
    if not pts:
        return {"source": curve.source, "points": 0, "it_s": curve.it_s}
    losses = [v for _, v in pts]
    tail = losses[-max(1, len(losses) // 10):]
    min_step, min_loss = min(pts, key=lambda p: p[1])
    return {
        "source": curve.source,
        "points": len(pts),
        "first_step": pts[0][0],
        "final_step": pts[-1][0],
        "first_loss": losses[0],
        "final_loss": losses[-1],
        "final_loss_avg": sum(tail) / len(tail),  # mean of the last 10%: the raw last value is noisy
        "min_loss": min_loss,
        "min_step": min_step,
        "it_s": curve.it_s,
    }


def plot_loss(curve: Curve, out: Path, title: str) -> str | None:
    """Write loss.png. Returns None when written, or a note saying why not (no matplotlib, no points)."""
    pts = [(s, v) for s, v in zip(curve.steps, curve.loss, strict=True) if v is not None]
    if not pts:
        return "loss.png not written: no loss values were logged"
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return "loss.png not written: matplotlib is not installed (pip install 'zlt[plot]')"
    steps, losses = [p[0] for p in pts], [p[1] for p in pts]
    fig = Figure(figsize=(8, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(steps, losses, color="#9ecae1", linewidth=0.8, label="loss")
    if len(losses) > 5:
        ax.plot(steps, ema(losses), color="#08519c", linewidth=1.6, label="loss (EMA 0.9)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    handles = ax.get_lines()
    lr_pts = [(s, v) for s, v in zip(curve.steps, curve.lr, strict=True) if v is not None]
    if lr_pts:
        ax2 = ax.twinx()
        ax2.plot([p[0] for p in lr_pts], [p[1] for p in lr_pts], color="#e6550d", linewidth=1.0, label="learning rate")
        ax2.set_ylim(bottom=0, top=max(p[1] for p in lr_pts) * 1.1 or 1)
        ax2.set_ylabel("learning rate")
        ax2.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
        handles = handles + ax2.get_lines()
    ax.legend(handles=handles, loc="upper right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", metadata={"Software": None})
    return None
