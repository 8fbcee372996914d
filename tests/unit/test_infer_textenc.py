"""A real model on a host without CUDA: `generate` encodes the prompts with the text encoder alone, frees it, and only
then loads the pipeline without it (issue 27: the real-size pipeline held the 8 GB text encoder beside the 12.3 GB
transformer, 19.2 GiB resident). Reproduced on the tiny model saved as a local diffusers folder (a real model's code
path, planned like one: the CPU in bf16)."""

from __future__ import annotations

import weakref

import pytest

torch = pytest.importorskip("torch", reason="needs the [train] extra (torch)")
pytest.importorskip("diffusers", reason="needs the [train] extra (diffusers)")

import numpy as np  # noqa: E402

from tests.fixtures.artifact_jobs import make_job_dir  # noqa: E402

pytestmark = pytest.mark.train


def test_a_real_model_on_a_cpu_host_draws_with_its_text_encoder_freed_first(tmp_path, zlt_home, monkeypatch):
    from zlt.artifacts import collect_artifact
    from zlt.infer import GenerateParams, PipelineCache, generate, textenc
    from zlt.infer.pipeline import load_base_pipeline
    from zlt.trainer.tiny import build_tiny_pipeline

    build_tiny_pipeline().save_pretrained(tmp_path / "zimage")
    base = {"name": str(tmp_path / "zimage"), "source": "local", "precision": "bf16", "variant": "base",
            "training_adapter": "none"}
    art = collect_artifact(make_job_dir(tmp_path / "jobs", fmt="diffusers", spec={"name": "small",
                                                                                   "model": {"base": base}}),
                           home=zlt_home).id
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # plan_device: the CPU, bf16

    encoders: list[weakref.ref] = []
    load_encoders = textenc.load_encoders

    def watched_encoders(model):
        enc = load_encoders(model)
        encoders.append(weakref.ref(enc.pipe.text_encoder))
        return enc

    loads: list[tuple[bool, list[bool]]] = []

    def loader(base_model, plan, text_encoder=True):  # the moment the transformer loads: is a text encoder alive?
        loads.append((text_encoder, [ref() is not None for ref in encoders]))
        return load_base_pipeline(base_model, plan, text_encoder)

    monkeypatch.setattr(textenc, "load_encoders", watched_encoders)
    params = GenerateParams(loras=[{"artifact": art}], prompts=["a boat", "a house"], seed=3, steps=2, guidance=2.0,
                            negative_prompt="blurry", width=64, height=64)
    cache = PipelineCache(loader=loader)
    new = generate(params, zlt_home, cache=cache, save=False)
    assert loads == [(False, [False])]  # loaded without its text encoder, the one that encoded already gone
    assert new.outputs["text_encoder"] == "freed before the transformer loaded"
    assert new.outputs["device"]["dtype"] == "bf16"
    with cache.use({"name": base["name"]}, cache_plan(new), text_encoder=False) as entry:
        assert entry.pipe.text_encoder is None and entry.pipe.tokenizer is not None

    monkeypatch.setattr(textenc, "keeps_text_encoder", lambda *a: True)  # the old way: the whole pipeline
    old = generate(params, zlt_home, cache=PipelineCache(), save=False)
    assert old.outputs["text_encoder"] == "loaded with the pipeline" and len(encoders) == 1
    assert len(new.images) == len(old.images) == 2
    for a, b in zip(new.images, old.images, strict=True):  # the same embeddings (bf16 round-trips through fp32)
        assert np.array_equal(np.asarray(a), np.asarray(b))


def cache_plan(result):
    from zlt.infer.pipeline import DevicePlan

    return DevicePlan(**result.outputs["device"])
