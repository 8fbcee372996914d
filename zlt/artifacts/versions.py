"""The version line of a style and name resolution: `resolve_artifact_ref(ref, home) -> folder`.

A reference is, in this order: the path of an artifact folder; an artifact id; `STYLE@vN` (version N of a style);
a style name (its current version: the promoted one, else the newest); a job id or a unique id prefix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zlt.artifacts import store
from zlt.artifacts.collect import LORA_FILE, META_FILE
from zlt.artifacts.promote import current_id
from zlt.errors import BadInputError, NotFoundError


def _eval_scores(path: Path) -> dict[str, Any] | None:
    """Scores an evaluation left in the artifact (training_meta.json `eval`, or eval.json), when there are any."""
    for name, key in ((META_FILE, "eval"), ("eval.json", None)):
        try:
            doc = json.loads((path / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        doc = doc.get(key) if key and isinstance(doc, dict) else doc
        if isinstance(doc, dict) and doc:
            scores = doc.get("scores", doc)
            return {k: v for k, v in scores.items() if isinstance(v, (int, float)) and not isinstance(v, bool)} or None
    return None


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
            "eval": _eval_scores(path) if path.is_dir() else None, "mode": lin.get("mode"),
            "current": r["id"] == resolves_to,
        })
    return {"style": style, "current": resolves_to, "promoted": promoted is not None, "versions": versions}


def _folder(path: Path) -> Path | None:
    p = path.expanduser()
    return p.resolve() if p.is_dir() and ((p / LORA_FILE).is_file() or (p / META_FILE).is_file()) else None


def resolve_row(home: Path, ref: str) -> dict[str, Any]:
    """The index row a reference names (see the module docstring; folder paths excluded)."""
    home = Path(home)
    ref = (ref or "").strip()
    if not ref:
        raise BadInputError("artifact reference is empty", hint="give an artifact id, a style name or a folder")
    try:
        return store.resolve_exact(home, ref)
    except NotFoundError:
        pass
    if store.AT_VERSION.match(ref):
        return store.resolve(home, ref)
    rows = store.fetch_style(home, ref)
    if rows:
        cur = current_id(home, ref) or rows[-1]["id"]
        return next(r for r in rows if r["id"] == cur)
    return store.resolve(home, ref)


def resolve_artifact_ref(ref: str, home: Path) -> Path:
    """The artifact folder `ref` names: a folder path, an id, STYLE@vN, a style name (current version), a job id
    or a unique id prefix. NotFoundError / BadInputError (ambiguous) otherwise."""
    raw = (ref or "").strip()
    if raw and ("/" in raw or raw.startswith((".", "~"))):
        folder = _folder(Path(raw))
        if folder is not None:
            return folder
        raise NotFoundError(f"{raw}: not an artifact folder (no {LORA_FILE} or {META_FILE})",
                            hint="give an artifact id or style name, or the folder a job left in the registry")
    row = resolve_row(Path(home), raw)
    path = Path(row["path"])
    if not path.is_dir():
        raise NotFoundError(f"artifact '{row['id']}' is indexed but its folder {path} is gone",
                            hint="restore it, or 'zlt artifacts promote' another version")
    return path
