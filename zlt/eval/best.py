"""The best-checkpoint rule, applied to a report's rows; pure, so it is tested on constructed reports.

Rule (docs/eval.md): among the trained checkpoints (not the base model) whose
  - prompt alignment is at least (1 - alignment_tolerance) x the base model's, and
  - memorisation is below memorisation_max,
pick the highest style similarity; a tie goes to the earlier step (less training, less overfitting risk).
When no checkpoint passes both guards, the one that breaks them least is picked and the reason says so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

ALIGNMENT_TOLERANCE = 0.10
MEMORISATION_MAX = 0.95


@dataclass
class Rule:
    alignment_tolerance: float = ALIGNMENT_TOLERANCE
    memorisation_max: float = MEMORISATION_MAX

    def describe(self) -> str:
        return (f"highest style similarity among checkpoints whose prompt alignment is >= "
                f"{1 - self.alignment_tolerance:.0%} of the base model's and whose memorisation is < "
                f"{self.memorisation_max:g}; ties go to the earlier step")


@dataclass
class Pick:
    step: int | None
    label: str | None
    reason: str
    passed: bool
    rule: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _m(row: dict[str, Any], key: str) -> float | None:
    v = (row.get("metrics") or {}).get(key)
    return float(v) if isinstance(v, (int, float)) else None


def pick_best(rows: list[dict[str, Any]], rule: Rule | None = None) -> Pick:
    """`rows`: report checkpoints, each {"step", "label", "base": bool, "metrics": {...}}."""
    rule = rule or Rule()
    base = next((r for r in rows if r.get("base")), None)
    trained = [r for r in rows if not r.get("base") and _m(r, "style_similarity") is not None]
    if not trained:
        return Pick(None, None, "no trained checkpoint was evaluated", False, rule.describe())
    base_align = _m(base, "prompt_alignment") if base else None
    floor = base_align * (1 - rule.alignment_tolerance) if base_align is not None else None
    if floor is not None and base_align is not None and base_align < 0:
        floor = base_align * (1 + rule.alignment_tolerance)  # "within X%" of a negative score lies below it

    def shortfall(r: dict[str, Any]) -> float:
        """How far a row breaks the guards (0: it passes)."""
        align, mem = _m(r, "prompt_alignment"), _m(r, "memorisation")
        gap = max(0.0, floor - align) if floor is not None and align is not None else 0.0
        return gap + (max(0.0, mem - rule.memorisation_max + 1e-12) if mem is not None else 0.0)

    def key(r: dict[str, Any]) -> tuple[float, int]:
        return (-(_m(r, "style_similarity") or 0.0), int(r.get("step") or 0))

    passing = [r for r in trained if shortfall(r) == 0.0]
    if passing:
        best = min(passing, key=key)
        others = len(trained) - len(passing)
        why = (f"step {best['step']}: highest style similarity {_m(best, 'style_similarity'):.4f} of "
               f"{len(passing)} checkpoint(s) that keep prompt alignment"
               + (f" >= {floor:.4f} (base {base_align:.4f})" if floor is not None else " (no base model scored)")
               + f" and memorisation < {rule.memorisation_max:g}")
        if others:
            why += f"; {others} checkpoint(s) failed a guard"
        return Pick(int(best["step"]), best.get("label"), why, True, rule.describe())
    best = min(trained, key=lambda r: (shortfall(r), *key(r)))
    align, mem = _m(best, "prompt_alignment"), _m(best, "memorisation")
    broken = []
    if floor is not None and align is not None and align < floor:
        broken.append(f"prompt alignment {align:.4f} < {floor:.4f} (base {base_align:.4f})")
    if mem is not None and mem >= rule.memorisation_max:
        broken.append(f"memorisation {mem:.4f} >= {rule.memorisation_max:g}")
    why = (f"step {best['step']}: no checkpoint passes both guards; this one breaks them least: "
           + "; ".join(broken) + ". Consider an earlier checkpoint, fewer steps or a lower learning rate")
    return Pick(int(best["step"]), best.get("label"), why, False, rule.describe())
