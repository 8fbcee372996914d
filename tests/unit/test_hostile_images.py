"""Issue 24, items 7, 8, 10 and the long prompt: hostile image and prompt requests over HTTP, MCP and the CLI.

- 7: MAX_IMAGES caps prompts x count (and inputs x count), not each alone.
- 8: input images are checked from their headers (count, per-image pixels, the request's pixel budget) before any
  is decoded; an input must be *under* 64 MP (8000x8000 is refused).
- 10: only PNG, JPEG and WebP reach a decoder (datasets: also BMP); an EPS never reaches Ghostscript.
- A prompt longer than the tiny model's text encoder holds is refused at submit instead of failing the job.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import EpsImagePlugin, Image, ImageFile

from tests.conftest import run_zlt
from tests.fixtures.infer_fixtures import png_with_header, tiny_artifact
from zlt.core.errors import BadInputError
from zlt.dataset.check import check_dataset, probe_file
from zlt.dataset.images import PILLOW_MAX_IMAGE_PIXELS, decode, open_user_image
from zlt.infer.images import MAX_INPUT_PIXELS, MAX_REQUEST_PIXELS, check_inputs, input_size, open_input
from zlt.infer.params import MAX_IMAGES, parse_request
from zlt.infer.prompts import TINY_PROMPT_BYTES, caption_token_limit, check_prompt_bytes, prompt_warnings
from zlt.jobs import list_jobs

EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n%%EndComments\n"
       b"newpath 0 0 moveto 8 8 lineto stroke\nshowpage\n%%EOF\n")


def _encoded(size=(16, 16), fmt="PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, "red").save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture
def no_eps(monkeypatch):
    """Fails the test if Pillow's EPS plugin (the door to Ghostscript) is ever asked to open a file."""
    calls = []
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", lambda self: calls.append(1) or pytest.fail("EPS opened"))
    return calls


@pytest.fixture
def no_decode(monkeypatch):
    """Fails the test if any image is decoded (ImageFile.load) while it runs."""
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("an image was decoded"))


@pytest.fixture
def art(tmp_path: Path, zlt_home: Path) -> str:
    return tiny_artifact(tmp_path / "jobs", zlt_home)


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    r = tmp_path / "data"
    r.mkdir()
    return r


@pytest.fixture
def client(zlt_home: Path, data_root: Path, monkeypatch):
    pytest.importorskip("fastapi")
    from tests.serve_client import serve_client
    from zlt.serve.uploads import Limits

    monkeypatch.setattr("zlt.jobs.spawn.ensure_worker", lambda home: None)
    with serve_client(zlt_home, [data_root], limits=Limits(max_upload_bytes=8 << 20)) as c:
        yield c


@pytest.fixture
def tools(zlt_home: Path, data_root: Path, monkeypatch):
    pytest.importorskip("mcp")
    from zlt.serve.intake import Fence
    from zlt.serve.mcp_server import make_tools

    monkeypatch.setattr("zlt.jobs.spawn.ensure_worker", lambda home: None)
    return {t.name: t for t in make_tools(zlt_home, Fence((data_root,), None))}


def _call(tool, args):
    from zlt.serve.mcp_server import call

    return call(tool, args)


def _auth():
    from tests.serve_client import AUTH

    return AUTH


def _paths(r) -> set[str]:
    return {e["path"] for e in r.json().get("errors", [])} or {r.json()["message"].split(":")[0]}


# --- item 7: prompts x count -------------------------------------------------------------------------------------

def test_the_cap_is_prompts_times_count():
    with pytest.raises(BadInputError) as e:
        parse_request("generate", {"loras": [{"artifact": "a"}], "prompts": ["x"] * 64, "count": 64})
    assert e.value.message.startswith("generate.count: ") and "64 prompt(s) x count 64 = 4096" in e.value.message
    assert parse_request("generate", {"loras": [{"artifact": "a"}], "prompts": ["x"] * 8, "count": 8}).count == 8
    assert parse_request("generate", {"loras": [{"artifact": "a"}], "prompts": ["x"], "count": 64}).count == 64
    with pytest.raises(BadInputError, match=r"^transfer\.count: 3 input image\(s\) x count 22 = 66"):
        parse_request("transfer", {"loras": [{"artifact": "a"}], "images": ["a.png"] * 3, "count": 22})
    with pytest.raises(BadInputError, match=r"^transfer\.control_images: "):
        parse_request("transfer", {"loras": [{"artifact": "a"}], "images": ["a.png"],
                                   "control_images": ["c.png"] * (MAX_IMAGES + 1)})


