"""Issue 13, items 17-21: what a hostile or careless API client may not do to the server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from tests.serve_client import AUTH, serve_client  # noqa: E402
from zlt.serve.uploads import Limits  # noqa: E402


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    r = tmp_path / "data"
    (r / "style").mkdir(parents=True)
    (r / "style" / "a.png").write_bytes(b"x")  # validate checks the folder holds images, as submit does
    return r


@pytest.fixture
def client(zlt_home: Path, data_root: Path):
    limits = Limits(max_upload_bytes=1 << 20, max_json_bytes=1 << 20, max_extract_bytes=1 << 20)
    with serve_client(zlt_home, [data_root], limits=limits) as c:
        yield c


def validate(client, body) -> tuple[int, dict]:
    r = client.post("/v1/specs/validate", headers=AUTH, json=body)
    return r.status_code, r.json()


def paths(body: dict) -> list[str]:
    return [e["path"] for e in body["errors"]]


@pytest.mark.parametrize("field,value", [
    ("name", "/etc"),
    ("training_adapter", "/etc/passwd"),
    ("dit", "/tmp/evil.safetensors"),
    ("vae", "../../x.safetensors"),
    ("text_encoder", "Qwen/Qwen3-4B"),  # a single file field takes no hub repo
])
def test_model_paths_outside_the_model_roots_are_422(client, field, value):
    code, body = validate(client, {"dataset": {"path": "style"}, "model": {"base": {field: value}}})
    assert code == 422 and f"model.base.{field}" in paths(body), body


def test_pickle_weights_are_refused_even_inside_a_model_root(client, zlt_home: Path):
    models = zlt_home / "models"
    models.mkdir()
    (models / "adapter.bin").write_bytes(b"not really")
    (models / "adapter.safetensors").write_bytes(b"{}")
    code, body = validate(client, {"dataset": {"path": "style"}, "model": {"base": {"training_adapter": "adapter.bin"}}})
    assert code == 422 and "pickle" in json.dumps(body)
    code, body = validate(client, {"dataset": {"path": "style"},
                                   "model": {"base": {"training_adapter": "owner/repo/adapter.ckpt"}}})
    assert code == 422 and "model.base.training_adapter" in paths(body)
    code, body = validate(client, {"dataset": {"path": "style"},
                                   "model": {"base": {"training_adapter": "adapter.safetensors"}}})
    assert code == 200, body
    assert body["spec"]["model"]["base"]["training_adapter"] == str((models / "adapter.safetensors").resolve())


def test_hub_ids_and_the_tiny_model_are_accepted(client):
    for base in ({"name": "Tongyi-MAI/Z-Image-Turbo"}, {"name": "zlt/tiny-zimage", "source": "builtin"},
                 {"training_adapter": "ostris/zimage_turbo_training_adapter/zimage_turbo_training_adapter_v2.safetensors"}):
        code, body = validate(client, {"dataset": {"path": "style"}, "model": {"base": base}})
        assert code == 200, body


def test_the_registry_path_is_fenced_to_the_servers_registry_by_default(client, zlt_home: Path, tmp_path: Path):
    code, body = validate(client, {"dataset": {"path": "style"}, "output": {"registry": {"path": str(tmp_path / "x")}}})
    assert code == 422 and paths(body) == ["output.registry.path"]
    code, body = validate(client, {"dataset": {"path": "style"}, "output": {"registry": {"path": "team"}}})
    assert code == 200 and body["spec"]["output"]["registry"]["path"] == str(zlt_home / "artifacts" / "lora" / "team")


def test_an_operator_listed_output_root_is_allowed(zlt_home: Path, data_root: Path, tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()
    with serve_client(zlt_home, [data_root], output_roots=[out]) as c:
        code, body = validate(c, {"dataset": {"path": "style"}, "output": {"registry": {"path": str(out / "a")}}})
    assert code == 200, body


def test_deep_nesting_and_huge_integers_are_bad_input_not_500(client):
    deep = b'{"dataset": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    r = client.post("/v1/jobs", headers={**AUTH, "content-type": "application/json"}, content=deep)
    assert r.status_code == 400 and "nested" in r.json()["message"]
    r = client.post("/v1/jobs", headers={**AUTH, "content-type": "application/json"},
                    content=b'{"training": {"seed": ' + b"9" * 5001 + b"}}")
    assert r.status_code == 400 and "digits" in r.json()["message"]
    r = client.post("/v1/specs/validate", headers={**AUTH, "content-type": "application/json"},
                    content=b'{"training": {"seed": ' + b"9" * 400 + b"}}")
    assert r.status_code == 400 and "64 bits" in r.json()["message"]
    nested = {"dataset": {"path": "style"}}
    for _ in range(40):
        nested = {"a": nested}
    assert client.post("/v1/specs/validate", headers=AUTH, json=nested).status_code == 400


def test_a_bad_naming_pattern_is_refused_at_submit(client):
    code, body = validate(client, {"dataset": {"path": "style"}, "output": {"naming": {"pattern": "{job_id.__class__}"}}})
    assert code == 422 and paths(body) == ["output.naming.pattern"]
    r = client.post("/v1/jobs", headers=AUTH, json={"dataset": {"path": "style"},
                                                    "output": {"naming": {"pattern": "{nope}"}}})
    assert r.status_code == 422 and "output.naming.pattern" in r.text


def test_a_token_file_others_can_read_is_warned_about(tmp_path: Path):
    from zlt.serve.auth import load_or_create_token

    f = tmp_path / "token"
    f.write_text("a" * 32 + "\n")
    os.chmod(f, 0o644)
    heard: list[str] = []
    token, _ = load_or_create_token(tmp_path / "home", f, warn=heard.append)
    assert token == "a" * 32 and len(heard) == 1 and "chmod 600" in heard[0] and "0644" in heard[0]
    os.chmod(f, 0o600)
    heard.clear()
    load_or_create_token(tmp_path / "home", f, warn=heard.append)
    assert heard == []
