"""`zlt train` with the built-in trainer (`python -m zlt.trainer`) on the tiny CPU test model: its JSON
event lines pass through the runner unchanged and its files are collected like ai-toolkit's."""

from __future__ import annotations

import importlib.util

import pytest
import yaml

from tests.integration.test_train_helpers import make_dataset, of_type, read_json, run_train

pytestmark = [
    pytest.mark.slow,
    pytest.mark.train,
    pytest.mark.skipif(importlib.util.find_spec("diffusers") is None, reason="needs the [train] extra"),
]


def test_tiny_model_on_cpu(tmp_path):
    from PIL import Image

    make_dataset(tmp_path / "ds")
    for p in (tmp_path / "ds").glob("*.png"):
        Image.open(p).resize((64, 64)).save(p)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "tiny", "model": {"base": {"name": "zlt/tiny-zimage", "source": "builtin"}},
        "dataset": {"path": "ds", "resolution": 32},
        "training": {"backend": "lightning", "max_steps": 4, "warmup_steps": 0},
        "output": {"save": {"every": 2, "keep": 2}},
    }))
    proc, events = run_train(spec, tmp_path / "job", backend="lightning", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [p["step"] for p in of_type(events, "progress")][-1] == 4
    assert [c["step"] for c in of_type(events, "checkpoint")][-1] == 4
    ck = read_json(tmp_path / "job" / "checkpoints.json")
    assert ck["checkpoints"][-1]["final"] and ck["checkpoints"][-1]["step"] == 4
    assert events[-1]["status"] == "succeeded" and events[-1]["artifact"]