def test_http_and_mcp_refuse_4096_images(client, tools, art, zlt_home):
    body = {"loras": [{"artifact": art}], "prompts": [f"p{i}" for i in range(64)], "count": 64}
    r = client.post("/v1/generations", headers=_auth(), json=body)
    assert r.status_code == 422, r.text
    assert _paths(r) == {"generate.count"} and "4096 images" in r.json()["message"]
    result, is_error = _call(tools["generate"], body)  # MCP names a bad argument by its own name
    assert is_error and [e["path"] for e in result["errors"]] == ["count"] and "4096 images" in result["detail"][0]
    assert list_jobs(zlt_home) == []


def test_cli_refuses_4096_images_with_exit_2(art, zlt_home):
    prompts = [a for i in range(64) for a in ("-p", f"p{i}")]
    r = run_zlt("generate", art, *prompts, "--count", "64", "--json")
    assert r.returncode == 2, r.stdout + r.stderr
    assert json.loads(r.stdout)["message"].startswith("generate.count: ")


# --- item 8: header checks before any decode ---------------------------------------------------------------------

def test_an_input_must_be_under_64_mp(no_decode):
    assert MAX_INPUT_PIXELS == 64_000_000
    with pytest.raises(BadInputError, match="8000x8000 pixels.*too many pixels"):
        input_size(png_with_header(8000, 8000), "big.png")
    # one pixel row less passes, from its header alone (its pixel data is junk: nothing was decoded)
    assert input_size(png_with_header(7999, 8000), "ok.png") == (7999, 8000)


def test_the_request_pixel_budget_and_the_count_come_before_any_decode(no_decode, monkeypatch):
    near = png_with_header(7999, 8000)  # 63.99 MP each
    assert check_inputs([(near, "a.png", "transfer.images")] * 2) == [(7999, 8000)] * 2
    with pytest.raises(BadInputError) as e:
        check_inputs([(near, f"{i}.png", "transfer.images") for i in range(3)])
    assert e.value.message.startswith("transfer.images: ") and "pixel budget" in e.value.message
    assert f"at most {MAX_REQUEST_PIXELS // 1_000_000} MP" in e.value.message
    opened = []
    monkeypatch.setattr("zlt.infer.images.open_user_image", lambda *a: opened.append(1))
    with pytest.raises(BadInputError, match=rf"^transfer\.images: 65 images; a request may hold at most {MAX_IMAGES}"):
        check_inputs([(near, f"{i}.png", "transfer.images") for i in range(65)])
    assert opened == []  # refused by the count, before a single header was read


def test_http_uploads_are_refused_from_headers_without_a_decode(client, art, zlt_home, no_decode, monkeypatch):
    req = {"request": json.dumps({"loras": [{"artifact": art}]})}
    three = [("image", (f"{i}.png", png_with_header(7999, 8000), "image/png")) for i in range(3)]
    r = client.post("/v1/transfers", headers=_auth(), files=three, data=req)
    assert r.status_code == 422 and "pixel budget" in r.text, r.text
    opened = []
    monkeypatch.setattr("zlt.infer.images.open_user_image", lambda *a: opened.append(1))
    many = [("image", (f"{i}.png", b"x", "image/png")) for i in range(MAX_IMAGES + 1)]
    r = client.post("/v1/transfers", headers=_auth(), files=many, data=req)
    assert 400 <= r.status_code < 500 and "transfer.images" in r.text, r.text
    assert opened == []
    assert list_jobs(zlt_home) == []


