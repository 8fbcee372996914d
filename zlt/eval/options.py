"""EvalOptions from the artifact's `eval:` spec section, with explicit arguments (CLI, HTTP, MCP) winning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zlt.eval.best import Rule
from zlt.eval.evaluate import EvalOptions
from zlt.eval.plan import open_artifact


def from_spec(spec: Any) -> EvalOptions:
    """The defaults a spec's eval section gives (spec may be None: the artifact kept no spec.yaml)."""
    if spec is None:
        return EvalOptions()
    e = spec.eval
    return EvalOptions(prompts=list(e.prompts) or None, seeds=e.seeds, checkpoints=e.checkpoints, clip=e.models.clip,
                       scale=e.scale, size=e.size,
                       rule=Rule(alignment_tolerance=e.alignment_tolerance, memorisation_max=e.memorisation_max))


def options_for(home: Path, artifact_id: str, **overrides: Any) -> EvalOptions:
    """The artifact's spec defaults; every override that is not None replaces its field."""
    opts = from_spec(open_artifact(home, artifact_id).spec)
    for key, value in overrides.items():
        if value is None:
            continue
        if not hasattr(opts, key):
            raise TypeError(f"unknown evaluation option {key!r}")
        setattr(opts, key, value)
    return opts
