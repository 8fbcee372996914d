"""What a validated spec says beyond being valid: each value's true source (a value a spec writes out that equals
its preset's or the model's default is that default's, as `--explain` shows it), and the notes about fields the
tiny test model does not use (a spec written for the real model and switched to `zlt/tiny-zimage`)."""

from __future__ import annotations

from typing import Any

from zlt.core.constants import TINY_MODEL
from zlt.spec.models import JobSpec
from zlt.spec.presets import PRESETS

SPEC, SET, DEFAULT = "spec", "--set", "default"  # zlt.spec.load's SOURCE_* names (it imports this module)


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict) or not d:
        return {prefix: d} if prefix else {}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _same(a: Any, b: Any) -> bool:
    """Equal as values (16 == 16.0), but a boolean only equals a boolean (True is not 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def true_sources(spec: JobSpec, provenance: dict[str, str]) -> None:
    """Re-label the spec's values that equal what the preset or the model's default would give: `preset:NAME` or
    `default` (`zlt init` writes every value out; only the ones a person changed are the spec's)."""
    values = _flat(spec.model_dump(mode="json"))
    preset = _flat(PRESETS.get(spec.preset, {}))
    defaults = _flat(JobSpec.model_construct().model_dump(mode="json"))
    for path, source in provenance.items():
        if source != SPEC or path not in values:
            continue
        value = values[path]
        if path in preset:
            if _same(value, preset[path]):
                provenance[path] = f"preset:{spec.preset}"
        elif path in defaults and _same(value, defaults[path]):
            provenance[path] = DEFAULT


def tiny_leftovers(spec: JobSpec, provenance: dict[str, str]) -> list[str]:
    """`note:` lines for the fields a tiny-model spec (or --set) writes that the tiny model does not use: leftovers of
    a spec written for the real model. None for a real model, none for what the preset alone fills in."""
    if spec.model.base.name != TINY_MODEL:
        return []
    base, res, tr = spec.model.base, spec.job.resources, spec.training
    about = f"the tiny test model {TINY_MODEL}"
    notes = []
    written = {p for p, src in provenance.items() if src in (SPEC, SET)}
    if "model.base.training_adapter" in written and base.training_adapter != "none" and spec.adapter_path() is None:
        notes.append(f"model.base.training_adapter: {base.training_adapter!r} merges nothing into {about} "
                     "(it renders null); set 'none'")
    if "model.base.source" in written and base.source != "builtin":
        notes.append(f"model.base.source: {base.source!r} is not used: {about} is built in; set 'builtin'")
    if "model.base.precision" in written and base.precision != "fp32":
        notes.append(f"model.base.precision: {base.precision!r} is not used: {about} loads in fp32 on the CPU; "
                     "set 'fp32'")
    if "training.mixed_precision" in written and tr.mixed_precision not in ("fp32", "no"):
        notes.append(f"training.mixed_precision: {tr.mixed_precision!r} is not used: the CPU trains in fp32 "
                     "(32-true); set 'fp32'")
    if "job.resources.gpu" in written and res.gpu:
        notes.append(f"job.resources.gpu: {res.gpu} asks for a GPU {about} does not need (it trains on the CPU); "
                     "set 0")
    if "job.resources.min_vram_gb" in written and res.min_vram_gb is not None:
        notes.append(f"job.resources.min_vram_gb: {res.min_vram_gb:g} is not used by {about}; set null")
    return notes
