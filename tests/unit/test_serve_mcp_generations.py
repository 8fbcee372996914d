"""MCP tools generate / style_transfer / get_generation, in process."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("mcp")

from PIL import Image  # noqa: E402

from tests.fixtures.infer_fixtures import tiny_artifact  # noqa: E402
from zlt.serve.intake import Fence  # noqa: E402
from zlt.serve.mcp_server import call, input_schema, make_tools  # noqa: E402


@pytest.fixture
def tools(zlt_home: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setattr("zlt.jobs.spawn.ensure_worker", lambda home: None)
    (tmp_path / "data").mkdir()
    return {t.name: t for t in make_tools(zlt_home, Fence((tmp_path / "data",), None))}


def test_generate_queues_a_job_and_get_generation_reports_it(tools, zlt_home, tmp_path):
    art = tiny_artifact(tmp_path / "jobs", zlt_home)
    result, is_error = call(tools["generate"], {"loras": [{"artifact": art, "scale": 0.9}], "prompts": ["a cat"],
                                                "width": 64, "height": 64, "priority": 5})
    assert not is_error, result
    assert result["kind"] == "generate" and result["priority"] == 5
    got, is_error = call(tools["get_generation"], {"job_id": result["job_id"]})
    assert not is_error and got["job"]["state"] == "queued" and got["outputs"] is None


def test_tool_errors_name_the_field(tools, zlt_home, tmp_path):
    art = tiny_artifact(tmp_path / "jobs", zlt_home)
    result, is_error = call(tools["generate"], {"loras": [{"artifact": "nope"}], "prompts": ["x"]})
    assert is_error and result["message"].startswith("generate.loras: ")
    outside = tmp_path / "in.png"
    Image.new("RGB", (32, 32)).save(outside)
    result, is_error = call(tools["style_transfer"], {"loras": [{"artifact": art}], "images": [str(outside)]})
    assert is_error and result["message"].startswith("transfer.images: ") and "data roots" in result["message"]
    Image.new("RGB", (32, 32)).save(tmp_path / "data" / "in.png")
    result, is_error = call(tools["style_transfer"], {"loras": [{"artifact": art}], "images": ["in.png"]})
    assert not is_error and result["kind"] == "transfer"


def test_schemas_are_the_library_request_models(tools):
    schema = input_schema(tools["style_transfer"].args)
    assert schema["additionalProperties"] is False
    assert {"loras", "images", "strength", "control", "priority"} <= set(schema["properties"])
    assert schema["properties"]["strength"]["maximum"] == 1.0
