"""How far an evaluation's numbers can be trusted: each metric's spread over the prompts x seeds grid, and whether
the best pick differs from the base model and from the runner-up by more than that spread.

A row's metric is a mean over its images (diversity: over its prompts). `spread` gives, per metric, the standard
deviation of those per-image values and the half-width of a 95% interval of their mean (1.96 std / sqrt(n)).
Two rows drew the same grid (same prompts, same seeds), so they are compared pairwise: the difference of the
per-image values, image by image; the pick "is distinguishable" from another row when the mean difference lies
outside its own 95% interval. With one image (one prompt, one seed) nothing is distinguishable.
"""

from __future__ import annotations

import math
from typing import Any

Z95 = 1.959964  # two-sided 95% of a normal distribution
SPREAD_KEYS = ("style_similarity", "prompt_alignment", "memorisation", "diversity")
RANK_METRIC = "style_similarity"  # what the rule ranks checkpoints by (zlt.eval.best)


def _stats(values: list[float]) -> dict[str, Any]:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "ci95": Z95 * std / math.sqrt(n) if n > 1 else None, "n": n}


def row_spread(per_image: dict[str, list[float]] | None) -> dict[str, Any]:
    """{metric: {mean, std, ci95, n}} from a row's per-image (per-prompt for diversity) values."""
    out = {}
    for key in SPREAD_KEYS:
        values = [float(v) for v in (per_image or {}).get(key) or []]
        if values:
            s = _stats(values)
            out[key] = {"std": round(s["std"], 6), "ci95": None if s["ci95"] is None else round(s["ci95"], 6),
                        "n": s["n"]}
    return out


def compare(a: dict[str, Any], b: dict[str, Any], metric: str = RANK_METRIC) -> dict[str, Any] | None:
    """Row `a` against row `b` on `metric`, image by image: {difference, ci95, n, distinguishable}; None when a row
    lacks its per-image values (a row reused from an older evaluation)."""
    va = (a.get("per_image") or {}).get(metric) or []
    vb = (b.get("per_image") or {}).get(metric) or []
    if not va or len(va) != len(vb):
        return None
    s = _stats([x - y for x, y in zip(va, vb, strict=True)])
    half = s["ci95"]
    return {"metric": metric, "against": b.get("label"), "difference": round(s["mean"], 6),
            "ci95": None if half is None else round(half, 6), "n": s["n"],
            "distinguishable": bool(half is not None and abs(s["mean"]) > half)}


def runner_up(rows: list[dict[str, Any]], best_step: int | None) -> dict[str, Any] | None:
    """The trained row with the highest rank metric after the pick (earlier step on a tie)."""
    others = [r for r in rows if not r.get("base") and r.get("step") != best_step
              and isinstance((r.get("metrics") or {}).get(RANK_METRIC), (int, float))]
    if not others:
        return None
    return min(others, key=lambda r: (-float(r["metrics"][RANK_METRIC]), int(r.get("step") or 0)))


def verdict(rows: list[dict[str, Any]], best_step: int | None) -> dict[str, Any]:
    """How the pick stands against the base model and the runner-up, and one sentence saying it."""
    best = next((r for r in rows if not r.get("base") and r.get("step") == best_step), None)
    base = next((r for r in rows if r.get("base")), None)
    second = runner_up(rows, best_step)
    vs_base = compare(best, base) if best and base else None
    vs_second = compare(best, second) if best and second else None
    notes = []
    for what, cmp in (("the base model", vs_base), (f"the runner-up {second['label']}" if second else "", vs_second)):
        if cmp is None or cmp["distinguishable"]:
            if cmp is not None and what == "the base model" and cmp["difference"] < 0:
                notes.append(f"the base model scores higher on {RANK_METRIC} (by {-cmp['difference']:.4f} ± "
                             f"{cmp['ci95']:.4f}): the LoRA moved the images away from the training style")
            continue
        within = (f"± {cmp['ci95']:.4f} (95%, {cmp['n']} images)" if cmp["ci95"] is not None
                  else "(one image: no spread to judge by)")
        notes.append(f"not distinguishable from {what}: {RANK_METRIC} differs by {cmp['difference']:+.4f} {within}")
    return {"vs_base": vs_base, "vs_runner_up": vs_second,
            "distinguishable_from_base": None if vs_base is None else vs_base["distinguishable"],
            "distinguishable_from_runner_up": None if vs_second is None else vs_second["distinguishable"],
            "caveat": "; ".join(notes) or None}
