"""`eval.enable`: a real `zlt train` on the tiny CPU model evaluates its own artifact when it finishes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from tests.integration.test_train_helpers import make_dataset, of_type, run_train

pytestmark = [
    pytest.mark.slow,
    pytest.mark.train,
    pytest.mark.skipif(importlib.util.find_spec("diffusers") is None, reason="needs the [train] extra"),
]


def test_training_with_eval_enable_leaves_an_evaluated_artifact(tmp_path: Path):
    from PIL import Image

    from tests.fixtures.eval_fixtures import tiny_clip

    make_dataset(tmp_path / "ds")
    for p in (tmp_path / "ds").glob("*.png"):
        Image.open(p).resize((64, 64)).save(p)
    clip = tiny_clip(tmp_path / "clip")
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "tiny", "model": {"base": {"name": "zlt/tiny-zimage", "source": "builtin"}},
        "dataset": {"path": "ds", "resolution": 32},
        "training": {"backend": "lightning", "max_steps": 4, "warmup_steps": 0, "sample": {"steps": 1}},
        "output": {"save": {"every": 2, "keep": 2}},
        "eval": {"enable": True, "prompts": ["[trigger] a lighthouse"], "seeds": 2, "models": {"clip": str(clip)}},
    }))
    proc, events = run_train(spec, tmp_path / "job", backend="lightning", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    phases = [e for e in of_type(events, "phase") if e["phase"] == "evaluating"]
    assert phases and "best checkpoint: step" in phases[-1]["message"], phases
    assert not [w for w in of_type(events, "warning") if "evaluation failed" in w["message"]]
    assert events[-1]["status"] == "succeeded"
    folder = Path(events[-1]["artifact"])  # the finished event names the artifact folder
    report = json.loads((folder / "eval" / "report.json").read_text())
    meta = json.loads((folder / "training_meta.json").read_text())
    kept = [c["step"] for c in meta["checkpoints"]]
    assert 2 in kept  # the intermediate checkpoint reached the registry
    # the final LoRA is step 4; a kept checkpoint of the same step is the same weights, scored once
    assert [r["step"] for r in report["checkpoints"]] == [0, *sorted(set(kept) | {4})]
    assert meta["best_step"] == report["best"]["step"]
