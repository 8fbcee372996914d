"""The loss curve as inline SVG: drawn on the server from the job's one series (zlt.run.curve), so the page needs no
JS to show it and the chart has exactly the points `loss.png` and training_meta.json come from."""

from __future__ import annotations

import math
from typing import Any

from zlt.run.curve import ema

WIDTH, HEIGHT = 800, 300
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 12, 40
MAX_POINTS = 1200  # a 4000-step run draws in well under a millisecond per point; more adds nothing at 800 px


def nice_ticks(lo: float, hi: float, n: int = 5, integer: bool = False) -> list[float]:
    """About `n` round tick values covering [lo, hi] (`integer`: whole numbers only, for steps)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw and not (integer and (m * mag) % 1))
    if integer:
        step = max(1, step)
    first = math.ceil(lo / step) * step
    out, v = [], first
    while v <= hi + step * 1e-9:
        out.append(round(v, 10))
        v += step
    return out


def _thin(points: list[tuple[int, float]], limit: int = MAX_POINTS) -> list[tuple[int, float]]:
    """Evenly spaced points, always the last one."""
    n = len(points)
    if n <= limit:
        return points
    idx = sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)})
    return [points[i] for i in idx]


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1000 or a < 0.001:
        return f"{v:.1e}"
    return f"{v:.4g}"


def loss_chart(steps: list[int], loss: list[float | None], total: int | None = None) -> dict[str, Any]:
    """What the chart template draws: two polylines (the raw loss and its EMA), axis ticks, and a summary line.
    `points` is 0 when nothing was logged (the template says so instead of drawing)."""
    pts = [(s, v) for s, v in zip(steps, loss, strict=False) if v is not None and math.isfinite(v)]
    if not pts:
        return {"points": 0, "width": WIDTH, "height": HEIGHT}
    x0 = min(s for s, _ in pts)
    x1 = max([s for s, _ in pts] + ([total] if isinstance(total, int) else []))
    y0, y1 = min(v for _, v in pts), max(v for _, v in pts)
    if x1 <= x0:
        x1 = x0 + 1
    pad = (y1 - y0) * 0.05 or abs(y1) * 0.05 or 1.0
    y0, y1 = y0 - pad, y1 + pad
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def sx(s: float) -> float:
        return LEFT + (s - x0) / (x1 - x0) * pw

    def sy(v: float) -> float:
        return TOP + (1 - (v - y0) / (y1 - y0)) * ph

    line = " ".join(f"{sx(s):.1f},{sy(v):.1f}" for s, v in _thin(pts))
    ema_line = ""  # the EMA of a handful of points says nothing the points do not (loss.png draws none either)
    if len(pts) > 5:
        smooth = list(zip([s for s, _ in pts], ema([v for _, v in pts]), strict=True))
        ema_line = " ".join(f"{sx(s):.1f},{sy(v):.1f}" for s, v in _thin(smooth))
    xt = [t for t in nice_ticks(x0, x1, integer=True) if x0 <= t <= x1]
    yt = [t for t in nice_ticks(y0, y1) if y0 <= t <= y1]
    last_s, last_v = pts[-1]
    return {
        "points": len(pts), "width": WIDTH, "height": HEIGHT, "left": LEFT, "top": TOP, "right": WIDTH - RIGHT,
        "bottom": HEIGHT - BOTTOM, "line": line, "ema": ema_line,
        "xticks": [{"x": round(sx(t), 1), "label": str(int(t)) if float(t).is_integer() else _fmt(t)} for t in xt],
        "yticks": [{"y": round(sy(t), 1), "label": _fmt(t)} for t in yt],
        "last": {"step": last_s, "loss": last_v, "x": round(sx(last_s), 1), "y": round(sy(last_v), 1)},
        "summary": f"{len(pts)} points, steps {pts[0][0]}..{last_s}, loss {_fmt(pts[0][1])} -> {_fmt(last_v)}, "
                   f"min {_fmt(min(v for _, v in pts))}",
    }
