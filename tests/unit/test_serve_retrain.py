"""POST /v1/artifacts/{ref}/retrain and the MCP tool retrain_lora: queue a retrain, fenced like a submit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from tests.fixtures.artifact_jobs import make_job_dir  # noqa: E402
from tests.serve_client import AUTH, serve_client  # noqa: E402
from zlt.artifacts import collect_artifact  # noqa: E402
from zlt.serve.intake import Fence  # noqa: E402
from zlt.serve.mcp_server import call, make_tools  # noqa: E402


@pytest.fixture
def artifact(tmp_path: Path, zlt_home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    from PIL import Image

    import zlt.jobs.spawn

    spawned: list[Path] = []
    monkeypatch.setattr(zlt.jobs.spawn, "ensure_worker", spawned.append)  # queue only: no background worker here
    monkeypatch.setattr("zlt.jobs.api.ensure_worker", spawned.append, raising=False)  # its own name for it
    job = make_job_dir(tmp_path / "jobs")
    (job / "dataset").mkdir()
    Image.new("RGB", (64, 64), (10, 20, 30)).save(job / "dataset" / "a.png")
    return collect_artifact(job, home=zlt_home).id


@pytest.fixture
def client(zlt_home: Path, tmp_path: Path):
    (tmp_path / "data").mkdir()
    with serve_client(zlt_home, [tmp_path / "data"]) as c:
        yield c


def test_retrain_route_queues_the_next_version(client, artifact: str, zlt_home: Path):
    r = client.post("/v1/artifacts/watercolor/retrain", headers=AUTH, json={"steps": 300})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["retrain"]["parent_id"] == artifact and body["retrain"]["mode"] == "warm"
    assert body["retrain"]["max_steps"] == 300 and body["state"] == "queued"
    assert r.headers["Location"] == body["status_url"]
    job_dir = Path(body["job"]["job_dir"])
    assert json.loads((job_dir / "retrain.json").read_text())["parent_id"] == artifact
    assert (job_dir / "warm_start" / "init.ai-toolkit.safetensors").is_file()
    assert client.get(f"/v1/jobs/{body['job_id']}", headers=AUTH).json()["state"] == "queued"
    # the API accepts the style name: its current version
    assert client.get("/v1/artifacts/watercolor", headers=AUTH).json()["id"] == artifact
    r = client.get("/v1/artifacts/watercolor/files/lora.safetensors", headers=AUTH)
    assert r.status_code == 200 and r.content[:8]


def test_retrain_route_refuses_bad_bodies_and_unfenced_paths(client, artifact: str):
    r = client.post(f"/v1/artifacts/{artifact}/retrain", headers=AUTH, json={"bogus": 1})
    assert r.status_code == 422 and "bogus" in r.text
    r = client.post(f"/v1/artifacts/{artifact}/retrain", headers=AUTH, json={"steps": 10, "more_steps": 10})
    assert r.status_code == 400 and "give one" in r.json()["message"]
    r = client.post(f"/v1/artifacts/{artifact}/retrain", headers=AUTH, json={"dataset": "/etc"})
    assert r.status_code in (400, 422) and "/etc" in r.text
    # the fence runs on the spec the retrain will run: 422 naming the field, whatever the override's syntax
    for override, field in (("dataset.path=/etc", "dataset.path"), ("dataset={path: /etc, resolution: 64}", "dataset.path"),
                            ("output.registry={path: /tmp/elsewhere}", "output.registry.path"),
                            ("eval.models.clip=/etc", "eval.models.clip"),
                            ("job={callback_url: 'ftp://169.254.169.254/'}", "job.callback_url")):
        r = client.post(f"/v1/artifacts/{artifact}/retrain", headers=AUTH, json={"set": [override]})
        assert r.status_code == 422 and field in [e["path"] for e in r.json()["errors"]], (override, r.text)
    assert client.post("/v1/artifacts/nosuch/retrain", headers=AUTH, json={}).status_code == 404


def test_mcp_retrain_lora_tool(artifact: str, zlt_home: Path):
    fence = Fence(None, None)
    tool = next(t for t in make_tools(zlt_home, fence) if t.name == "retrain_lora")
    assert "artifact" in tool.args.model_json_schema()["properties"]
    result, is_error = call(tool, {"artifact": "watercolor@v0", "more_steps": 500})
    assert not is_error, result
    assert result["retrain"]["parent_id"] == artifact and result["retrain"]["mode"] == "warm"
    assert "trainer state" in result["retrain"]["why_warm"]  # the fixture parent left no ai-toolkit state
    result, is_error = call(tool, {"artifact": "nosuch"})
    assert is_error and result["error"] == "not_found"
    fenced = next(t for t in make_tools(zlt_home, Fence((zlt_home,), (zlt_home,), model_roots=(zlt_home,)))
                  if t.name == "retrain_lora")
    result, is_error = call(fenced, {"artifact": "watercolor@v0", "set": ["output.registry={path: /tmp/elsewhere}"]})
    assert is_error and "output.registry.path" in " ".join(result["detail"])


def test_the_parents_callback_url_is_subscribed_for_the_retrain(tmp_path: Path, zlt_home: Path, monkeypatch):
    from PIL import Image

    import zlt.jobs.spawn
    from zlt.serve.webhooks import Subscriptions

    monkeypatch.setattr(zlt.jobs.spawn, "ensure_worker", lambda home: None)
    monkeypatch.setattr("zlt.jobs.api.ensure_worker", lambda home: None, raising=False)
    job = make_job_dir(tmp_path / "jobs", spec={"job": {"callback_url": "https://agents.example.com/hooks/zlt"}})
    (job / "dataset").mkdir()
    Image.new("RGB", (64, 64)).save(job / "dataset" / "a.png")
    collect_artifact(job, home=zlt_home)
    with serve_client(zlt_home, [tmp_path]) as c:
        r = c.post("/v1/artifacts/watercolor/retrain", headers=AUTH, json={"steps": 300})
    assert r.status_code == 202, r.text
    assert Subscriptions(zlt_home).load(r.json()["job_id"])["url"] == "https://agents.example.com/hooks/zlt"


def test_an_unknown_backend_is_the_registrys_error_over_http_and_mcp(client, artifact: str, zlt_home: Path):
    from zlt import backends

    r = client.post(f"/v1/artifacts/{artifact}/retrain", headers=AUTH, json={"backend": "kohya"})
    assert r.status_code == 422, r.text
    assert [e["path"] for e in r.json()["errors"]] == ["training.backend"]
    assert r.json()["errors"][0]["hint"] == f"use one of: {', '.join(backends.names())}"
    tool = next(t for t in make_tools(zlt_home, Fence(None, None)) if t.name == "retrain_lora")
    result, is_error = call(tool, {"artifact": artifact, "backend": "kohya"})
    assert is_error and [e["path"] for e in result["errors"]] == ["training.backend"], result
    assert client.get("/v1/jobs", headers=AUTH).json() == []
    schema = client.get("/openapi.json", headers=AUTH).json()["paths"]["/v1/artifacts/{ref}/retrain"]["post"]
    backend = schema["requestBody"]["content"]["application/json"]["schema"]["properties"]["backend"]
    assert backend["anyOf"][0] == {"type": "string", "enum": backends.names()}
