"""Several devices with Fabric DDP: two CPU processes (gloo) train the same LoRA as one process that accumulates
twice as many micro-batches (float8 base storage included), because the dataset is sharded across ranks (rank r takes batch r of each group) and
every rank draws the whole group's noise and sigmas from one shared stream."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from tests.unit.test_trainer_fixtures import make_images, tiny_config_dict  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.train]
REPO = Path(__file__).resolve().parents[2]


def _train(tmp: Path, data: Path, name: str, accumulation: int, devices: int) -> tuple[list[dict], Path]:
    cfg = tiny_config_dict(
        tmp / name, data, model={"quantize": "float8"},
        training={"max_steps": 3, "batch_size": 1, "gradient_accumulation": accumulation, "timestep_type": "weighted",
                  "learning_rate": 1e-2},
        runtime={"accelerator": "cpu", "devices": devices, "strategy": "ddp" if devices > 1 else "auto"},
        cache={"dir": str(tmp / "cache")}, output={"dir": str(tmp / name / "out"), "save_every": 100, "keep": 1,
                                                   "save_dtype": "fp32"},
    )
    path = tmp / name / "trainer.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cfg))
    r = subprocess.run([sys.executable, "-m", "zlt.trainer", str(path)], capture_output=True, text=True, timeout=600,
                       cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr
    return [json.loads(x) for x in r.stdout.splitlines()], tmp / name / "out" / "tinytest.safetensors"


def test_two_ranks_equal_one_rank_with_doubled_accumulation(tmp_path: Path):
    from safetensors.torch import load_file

    data = make_images(tmp_path / "ds", n=4)  # 4 batches per epoch: step 3 crosses an epoch boundary in both runs
    one_events, one = _train(tmp_path, data, "one", accumulation=2, devices=1)
    two_events, two = _train(tmp_path, data, "two", accumulation=1, devices=2)
    a, b = load_file(str(one)), load_file(str(two))
    assert a.keys() == b.keys() and a
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst < 1e-5, worst
    assert any(float(a[k].abs().max()) > 1e-3 for k in a if "lora_B" in k)  # it trained: B moved off zero
    loss = lambda evs: [e["loss"] for e in evs if e["type"] == "progress"]  # noqa: E731
    assert loss(one_events) == pytest.approx(loss(two_events), rel=1e-5)  # the step's loss, averaged over ranks
    said = [e["message"] for e in two_events if e["type"] == "phase" and e["phase"] == "training"]
    assert any("on cpu x2" in m and "effective batch 2 = batch 1 x accumulation 1 x 2 device(s)" in m for m in said)
