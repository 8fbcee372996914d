"""`zlt mcp`: the same operations as the HTTP API, as MCP tools over stdio.

Tools: get_spec_schema, validate_spec, render_config, submit_lora_job, get_job_status, list_jobs, cancel_job,
retry_job, get_job_events, list_artifacts, get_artifact (everything the HTTP API offers but file downloads:
get_artifact gives the files' paths and sha256), generate, style_transfer, get_generation
(zlt/serve/mcp_generations.py), evaluate, get_eval_report (zlt/serve/evaluations.py), retrain_lora
(zlt/serve/retrain_api.py).
Each tool's input schema is its arguments model's JSON Schema without titles; the job spec is described once in
full (get_spec_schema) and submit_lora_job's `spec` shows its common fields (zlt/serve/mcp_schema.py), so the whole
list stays small enough for an agent to read (tests/unit/test_serve_mcp_agent.py measures it).
A tool that fails returns `isError: true` with the same error object the CLI prints with `--json`.
"""

from __future__ import annotations

import json
import re
import sys
import traceback
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from zlt import __version__
from zlt.core.constants import TINY_MODEL, TURBO_MODEL
from zlt.core.errors import FieldError, SpecError, ZltError
from zlt.profiles import load_profiles
from zlt.serve import tools
from zlt.serve.api_words import api_error
from zlt.serve.evaluations import eval_tools
from zlt.serve.intake import Fence, SubmitOptions, backend_doc, backend_enum
from zlt.serve.jsonbody import check_shape
from zlt.serve.mcp_caption import caption_tool
from zlt.serve.mcp_generations import generation_tools
from zlt.serve.mcp_hints import translate_error
from zlt.serve.mcp_schema import SAME_SPEC, SPEC_DESCRIPTION, spec_argument, spec_schema_tool, strip_titles
from zlt.serve.mcp_tool import JobArgs, Tool
from zlt.serve.mcp_tool import ToolArgs as _Args
from zlt.serve.retrain_api import RetrainBody, retrain


def _backend_arg(default: str) -> Any:
    """A `backend` argument: any string (the gate gives the registry's error for an unknown one, naming
    training.backend), the registry's names as its documented enum."""
    return Field(None, description=backend_doc(default), json_schema_extra=backend_enum)


def profile_doc() -> str:
    """The `profile` argument's description: the bundled profiles, and what auto picks."""
    return (f"Hardware profile: {', '.join(load_profiles())}, or auto: from the server's GPU memory; cpu for "
            "the tiny model.")


class ValidateArgs(_Args):
    spec: dict[str, Any] = Field(description=SAME_SPEC)
    backend: str | None = _backend_arg("the spec's training.backend")


class RenderArgs(_Args):
    spec: dict[str, Any] = Field(description=SAME_SPEC)
    backend: str | None = _backend_arg("the spec's training.backend")
    profile: str = Field("auto", description=profile_doc())
    vram_gb: float | None = Field(None, gt=0, description="Plan for a GPU with this much memory (GB).")


class SubmitArgs(_Args):
    spec: dict[str, Any] = Field(description=SPEC_DESCRIPTION)
    priority: int | None = Field(None, ge=-100, le=100, description="Queue priority, higher first (default: job.priority).")
    backend: str | None = _backend_arg("the spec's training.backend")
    profile: str = Field("auto", description="Hardware profile (listed in the description), or auto.")
    skip_preflight: bool = Field(False, description="Skip the worker's GPU/trainer checks (never needed for the tiny "
                                 "model).")


class ListJobsArgs(_Args):
    state: Literal["queued", "preparing", "running", "succeeded", "failed", "cancelled"] | None = Field(
        None, description="Only jobs in this state.")
    limit: int = Field(50, ge=1, le=1000, description="At most this many jobs, newest first.")


class NoArgs(_Args):
    pass


class EventsArgs(_Args):
    job_id: str = Field(min_length=1, max_length=128, description="Job id (or a unique prefix) from submit_lora_job.")
    after_seq: int = Field(0, ge=0, description="Only events with a larger seq (pass the last seq you saw).")
    limit: int = Field(500, ge=1, le=5000, description="At most this many events, oldest first.")


class ArtifactArgs(_Args):
    artifact_id: str = Field(min_length=1, max_length=256,
                             description="Artifact id (see list_artifacts), unique id prefix, job id, style name "
                                         "(its current version), STYLE@vN or 'latest'.")


def dataset_path_note(fence: Fence) -> str:
    """What `dataset.path` may be for this MCP session (one description, used by the schema and the tools)."""
    if fence.data_roots is not None:
        roots = ", ".join(str(r) for r in fence.data_roots)
        return (f"Image folder inside the server's data roots ({roots}): absolute, or relative to a data root.")
    return ("Image folder on this machine: absolute, or relative to the folder `zlt mcp` was started in "
            f"({Path.cwd()}).")


