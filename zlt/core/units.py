"""The one rule for a training rate and for a duration, wherever a person reads them (`zlt status`, the bar, the
summary line, the dashboard): it/s from 1 iteration per second up, s/it below, three significant digits; durations
as 12s, 3m 05s, 1h 02m."""

from __future__ import annotations


def rate_text(it_s: float | None) -> str:
    """`2.87 it/s`, `4.95 s/it` (for 0.202 it/s), `? it/s` when unknown."""
    if not it_s or it_s <= 0:
        return "? it/s"
    return f"{it_s:.3g} it/s" if it_s >= 1 else f"{1 / it_s:.3g} s/it"


def duration(seconds: float | None, unknown: str = "-") -> str:
    """12s, 3m 05s, 1h 02m; `unknown` when there is none."""
    if seconds is None:
        return unknown
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"
