"""The JSON Schemas `zlt mcp` lists, kept small enough for an agent to read in one go.

The job spec is described once in full, by the `get_spec_schema` tool (the schema `zlt schema` prints, with the
defaults the presets apply and the bounds the validator enforces). `submit_lora_job`'s `spec` argument shows the
fields a caller usually sets (zlt.spec.agent_schema.COMMON_FIELDS); `validate_spec` and `render_config` take the same
object and point there. Every listed schema drops the `title` keys pydantic adds (a property's name says it).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from zlt import backends
from zlt.serve.mcp_tool import Tool, ToolArgs
from zlt.spec.agent_schema import agent_spec_schema, common_spec_schema
from zlt.spec.models import JobSpec

SPEC_DESCRIPTION = ("The job spec (the JSON form of the YAML `zlt init` writes). Only dataset.path is needed: the "
                    "preset fills in every field left out. Shown: the fields a run usually sets; every field with "
                    "its default and bounds: get_spec_schema.")
SAME_SPEC = ("The job spec, the same object as submit_lora_job's `spec` (common fields there; every field: "
             "get_spec_schema).")
Section = Literal["model", "dataset", "training", "job", "output", "eval"]
SECTIONS: tuple[str, ...] = tuple(n for n in JobSpec.model_fields if n not in ("name", "preset"))


def strip_titles(node: Any, *, names: bool = False) -> Any:
    """`node` without JSON Schema `title` keywords (a property called `title` stays: `names` marks the mappings whose
    keys are property or definition names)."""
    if isinstance(node, dict):
        return {k: strip_titles(v, names=k in ("properties", "$defs") and not names)
                for k, v in node.items() if names or k != "title"}
    if isinstance(node, list):
        return [strip_titles(x) for x in node]
    return node


def full_spec_schema(dataset_path: str | None = None) -> dict[str, Any]:
    """JobSpec's schema as an agent reads it (`$defs` inside): zlt.spec.agent_schema with the registry's backends."""
    return agent_spec_schema(backends.names(), dataset_path=dataset_path)


def spec_argument(dataset_path: str | None, *, common: bool) -> dict[str, Any]:
    """The `spec` argument's schema: the common fields (submit_lora_job), or an object pointing there."""
    if not common:
        return {"type": "object", "description": SAME_SPEC}
    schema = common_spec_schema(full_spec_schema(dataset_path))
    return {**strip_titles(schema), "description": SPEC_DESCRIPTION}


class SpecSchemaArgs(ToolArgs):
    section: Section | None = Field(None, description="Only this section (its fields and their models).")


def spec_schema_result(section: str | None, dataset_path: str | None) -> dict[str, Any]:
    """The full spec schema, or one section of it with the definitions it uses."""
    schema = strip_titles(full_spec_schema(dataset_path))
    if section is None:
        return {"schema": schema}
    defs = schema.get("$defs", {})
    node = schema["properties"][section]
    used: dict[str, Any] = {}
    todo = [node]
    while todo:
        cur = todo.pop()
        for ref in _refs(cur):
            name = ref.rsplit("/", 1)[-1]
            if name not in used:
                used[name] = defs[name]
                todo.append(defs[name])
    return {"section": section, "schema": {**node, "$defs": used}}


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [node["$ref"]] if "$ref" in node else [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def spec_schema_tool(dataset_path: str) -> Tool:
    return Tool("get_spec_schema", "The job spec's full JSON Schema (or one section): every field with its "
                "description, effective default (x-preset-defaults: per preset) and bounds.", SpecSchemaArgs,
                lambda a: spec_schema_result(a.section, dataset_path))