def input_schema(args: type[_Args], dataset_path: str | None = None) -> dict[str, Any]:
    """The tool's JSON Schema: its arguments model without titles, a `spec` argument as zlt/serve/mcp_schema.py
    shapes it (submit_lora_job's with the common fields, the others pointing there)."""
    schema = strip_titles(args.model_json_schema(ref_template="#/$defs/{model}"))
    if "spec" in schema.get("properties", {}):
        schema["properties"]["spec"] = spec_argument(dataset_path, common=args is SubmitArgs)
    return schema


def make_tools(home: Path, fence: Fence) -> list[Tool]:
    home = Path(home)
    base = Path.cwd()
    where = dataset_path_note(fence)
    return [
        spec_schema_tool(where),
        Tool("validate_spec", "Check a job spec without running anything: the resolved spec (preset defaults filled "
             "in) and warnings, or every problem at once as 'field.path: message'.", ValidateArgs,
             lambda a: tools.validate_spec(a.spec, fence, backend=a.backend, base_dir=base)),
        Tool("render_config", "The trainer configuration a spec produces for a hardware profile (what would run).",
             RenderArgs,
             lambda a: tools.render_config(a.spec, fence, backend=a.backend, profile=a.profile, vram_gb=a.vram_gb,
                                           base_dir=base)),
        Tool("submit_lora_job", "Queue LoRA training; returns the job_id at once: poll get_job_status until state is "
             "succeeded (then artifact_id names the LoRA), failed or cancelled. Base model (model.base.name): "
             f"{TURBO_MODEL} (default, GPU) or {TINY_MODEL}, the tiny test model (CPU; nothing else to set; e.g. "
             "dataset.resolution 64, training.max_steps 40, output.save.every 10). Checkpoints are kept every "
             f"output.save.every steps for evaluate to compare. profile: {profile_doc()} dataset.path: {where}",
             SubmitArgs,
             lambda a: tools.submit(home, a.spec, fence, SubmitOptions(a.priority, a.backend, a.profile,
                                                                     a.skip_preflight), base_dir=base)),
        Tool("get_job_status", "A job's status (any kind): state, phase, step/total, percent, loss, eta_s, "
             "artifact_id, error.", JobArgs, lambda a: tools.status(home, a.job_id)),
        Tool("list_jobs", "Jobs, newest first, with their status.", ListJobsArgs,
             lambda a: {"jobs": tools.jobs(home, a.state, a.limit)}),
        Tool("cancel_job", "Cancel a job: a queued one at once, a running one stops gracefully.", JobArgs,
             lambda a: tools.cancel(home, a.job_id)),
        Tool("list_artifacts", "Trained LoRA artifacts in the registry (id, job, name, path, final step and loss).",
             NoArgs, lambda a: {"artifacts": tools.artifacts(home)}),
        Tool("retry_job", "Queue a failed or cancelled job again; it resumes from its latest checkpoint.", JobArgs,
             lambda a: tools.retry(home, a.job_id)),
        Tool("get_job_events", "A job's typed events (phase, progress, checkpoint, sample, warning, error, finished) "
             "after a seq: poll with after_seq = the last seq seen; `more` says whether to ask again.", EventsArgs,
             lambda a: tools.events(home, a.job_id, a.after_seq, a.limit)),
        Tool("get_artifact", "One trained LoRA: its checkpoint steps, `best` (the step its last evaluation picked, "
             "with that evaluation's job, report, metric and scale; null until evaluate has run, updated by each "
             "evaluation), files with sha256, loss summary, folder.", ArtifactArgs,
             lambda a: tools.artifact(home, a.artifact_id)),
    ] + _generation_tools(home, fence) + _eval_tools(home, fence) + [_retrain_tool(home, fence),
                                                                      caption_tool(home, fence)]


def _generation_tools(home: Path, fence: Fence) -> list[Tool]:
    return generation_tools(home, fence)


def _eval_tools(home: Path, fence: Fence) -> list[Tool]:
    return eval_tools(home, fence)


def _retrain_tool(home: Path, fence: Fence) -> Tool:
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
    return api_error(translate_error(out))


def _unexpected(tool: Tool, err: BaseException) -> dict[str, Any]:
    """A failure no layer named (a bug, or input a check let through): logged in full on the server's stderr, the
    client gets the one error object, never a traceback."""
    sys.stderr.write(f"zlt mcp: {tool.name} failed:\n{''.join(traceback.format_exception(err))}")
    what = f"{type(err).__name__}: {err}"
    return {"ok": False, "error": "internal_error", "message": f"{tool.name} failed ({what[:300]})",
            "hint": "check the arguments; if they are right, see the server's log and report it", "exit_code": 1}


