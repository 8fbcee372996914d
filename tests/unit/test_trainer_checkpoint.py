"""LoRA files, resume states (safetensors + JSON) and retention."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from zlt.trainer import checkpoint as ck  # noqa: E402


def _state(step: int, value: float = 1.0) -> ck.ResumeState:
    return ck.ResumeState(
        step=step, epoch=1, batch_in_epoch=3,
        trainable={"layers.0.attention.to_q.lora_A.default.weight": torch.full((2, 4), value)},
        optimizer={"state": {0: {"step": torch.tensor(5.0), "exp_avg": torch.ones(2, 4)}},
                   "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "params": [0], "growth": math.inf}]},
        scheduler={"last_epoch": step, "base_lrs": [0.1], "lr_lambdas": [None]},
        rng={"torch": torch.get_rng_state(), "noise": torch.Generator().manual_seed(3).get_state()},
        precision={}, fingerprint={"lora": "abc"}, data_order=[[[0, 0, -1], [2, 1, -1]]],
    )


def test_split_and_join_keep_structure_and_int_keys():
    tensors: dict = {}
    obj = {"state": {0: {"m": torch.arange(3)}, 7: {"m": torch.zeros(1)}}, "groups": [{"betas": (0.9, 0.99)}], "x": None}
    doc = json.loads(json.dumps(ck.split_tensors(obj, "o", tensors)))
    back = ck.join_tensors(doc, tensors)
    assert set(back["state"]) == {0, 7}
    assert torch.equal(back["state"][0]["m"], torch.arange(3))
    assert back["groups"] == [{"betas": [0.9, 0.99]}] and back["x"] is None


def test_state_round_trip(tmp_path: Path):
    original = _state(10)
    path = ck.save_state(tmp_path, "run", original, keep=3)
    assert path == tmp_path / "state" / "run_000000010.json"
    st = ck.load_state(path)
    assert (st.step, st.epoch, st.batch_in_epoch) == (10, 1, 3)
    assert torch.equal(st.trainable["layers.0.attention.to_q.lora_A.default.weight"], torch.ones(2, 4))
    assert st.optimizer["state"][0]["step"].item() == 5.0
    assert st.optimizer["param_groups"][0]["growth"] == math.inf
    assert torch.equal(st.rng["torch"], original.rng["torch"])
    g = torch.Generator()
    g.set_state(st.rng["noise"])
    assert torch.equal(torch.rand(3, generator=g), torch.rand(3, generator=torch.Generator().manual_seed(3)))
    assert st.data_order == [[[0, 0, -1], [2, 1, -1]]]
    assert "pickle" not in path.read_text()


def test_torn_state_is_skipped(tmp_path: Path):
    ck.save_state(tmp_path, "run", _state(5, 1.0), keep=3)
    newest = ck.save_state(tmp_path, "run", _state(10, 2.0), keep=3)
    tensor_file = newest.with_suffix(".safetensors")
    tensor_file.write_bytes(tensor_file.read_bytes()[:-8] + b"corrupt!")
    warnings: list[str] = []
    st = ck.latest_state(tmp_path, "run", warnings.append)
    assert st is not None and st.step == 5
    assert len(warnings) == 1 and "sha256" in warnings[0]
    assert ck.latest_state(tmp_path / "nothing", "run", warnings.append) is None


def test_retention_keeps_the_last_n_by_step(tmp_path: Path):
    for step in (5, 10, 15, 20, 100):
        ck.save_state(tmp_path, "run", _state(step), keep=3)
        ck.prune(tmp_path, "run", 3, step, (".safetensors",))
        ck.step_file(tmp_path, "run", step).write_bytes(b"x")
    ck.final_file(tmp_path, "run").write_bytes(b"final")
    assert [s for s, _ in ck.step_files(tmp_path, "run")] == [15, 20, 100]
    assert [s for s, _ in ck.step_files(tmp_path / "state", "run", ".json")] == [15, 20, 100]
    assert len(list((tmp_path / "state").glob("*.safetensors"))) == 3
    assert ck.final_file(tmp_path, "run").exists()


def test_lora_file_has_diffusers_keys_and_metadata(tmp_path: Path):
    from safetensors import safe_open

    from zlt.trainer.config import LoraConfig
    from zlt.trainer.models import add_lora
    from zlt.trainer.tiny import build_tiny_components

    tr = build_tiny_components(encoders=False)["transformer"]
    add_lora(tr, LoraConfig(rank=4, alpha=8, target_modules=["attention.to_q", "attention.to_out.0"]), seed=0)
    path = ck.save_lora(tmp_path / "x.safetensors", tr, dtype=torch.bfloat16, step=7, epoch=2, extra={"zlt.tiny_model": "true"})
    with safe_open(str(path), "pt") as f:
        keys, meta = list(f.keys()), f.metadata()
        assert f.get_tensor(keys[0]).dtype == torch.bfloat16
    assert all(k.startswith("transformer.") and (".lora_A.weight" in k or ".lora_B.weight" in k) for k in keys)
    assert "transformer.layers.0.attention.to_out.0.lora_B.weight" in keys
    assert json.loads(meta["training_info"]) == {"step": 7, "epoch": 2}
    adapter = json.loads(meta["lora_adapter_metadata"])
    assert adapter["transformer.r"] == 4 and adapter["transformer.lora_alpha"] == 8
    assert meta["zlt.tiny_model"] == "true" and meta["format"] == "pt"
    assert oct(path.stat().st_mode & 0o777) == oct(ck.FILE_MODE)
