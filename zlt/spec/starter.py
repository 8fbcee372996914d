"""`zlt init`: a commented starter spec, generated from the models and a preset so it never drifts."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from zlt.core.constants import TINY_MODEL, TURBO_MODEL
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


# The quick start's settings (examples/quickstart/spec.yaml, kept equal by a test): the tiny test model on the CPU,
# 60 steps at 64 px in about a minute, a checkpoint every 20 steps; no GPU, no adapter, fp32 throughout.
TINY_STARTER: dict[str, Any] = {
    "model": {"base": {"name": TINY_MODEL, "source": "builtin", "precision": "fp32", "variant": "base",
                       "training_adapter": "none"},
              "lora": {"rank": 8, "alpha": 8}},
    "dataset": {"resolution": 64, "repeats": 1, "caption": {"dropout": 0.0}, "augment": {"horizontal_flip": False}},
    "training": {"backend": "lightning", "batch_size": 2, "gradient_accumulation": 1, "max_steps": 60,
                 "warmup_steps": 5, "learning_rate": 3.0e-3, "scheduler": "cosine",
                 "optimizer": {"type": "adamw", "use_8bit": False}, "mixed_precision": "fp32",
                 "gradient_checkpointing": False, "timestep_type": "sigmoid"},
    "job": {"resources": {"gpu": 0, "min_vram_gb": None}, "retry": {"max_retries": 0}},
    "output": {"save": {"every": 20, "keep": 3, "dtype": "fp32"}},
}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def starter_spec(preset: str = "style", dataset_path: str = "dataset", *, model: str | None = None) -> str:
    """The commented spec `zlt init` writes; `model`: the base model (`zlt/tiny-zimage`: the quick start's settings,
    which train on the CPU)."""
    tiny = model == TINY_MODEL
    data: dict[str, Any] = {"name": f"my_{preset}" + ("_tiny" if tiny else ""), "preset": preset,
                            "dataset": {"path": dataset_path}}
    if tiny:
        data = _merge(data, TINY_STARTER)
    elif model:
        data["model"] = {"base": {"name": model}}
    values = load_spec_data(data).spec.model_dump(mode="json")
    values["training"]["effective_batch_size"] = None
    lines = [
        f"# zlt job spec (preset: {preset}). Validate: zlt validate spec.yaml; see every value's source:",
        "# zlt render spec.yaml --explain. Fields you delete fall back to the preset's defaults.",
    ]
    if tiny:
        lines += [f"# The tiny test model {TINY_MODEL} on the CPU (the quick start's settings): it exercises the whole",
                  "# pipeline in about a minute, but its LoRA is a smoke test, not a useful style. For the real model",
                  f"# run 'zlt init' without --tiny (model.base.name: {TURBO_MODEL}, a GPU)."]
    _emit(JobSpec, values, 0, "", lines)
    return "\n".join(lines) + "\n"