def test_a_valid_upload_is_queued_without_being_decoded(client, art, zlt_home, no_decode):
    files = [("image", ("a.png", _encoded((48, 32)), "image/png"))]
    r = client.post("/v1/transfers", headers=_auth(), files=files,
                    data={"request": json.dumps({"loras": [{"artifact": art}]})})
    assert r.status_code == 202, r.text


def test_mcp_transfer_budget(tools, art, data_root, no_decode):
    for i in range(3):
        (data_root / f"{i}.png").write_bytes(png_with_header(7999, 8000))
    result, is_error = _call(tools["style_transfer"], {"loras": [{"artifact": art}],
                                                       "images": [f"{i}.png" for i in range(3)]})
    assert is_error and result["message"].startswith("transfer.images: ") and "pixel budget" in result["message"]


def test_pillow_guard_is_set_where_user_images_are_opened():
    Image.MAX_IMAGE_PIXELS = None  # as a careless library might leave it
    with open_user_image(io.BytesIO(_encoded()), ("PNG",)):
        pass
    assert Image.MAX_IMAGE_PIXELS == PILLOW_MAX_IMAGE_PIXELS


# --- item 10: only PNG, JPEG and WebP reach a decoder --------------------------------------------------------------

@pytest.mark.parametrize("payload, fmt", [(EPS, "EPS"), (_encoded(fmt="TIFF"), "TIFF"), (_encoded(fmt="BMP"), "BMP"),
                                          (_encoded(fmt="GIF"), "GIF")])
def test_transfer_inputs_of_other_formats_are_refused(payload, fmt, no_eps, tmp_path):
    f = tmp_path / "photo.png"  # the name lies
    f.write_bytes(payload)
    for source in (f, payload):
        with pytest.raises(BadInputError) as e:
            open_input(source, "photo.png")
        assert e.value.message == f"transfer.images: photo.png is an image in {fmt} format, which zlt does not open"
        assert "PNG, JPEG or WebP" in e.value.hint
    for fmt_ok in ("PNG", "JPEG", "WEBP"):
        assert open_input(_encoded((20, 10), fmt_ok), "ok").size == (20, 10)


def test_an_eps_upload_never_reaches_ghostscript(client, tools, art, data_root, zlt_home, no_eps):
    r = client.post("/v1/transfers", headers=_auth(), files=[("image", ("x.png", EPS, "image/png"))],
                    data={"request": json.dumps({"loras": [{"artifact": art}]})})
    assert 400 <= r.status_code < 500 and "EPS format" in r.text, r.text
    (data_root / "x.png").write_bytes(EPS)
    r = client.post("/v1/transfers", headers=_auth(), json={"loras": [{"artifact": art}], "images": ["x.png"]})
    assert r.status_code == 422 and "EPS format" in r.text, r.text
    result, is_error = _call(tools["style_transfer"], {"loras": [{"artifact": art}], "images": ["x.png"]})
    assert is_error and result["message"].startswith("transfer.images: ") and "EPS" in result["message"]
    assert list_jobs(zlt_home) == []


def test_dataset_images_of_other_formats_are_reported_not_decoded(tmp_path, no_eps):
    probe, im = decode(EPS)
    assert (probe.error, im) == ("corrupt", None) and "EPS format" in probe.error_detail
    assert decode(_encoded(fmt="TIFF"))[0].error == "corrupt"
    assert decode(_encoded(fmt="BMP"))[0].ok  # datasets keep BMP (trainers read it)
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "a.png").write_bytes(EPS)
    (ds / "b.png").write_bytes(_encoded((64, 64)))
    assert "EPS format" in probe_file(str(ds), "a.png").error_detail
    report = check_dataset(ds, workers=1)
    bad = [f for f in report.findings if f.file == "a.png"]
    assert bad and bad[0].severity == "error"


