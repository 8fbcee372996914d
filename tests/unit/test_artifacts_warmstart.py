"""Warm-start files and resume seeding per backend (no torch: numpy LoRAs from tests/fixtures)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.artifact_jobs import upstream_file
from zlt.artifacts.warmstart import (
    apply_warm_start,
    init_file,
    resume_sources,
    write_init_lora,
    write_retrain_file,
)
from zlt.core.errors import BadInputError
from zlt.lora.convert import effective_deltas, read_lora
from zlt.lora.safetensors_io import read_header


@pytest.mark.parametrize(("backend", "prefix"), [("lightning", "transformer."), ("ai-toolkit", "diffusion_model."),
                                                  ("musubi", "lora_unet_")])
def test_init_lora_keeps_the_parents_update_at_the_childs_alpha(tmp_path: Path, backend: str, prefix: str):
    src = upstream_file(tmp_path / "parent.safetensors", "musubi", alpha=2.0, seed=3, step=100, dtype="F32")
    dest = write_init_lora(src, init_file(tmp_path / "job", backend), backend=backend, rank=4, alpha=8.0)
    weights, _ = read_lora(dest)
    assert all(k.startswith(prefix) for k in read_header(dest).tensors)
    # what the child's network computes: its own alpha/rank times B @ A (kohya files carry that alpha)
    child_scale = 8.0 / 4
    got = {m: child_scale * (v.up.to_float32() @ v.down.to_float32()) for m, v in weights.modules.items()}
    want = effective_deltas(read_lora(src)[0])
    assert got.keys() == want.keys()
    for m in want:
        np.testing.assert_allclose(got[m], want[m], rtol=1e-5, atol=1e-7)


def test_init_lora_refuses_another_rank(tmp_path: Path):
    src = upstream_file(tmp_path / "parent.safetensors", "ai-toolkit", seed=1, step=10)
    with pytest.raises(BadInputError, match="rank 4, not 8"):
        write_init_lora(src, tmp_path / "x.safetensors", backend="lightning", rank=8, alpha=8)


def _write(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_resume_sources_per_backend(tmp_path: Path):
    job = tmp_path / "parent"
    _write(job / "output" / "state" / "wc_000000020.json")
    _write(job / "output" / "state" / "wc_000000020.safetensors")
    assert set(resume_sources(job, "lightning", "wc", 20)["copy"].values()) == {
        "state/wc_000000020.json", "state/wc_000000020.safetensors"}
    assert resume_sources(job, "lightning", "wc", 30) is None  # no state of the artifact's step

    _write(job / "output" / "wc" / "wc.safetensors")
    assert resume_sources(job, "ai-toolkit", "wc", 20) is None  # no optimizer.pt: nothing to resume
    _write(job / "output" / "wc" / "optimizer.pt")
    assert sorted(resume_sources(job, "ai-toolkit", "wc", 20)["copy"].values()) == ["wc/optimizer.pt", "wc/wc.safetensors"]

    # musubi's save_state_on_train_end folder of a resumed parent, named by the global step for the runner
    _write(job / "output" / "resume_from_00000010" / "wc-state" / "optimizer.bin")
    src = resume_sources(job, "musubi", "wc", 20)["copy"]
    assert list(src.values()) == ["wc-step00000020-state"] and list(src)[0].endswith("resume_from_00000010/wc-state")


def test_apply_warm_start_seeds_once_and_names_what_is_missing(tmp_path: Path):
    parent = _write(tmp_path / "parent" / "state.json", "parent")
    job = tmp_path / "job"
    write_retrain_file(job, {"mode": "resume", "copy": {str(parent): "state/s.json"}})
    assert apply_warm_start(job, "lightning", job / "output").resume
    seeded = job / "output" / "state" / "s.json"
    assert seeded.read_text() == "parent"
    seeded.write_text("newer, from a retried attempt")
    apply_warm_start(job, "lightning", job / "output")
    assert seeded.read_text() == "newer, from a retried attempt"  # never overwritten

    gone = tmp_path / "job2"
    write_retrain_file(gone, {"mode": "resume", "copy": {str(tmp_path / "nope"): "state/s.json"}})
    with pytest.raises(BadInputError, match="is gone") as exc:
        apply_warm_start(gone, "lightning", gone / "output")
    assert "--steps" in exc.value.hint
    warm = tmp_path / "job3"
    write_retrain_file(warm, {"mode": "warm"})
    with pytest.raises(BadInputError, match="missing"):
        apply_warm_start(warm, "musubi", warm / "output")
    assert apply_warm_start(tmp_path / "plain", "musubi", tmp_path / "plain" / "output").init_lora is None


def test_each_backend_is_rendered_its_own_warm_start_mechanism(tmp_path: Path):
    import yaml

    from zlt.backends import render_spec
    from zlt.profiles import get_profile
    from zlt.render import RenderContext
    from zlt.spec import load_spec_data

    init = tmp_path / "warm start" / "init.safetensors"
    spec = load_spec_data({"name": "wc", "dataset": {"path": str(tmp_path)}}).spec
    ctx = RenderContext(init_lora=init, models_dir=tmp_path)
    aitk = render_spec(spec, "ai-toolkit", get_profile("24gb"), ctx)
    net = yaml.safe_load(next(iter(aitk.files.values())))["config"]["process"][0]["network"]
    assert net["pretrained_lora_path"] == str(init), (
        "ai-toolkit jobs/process/BaseSDTrainProcess.py get_latest_save_path loads network.pretrained_lora_path "
        "(toolkit/config_modules.py NetworkConfig) when the training folder has no save")
    plain = render_spec(spec, "ai-toolkit", get_profile("24gb"), RenderContext(models_dir=tmp_path))
    assert "pretrained_lora_path" not in next(iter(plain.files.values()))
    musubi = render_spec(spec, "musubi", get_profile("24gb"), ctx).argv[-1]
    assert musubi[musubi.index("--network_weights") + 1] == str(init), (
        "musubi src/musubi_tuner/training/parser_common.py --network_weights; trainer_base.py loads it")
    resumed = render_spec(spec, "musubi", get_profile("24gb"),
                          RenderContext(init_lora=init, models_dir=tmp_path, resume_from=tmp_path / "s")).argv[-1]
    assert "--resume" in resumed and "--network_weights" not in resumed  # a retry's own state wins
    builtin = json.loads(render_spec(spec, "lightning", get_profile("24gb"), ctx).files["trainer.json"])
    assert builtin["output"]["init_lora"] == str(init)
