"""The version line of a style: every version with its step, loss, eval scores, parent, and which one is current
(what a style name resolves to: zlt.artifacts.resolve)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zlt.artifacts import store
from zlt.artifacts.layout import META_FILE
from zlt.artifacts.promote import current_id
from zlt.core.errors import NotFoundError


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def eval_scores(path: Path, final_step: int | None = None) -> dict[str, Any] | None:
    """Scores `zlt eval` left in the artifact (training_meta.json `eval`): the metrics of the final weights' row of
    its table (else the best step's), plus `best_step`. None when the artifact was not evaluated."""
    try:
        doc = json.loads((path / META_FILE).read_text(encoding="utf-8")).get("eval")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(doc, dict) or not doc:
        return None
    table = [r for r in doc.get("table") or [] if isinstance(r, dict)]
    want = final_step if final_step is not None else doc.get("best_step")
    row = next((r for r in table if r.get("step") == want), None) or next(
        (r for r in table if r.get("step") == doc.get("best_step")), None)
    scores = {k: v for k, v in (row or doc.get("scores") or {}).items() if k != "step" and _number(v)}
    if _number(doc.get("best_step")):
        scores["best_step"] = doc["best_step"]
    return scores or None


def style_line(home: Path, style: str) -> dict[str, Any]:
    """Every version of `style` with step, loss, eval scores, parent and which one is current."""
    home = Path(home)
    rows = store.fetch_style(home, style)
    if not rows:
        raise NotFoundError(f"no artifacts of style '{style}'", hint="see 'zlt artifacts list' for the style names")
    promoted = current_id(home, style)
    resolves_to = promoted or rows[-1]["id"]
    versions = []
    for r in rows:
        path = Path(r["path"])
        lin = r.get("lineage") or {}
        versions.append({
            "version": r["version"], "id": r["id"], "path": r["path"], "exists": path.is_dir(),
            "job_id": r["job_id"], "parent_id": r.get("parent_id"), "backend": r["backend"],
            "final_step": r["meta"].get("final_step"), "final_loss": r["meta"].get("final_loss"),
            "eval": eval_scores(path, r["meta"].get("final_step")) if path.is_dir() else None,
            "mode": lin.get("mode"),
            "current": r["id"] == resolves_to,
        })
    return {"style": style, "current": resolves_to, "promoted": promoted is not None, "versions": versions}
