"""Issue 13 items 13-15: what an agent with only the MCP tools reads and can do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("mcp")

from tests.fixtures.artifact_jobs import make_job_dir  # noqa: E402
from tests.unit.jobs_fakes import new_job  # noqa: E402
from zlt.serve.intake import Fence  # noqa: E402
from zlt.serve.mcp_server import SubmitArgs, call, input_schema, make_tools  # noqa: E402


def tools(home: Path, fence: Fence | None = None):
    return {t.name: t for t in make_tools(home, fence or Fence(None, None, source="<mcp>"))}


def test_the_schema_shows_what_the_presets_apply_and_the_enforced_bounds():
    defs = input_schema(SubmitArgs)["$defs"]
    warm = defs["TrainingSpec"]["properties"]["warmup_steps"]
    assert warm["default"] == 100 and warm["x-preset-defaults"] == {"style": 100, "character": 0}
    res = defs["DatasetSpec"]["properties"]["resolution"]
    assert res["minimum"] == 256 and res["maximum"] == 2048 and res["multipleOf"] == 16
    assert defs["ModelSection"]["properties"]  # nested models stay referenced
    assert defs["LoraSpec"]["properties"]["rank"]["x-preset-defaults"] == {"style": 16, "character": 64}


def test_the_spec_is_described_once_and_relative_paths_one_way(zlt_home: Path):
    from zlt.spec.models import JobSpec

    schema = input_schema(SubmitArgs, "Image folder on this machine: relative to X.")
    text = json.dumps(schema) + tools(zlt_home)["submit_lora_job"].description()
    assert text.count((JobSpec.__doc__ or "").strip().splitlines()[0]) == 0
    assert schema["$defs"]["DatasetSpec"]["properties"]["path"]["description"] == "Image folder on this machine: relative to X."
    assert "relative to the spec file" not in text


def test_validate_spec_refuses_a_dataset_that_does_not_exist(zlt_home: Path, tmp_path: Path):
    result, is_error = call(tools(zlt_home)["validate_spec"], {"spec": {"dataset": {"path": str(tmp_path / "nope")}}})
    assert is_error and [e["path"] for e in result["errors"]] == ["dataset.path"]
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "a.png").write_bytes(b"x")  # the gate checks the folder holds images, as submit does
    result, is_error = call(tools(zlt_home)["validate_spec"], {"spec": {"dataset": {"path": str(tmp_path / "ds")}}})
    assert not is_error, result


def test_hints_name_tools_and_arguments_not_cli_commands(zlt_home: Path):
    from zlt.serve.mcp_hints import mcp_hint

    result, is_error = call(tools(zlt_home)["get_job_status"], {"job_id": "nosuch"})
    assert is_error and "zlt " not in result["hint"] and "list_jobs" in result["hint"]
    assert mcp_hint("nearest working: --set dataset.resolution=768, or a GPU with 16 GiB (--profile 16gb)") == \
        "nearest working: set dataset.resolution to 768 in the spec, or a GPU with 16 GiB (profile argument '16gb')"
    assert mcp_hint("see what happened: zlt logs 2026-abc --events") == "see what happened: the get_job_events tool"


def test_events_retry_and_artifact_details_are_tools(zlt_home: Path, tmp_path: Path, monkeypatch):
    import zlt.jobs.spawn
    from zlt.artifacts import collect_artifact

    started: list[Path] = []
    monkeypatch.setattr(zlt.jobs.spawn, "ensure_worker", started.append)  # no background worker in a unit test
    monkeypatch.setattr("zlt.jobs.api.ensure_worker", started.append, raising=False)  # its own name for it
    from zlt.jobs.states import JobStatus
    from zlt.jobs.store import JobStore

    job = make_job_dir(tmp_path)
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "a.png").write_bytes(b"x")  # a retry passes the gate again: its dataset must still be there
    store = JobStore(zlt_home)
    store.create(new_job("20260801-120000-abc123", job_dir=str(job), gpus_needed=0,
                         spec_json=json.dumps({"dataset": {"path": str(tmp_path / "ds")}})))
    claim = store.claim("w", [])
    store.transition(claim.job_id, JobStatus.FAILED, token=claim.token, error_cause="unknown")
    store.close()
    t = tools(zlt_home)
    page, is_error = call(t["get_job_events"], {"job_id": "20260801", "after_seq": 0, "limit": 5})
    assert not is_error and [e["seq"] for e in page["events"]] == [1, 2, 3, 4, 5] and page["more"]
    page, _ = call(t["get_job_events"], {"job_id": "20260801", "after_seq": page["last_seq"]})
    assert page["events"][0]["seq"] == 6 and not page["more"]
    result, is_error = call(t["retry_job"], {"job_id": "20260801"})
    assert not is_error and result["state"] == "queued" and started == [zlt_home]
    rec = collect_artifact(job, home=zlt_home)
    art, is_error = call(t["get_artifact"], {"artifact_id": rec.id})
    assert not is_error
    dump = json.dumps(art)
    assert "lora.safetensors" in dump and "sha256" in dump


def test_http_publishes_the_same_schema(zlt_home: Path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from zlt.serve.app import create_app

    token = "t" * 32
    with TestClient(create_app(zlt_home, [], token, webhook_secret=None)) as c:
        auth = {"Authorization": f"Bearer {token}"}
        schema = c.get("/v1/schema", headers=auth).json()
        doc = c.get("/openapi.json", headers=auth).json()
    assert schema["$defs"]["TrainingSpec"]["properties"]["warmup_steps"]["default"] == 100
    res = doc["components"]["schemas"]["DatasetSpec"]["properties"]["resolution"]
    assert res["minimum"] == 256 and res == schema["$defs"]["DatasetSpec"]["properties"]["resolution"]


def test_hostile_arguments_are_a_tool_error(zlt_home: Path):
    nested: dict = {"dataset": {"path": "."}}
    for _ in range(60):
        nested = {"x": nested}
    result, is_error = call(tools(zlt_home)["validate_spec"], {"spec": nested})
    assert is_error and "nested deeper" in result["message"]
    result, is_error = call(tools(zlt_home)["validate_spec"], {"spec": {"training": {"seed": 10**30}}})
    assert is_error and "64 bits" in result["message"]
