"""`zlt mcp` over stdio, driven by the MCP SDK's own client: list the tools, submit a job, read its status."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import anyio
import pytest

pytest.importorskip("mcp")

pytestmark = [pytest.mark.slow, pytest.mark.serve]

TOOLS = {"get_spec_schema", "validate_spec", "render_config", "submit_lora_job", "get_job_status", "list_jobs",
         "cancel_job", "list_artifacts", "retry_job", "get_job_events", "get_artifact", "generate", "style_transfer",
         "get_generation", "evaluate", "get_eval_report", "retrain_lora", "caption_dataset"}


def make_images(folder: Path) -> Path:
    from PIL import Image

    folder.mkdir(parents=True)
    for i in range(4):
        Image.new("RGB", (64, 64), (50 * i, 90, 160)).save(folder / f"{i}.png")
        (folder / f"{i}.txt").write_text(f"square {i}")
    return folder


def test_an_sdk_client_lists_the_tools_and_runs_submit_then_status(zlt_home: Path, tmp_path: Path):
    from mcp import Client, StdioServerParameters

    root = tmp_path / "data"
    make_images(root / "squares")
    outside = make_images(tmp_path / "outside")
    spec = {"name": "mcptiny", "model": {"base": {"name": "zlt/tiny-zimage", "source": "builtin"}},
            "dataset": {"path": "squares", "resolution": 64},
            "training": {"backend": "lightning", "max_steps": 4000, "warmup_steps": 0},
            "job": {"resources": {"gpu": 0, "min_vram_gb": None}, "retry": {"max_retries": 0}}}
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "zlt", "mcp", "--data-root", str(root)],
        env={"ZLT_HOME": str(zlt_home), "ZLT_CONFIG": str(zlt_home / "config.toml"), "HF_HUB_OFFLINE": "1",
             "PYTHONPATH": os.pathsep.join(sys.path)},
    )

    async def session():
        with anyio.fail_after(120):
            async with Client(params, read_timeout_seconds=60) as client:
                listed = await client.list_tools()
                outside_root = await client.call_tool(
                    "submit_lora_job", {"spec": {**spec, "dataset": {"path": str(outside), "resolution": 64}}})
                submitted = await client.call_tool("submit_lora_job", {"spec": spec})
                job_id = submitted.structured_content["job_id"]
                status = await client.call_tool("get_job_status", {"job_id": job_id})
                jobs = await client.call_tool("list_jobs", {"limit": 5})
                cancelled = await client.call_tool("cancel_job", {"job_id": job_id})
                arts = await client.call_tool("list_artifacts", {})
                return listed, outside_root, submitted, status, jobs, cancelled, arts

    try:
        listed, outside_root, submitted, status, jobs, cancelled, arts = anyio.run(session)
    finally:
        try:  # the background worker the submit started
            os.kill(json.loads((zlt_home / "run" / "worker.pid").read_text())["pid"], signal.SIGTERM)
        except (OSError, ValueError, KeyError):
            pass

    by_name = {t.name: t for t in listed.tools}
    assert set(by_name) == TOOLS
    assert "dataset" in by_name["submit_lora_job"].input_schema["properties"]["spec"]["properties"]
    assert outside_root.is_error
    assert outside_root.structured_content["errors"][0]["path"] == "dataset.path"
    assert not submitted.is_error, submitted.content
    job_id = submitted.structured_content["job_id"]
    assert submitted.structured_content["state"] == "queued"
    assert not status.is_error
    assert status.structured_content["job_id"] == job_id
    assert status.structured_content["state"] in {"queued", "preparing", "running"}
    assert [j["job_id"] for j in jobs.structured_content["jobs"]] == [job_id]
    assert not cancelled.is_error and cancelled.structured_content["job_id"] == job_id
    assert arts.structured_content == {"artifacts": []}
