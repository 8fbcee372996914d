"""The loss and learning-rate curve of a job, its summary, and `loss.png`.

Sources, best first: ai-toolkit's `loss_log.db` (SQLite, every step, full precision) and the job's
`events.jsonl` progress events (what the log parser saw, any backend). After a resumed retry a step can appear
twice; the later value wins because it belongs to the attempt that produced the weights.
"""

from __future__ import annotations

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
    source: str = "none"  # "loss_log.db", "events", or "none"
    steps: list[int] = field(default_factory=list)
    loss: list[float | None] = field(default_factory=list)
    lr: list[float | None] = field(default_factory=list)
    it_s: float | None = None  # median training speed

    def __len__(self) -> int:
        return len(self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "steps": self.steps, "loss": self.loss, "lr": self.lr}


def _finite(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if x == x and abs(x) != float("inf") else None


def curve_from_events(events: list[dict[str, Any]]) -> Curve:
    by_step: dict[int, tuple[float | None, float | None]] = {}
    speeds = []
    for ev in events:
        if ev.get("type") != "progress" or not isinstance(ev.get("step"), int):
            continue
        loss, lr = _finite(ev.get("loss")), _finite(ev.get("lr"))
        if loss is not None or lr is not None:
            by_step[ev["step"]] = (loss, lr)
        it_s = _finite(ev.get("it_s"))
        if it_s is not None and it_s > 0:
            speeds.append(it_s)
    steps = sorted(by_step)
    return Curve(
        source="events" if steps else "none", steps=steps, loss=[by_step[s][0] for s in steps],
        lr=[by_step[s][1] for s in steps], it_s=statistics.median(speeds) if speeds else None,
    )


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
    return Curve(source="loss_log.db", steps=steps, loss=[loss.get(s) for s in steps], lr=[lr.get(s) for s in steps])


def load_curve(events: list[dict[str, Any]], output_roots: list[Path]) -> tuple[Curve, list[str]]:
    """The best curve available, with warnings about sources that could not be read."""
    notes: list[str] = []
    from_events = curve_from_events(events)
    dbs = [db for root in output_roots if root.is_dir() for db in sorted(root.rglob("loss_log.db"))]
    db = dbs[0] if dbs else None
    curve = from_events
    if db is not None:
        try:
            from_db = curve_from_loss_log(db)
        except (OSError, sqlite3.Error) as e:
            notes.append(f"{db}: unreadable loss log ({e}); using the progress events")
            from_db = Curve()
        if len(from_db):
            if from_events.lr and not any(v is not None for v in from_db.lr):
                lr_by_step = dict(zip(from_events.steps, from_events.lr, strict=True))
                from_db.lr = [lr_by_step.get(s) for s in from_db.steps]
            from_db.it_s = from_events.it_s
            curve = from_db
    return decimate(curve), notes


def decimate(curve: Curve, limit: int = MAX_POINTS) -> Curve:
    """Keep at most `limit` points (evenly spaced, always the last) so training_meta.json stays small."""
    n = len(curve)
    if n <= limit:
        return curve
    idx = sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)})
    return Curve(
        source=curve.source, steps=[curve.steps[i] for i in idx], loss=[curve.loss[i] for i in idx],
        lr=[curve.lr[i] for i in idx], it_s=curve.it_s,
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
