"""The evaluation table as text lines (zlt eval and zlt artifacts show print it): each metric with its 95% interval
over prompts x seeds (KID: its std over subsets), so a difference smaller than the spread reads as one."""

from __future__ import annotations

from typing import Any

COLUMNS = (("style_similarity", "STYLE"), ("prompt_alignment", "ALIGN"), ("memorisation", "MEMO"),
           ("diversity", "DIVERS"), ("kid_clip", "KID(CLIP)"))
WIDTH = 16


def _f(v: Any, spread: Any = None) -> str:
    if not isinstance(v, (int, float)):
        return "-"
    return f"{v:.4f}" + (f"±{spread:.4f}" if isinstance(spread, (int, float)) else "")


def _spread(r: dict[str, Any], key: str) -> Any:
    """A report row's `spread[key].ci95`, a summary row's `spread[key]`, KID's own std."""
    if key == "kid_clip":
        return (r.get("metrics") or r).get("kid_clip_std")
    s = (r.get("spread") or {}).get(key)
    return s.get("ci95") if isinstance(s, dict) else s


def table_lines(rows: list[dict[str, Any]], best_step: int | None) -> list[str]:
    """`rows`: {"step", "label", metric keys...} (the summary table) or report rows with a `metrics` dict."""
    head = f"{'CHECKPOINT':<18}" + "".join(f"{name:>{WIDTH}}" for _k, name in COLUMNS)
    out = [head]
    for r in rows:
        m = r.get("metrics") or r
        label = str(r.get("label") or f"step {r.get('step')}")
        mark = "  <- best" if best_step is not None and r.get("step") == best_step and label != "base" else ""
        out.append(f"{label:<18}" + "".join(f"{_f(m.get(k), _spread(r, k)):>{WIDTH}}" for k, _n in COLUMNS) + mark)
    out.append("(± : 95% interval over prompts x seeds; KID: std over subsets)")
    return out


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """What `zlt artifacts show` prints from training_meta.json's `eval`."""
    out = [f"{'evaluated':>12}: {summary.get('evaluated_at', '-')} with {summary.get('clip_model', '-')} "
           f"({summary.get('report', 'eval/report.json')})"]
    best = summary.get("best_step")
    out.append(f"{'best step':>12}: {best if best is not None else '-'}"
               + ("" if summary.get("passed", True) else " (no checkpoint passed both guards)")
               + (f" at scale {summary['scale']:g}" if isinstance(summary.get("scale"), (int, float)) else ""))
    if summary.get("caveat"):
        out.append(f"{'caution':>12}: {summary['caveat']}")
    out += ["  " + line for line in table_lines(summary.get("table") or [], best)]
    return out
