"""Renderers: spec x hardware profile -> a trainer's config files and the argv of each step. Pure functions."""

from __future__ import annotations

import json
from pathlib import Path

from zlt.core.errors import BadInputError
from zlt.core.fsutil import atomic_write_text
from zlt.profiles import HardwareProfile
from zlt.render.base import RenderContext, RenderResult
from zlt.render.select import check_fit, ensure_fits, select_profile
from zlt.spec.models import BACKENDS, JobSpec

ARGV_FILE = "argv.json"
# What the render resolved: the trained alpha, module set, checkpointing, ... (the artifact keeps the render folder)
RENDER_FILE = "render.json"


def render_spec(spec: JobSpec, backend: str | None, profile: HardwareProfile, ctx: RenderContext | None = None) -> RenderResult:
    backend = backend or spec.training.backend
    ctx = ctx or RenderContext()
    if backend == "ai-toolkit":
        from zlt.render.aitoolkit import render_aitoolkit

        return render_aitoolkit(spec, profile, ctx)
    if backend == "musubi":
        from zlt.render.musubi import render_musubi

        return render_musubi(spec, profile, ctx)
    if backend == "lightning":
        from zlt.render.lightning import render_lightning

        return render_lightning(spec, profile, ctx)
    raise BadInputError(f"--backend {backend!r}: unknown backend", hint=f"use one of: {', '.join(BACKENDS)}")


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


__all__ = [
    "RenderContext", "RenderResult", "check_fit", "ensure_fits", "render_spec", "select_profile", "write_render",
]
