"""`zlt mcp`: the same operations as the HTTP API, as MCP tools over stdio.

Tools: validate_spec, render_config, submit_lora_job, get_job_status, list_jobs, cancel_job, list_artifacts,
retrain_lora.
Each tool's input schema is its arguments model's JSON Schema, with the `spec` argument being the job spec's own
schema (`JobSpec`, what `zlt schema` prints); its description is built from the spec models' descriptions.
A tool that fails returns `isError: true` with the same error object the CLI prints with `--json`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from zlt.errors import FieldError, SpecError, ZltError
from zlt.serve import tools
from zlt.serve.intake import Fence, SubmitOptions

SPEC_DESCRIPTION = "A zlt job spec (the JSON form of the YAML `zlt init` writes; schema: `zlt schema`)."


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ValidateArgs(_Args):
    spec: dict[str, Any] = Field(description=SPEC_DESCRIPTION)


class RenderArgs(_Args):
    spec: dict[str, Any] = Field(description=SPEC_DESCRIPTION)
    backend: Literal["ai-toolkit", "musubi", "lightning"] | None = Field(
        None, description="Trainer to render for (default: the spec's training.backend).")
    profile: str = Field("auto", description="Hardware profile (12gb, 16gb, 24gb, 32gb, 48gb, 80gb, cpu) or auto.")
    vram_gb: float | None = Field(None, gt=0, description="Plan for a GPU with this much memory (GB).")


class SubmitArgs(_Args):
    spec: dict[str, Any] = Field(description=SPEC_DESCRIPTION)
    priority: int | None = Field(None, ge=-100, le=100, description="Queue priority, higher first (default: job.priority).")
    backend: Literal["ai-toolkit", "musubi", "lightning"] | None = Field(
        None, description="Trainer (default: the spec's training.backend).")
    profile: str = Field("auto", description="Hardware profile, or auto.")
    skip_preflight: bool = Field(False, description="Skip the GPU/trainer checks before the run.")


class JobArgs(_Args):
    job_id: str = Field(min_length=1, max_length=128, description="Job id (or a unique prefix) from submit_lora_job.")


class ListJobsArgs(_Args):
    state: Literal["queued", "preparing", "running", "succeeded", "failed", "cancelled"] | None = Field(
        None, description="Only jobs in this state.")
    limit: int = Field(50, ge=1, le=1000, description="At most this many jobs, newest first.")


class NoArgs(_Args):
    pass


def spec_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    """(JobSpec schema referencing `#/$defs/...`, its `$defs`)."""
    from zlt.spec.models import JobSpec

    schema = JobSpec.model_json_schema(ref_template="#/$defs/{model}")
    defs = schema.pop("$defs", {})
    return schema, defs


def input_schema(args: type[_Args]) -> dict[str, Any]:
    """The tool's JSON Schema: its arguments model, with `spec` replaced by the job spec's schema."""
    schema = args.model_json_schema(ref_template="#/$defs/{model}")
    schema.pop("title", None)
    if "spec" in schema.get("properties", {}):
        spec, defs = spec_schema()
        schema.setdefault("$defs", {}).update(defs)
        schema["$defs"]["JobSpec"] = spec
        schema["properties"]["spec"] = {"$ref": "#/$defs/JobSpec", "description": SPEC_DESCRIPTION}
    return schema


def spec_sections() -> str:
    """'model: Base model and LoRA. dataset: ...' from the JobSpec field descriptions."""
    from zlt.spec.models import JobSpec

    return " ".join(f"{name}: {f.description}" for name, f in JobSpec.model_fields.items())


@dataclass
class Tool:
    name: str
    summary: str
    args: type[_Args]
    run: Callable[[Any], Any]
    with_spec: bool = False

    def description(self) -> str:
        if not self.with_spec:
            return self.summary
        from zlt.spec.models import JobSpec

        doc = (JobSpec.__doc__ or "").strip().splitlines()[0]
        return (f"{self.summary} The `spec` argument is a zlt job spec. {doc} Sections — {spec_sections()} "
                "Preset defaults ('style' or 'character') fill in whatever the spec leaves out.")


def make_tools(home: Path, fence: Fence) -> list[Tool]:
    home = Path(home)
    base = Path.cwd()
    where = ("a folder inside the server's data roots" if fence.data_roots is not None
             else "a folder on this machine (relative paths are relative to where `zlt mcp` runs)")
    return [
        Tool("validate_spec", "Check a LoRA job spec without running anything; returns the resolved spec or every "
             "problem at once as 'field.path: message'.", ValidateArgs,
             lambda a: tools.validate_spec(a.spec, fence, base_dir=base), with_spec=True),
        Tool("render_config", "Render the trainer configuration (ai-toolkit YAML, musubi TOML + argv, or the built-in "
             "trainer's JSON) a spec produces for a hardware profile.", RenderArgs,
             lambda a: tools.render_config(a.spec, fence, backend=a.backend, profile=a.profile, vram_gb=a.vram_gb,
                                           base_dir=base), with_spec=True),
        Tool("submit_lora_job", "Submit a LoRA training job on Tongyi-MAI/Z-Image-Turbo; returns at once with the "
             f"job_id and its status (poll get_job_status). dataset.path must be {where}.", SubmitArgs,
             lambda a: tools.submit(home, a.spec, fence, SubmitOptions(a.priority, a.backend, a.profile,
                                                                     a.skip_preflight), base_dir=base),
             with_spec=True),
        Tool("get_job_status", "The status of a job: state, phase, step/total, percent, loss, ETA, artifact id, error.",
             JobArgs, lambda a: tools.status(home, a.job_id)),
        Tool("list_jobs", "Jobs, newest first, with their status.", ListJobsArgs,
             lambda a: {"jobs": tools.jobs(home, a.state, a.limit)}),
        Tool("cancel_job", "Cancel a job: a queued one at once, a running one stops gracefully.", JobArgs,
             lambda a: tools.cancel(home, a.job_id)),
        Tool("list_artifacts", "Trained LoRA artifacts in the registry (id, job, name, path, final step and loss).",
             NoArgs, lambda a: {"artifacts": tools.artifacts(home)}),
        _retrain_tool(home, fence),
    ]


def _retrain_tool(home: Path, fence: Fence) -> Tool:
    from zlt.serve.retrain_api import RetrainBody, retrain

    class RetrainArgs(RetrainBody):
        artifact: str = Field(min_length=1, max_length=256,
                              description="Artifact id, STYLE@vN, a style name (its current version), or a job id.")

    return Tool("retrain_lora", "Train a finished LoRA further (more steps, new data, other settings); the job's "
                "artifact becomes the style's next version. Returns the job status (poll get_job_status) and its "
                "plan: mode 'resume' (same data and settings: optimizer state too) or 'warm' (from the weights).",
                RetrainArgs, lambda a: retrain(home, a.artifact, RetrainBody(**a.model_dump(exclude={"artifact"})),
                                               fence))


def _error_result(err: ZltError) -> dict[str, Any]:
    out = {"ok": False, **err.to_dict()}
    if isinstance(err, SpecError):
        out["detail"] = [f"{e.path}: {e.message}" if e.path else e.message for e in err.errors]
    return out


def call(tool: Tool, arguments: dict[str, Any] | None) -> tuple[dict[str, Any], bool]:
    """(structured result, is_error) of one tool call. Never raises for a caller's mistake."""
    try:
        args = tool.args.model_validate(arguments or {})
    except ValidationError as e:
        errs = [FieldError(".".join(str(p) for p in x["loc"]), x["msg"]) for x in e.errors()]
        return _error_result(SpecError(errs, f"{tool.name} arguments")), True
    try:
        return tool.run(args), False
    except ZltError as e:
        return _error_result(e), True


