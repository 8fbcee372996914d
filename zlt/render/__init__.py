"""Rendering machinery every backend shares: what a renderer takes and returns, the Jinja environment, the spec ->
trainer vocabulary mappings, and writing a render to a folder. The renderers themselves live with their backend
(zlt/backends/<name>/render.py); `zlt.backends.render_spec` picks one."""

from __future__ import annotations

import json
from pathlib import Path

from zlt.core.fsutil import atomic_write_text
from zlt.render.base import RenderContext, RenderResult

ARGV_FILE = "argv.json"
# What the render resolved: the trained alpha, module set, checkpointing, ... (the artifact keeps the render folder)
RENDER_FILE = "render.json"


def write_render(result: RenderResult, out_dir: Path) -> list[Path]:
    """Write the rendered files, argv.json and render.json into out_dir (atomically, one by one)."""
    written = []
    for name, text in result.files.items():
        atomic_write_text(out_dir / name, text)
        written.append(out_dir / name)
    atomic_write_text(out_dir / ARGV_FILE, json.dumps(result.argv, indent=2) + "\n")
    written.append(out_dir / ARGV_FILE)
    summary = {"backend": result.backend, "profile": result.profile, "trained": result.trained,
               "notes": result.notes, "warnings": result.warnings}
    atomic_write_text(out_dir / RENDER_FILE, json.dumps(summary, indent=2) + "\n")
    written.append(out_dir / RENDER_FILE)
    return written


__all__ = ["ARGV_FILE", "RENDER_FILE", "RenderContext", "RenderResult", "write_render"]
