"""HTTP routing, auth, limits and error shapes, in process (the live-server tests are in tests/integration)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from tests.serve_client import AUTH, serve_client  # noqa: E402
from zlt.serve.uploads import Limits  # noqa: E402


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    r = tmp_path / "data"
    r.mkdir()
    return r


@pytest.fixture
def client(zlt_home: Path, data_root: Path):
    limits = Limits(max_upload_bytes=64 * 1024, max_json_bytes=16 * 1024, max_extract_bytes=1 << 20)
    with serve_client(zlt_home, [data_root], limits=limits) as c:
        yield c


def test_healthz_needs_no_token(client):
    assert client.get("/healthz").json() == {"ok": True, "version": client.app.version}


def test_every_other_route_needs_the_token(client):
    doc = client.get("/openapi.json", headers=AUTH).json()
    assert client.get("/openapi.json").status_code == 401
    for path, ops in doc["paths"].items():
        if path == "/healthz":
            continue
        url = path.replace("{job_id}", "j1").replace("{artifact_id}", "a1").replace("{name}", "f")
        for method in ops:
            r = client.request(method.upper(), url, headers={"Authorization": "Bearer wrong-token-000000000"})
            assert r.status_code == 401, (method, path)
            assert r.headers["www-authenticate"] == "Bearer"
            assert r.json()["error"] == "unauthorized"


def test_openapi_carries_the_spec_schema_and_the_bearer_scheme(client):
    doc = client.get("/openapi.json", headers=AUTH).json()
    assert "JobSpec" in doc["components"]["schemas"] and "TrainingSpec" in doc["components"]["schemas"]
    body = doc["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]
    assert body["application/json"]["schema"] == {"$ref": "#/components/schemas/JobSpec"}
    assert "multipart/form-data" in body
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "/lora/train" in doc["paths"]


def test_an_invalid_spec_is_422_with_field_paths(client):
    r = client.post("/v1/jobs", headers=AUTH, json={"training": {"max_steps": "many"}, "dataset": {"path": "x"}})
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "invalid_spec"
    assert any(d.startswith("training.max_steps: ") for d in body["detail"])
    assert any(d.startswith("dataset.path: ") for d in body["detail"])


def test_lora_train_alias_validates_the_same_way(client):
    r = client.post("/lora/train", headers=AUTH, json={"model": {"lora": {"rank": 0}}, "dataset": {}})
    assert r.status_code == 422
    assert {e["path"] for e in r.json()["errors"]} == {"model.lora.rank", "dataset.path"}


def test_malformed_json_is_400_and_other_media_415(client):
    r = client.post("/v1/jobs", headers={**AUTH, "content-type": "application/json"}, content=b"{nope")
    assert r.status_code == 400 and "not valid JSON" in r.json()["message"]
    r = client.post("/v1/jobs", headers={**AUTH, "content-type": "text/plain"}, content=b"hi")
    assert r.status_code == 415


def test_bodies_over_the_cap_are_413(client):
    big = json.dumps({"name": "x" * 20_000}).encode()
    r = client.post("/v1/jobs", headers={**AUTH, "content-type": "application/json"}, content=big)
    assert r.status_code == 413 and r.json()["error"] == "upload_too_large"

    def chunks():  # no Content-Length: counted while read
        for _ in range(40):
            yield b" " * 1024

    r = client.post("/v1/jobs", headers={**AUTH, "content-type": "application/json"}, content=chunks())
    assert r.status_code == 413


def test_a_hostile_upload_is_refused_before_anything_is_queued(client, zlt_home: Path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../../evil.png", b"x")
    r = client.post("/v1/jobs", headers=AUTH, data={"spec": json.dumps({"name": "x"})},
                    files={"dataset": ("set.zip", buf.getvalue(), "application/zip")})
    assert r.status_code == 400 and "zip-slip" in r.json()["message"]
    assert client.get("/v1/jobs", headers=AUTH).json() == []
    assert not list((zlt_home / "serve" / "uploads").glob("*/*"))


def test_unknown_jobs_and_artifacts_are_404(client):
    assert client.get("/v1/jobs/nosuchjob", headers=AUTH).status_code == 404
    assert client.post("/v1/jobs/nosuchjob/cancel", headers=AUTH).status_code == 404
    assert client.get("/v1/jobs/nosuchjob/events", headers=AUTH).status_code == 404
    assert client.get("/v1/artifacts/nosuch", headers=AUTH).status_code == 404
    assert client.get("/v1/artifacts/nosuch/files/lora.safetensors", headers=AUTH).status_code == 404


def test_bad_query_parameters_are_422_with_their_path(client):
    r = client.get("/v1/jobs?limit=0&state=bogus", headers=AUTH)
    assert r.status_code == 422
    assert {d.split(":")[0] for d in r.json()["detail"]} == {"query.limit", "query.state"}


def test_validate_and_render_routes(client, data_root: Path):
    (data_root / "ds").mkdir()
    (data_root / "ds" / "a.png").write_bytes(b"x")  # validate checks the folder as submit does: it holds images
    spec = {"model": {"base": {"name": "zlt/tiny-zimage", "source": "builtin"}}, "dataset": {"path": "ds",
            "resolution": 64}, "training": {"max_steps": 8, "warmup_steps": 0}, "output": {"save": {"every": 4}}}
    r = client.post("/v1/specs/validate", headers=AUTH, json=spec)
    assert r.status_code == 200 and r.json()["spec"]["dataset"]["path"] == str((data_root / "ds").resolve())
    r = client.post("/v1/specs/render", headers=AUTH, json=spec)
    assert r.status_code == 200, r.text
    assert r.json()["backend"] == "lightning" and r.json()["argv"]


def test_the_users_v0_registry_path_needs_the_operator_to_list_it(zlt_home: Path, data_root: Path, tmp_path):
    (data_root / "style").mkdir()
    (data_root / "style" / "a.png").write_bytes(b"x")
    out = tmp_path / "artifacts"
    out.mkdir()
    body = {"dataset": {"path": "style"}, "output": {"registry": {"type": "local", "path": f"{out}/lora/"}}}
    with serve_client(zlt_home, [data_root]) as c:
        r = c.post("/v1/specs/validate", headers=AUTH, json=body)
        assert r.status_code == 422 and "output.registry.path" in r.text and "--output-root" in r.text
    with serve_client(zlt_home, [data_root], output_roots=[out]) as c:
        r = c.post("/v1/specs/validate", headers=AUTH, json=body)
        assert r.status_code == 200, r.text


def test_an_unknown_backend_gets_the_registrys_one_error_on_every_route(client, data_root: Path):
    """`?backend=kohya` is judged by the gate, as `zlt submit --backend kohya` is: 422 naming training.backend with
    the registry's choices, not FastAPI's own enum message; the OpenAPI document still lists the choices."""
    from zlt import backends

    (data_root / "ds").mkdir()
    (data_root / "ds" / "a.png").write_bytes(b"x")
    spec = {"model": {"base": {"name": "zlt/tiny-zimage", "source": "builtin"}}, "dataset": {"path": "ds",
            "resolution": 64}, "training": {"max_steps": 8, "warmup_steps": 0}, "output": {"save": {"every": 4}}}
    for route in ("/v1/specs/validate", "/v1/specs/render", "/v1/jobs", "/lora/train"):
        r = client.post(f"{route}?backend=kohya", headers=AUTH, json=spec)
        assert r.status_code == 422, (route, r.text)
        err = r.json()["errors"]
        assert [e["path"] for e in err] == ["training.backend"], (route, r.text)
        assert "kohya" in err[0]["message"] and err[0]["hint"] == f"use one of: {', '.join(backends.names())}"
    assert client.get("/v1/jobs", headers=AUTH).json() == []
    doc = client.get("/openapi.json", headers=AUTH).json()
    for path in ("/v1/specs/validate", "/v1/specs/render", "/v1/jobs"):
        param = next(p for p in doc["paths"][path]["post"]["parameters"] if p["name"] == "backend")
        assert param["schema"]["anyOf"][0] == {"type": "string", "enum": backends.names()}
    r = client.post("/v1/specs/render?backend=lightning", headers=AUTH, json=spec)  # a known name still renders
    assert r.status_code == 200 and r.json()["backend"] == "lightning", r.text