def build_server(home: Path, fence: Fence):
    """The low-level MCP server with the zlt tools."""
    import anyio
    import mcp_types as types
    from mcp.server import Server

    from zlt import __version__

    registry = {t.name: t for t in make_tools(home, fence)}
    listing = [types.Tool(name=t.name, description=t.description(), input_schema=input_schema(t.args))
               for t in registry.values()]

    async def list_tools(_ctx: Any, _params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=listing)

    async def call_tool(_ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        tool = registry.get(params.name)
        if tool is None:
            result, is_error = {"ok": False, "error": "unknown_tool", "message": f"no tool {params.name!r}",
                                "hint": f"tools: {', '.join(registry)}"}, True
        else:
            result, is_error = await anyio.to_thread.run_sync(call, tool, params.arguments)
        text = json.dumps(result, ensure_ascii=False, default=str)
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)],
                                    structured_content=json.loads(text), is_error=is_error)

    return Server("zlt", version=__version__, instructions=(
        "Train LoRAs on Tongyi-MAI/Z-Image-Turbo: validate_spec, then submit_lora_job (returns a job_id at once), "
        "then get_job_status until state is succeeded/failed/cancelled; list_artifacts shows the trained LoRAs."),
        on_list_tools=list_tools, on_call_tool=call_tool)


def run_stdio(home: Path, fence: Fence) -> None:
    """Serve MCP on stdin/stdout until the client closes the stream."""
    import anyio
    from mcp.server.stdio import stdio_server

    server = build_server(home, fence)

    async def main() -> None:
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())

    anyio.run(main)
