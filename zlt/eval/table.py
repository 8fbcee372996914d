"""The evaluation table as text lines (zlt eval and zlt artifacts show print it)."""

from __future__ import annotations

from typing import Any

COLUMNS = (("style_similarity", "STYLE"), ("prompt_alignment", "ALIGN"), ("memorisation", "MEMO"),
           ("diversity", "DIVERS"), ("kid_clip", "KID(CLIP)"))


def _f(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, (int, float)) else "-"


def table_lines(rows: list[dict[str, Any]], best_step: int | None) -> list[str]:
    """`rows`: {"step", "label", metric keys...} (the summary table) or report rows with a `metrics` dict."""
    head = f"{'CHECKPOINT':<18}" + "".join(f"{name:>11}" for _k, name in COLUMNS)
    out = [head]
    for r in rows:
        m = r.get("metrics") or r
        label = str(r.get("label") or f"step {r.get('step')}")
        mark = "  <- best" if best_step is not None and r.get("step") == best_step and label != "base" else ""
        out.append(f"{label:<18}" + "".join(f"{_f(m.get(k)):>11}" for k, _n in COLUMNS) + mark)
    return out


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """What `zlt artifacts show` prints from training_meta.json's `eval`."""
    out = [f"{'evaluated':>12}: {summary.get('evaluated_at', '-')} with {summary.get('clip_model', '-')} "
           f"({summary.get('report', 'eval/report.json')})"]
    best = summary.get("best_step")
    out.append(f"{'best step':>12}: {best if best is not None else '-'}"
               + ("" if summary.get("passed", True) else " (no checkpoint passed both guards)"))
    out += ["  " + line for line in table_lines(summary.get("table") or [], best)]
    return out