def call(tool: Tool, arguments: dict[str, Any] | None) -> tuple[dict[str, Any], bool]:
    """(structured result, is_error) of one tool call: the one place every tool is run, so no exception of any
    tool reaches the client as a traceback. Never raises (but for KeyboardInterrupt / SystemExit)."""
    try:
        args = tool.args.model_validate(check_shape(arguments or {}, f"{tool.name} arguments"))
        return tool.run(args), False
    except ZltError as e:
        return _error_result(e), True
    except ValidationError as e:
        errs = [FieldError(".".join(str(p) for p in x["loc"]), x["msg"]) for x in e.errors()]
        return _error_result(SpecError(errs, f"{tool.name} arguments")), True
    except Exception as e:  # noqa: BLE001 - the tool error object instead of the MCP library's traceback
        return _unexpected(tool, e), True


def build_server(home: Path, fence: Fence):
    """The low-level MCP server with the zlt tools."""
    import anyio
    import mcp_types as types
    from mcp.server import Server

    registry = {t.name: t for t in make_tools(home, fence)}
    note = dataset_path_note(fence)
    listing = [types.Tool(name=t.name, description=t.description(), input_schema=input_schema(t.args, note))
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
        f"Train LoRAs on {TURBO_MODEL} (or the CPU test model {TINY_MODEL}): submit_lora_job (returns a job_id at "
        "once; validate_spec checks a spec first), get_job_status until state is succeeded; evaluate the artifact "
        "and poll its job; then generate or style_transfer with checkpoint 'best' and get_generation for the "
        "files. get_spec_schema describes every spec field."),
        on_list_tools=list_tools, on_call_tool=call_tool)


_REQUEST_ID = re.compile(r'"id"\s*:\s*(-?\d{1,18}|"(?:[^"\\]|\\.){0,200}")')


def unreadable_reply(err: Exception) -> dict[str, Any] | None:
    """The JSON-RPC error that answers a line the MCP library could not read, or None for a notification.

    The library logs such a line and drops it, so a client that sent a request waits forever: a call whose
    arguments nest 200 deep passes Python's JSON parser but not the library's (pydantic's parser stops at 200
    levels). The request's id is read back from the line when it has one, so the client gets its answer."""
    errors = err.errors() if isinstance(err, ValidationError) else []
    line = errors[0].get("input") if errors else None
    if not isinstance(line, str):
        return None
    try:
        msg: Any = json.loads(line)
    except (ValueError, RecursionError):
        msg = None
    if isinstance(msg, dict):
        if "id" not in msg:
            return None  # a notification: JSON-RPC sends nothing back
        rid = msg["id"] if isinstance(msg["id"], (int, str)) and not isinstance(msg["id"], bool) else None
    else:
        found = _REQUEST_ID.search(line)
        rid = json.loads(found.group(1)) if found else None
    deep = any("recursion limit" in str(e.get("msg", "")) for e in errors)
    if deep:
        code, text = -32600, ("the message nests deeper than this server reads (200 levels); a tool's arguments "
                              "are a few levels deep")
    elif msg is None:
        code, text = -32700, "not valid JSON"
    else:
        code, text = -32600, f"not a JSON-RPC 2.0 request: {errors[0].get('msg', 'invalid')}"
    return {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": text}}


async def serve_streams(server: Any, read_stream: Any, write_stream: Any) -> None:
    """Run `server` over a transport's streams, answering each line the transport could not read (see
    unreadable_reply) instead of leaving its client waiting."""
    import anyio  # lazy: pulls the MCP SDK's async runtime
    import mcp_types as types  # lazy: pulls the MCP SDK
    from mcp.shared.message import SessionMessage  # lazy: pulls the MCP SDK

    sink, readable = anyio.create_memory_object_stream[Any](0)

    async def forward() -> None:
        async with sink:
            async for item in read_stream:
                reply = unreadable_reply(item) if isinstance(item, Exception) else None
                if reply is None:
                    await sink.send(item)
                else:
                    await write_stream.send(SessionMessage(types.jsonrpc_message_adapter.validate_python(reply)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(forward)
        await server.run(readable, write_stream, server.create_initialization_options())
        tg.cancel_scope.cancel()


def run_stdio(home: Path, fence: Fence) -> None:
    """Serve MCP on stdin/stdout until the client closes the stream."""
    import anyio
    from mcp.server.stdio import stdio_server

    server = build_server(home, fence)

    async def main() -> None:
        async with stdio_server() as (read_stream, write_stream):
            await serve_streams(server, read_stream, write_stream)

    anyio.run(main)
