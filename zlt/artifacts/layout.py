"""What an artifact folder holds, by name, and the generations `zlt generate` stored under it (no torch, no numpy:
the registry, the resolver and inference all read these)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

LORA_FILE = "lora.safetensors"
META_FILE = "training_meta.json"
CHECKPOINTS_DIR = "checkpoints"
GENERATIONS_DIR = "generations"  # written after collection by `zlt generate`; not part of what was trained


def checkpoint_file(step: int) -> str:
    """The kept checkpoint of `step`, relative to the artifact folder."""
    return f"{CHECKPOINTS_DIR}/step_{step:06d}.safetensors"


def list_generations(artifact_dir: Path) -> list[dict[str, Any]]:
    """One summary per finished generation folder (`<artifact>/generations/<id>/outputs.json`), newest last; hidden
    staging folders and folders without outputs.json are skipped."""
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