def test_the_trainer_and_the_evaluator_refuse_other_formats(tmp_path, no_eps):
    from zlt.eval.evaluate import embed_training_images
    from zlt.trainer.config import DataConfig
    from zlt.trainer.data import scan

    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "a.png").write_bytes(EPS)
    with pytest.raises(BadInputError, match="1 unreadable image"):
        scan(DataConfig(path=str(ds), resolution=64), 16)
    (ds / "b.png").write_bytes(_encoded())
    warnings: list[str] = []

    class Scorer:
        def images(self, images):
            return len(images)

    assert embed_training_images(Scorer(), [ds / "a.png", ds / "b.png"], ds, warnings, hint="") == 1
    assert len(warnings) == 1 and "a.png" in warnings[0]


# --- the long prompt -----------------------------------------------------------------------------------------------

def test_the_tiny_limit_is_its_token_budget():
    pytest.importorskip("transformers")
    from zlt.trainer.tiny import TRANSFORMER_CONFIG, build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    limit = caption_token_limit(TRANSFORMER_CONFIG["axes_lens"][0])
    text = tok.apply_chat_template([{"role": "user", "content": "é" * (TINY_PROMPT_BYTES // 2) + "a"}],
                                   tokenize=False, add_generation_prompt=True, enable_thinking=True)
    assert len(tok(text).input_ids) == limit == 224  # one token per UTF-8 byte: the byte rule is exact
    check_prompt_bytes([("generate.prompts", "prompt 1", "a" * TINY_PROMPT_BYTES)], "zlt/tiny-zimage")
    with pytest.raises(BadInputError, match=rf"^generate\.prompts: prompt 1 is {TINY_PROMPT_BYTES + 1} bytes .* at "
                                            rf"most {TINY_PROMPT_BYTES}: the prompt is refused"):
        check_prompt_bytes([("generate.prompts", "prompt 1", "a" * (TINY_PROMPT_BYTES + 1))], "zlt/tiny-zimage")
    check_prompt_bytes([("generate.prompts", "prompt 1", "a" * 2000)], "Tongyi-MAI/Z-Image-Turbo")  # cut later

    class Pipe:  # the tokenizer and transformer config prompt_warnings reads, for both models
        tokenizer = tok

        def __init__(self, first_axis):
            self.transformer = type("T", (), {"config": type("C", (), {"axes_lens": [first_axis, 32, 32]})()})()

    assert prompt_warnings(Pipe(1024), [("f", "p", "a" * 400)]) == []
    assert "read the first 512" in prompt_warnings(Pipe(1024), [("f", "p", "a" * 600)])[0]
    with pytest.raises(BadInputError, match="reads at most 224"):
        prompt_warnings(Pipe(256), [("f", "p", "a" * 206)])


@pytest.mark.slow
def test_the_tiny_pipeline_holds_a_prompt_at_the_limit():
    pytest.importorskip("diffusers")
    import torch

    from zlt.trainer.tiny import build_tiny_pipeline

    pipe = build_tiny_pipeline()
    out = pipe(prompt="a" * TINY_PROMPT_BYTES, height=32, width=32, num_inference_steps=1, guidance_scale=0.0,
               generator=torch.Generator().manual_seed(0)).images[0]
    assert out.size == (32, 32)
    with pytest.raises(IndexError):  # what a 2,000-character prompt did to a queued job before the check
        pipe(prompt="a" * (TINY_PROMPT_BYTES + 1), height=32, width=32, num_inference_steps=1, guidance_scale=0.0)


def test_a_long_prompt_is_refused_at_submit(client, tools, art, zlt_home):
    body = {"loras": [{"artifact": art}], "prompts": ["ok", "x" * 2000]}
    r = client.post("/v1/generations", headers=_auth(), json=body)
    assert r.status_code == 422, r.text
    assert _paths(r) == {"generate.prompts"} and "prompt 2 is 2009 bytes" in r.text
    assert f"at most {TINY_PROMPT_BYTES}" in r.text
    result, is_error = _call(tools["generate"], body)
    assert is_error and result["message"].startswith("generate.prompts: prompt 2 is ")
    assert list_jobs(zlt_home) == []
    r = run_zlt("generate", art, "-p", "x" * 2000, "--json")
    assert r.returncode == 2, r.stdout + r.stderr
    assert json.loads(r.stdout)["message"].startswith("generate.prompts: prompt 1 is ")

