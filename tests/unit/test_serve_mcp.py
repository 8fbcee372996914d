"""MCP tool definitions (schemas and descriptions from the spec models) and calls, in process."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

pytest.importorskip("mcp")

from zlt.serve.intake import Fence  # noqa: E402
from zlt.serve.mcp_server import SubmitArgs, build_server, call, input_schema, make_tools  # noqa: E402

TOOL_NAMES = ["get_spec_schema", "validate_spec", "render_config", "submit_lora_job", "get_job_status", "list_jobs",
              "cancel_job", "list_artifacts", "retry_job", "get_job_events", "get_artifact", "generate",
              "style_transfer", "get_generation", "evaluate", "get_eval_report", "retrain_lora", "caption_dataset"]


def test_the_spec_is_described_in_full_once_and_submit_shows_the_common_fields(zlt_home: Path):
    from zlt.spec.models import BaseModelSpec, JobSpec

    schema = input_schema(SubmitArgs)
    assert schema["required"] == ["spec"]
    spec = schema["properties"]["spec"]
    assert spec["type"] == "object" and "get_spec_schema" in spec["description"] and "$defs" not in schema
    assert spec["properties"]["model"]["properties"]["base"]["properties"]["name"]["description"] == \
        BaseModelSpec.model_fields["name"].description  # the field's own words, not a copy
    assert schema["additionalProperties"] is False
    assert schema["properties"]["priority"]["anyOf"][0]["maximum"] == 100
    tools = {t.name: t for t in make_tools(zlt_home, Fence(None, None))}
    full, is_error = call(tools["get_spec_schema"], {})
    assert not is_error and full["schema"]["properties"].keys() == JobSpec.model_json_schema()["properties"].keys()
    part, is_error = call(tools["get_spec_schema"], {"section": "job"})
    assert not is_error and set(part["schema"]["$defs"]) == {"JobSection", "RetrySpec", "ResourcesSpec", "LoggingSpec"}
    assert call(tools["get_spec_schema"], {"section": "nope"})[1]


def test_every_tool_is_listed_once(zlt_home: Path):
    tools = {t.name: t for t in make_tools(zlt_home, Fence(None, None))}
    assert list(tools) == TOOL_NAMES


def test_bad_arguments_are_a_tool_error_with_paths(zlt_home: Path):
    tools = {t.name: t for t in make_tools(zlt_home, Fence(None, None))}
    result, is_error = call(tools["list_jobs"], {"limit": 0, "colour": "red"})
    assert is_error and result["error"] == "invalid_spec"
    assert {e["path"] for e in result["errors"]} == {"limit", "colour"}
    result, is_error = call(tools["validate_spec"], {"spec": {"training": {"max_steps": 0}}})
    assert is_error and "training.max_steps: Input should be greater than or equal to 1" in result["detail"]


def test_an_sdk_client_lists_and_calls_the_tools_in_process(zlt_home: Path):
    from mcp import Client

    async def run():
        async with Client(build_server(zlt_home, Fence(None, None, source="<mcp>"))) as client:
            listed = await client.list_tools()
            jobs = await client.call_tool("list_jobs", {})
            missing = await client.call_tool("get_job_status", {"job_id": "nosuch"})
            return listed, jobs, missing

    listed, jobs, missing = anyio.run(run)
    assert [t.name for t in listed.tools] == TOOL_NAMES
    assert all(t.description and t.input_schema["type"] == "object" for t in listed.tools)
    assert not jobs.is_error and jobs.structured_content == {"jobs": []}
    assert missing.is_error and missing.structured_content["error"] == "not_found"


def test_an_unknown_backend_is_the_registrys_error_on_every_tool(zlt_home: Path, tmp_path: Path):
    """backend='kohya' is judged by the gate (422-like tool error naming training.backend, the choices in the
    hint), not by the argument schema, which still documents the registry's names as its enum."""
    from zlt import backends

    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "a.png").write_bytes(b"x")
    spec = {"model": {"base": {"name": "zlt/tiny-zimage", "source": "builtin"}},
            "dataset": {"path": str(tmp_path / "ds"), "resolution": 64}, "training": {"max_steps": 8, "warmup_steps": 0},
            "output": {"save": {"every": 4}}}
    tools = {t.name: t for t in make_tools(zlt_home, Fence(None, None))}
    for name in ("validate_spec", "render_config", "submit_lora_job"):
        schema = input_schema(tools[name].args)
        assert schema["properties"]["backend"]["anyOf"][0] == {"type": "string", "enum": backends.names()}, name
        result, is_error = call(tools[name], {"spec": spec, "backend": "kohya"})
        assert is_error and result["error"] == "invalid_spec", (name, result)
        assert [e["path"] for e in result["errors"]] == ["training.backend"], (name, result)
        assert result["errors"][0]["hint"] == f"use one of: {', '.join(backends.names())}"
    assert call(tools["list_jobs"], {})[0]["jobs"] == []
