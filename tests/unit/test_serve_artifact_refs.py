"""Artifact references over HTTP and MCP: every route and tool takes the forms of zlt.artifacts.resolve."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi")

from tests.fixtures.artifact_jobs import make_job_dir  # noqa: E402
from tests.serve_client import AUTH, serve_client  # noqa: E402
from zlt.artifacts import collect_artifact, store  # noqa: E402
from zlt.serve.intake import Fence  # noqa: E402
from zlt.serve.mcp_server import call, make_tools  # noqa: E402


@pytest.fixture
def ids(tmp_path, zlt_home) -> list[str]:
    """watercolor v0, v1, v2, then oil v0 (the newest artifact)."""
    specs = [None, None, None, {"name": "oil"}]
    return [collect_artifact(make_job_dir(tmp_path / str(n), job_id=f"20260801-12000{n}-abc12{n}", spec=spec),
                             home=zlt_home).id for n, spec in enumerate(specs)]


def test_http_routes_and_mcp_tools_take_every_form(ids, zlt_home, tmp_path):
    store.update_meta(zlt_home, ids[3], {"best_step": 500})
    with serve_client(zlt_home, [tmp_path]) as c:
        for ref, want in (("watercolor@v1", ids[1]), ("latest", ids[3]), ("oil@best", ids[3]), ("watercolor", ids[2])):
            r = c.get(f"/v1/artifacts/{ref}", headers=AUTH)
            assert r.status_code == 200 and r.json()["id"] == want, (ref, r.text)
        assert c.get("/v1/artifacts/oil@v0/files/lora.safetensors", headers=AUTH).status_code == 200
        r = c.get("/v1/artifacts/foo", headers=AUTH)
        assert r.status_code == 404 and "known styles: oil, watercolor" in r.json()["message"]
        r = c.get("/v1/artifacts/20260801-12000", headers=AUTH)
        assert r.status_code == 400 and "ambiguous" in r.json()["message"]
        r = c.get("/v1/artifacts/watercolor/eval", headers=AUTH)  # known but not evaluated: says so
        assert r.status_code == 404 and "has not been evaluated" in r.json()["message"]
        r = c.get("/v1/artifacts/foo/eval", headers=AUTH)  # unknown: says that, not "not evaluated"
        assert r.status_code == 404 and "no artifact 'foo'" in r.json()["message"]
    tool = next(t for t in make_tools(zlt_home, Fence(None, None)) if t.name == "get_artifact")
    result, is_error = call(tool, {"artifact_id": "watercolor@v0"})
    assert not is_error and result["id"] == ids[0]
    result, is_error = call(tool, {"artifact_id": "foo"})
    assert is_error and "known styles" in json.dumps(result)
