"""`zlt init`: a commented starter spec, generated from the models and a preset so it never drifts."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from zlt.core.quoting import yaml_value
from zlt.spec.load import load_spec_data
from zlt.spec.models import JobSpec

# Sections a newcomer rarely needs; left out of the starter (defaults apply, `zlt schema` lists them).
_SKIP = {"job.callback_url", "model.base.dit", "model.base.vae", "model.base.text_encoder"}


def _emit(model: type[BaseModel], values: dict[str, Any], indent: int, prefix: str, out: list[str]) -> None:
    pad = "  " * indent
    for name, info in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        if path in _SKIP:
            continue
        value = values.get(name)
        ann = info.annotation
        desc = (info.description or "").replace("\n", " ")
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out.append(f"{pad}# {desc}")
            out.append(f"{pad}{name}:")
            _emit(ann, value or {}, indent + 1, path, out)
        else:
            out.append(f"{pad}{name}: {yaml_value(value)}  # {desc}")


def starter_spec(preset: str = "style", dataset_path: str = "dataset") -> str:
    loaded = load_spec_data({"name": f"my_{preset}", "preset": preset, "dataset": {"path": dataset_path}})
    values = loaded.spec.model_dump(mode="json")
    values["training"]["effective_batch_size"] = None
    lines = [
        f"# zlt job spec (preset: {preset}). Validate: zlt validate spec.yaml; see every value's source:",
        "# zlt render spec.yaml --explain. Fields you delete fall back to the preset's defaults.",
    ]
    _emit(JobSpec, values, 0, "", lines)
    return "\n".join(lines) + "\n"
