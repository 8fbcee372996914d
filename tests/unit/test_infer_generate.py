"""zlt.infer on the tiny built-in Z-Image model (CPU): LoRA scale, transfer sizes, PNG parameters, the pipeline cache,
and bad inputs refused with the field named and nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="needs the [train] extra (torch)")
pytest.importorskip("diffusers", reason="needs the [train] extra (diffusers)")
pytest.importorskip("peft", reason="needs the [train] extra (peft)")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from tests.fixtures.infer_fixtures import png_with_header, tiny_artifact  # noqa: E402
from zlt.core.errors import BadInputError, EnvNotReadyError, NotFoundError  # noqa: E402
from zlt.infer import GenerateParams, PipelineCache, TransferParams, generate, read_png_params, transfer  # noqa: E402

pytestmark = pytest.mark.train
SIZE = dict(width=64, height=64, steps=2, guidance=0.0)


@pytest.fixture(scope="module")
def cache() -> PipelineCache:
    return PipelineCache()  # one tiny pipeline for the whole module: building it costs seconds


@pytest.fixture
def art(tmp_path: Path, zlt_home: Path) -> str:
    return tiny_artifact(tmp_path / "jobs", zlt_home)


def _arr(im) -> np.ndarray:
    return np.asarray(im, dtype=np.float64)


def _gen(art: str, scale: float = 1.0, **kw) -> GenerateParams:
    return GenerateParams(loras=[{"artifact": art, "scale": scale}], prompts=kw.pop("prompts", ["a red house"]),
                          **{**SIZE, **kw})


def test_scale_zero_is_the_base_model_and_scale_one_differs(art, cache, zlt_home):
    from zlt.trainer.tiny import build_tiny_pipeline

    r0 = generate(_gen(art, 0.0, seed=3), cache=cache, save=False)
    r1 = generate(_gen(art, 1.0, seed=3), cache=cache, save=False)
    assert r0.params[0]["prompt"] == "<zstyle> a red house"  # the artifact's trigger, added
    base = build_tiny_pipeline()(prompt=r0.params[0]["prompt"], height=64, width=64, num_inference_steps=2,
                                 guidance_scale=0.0, generator=torch.Generator().manual_seed(3)).images[0]
    assert np.array_equal(_arr(r0.images[0]), _arr(base))
    assert np.abs(_arr(r1.images[0]) - _arr(base)).mean() > 1.0


@pytest.mark.parametrize("key_format", ["comfyui", "kohya"])
def test_every_registry_key_format_gives_the_same_image(art, cache, tmp_path, zlt_home, key_format):
    other = tiny_artifact(tmp_path / key_format, zlt_home, job_id="20260801-120000-cccccc", key_format=key_format)
    ref = generate(_gen(art, 1.0), cache=cache, save=False).images[0]
    got = generate(_gen(other, 1.0), cache=cache, save=False).images[0]
    assert np.abs(_arr(ref) - _arr(got)).max() <= 2.0  # the same LoRA in another key layout (float rounding only)


def test_outputs_folder_png_metadata_round_trip_and_contact_sheet(art, cache, zlt_home):
    r = generate(_gen(art, 0.8, prompts=["a", "b"], count=2, seed=10, trigger=False), cache=cache)
    folder = r.folder
    assert folder.parent.name == "generations" and folder.parent.parent.name == art
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["000_seed10.png", "001_seed11.png", "002_seed12.png", "003_seed13.png", "contact_sheet.png",
                     "outputs.json"]
    outputs = json.loads((folder / "outputs.json").read_text())
    assert outputs["artifact_id"] == art and outputs["contact_sheet"] == "contact_sheet.png"
    for entry, params in zip(outputs["images"], r.params, strict=True):
        back = read_png_params(folder / entry["file"])
        assert back == json.loads(json.dumps(params))
        assert back["prompt"] in ("a", "b") and back["scale"] == 0.8 and back["steps"] == 2
        assert back["base_model"] == "zlt/tiny-zimage" and len(back["lora_sha256"]) == 64
        with Image.open(folder / entry["file"]) as im:  # plain text chunks too, for any PNG reader
            assert im.text["seed"] == str(params["seed"]) and im.text["artifact_id"] == art
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]
    from zlt.artifacts import get_artifact, verify_artifact

    gens = get_artifact(zlt_home, art)["generations"]
    assert [(g["id"], g["kind"], g["images"], g["contact_sheet"]) for g in gens] == [
        (r.id, "generate", 4, "contact_sheet.png")]
    assert verify_artifact(zlt_home, art).ok  # outputs added after collection are not "unexpected" files


def test_transfer_keeps_size_and_aspect_and_says_when_it_snaps_down(art, cache, tmp_path):
    src = tmp_path / "in.png"
    Image.new("RGB", (128, 80), (200, 30, 30)).save(src)
    odd = tmp_path / "odd.png"
    Image.new("RGB", (96, 72), (30, 30, 200)).save(odd)
    r = transfer(TransferParams(loras=[{"artifact": art}], images=[str(src), str(odd)], strength=0.5, steps=2,
                                prompt="x"), cache=cache, save=False)
    assert r.images[0].size == (128, 80) and r.params[0]["resized"] is None
    assert r.images[1].size == (96, 64)  # 72 snaps down to 64, never up past the input
    assert r.params[1]["input_size"] == [96, 72] and (r.params[1]["width"], r.params[1]["height"]) == (96, 64)
    assert r.params[1]["resized"] == "96x72 drawn at 96x64: each side snapped down to a multiple of 16"
    assert any("96x72 drawn at 96x64" in w for w in r.outputs["warnings"])


def test_sizes_default_to_the_training_resolution_and_beyond_the_base_models_limit_are_refused(
        art, cache, tmp_path, zlt_home):
    from zlt.infer.images import drawable_side, fit_size
    from zlt.infer.resolve import resolve_loras
    from zlt.infer.run import check_request, with_sizes

    assert drawable_side("zlt/tiny-zimage") == 512 and fit_size(100, 61, 2048) == (96, 48)
    params = GenerateParams(loras=[{"artifact": art}], prompts=["x"])
    assert (params.width, params.height) == (None, None)
    loras = resolve_loras(params.loras, zlt_home)
    filled = with_sizes(params, loras)  # the fixture trained at 1024 px: the tiny model draws at most 512
    assert (filled.width, filled.height) == (512, 512)
    with pytest.raises(BadInputError, match=r"generate.width: 1024 px is more than zlt/tiny-zimage can draw \(at "
                                            r"most 512 px a side\)"):
        check_request(GenerateParams(loras=[{"artifact": art}], prompts=["x"], width=1024, height=64), loras)
    big = tmp_path / "photo.png"
    Image.new("RGB", (800, 600)).save(big)
    tp = TransferParams(loras=[{"artifact": art}], images=[str(big)], strength=0.0)
    r = transfer(tp, cache=cache, save=False)  # a large photo is scaled down into the drawable range, and says so
    assert r.images[0].size == (512, 384) and "scaled down to the 512 px longer side" in r.params[0]["resized"]
    with pytest.raises(BadInputError, match="transfer.max_side: 1024 px is more than zlt/tiny-zimage can draw"):
        check_request(tp.model_copy(update={"max_side": 1024}), loras)


def test_transfer_scales_down_to_max_side(art, cache, tmp_path):
    src = tmp_path / "big.png"
    Image.new("RGB", (400, 200)).save(src)
    r = transfer(TransferParams(loras=[{"artifact": art}], images=[str(src)], strength=0.0, max_side=128),
                 cache=cache, save=False)
    assert r.images[0].size == (128, 64)


def test_strength_zero_returns_the_input(art, cache, tmp_path):
    src = tmp_path / "in.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)).save(src)
    r = transfer(TransferParams(loras=[{"artifact": art}], images=[str(src)], strength=0.0), cache=cache)
    with Image.open(src) as im:
        assert np.abs(_arr(r.images[0]) - _arr(im.convert("RGB"))).max() <= 1.0
    assert read_png_params(r.folder / "000_seed0.png")["strength"] == 0.0


def test_the_cache_loads_the_base_once_and_swaps_loras(tmp_path, zlt_home):
    loads = []

    def loader(base, plan):
        from zlt.trainer.tiny import build_tiny_pipeline

        loads.append(base["name"])
        return build_tiny_pipeline()

    a = tiny_artifact(tmp_path / "a", zlt_home, job_id="20260801-120000-aaaaaa")
    b = tiny_artifact(tmp_path / "b", zlt_home, job_id="20260801-120000-bbbbbb", seed_offset=1)
    cache = PipelineCache(loader=loader)
    ra = generate(_gen(a), cache=cache, save=False)
    rb = generate(GenerateParams(loras=[{"artifact": b, "checkpoint": 250}], prompts=["a red house"], **SIZE),
                  cache=cache, save=False)
    ra2 = generate(_gen(a), cache=cache, save=False)
    assert loads == ["zlt/tiny-zimage"]
    assert (cache.stats.loads, cache.stats.lora_loads, cache.stats.lora_reuses) == (1, 2, 1)
    assert rb.params[0]["checkpoint"] == 250 and rb.params[0]["lora_sha256"] != ra.params[0]["lora_sha256"]
    assert np.array_equal(_arr(ra.images[0]), _arr(ra2.images[0]))  # swapping back gives the same image


def test_stacked_loras_are_recorded(tmp_path, zlt_home, cache):
    a = tiny_artifact(tmp_path / "a", zlt_home, job_id="20260801-120000-aaaaaa")
    b = tiny_artifact(tmp_path / "b", zlt_home, job_id="20260801-120000-bbbbbb", seed_offset=1)
    r = generate(GenerateParams(loras=[{"artifact": a, "scale": 0.8}, {"artifact": b, "scale": 0.5}],
                                prompts=["x"], **SIZE), cache=cache, save=False)
    assert [(x["artifact_id"], x["scale"]) for x in r.params[0]["loras"]] == [(a, 0.8), (b, 0.5)]


def _nothing_written(art_dir: Path) -> bool:
    gen = art_dir / "generations"
    return not gen.exists() or not any(gen.iterdir())


@pytest.mark.parametrize("payload, words", [
    (b"this is not an image", "not an image"),
    (png_with_header(0, 0), "transfer.images"),
    (png_with_header(20000, 20000), "too many pixels"),
])
def test_bad_input_images_are_refused_before_anything_runs(art, tmp_path, zlt_home, payload, words):
    bad = tmp_path / "bad.png"
    bad.write_bytes(payload)
    loads = []
    cache = PipelineCache(loader=lambda *a: loads.append(1))
    with pytest.raises(BadInputError) as e:
        transfer(TransferParams(loras=[{"artifact": art}], images=[str(bad)]), cache=cache)
    assert e.value.message.startswith("transfer.images: ") and words in e.value.message
    assert loads == []
    from zlt.infer import resolve_artifact

    assert _nothing_written(resolve_artifact(art).path)


def test_unknown_artifact_and_missing_checkpoint_name_the_field(art, zlt_home):
    cache = PipelineCache(loader=lambda *a: pytest.fail("must not load a model"))
    with pytest.raises(NotFoundError, match=r"^generate\.loras: no artifact 'nope'"):
        generate(_gen("nope"), cache=cache)
    with pytest.raises(NotFoundError) as e:
        generate(GenerateParams(loras=[{"artifact": art, "checkpoint": 5}], prompts=["x"], **SIZE), cache=cache)
    assert e.value.message.startswith("generate.checkpoint: ") and "250, 500, 750" in e.value.hint


def test_the_same_lora_twice_is_refused(art):
    with pytest.raises(BadInputError, match=r"^generate\.loras: the same LoRA file is listed twice"):
        generate(GenerateParams(loras=[{"artifact": art}, {"artifact": art[:10], "scale": 0.3}], prompts=["x"], **SIZE),
                 cache=PipelineCache(loader=lambda *a: pytest.fail("must not load a model")))


def test_control_without_a_controlnet_is_refused(art, tmp_path):
    src = tmp_path / "in.png"
    Image.new("RGB", (64, 64)).save(src)
    with pytest.raises(EnvNotReadyError, match=r"^transfer\.controlnet: .*needs a Z-Image ControlNet"):
        transfer(TransferParams(loras=[{"artifact": art}], images=[str(src)], control="canny"),
                 cache=PipelineCache(loader=lambda *a: pytest.fail("must not load a model")))


def test_latest_is_the_newest_artifact(tmp_path, zlt_home):
    from zlt.infer import resolve_artifact

    with pytest.raises(NotFoundError, match=r"^generate\.loras: no artifact yet"):
        resolve_artifact("latest")
    tiny_artifact(tmp_path / "a", zlt_home, job_id="20260801-120000-aaaaaa")
    b = tiny_artifact(tmp_path / "b", zlt_home, job_id="20260801-120000-bbbbbb", seed_offset=1)
    ref = resolve_artifact("latest")
    assert ref.id == b and ref.trigger == "<zstyle>" and ref.base_name == "zlt/tiny-zimage"


@pytest.mark.parametrize("vram, float8, offload, profile", [
    (12, True, True, "12gb"), (16, True, True, "16gb"), (24, True, False, "24gb"), (32, False, False, "32gb"),
    (80, False, False, "80gb"),
])
def test_gpu_plan_follows_the_training_profiles(vram, float8, offload, profile):
    from zlt.infer.pipeline import gpu_plan

    plan = gpu_plan(vram, index=1)
    assert (plan.float8, plan.offload, plan.profile, plan.dtype) == (float8, offload, profile, "bf16")
    assert plan.device == "cuda:1"


def test_float8_storage_keeps_the_image_close_and_loras_working(art, cache):
    from zlt.infer import resolve_loras
    from zlt.infer.params import LoraUse
    from zlt.infer.pipeline import DevicePlan

    base = {"name": "zlt/tiny-zimage"}
    lora = resolve_loras([LoraUse(artifact=art, scale=1.0)])
    out = []
    for plan in (DevicePlan("cpu", "fp32", False), DevicePlan("cpu", "fp32", False, float8=True)):
        entry = cache.entry(base, plan)
        cache.activate(entry, lora)
        out.append(_arr(entry.pipe(prompt="x", height=64, width=64, num_inference_steps=2, guidance_scale=0.0,
                                   generator=torch.Generator().manual_seed(0)).images[0]))
        weight = entry.pipe.transformer.layers[0].attention.to_q.base_layer.weight
    assert weight.dtype == torch.float8_e4m3fn
    diff = np.abs(out[0] - out[1]).mean()
    assert 0 < diff < 8, diff  # float8 rounding shows, but it is the same image


def test_steps_and_guidance_default_to_the_artifacts_own_sampling_settings(art, cache, zlt_home, tmp_path):
    """A LoRA trained on Z-Image base is drawn like Z-Image base (30 steps, guidance 4), not like Turbo (9, 0)."""
    from dataclasses import replace

    from zlt.infer.resolve import resolve_artifact, sampling_defaults
    from zlt.render.common import sample_steps_guidance
    from zlt.spec import load_spec

    ref = resolve_artifact(art, zlt_home)
    spec = load_spec(ref.path / "spec.yaml").spec
    assert spec.model.base.variant == "base"
    assert sampling_defaults(ref) == sample_steps_guidance(spec) == (30, 4.0)
    (ref.path / "spec.yaml").rename(tmp_path / "spec.yaml")  # without a spec the variant decides
    for variant, expected in (("base", (30, 4.0)), ("deturbo", (25, 2.0)), ("turbo", (9, 0.0))):
        assert sampling_defaults(replace(ref, base_model={**ref.base_model, "variant": variant})) == expected
    (tmp_path / "spec.yaml").rename(ref.path / "spec.yaml")
    r = generate(GenerateParams(loras=[{"artifact": art}], prompts=["a red house"], width=32, height=32),
                 cache=cache, save=False)
    assert (r.params[0]["steps"], r.params[0]["guidance"]) == (30, 4.0)
    r = generate(GenerateParams(loras=[{"artifact": art}], prompts=["a red house"], width=32, height=32, steps=1,
                                guidance=0.0), cache=cache, save=False)
    assert (r.params[0]["steps"], r.params[0]["guidance"]) == (1, 0.0)  # what the request says wins


def test_one_default_scale_and_id_at_best_draws_at_the_scale_it_was_evaluated_at(art, zlt_home):
    """The evaluation scores at 1.0 and generate/transfer default to 1.0; `ID@best` (no scale given) uses the scale
    its evaluation picked it at; a scale the caller gives wins."""
    from zlt.artifacts import store
    from zlt.infer import LoraUse, resolve_loras

    row = store.fetch_all(zlt_home)[0]
    meta_file = Path(row["path"]) / "training_meta.json"
    meta = json.loads(meta_file.read_text())
    meta["eval"] = {"best_step": 500, "scale": 0.6}
    meta_file.write_text(json.dumps(meta))
    store.update_meta(zlt_home, art, {"best_step": 500})
    assert TransferParams(loras=[{"artifact": art}], images=["x.png"]).loras[0].scale is None
    plain, = resolve_loras([LoraUse(artifact=art)], zlt_home)
    best, = resolve_loras([LoraUse(artifact=f"{art}@best")], zlt_home)
    told, = resolve_loras([LoraUse(artifact=f"{art}@best", scale=0.9)], zlt_home)
    assert plain.scale == 1.0 and plain.checkpoint is None
    assert (best.scale, best.checkpoint) == (0.6, 500)
    assert told.scale == 0.9


def test_a_pipeline_load_is_announced_once_and_the_outputs_record_what_ran(art, zlt_home):
    heard: list[str] = []
    fresh = PipelineCache()
    r = generate(_gen(art, width=32, height=32, steps=1), cache=fresh, save=False, notice=heard.append)
    generate(_gen(art, width=32, height=32, steps=1), cache=fresh, save=False, notice=heard.append)
    assert heard == ["loading pipeline zlt/tiny-zimage on cpu (fp32); the first load takes a while"]
    assert r.outputs["precision"] == "fp32" and r.params[0]["precision"] == "fp32"  # not the spec's fp16/bf16
