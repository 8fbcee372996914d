"""The job spec's JSON Schema as an agent should read it: the defaults the presets really apply, and the bounds
the validator really enforces.

`JobSpec.model_json_schema()` alone shows the models' neutral defaults (warmup 0) while the 'style' preset
applies 100, and the validator's cross-field rules (resolution 256..2048 for real models, 16..2048 for the tiny test model) said in
the fields' descriptions. This schema is what `zlt schema`, `GET /v1/schema` and the MCP tools publish.

`training.backend` is a plain string in the model (the backend registry sits a layer above the spec): its callers
pass the registry's names (`zlt.backends.names()`), which the schema lists as the field's choices.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from zlt.core.constants import TINY_MODEL
from zlt.spec.load import flatten, load_spec_data
from zlt.spec.models import JobSpec
from zlt.spec.presets import PRESETS

DEFAULT_PRESET = "style"
# Values that come from the spec's context, not from a preset.
_CONTEXT_FIELDS = {"name", "preset", "dataset.path"}


def preset_values() -> dict[str, dict[str, Any]]:
    """preset name -> {leaf path: the value a spec that leaves it out gets}."""
    out = {}
    for name in PRESETS:
        loaded = load_spec_data({"preset": name, "dataset": {"path": "dataset"}}, source=f"preset {name}")
        out[name] = flatten(loaded.resolved())
    return out


def _walk(node: dict[str, Any], defs: dict[str, Any], path: str, effective: dict[str, dict[str, Any]]) -> None:
    ref = node.get("$ref")
    if ref:
        _walk(defs[ref.rsplit("/", 1)[-1]], defs, path, effective)
        return
    props = node.get("properties")
    if props is None:
        _leaf(node, path, effective)
        return
    for name, sub in props.items():
        _walk(sub, defs, f"{path}.{name}" if path else name, effective)


def _leaf(node: dict[str, Any], path: str, effective: dict[str, dict[str, Any]]) -> None:
    if path in _CONTEXT_FIELDS or path not in effective[DEFAULT_PRESET]:
        return
    values = {p: v.get(path) for p, v in effective.items()}
    node["default"] = values[DEFAULT_PRESET]
    if len({repr(v) for v in values.values()}) > 1:
        shown = ", ".join(f"{p}: {v!r}" for p, v in values.items())
        node["description"] = (node.get("description", "") + f" Default per preset ({shown}).").strip()
        node["x-preset-defaults"] = values


def _bounds(schema: dict[str, Any], defs: dict[str, Any]) -> None:
    """The validator's bounds where the field bounds are looser (see cross_checks in zlt/spec/load.py)."""
    res = defs["DatasetSpec"]["properties"]["resolution"]
    # The field takes what the validator takes for some base model (the tiny one: 16..2048); the per-model limit is
    # the validator's, said here in words: a schema `minimum: 256` would refuse the tiny model's valid 64.
    res.update(minimum=16, maximum=2048, multipleOf=16)
    res["description"] = ("Training resolution (longest edge), a multiple of 16: 256..2048 for Z-Image models "
                          f"(512..1024 usual); 16..2048 for the tiny test model {TINY_MODEL}.")
    warm = defs["TrainingSpec"]["properties"]["warmup_steps"]
    warm["description"] = "Linear learning-rate warmup steps; must be less than training.max_steps."


def _backend_choices(defs: dict[str, Any], names: Sequence[str]) -> None:
    backend = defs["TrainingSpec"]["properties"]["backend"]
    defs["TrainingSpec"]["properties"]["backend"] = dict(sorted({**backend, "enum": list(names)}.items()))


def agent_spec_schema(backends: Sequence[str], *, dataset_path: str | None = None,
                      ref_template: str = "#/$defs/{model}") -> dict[str, Any]:
    """JobSpec's schema with effective per-preset defaults, the enforced bounds and `backends` (the registry's names)
    as the choices of `training.backend`.

    `dataset_path` replaces the description of `dataset.path` (what a relative path means depends on the
    interface: the spec file's folder for the CLI, a data root over HTTP, the working folder of `zlt mcp`).
    """
    schema = JobSpec.model_json_schema(ref_template=ref_template)
    defs = schema.get("$defs", {})
    _bounds(schema, defs)
    _backend_choices(defs, backends)
    _walk(schema, defs, "", preset_values())
    if dataset_path:
        defs["DatasetSpec"]["properties"]["path"]["description"] = dataset_path
    return schema


# The fields a caller usually sets, in the order a first spec names them: what the MCP tools' compact `spec` argument
# shows (every other field: the full schema above, the `get_spec_schema` tool).
COMMON_FIELDS: tuple[str, ...] = (
    "name", "preset", "model.base.name", "model.lora.rank", "dataset.path", "dataset.resolution",
    "dataset.caption.trigger_token", "training.max_steps", "training.learning_rate", "output.save.every",
)
_LEAF_KEYS = ("type", "anyOf", "enum", "default", "description", "minimum", "maximum", "exclusiveMinimum",
              "exclusiveMaximum", "multipleOf", "pattern", "items")


def _deref(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    return {**defs[ref.rsplit("/", 1)[-1]], **{k: v for k, v in node.items() if k != "$ref"}} if ref else node


def common_spec_schema(full: dict[str, Any], fields: Sequence[str] = COMMON_FIELDS) -> dict[str, Any]:
    """`full` (agent_spec_schema's output, `$defs` inside) cut down to `fields`, inlined: each section with its
    description, each field with its type, bounds, effective default and description. Open (no
    `additionalProperties: false`): it lists the common fields, the server validates every field."""
    defs = full.get("$defs", {})
    out: dict[str, Any] = {"type": "object", "properties": {}}
    for path in fields:
        src, dst = full, out
        *parents, leaf = path.split(".")
        for key in parents:
            src = _deref(src["properties"][key], defs)
            dst = dst["properties"].setdefault(key, {"type": "object", "description": src.get("description", ""),
                                                     "properties": {}})
        node = _deref(src["properties"][leaf], defs)
        dst["properties"][leaf] = {k: node[k] for k in _LEAF_KEYS if k in node}
    return out
