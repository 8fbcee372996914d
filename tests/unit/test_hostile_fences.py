"""Issue 24, item 2, the `clip` oracle and the request half of item 4: every path a generation, transfer or
evaluation request names is fenced at the request gate (zlt/flows/request_gate.py), over HTTP and MCP alike, and
no model zlt loads is ever unpickled."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="needs the [train] extra (torch)")
pytest.importorskip("diffusers", reason="needs the [train] extra (diffusers)")
pytest.importorskip("fastapi")
pytest.importorskip("mcp")

from PIL import Image  # noqa: E402

from tests.fixtures.eval_fixtures import evaluable_artifact, tiny_clip  # noqa: E402
from tests.serve_client import AUTH, serve_client  # noqa: E402
from zlt.core.errors import BadInputError, EnvNotReadyError  # noqa: E402
from zlt.flows.evaluation import submit_evaluation  # noqa: E402
from zlt.flows.fences import Roots  # noqa: E402
from zlt.flows.gate import admit  # noqa: E402
from zlt.flows.generation import submit_generation  # noqa: E402
from zlt.flows.request_gate import admit_request  # noqa: E402
from zlt.jobs import list_jobs  # noqa: E402
from zlt.jobs.api import open_store  # noqa: E402
from zlt.serve.intake import Fence  # noqa: E402
from zlt.serve.mcp_server import call, make_tools  # noqa: E402

pytestmark = pytest.mark.train


@pytest.fixture
def where(tmp_path: Path) -> dict[str, Path]:
    d = {"data": tmp_path / "data", "models": tmp_path / "models", "outside": tmp_path / "outside"}
    for p in d.values():
        p.mkdir()
    return d


@pytest.fixture
def art(tmp_path: Path, zlt_home: Path) -> str:
    return evaluable_artifact(tmp_path / "jobs", zlt_home)


@pytest.fixture
def client(zlt_home: Path, where, monkeypatch):
    monkeypatch.setattr("zlt.jobs.spawn.ensure_worker", lambda home: None)  # queue only
    with serve_client(zlt_home, [where["data"]], model_roots=[where["models"]]) as c:
        yield c


@pytest.fixture
def tools(zlt_home: Path, where, monkeypatch):
    monkeypatch.setattr("zlt.jobs.spawn.ensure_worker", lambda home: None)
    fence = Fence((where["data"],), None, model_roots=(where["models"],))
    return {t.name: t for t in make_tools(zlt_home, fence)}


def pickle_clip(folder: Path) -> Path:
    """A CLIP folder whose weights are a pickle pytorch_model.bin (what the battery planted outside the roots)."""
    import torch
    from safetensors.torch import load_file

    tiny_clip(folder)
    weights = folder / "model.safetensors"
    torch.save(load_file(weights), folder / "pytorch_model.bin")
    weights.unlink()
    return folder


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(buf, format="PNG")
    return buf.getvalue()


def _snapshot(home: Path, job_id: str) -> dict:
    with open_store(home) as store:
        return json.loads(store.get(job_id)["snapshot_json"])


def _paths(body: dict) -> list[str]:
    return [e["path"] for e in body.get("errors", [])]


# -- item 2: the CLIP path is fenced (HTTP, MCP, the spec) ------------------------------------------------------

def test_http_evaluate_with_a_pickle_clip_outside_the_roots_is_422_and_queues_nothing(client, art, where, zlt_home):
    evil = pickle_clip(where["outside"] / "evilclip")
    r = client.post(f"/v1/artifacts/{art}/evaluate", headers=AUTH, json={"clip": str(evil)})
    assert r.status_code == 422, r.text
    assert _paths(r.json()) == ["evaluate.clip"] and "outside" in r.json()["message"]
    good = tiny_clip(where["outside"] / "goodclip")  # a safetensors CLIP outside the roots is refused as well
    r = client.post(f"/v1/artifacts/{art}/evaluate", headers=AUTH, json={"clip": str(good)})
    assert r.status_code == 422 and _paths(r.json()) == ["evaluate.clip"]
    assert list_jobs(zlt_home) == []


def test_mcp_evaluate_with_a_clip_outside_the_roots_is_a_tool_error(tools, art, where, zlt_home):
    evil = pickle_clip(where["outside"] / "evilclip")
    result, is_error = call(tools["evaluate"], {"artifact_id": art, "clip": str(evil)})
    assert is_error and result["message"].startswith("evaluate.clip: "), result
    assert list_jobs(zlt_home) == []


def test_a_clip_inside_the_model_roots_is_queued_with_its_absolute_path(client, art, where, zlt_home):
    tiny_clip(where["models"] / "clip")
    r = client.post(f"/v1/artifacts/{art}/evaluate", headers=AUTH, json={"clip": "clip", "checkpoints": "last"})
    assert r.status_code == 202, r.text
    assert _snapshot(zlt_home, r.json()["job_id"])["request"]["clip"] == str((where["models"] / "clip").resolve())


# -- minor: `{"clip": "/etc"}` is no directory-existence oracle, and bad input inside the roots is 422 ---------------

def test_clip_outside_the_roots_gets_one_answer_whether_or_not_it_exists(client, art, where):
    messages = []
    for raw in (str(where["outside"]), str(where["outside"] / "no-such-folder"), "/etc", "/no/such/folder",
                "../outside", "../nothing-here"):
        r = client.post(f"/v1/artifacts/{art}/evaluate", headers=AUTH, json={"clip": raw})
        assert r.status_code == 422 and _paths(r.json()) == ["evaluate.clip"], (raw, r.text)
        messages.append(r.json()["message"].replace(repr(raw), "X"))
    assert len(set(messages)) == 1, messages


@pytest.mark.parametrize("make, words", [
    (lambda p: None, "does not exist"),
    (lambda p: p.mkdir(), "config.json"),
    (lambda p: (p.mkdir(), (p / "config.json").write_text("{}")), "safetensors"),
    (lambda p: pickle_clip(p), "safetensors"),
])
def test_a_bad_clip_inside_the_roots_is_422_not_503(client, art, where, zlt_home, make, words):
    make(where["models"] / "clip")
    r = client.post(f"/v1/artifacts/{art}/evaluate", headers=AUTH, json={"clip": "clip"})
    assert r.status_code == 422, r.text
    assert _paths(r.json()) == ["evaluate.clip"] and words in r.json()["message"]
    assert list_jobs(zlt_home) == []


def test_a_dataset_path_outside_the_roots_is_no_oracle_either(where):
    roots = Roots(data=(where["data"],), output=(where["outside"],), models=(where["models"],))
    answers = set()
    for raw in (str(where["outside"]), str(where["outside"] / "nope"), "/etc", "/no/such/folder"):
        with pytest.raises(BadInputError) as e:
            admit({"dataset": {"path": raw}}, roots=roots)
        answers.add(str(e.value.errors[0].message).replace(raw, "X"))
    assert len(answers) == 1, answers


# -- item 4 (request fields): NUL bytes are 422 naming the field, never a 500 or a traceback -------------------------

def test_nul_bytes_in_request_paths_are_422_naming_the_field(client, art, where, zlt_home):
    (where["data"] / "in.png").write_bytes(_png())
    cases = [
        ("/v1/transfers", {"loras": [{"artifact": art}], "images": ["in.png\x00.txt"]}, "transfer.images"),
        ("/v1/transfers", {"loras": [{"artifact": art}], "images": ["in.png"], "control": "canny",
                           "controlnet": "cn\x00"}, "transfer.controlnet"),
        ("/v1/transfers", {"loras": [{"artifact": art}], "images": ["in.png"], "control_images": ["\x00"]},
         "transfer.control_images"),
        (f"/v1/artifacts/{art}/evaluate", {"clip": "/tmp/\x00clip"}, "evaluate.clip"),
        ("/v1/generations", {"loras": [{"artifact": art + "\x00"}], "prompts": ["x"]}, "generate.loras"),
    ]
    for url, body, field in cases:
        r = client.post(url, headers=AUTH, json=body)
        assert r.status_code == 422, (field, r.text)
        assert _paths(r.json()) == [field] and "NUL" in r.json()["message"], r.json()
    assert list_jobs(zlt_home) == []


def test_mcp_style_transfer_with_a_nul_byte_is_a_tool_error_not_a_traceback(tools, art, where):
    (where["data"] / "in.png").write_bytes(_png())
    for args, field in [({"images": ["in.png\x00"]}, "transfer.images"),
                        ({"images": ["in.png"], "control": "canny", "controlnet": "x\x00"}, "transfer.controlnet")]:
        result, is_error = call(tools["style_transfer"], {"loras": [{"artifact": art}], **args})
        assert is_error and result["message"].startswith(f"{field}: ") and "Traceback" not in json.dumps(result)


# -- the ControlNet: model roots, safetensors only ------------------------------------------------------------

def _controlnet(folder: Path) -> Path:
    import torch
    from diffusers import ZImageControlNetModel

    torch.manual_seed(0)
    ZImageControlNetModel(control_layers_places=[0, 1], control_in_dim=16, dim=32, n_refiner_layers=1, n_heads=2,
                          n_kv_heads=2).save_pretrained(folder)
    return folder


def test_a_controlnet_must_lie_in_a_model_root_and_hold_safetensors(client, art, where, zlt_home):
    (where["data"] / "in.png").write_bytes(_png())
    body = {"loras": [{"artifact": art}], "images": ["in.png"], "control": "canny"}
    _controlnet(where["data"] / "cn")  # a data root is no model root
    (where["models"] / "cn.bin").write_bytes(b"pickle")
    (where["models"] / "pickled").mkdir()
    (where["models"] / "pickled" / "diffusion_pytorch_model.bin").write_bytes(b"pickle")
    for raw in (str(where["data"] / "cn"), "cn.bin", "pickled", str(where["outside"])):
        r = client.post("/v1/transfers", headers=AUTH, json={**body, "controlnet": raw})
        assert r.status_code == 422 and _paths(r.json()) == ["transfer.controlnet"], (raw, r.text)
    assert list_jobs(zlt_home) == []
    cn = _controlnet(where["models"] / "cn")
    r = client.post("/v1/transfers", headers=AUTH, json={**body, "controlnet": "cn"})
    assert r.status_code == 202, r.text
    assert _snapshot(zlt_home, r.json()["job_id"])["request"]["controlnet"] == str(cn.resolve())


def test_the_local_cli_is_not_fenced_but_pickle_is_refused(art, where, zlt_home):
    (where["outside"] / "in.png").write_bytes(_png())
    params = admit_request("transfer", {"loras": [{"artifact": art}], "images": [str(where["outside"] / "in.png")]})
    assert params.images == [str((where["outside"] / "in.png").resolve())]
    with pytest.raises(BadInputError, match=r"^transfer\.controlnet: .*pickle"):
        submit_generation(zlt_home, "transfer", {"loras": [{"artifact": art}], "images": [str(where["outside"] / "in.png")],
                                                 "control": "canny", "controlnet": str(where["outside"] / "cn.pth")},
                          start_worker=False)
    with pytest.raises(BadInputError, match=r"^evaluate\.clip: .*NUL"):
        submit_evaluation(zlt_home, art, {"clip": "x\x00"}, start_worker=False)
    assert list_jobs(zlt_home) == []


# -- pickle is never loaded ---------------------------------------------------------------------------------

def test_the_clip_loader_refuses_a_pickle_only_folder_without_unpickling(where, monkeypatch):
    import torch

    from zlt.eval import clip as clip_mod
    from zlt.preflight.clip_model import ModelCheck, check_clip

    evil = pickle_clip(where["models"] / "evil")
    assert not check_clip(str(evil)).ok and "safetensors" in check_clip(str(evil)).message

    def no_unpickling(*_a, **_k):
        raise AssertionError("torch.load was called on a pickle")

    monkeypatch.setattr(clip_mod, "require_clip", lambda name: ModelCheck(name, True, "local", ""))  # the loader
    monkeypatch.setattr(torch, "load", no_unpickling)
    with pytest.raises(EnvNotReadyError, match="cannot load CLIP"):
        clip_mod.ClipScorer(str(evil))


def test_the_tiny_models_are_saved_as_safetensors(where):
    folder = tiny_clip(where["models"] / "clip")
    assert (folder / "model.safetensors").is_file() and not list(folder.glob("*.bin"))
    cn = _controlnet(where["models"] / "cn")
    assert list(cn.glob("*.safetensors")) and not list(cn.glob("*.bin"))


@pytest.mark.parametrize("part, weights, pickled", [
    ("text_encoder", "model.safetensors", "pytorch_model.bin"),  # a transformers model inside the pipeline
    ("transformer", "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"),  # a diffusers one
])
def test_a_pipeline_folder_with_pickle_weights_fails_without_unpickling(tmp_path, monkeypatch, part, weights, pickled):
    import torch
    from safetensors.torch import load_file

    from zlt.infer.pipeline import DevicePlan, build_tiny_pipeline, load_base_pipeline

    folder = tmp_path / "pipe"
    build_tiny_pipeline().save_pretrained(folder)
    torch.save(load_file(folder / part / weights), folder / part / pickled)
    (folder / part / weights).unlink()

    def no_unpickling(*_a, **_k):
        raise AssertionError("torch.load was called on a pickle")

    monkeypatch.setattr(torch, "load", no_unpickling)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EnvNotReadyError, match="cannot load the pipeline"):
        load_base_pipeline({"name": str(folder), "source": "huggingface"}, DevicePlan("cpu", "fp32", False))
