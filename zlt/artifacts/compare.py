"""`zlt artifacts diff A B`: what differs between two artifacts — spec, dataset (images by content hash), metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zlt.artifacts.layout import META_FILE
from zlt.artifacts.lineage import image_changes, images_of, spec_diff
from zlt.artifacts.resolve import resolve_row
from zlt.artifacts.versions import eval_scores
from zlt.core.errors import ZltError
from zlt.spec import load_spec

METRICS = ("final_step", "final_loss", "final_loss_avg", "min_loss", "it_s")


def _spec(folder: Path) -> dict[str, Any] | None:
    try:
        return load_spec(folder / "spec.yaml").spec.model_dump(mode="json")
    except (ZltError, OSError):
        return None


def _meta(folder: Path) -> dict[str, Any]:
    try:
        doc = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _number(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def diff_artifacts(home: Path, a: str, b: str) -> dict[str, Any]:
    home = Path(home)
    ra, rb = resolve_row(home, a), resolve_row(home, b)
    fa, fb = Path(ra["path"]), Path(rb["path"])
    ma, mb = _meta(fa), _meta(fb)
    metrics: dict[str, dict[str, Any]] = {}
    for key in METRICS:
        va = ma.get(key, ra["meta"].get(key)) if key != "it_s" else ma.get("it_s")
        vb = mb.get(key, rb["meta"].get(key)) if key != "it_s" else mb.get("it_s")
        if key == "final_step":
            va, vb = ra["meta"].get("final_step"), rb["meta"].get("final_step")
        if va is None and vb is None:
            continue
        na, nb = _number(va), _number(vb)
        metrics[key] = {"a": va, "b": vb, "delta": nb - na if na is not None and nb is not None else None}
    ea = eval_scores(fa, ra["meta"].get("final_step")) or {} if fa.is_dir() else {}
    eb = eval_scores(fb, rb["meta"].get("final_step")) or {} if fb.is_dir() else {}
    for key in sorted(set(ea) | set(eb)):
        na, nb = _number(ea.get(key)), _number(eb.get(key))
        metrics[f"eval.{key}"] = {"a": ea.get(key), "b": eb.get(key),
                                  "delta": nb - na if na is not None and nb is not None else None}
    return {
        "a": {"id": ra["id"], "version": ra.get("version"), "parent_id": ra.get("parent_id"), "path": str(fa)},
        "b": {"id": rb["id"], "version": rb.get("version"), "parent_id": rb.get("parent_id"), "path": str(fb)},
        "spec": spec_diff(_spec(fa), _spec(fb)),
        "dataset": {"a_sha256": ra.get("dataset_sha256"), "b_sha256": rb.get("dataset_sha256"),
                    "changes": image_changes(images_of(home, ra), images_of(home, rb))},
        "metrics": metrics,
    }
