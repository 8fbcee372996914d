"""`eval.early_stop`: the rule that stops a training run whose checkpoints stopped getting better. Pure, so it is
tested on constructed histories.

After each evaluation while training (rows in step order, the base model left out), with `patience` = P:
  - plateau: the best style similarity of the last P evaluations is less than `min_delta` above the best of all
    evaluations before them;
  - alignment falling: the last evaluation's prompt alignment is below that of the evaluation just before those P;
  - stop when both hold, the last evaluated step is at least `min_step`, and there are at least P + 1 evaluations.
Style similarity alone flattening is not a reason to stop (the LoRA may still be learning what the metric does not
see); alignment alone falling is what training a style does. Both together are the overfitting the user's guide
warns about (">4000 steps overfitting").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class StopDecision:
    stop: bool
    reason: str
    step: int | None = None  # the step evaluated last
    best_step: int | None = None  # the highest style similarity so far

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _style(row: dict[str, Any]) -> float | None:
    v = (row.get("metrics") or {}).get("style_similarity")
    return float(v) if isinstance(v, (int, float)) else None


def _align(row: dict[str, Any]) -> float | None:
    v = (row.get("metrics") or {}).get("prompt_alignment")
    return float(v) if isinstance(v, (int, float)) else None


def decide(rows: list[dict[str, Any]], *, patience: int, min_delta: float, min_step: int = 0) -> StopDecision:
    """`rows`: the trained checkpoints scored so far, each {"step", "metrics": {...}}; base rows are ignored."""
    trained = sorted((r for r in rows if not r.get("base") and _style(r) is not None and _align(r) is not None),
                     key=lambda r: int(r["step"]))
    if not trained:
        return StopDecision(False, "no checkpoint scored yet")
    last = trained[-1]
    step = int(last["step"])
    best = max(trained, key=lambda r: (_style(r), -int(r["step"])))
    best_step = int(best["step"])
    if len(trained) < patience + 1:
        return StopDecision(False, f"{len(trained)} evaluation(s); the rule needs {patience + 1} (patience + 1)",
                            step, best_step)
    window, before = trained[-patience:], trained[:-patience]
    best_before = max(_style(r) for r in before)  # type: ignore[type-var]
    best_window = max(_style(r) for r in window)  # type: ignore[type-var]
    anchor = before[-1]
    a_anchor, a_last = _align(anchor), _align(last)
    plateau = best_window < best_before + min_delta  # type: ignore[operator]
    falling = a_last < a_anchor  # type: ignore[operator]
    facts = (f"style similarity best {best_window:.4f} in the last {patience} evaluation(s) vs {best_before:.4f} "
             f"before (min_delta {min_delta:g}); prompt alignment {a_last:.4f} at step {step} vs {a_anchor:.4f} at "
             f"step {anchor['step']}")
    if not plateau:
        return StopDecision(False, f"still improving: {facts}", step, best_step)
    if not falling:
        return StopDecision(False, f"style similarity plateaued but prompt alignment is not falling: {facts}",
                            step, best_step)
    if step < min_step:
        return StopDecision(False, f"plateau and falling alignment, but step {step} < eval.early_stop.min_step "
                            f"{min_step}: {facts}", step, best_step)
    return StopDecision(True, f"style similarity plateaued and prompt alignment is falling: {facts}; best so far: "
                        f"step {best_step}", step, best_step)
