"""POST /v1/generations and /v1/transfers in process: 202 + job id, 4xx naming the field, nothing queued or left."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from PIL import Image  # noqa: E402

from tests.fixtures.infer_fixtures import png_with_header, tiny_artifact  # noqa: E402
from tests.serve_client import AUTH, serve_client  # noqa: E402
from zlt.jobs import list_jobs  # noqa: E402
from zlt.serve.uploads import Limits  # noqa: E402


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    r = tmp_path / "data"
    r.mkdir()
    return r


@pytest.fixture
def client(zlt_home: Path, data_root: Path, monkeypatch):
    monkeypatch.setattr("zlt.jobs.spawn.ensure_worker", lambda home: None)  # queue only: no background worker
    with serve_client(zlt_home, [data_root], limits=Limits(max_upload_bytes=4 << 20)) as c:
        yield c


@pytest.fixture
def art(tmp_path: Path, zlt_home: Path) -> str:
    return tiny_artifact(tmp_path / "jobs", zlt_home)


def _png(size=(48, 32)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, "red").save(buf, format="PNG")
    return buf.getvalue()


def _no_leftovers(zlt_home: Path) -> bool:
    uploads = zlt_home / "serve" / "uploads"
    return list_jobs(zlt_home) == [] and (not uploads.exists() or not any(uploads.iterdir()))


def test_generation_is_queued(client, art, zlt_home):
    r = client.post("/v1/generations", headers=AUTH, json={"loras": [{"artifact": art, "scale": 0.7}],
                                                           "prompts": ["a cat"], "width": 64, "height": 64})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["kind"] == "generate" and body["state"] == "queued" and r.headers["location"] == body["status_url"]
    g = client.get(f"/v1/generations/{body['job_id']}", headers=AUTH).json()
    assert g["job"]["state"] == "queued" and g["outputs"] is None
    assert client.get(f"/v1/generations/{body['job_id']}/files/000_seed0.png", headers=AUTH).status_code == 404


def test_transfer_upload_is_queued_and_the_upload_folder_removed(client, art, zlt_home):
    files = [("image", ("photo.png", _png(), "image/png"))]
    r = client.post("/v1/transfers", headers=AUTH, files=files,
                    data={"request": json.dumps({"loras": [{"artifact": art}], "strength": 0.4})})
    assert r.status_code == 202, r.text
    job = list_jobs(zlt_home)[0]
    inputs = sorted((Path(job["job_dir"]) / "inputs").iterdir())
    assert len(inputs) == 1 and inputs[0].read_bytes() == _png()
    assert not any((zlt_home / "serve" / "uploads").iterdir())


@pytest.mark.parametrize("payload, status, words", [
    (b"MZ\x90\x00 an exe, not an image", 400, "not an image"),
    (png_with_header(0, 0), 400, "transfer.images"),
    (png_with_header(20000, 20000), 400, "too many pixels"),
])
def test_bad_uploads_get_4xx_naming_the_field(client, art, zlt_home, payload, status, words):
    files = [("image", ("x.png", payload, "image/png"))]
    r = client.post("/v1/transfers", headers=AUTH, files=files,
                    data={"request": json.dumps({"loras": [{"artifact": art}]})})
    assert 400 <= r.status_code < 500, r.text
    body = r.json()
    text = body["message"] + " ".join(body.get("detail", []))
    assert "transfer.images" in text and words in text
    assert _no_leftovers(zlt_home)


def test_unknown_artifact_and_checkpoint_are_4xx(client, art, zlt_home):
    r = client.post("/v1/generations", headers=AUTH, json={"loras": [{"artifact": "nope"}], "prompts": ["x"]})
    assert r.status_code == 404 and r.json()["message"].startswith("generate.loras: ")
    r = client.post("/v1/generations", headers=AUTH,
                    json={"loras": [{"artifact": art, "checkpoint": 1}], "prompts": ["x"]})
    assert r.status_code == 404 and r.json()["message"].startswith("generate.checkpoint: ")
    r = client.post("/v1/generations", headers=AUTH, json={"loras": [{"artifact": art}], "prompts": ["x"],
                                                           "steps": 0, "bogus": 1})
    assert r.status_code == 422
    assert {e["path"] for e in r.json()["errors"]} == {"generate.steps", "generate.bogus"}
    assert _no_leftovers(zlt_home)


def test_json_transfer_paths_are_fenced_to_the_data_roots(client, art, zlt_home, data_root, tmp_path):
    outside = tmp_path / "outside.png"
    outside.write_bytes(_png())
    r = client.post("/v1/transfers", headers=AUTH, json={"loras": [{"artifact": art}], "images": [str(outside)]})
    assert r.status_code == 422 and "transfer.images" in r.json()["message"]
    (data_root / "in.png").write_bytes(_png())
    r = client.post("/v1/transfers", headers=AUTH, json={"loras": [{"artifact": art}], "images": ["in.png"]})
    assert r.status_code == 202, r.text


def test_generation_routes_on_a_training_job_are_404(client, zlt_home):
    r = client.get("/v1/generations/nope", headers=AUTH)
    assert r.status_code == 404


def test_a_controlnet_path_is_fenced_but_a_hub_id_passes(client, art, zlt_home, data_root):
    (data_root / "in.png").write_bytes(_png())
    body = {"loras": [{"artifact": art}], "images": ["in.png"], "control": "canny"}
    r = client.post("/v1/transfers", headers=AUTH, json={**body, "controlnet": "/etc"})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "transfer.controlnet"
    r = client.post("/v1/transfers", headers=AUTH, json={**body, "controlnet": "../outside"})
    assert r.status_code == 422
    r = client.post("/v1/transfers", headers=AUTH, json={**body, "controlnet": "some-org/z-image-controlnet"})
    assert r.status_code == 202, r.text  # read from the server's cache only, when the job runs


def test_a_size_the_base_model_cannot_draw_is_422_naming_its_limit_and_nothing_is_queued(client, art, zlt_home):
    r = client.post("/v1/generations", headers=AUTH, json={"loras": [{"artifact": art}], "prompts": ["x"],
                                                           "width": 1024, "height": 1024})
    assert r.status_code == 422, r.text  # the tiny model's job used to fail later with `unknown: IndexError`
    assert "generate.width: 1024 px" in r.json()["message"] and "at most 512 px a side" in r.json()["message"]
    assert _no_leftovers(zlt_home)
