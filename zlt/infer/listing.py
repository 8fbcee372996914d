"""The generations stored under an artifact (`<artifact>/generations/<id>/outputs.json`), newest last. No torch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zlt.infer.resolve import GENERATIONS_DIR


def list_generations(artifact_dir: Path) -> list[dict[str, Any]]:
    """One summary per finished generation folder (hidden staging folders and folders without outputs.json skipped)."""
    root = Path(artifact_dir) / GENERATIONS_DIR
    if not root.is_dir():
        return []
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            meta = json.loads((folder / "outputs.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        images = meta.get("images") or []
        first = images[0] if images else {}
        out.append({
            "id": folder.name, "kind": meta.get("kind"), "created_at": meta.get("created_at"), "path": str(folder),
            "images": len(images), "contact_sheet": meta.get("contact_sheet"), "prompt": first.get("prompt"),
            "scale": first.get("scale"), "checkpoint": first.get("checkpoint"),
        })
    return out
