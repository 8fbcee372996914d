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
    pytest.mark.serial,  # a thread scores checkpoints while the trainer runs: timing matters
    pytest.mark.train,
    pytest.mark.skipif(importlib.util.find_spec("diffusers") is None, reason="needs the [train] extra"),
]


def test_training_with_eval_enable_leaves_an_evaluated_artifact(tmp_path: Path):
    spec = _live_spec(tmp_path, max_steps=4, keep=2, enable=True)
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


def _live_spec(tmp_path: Path, *, max_steps: int = 6, keep: int = 4, **eval_extra) -> Path:
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
        "training": {"backend": "lightning", "max_steps": max_steps, "warmup_steps": 0, "sample": {"steps": 1}},
        "output": {"save": {"every": 2, "keep": keep}},
        "eval": {"prompts": ["[trigger] a lighthouse"], "seeds": 2, "models": {"clip": str(clip)}, **eval_extra},
    }))
    return spec


def test_eval_every_scores_checkpoints_while_training_and_the_artifact_reuses_them(tmp_path: Path):
    spec = _live_spec(tmp_path, every=2)
    proc, events = run_train(spec, tmp_path / "job", backend="lightning", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert events[-1]["status"] == "succeeded"
    evals = of_type(events, "evaluation")
    assert [e["step"] for e in evals if e["base"]] == [0]
    live_steps = [e["step"] for e in evals if not e["base"]]
    assert live_steps and set(live_steps) <= {2, 4}, evals  # step 6 is the final file: scored after training
    assert all(e["decision"] is None for e in evals)  # early stop is off
    assert all(isinstance(e["style_similarity"], float) for e in evals)
    assert not [w for w in of_type(events, "warning") if w.get("code") == "eval_failed"], of_type(events, "warning")
    # the runner's events arrive in order: every evaluation comes before the job's end
    assert events.index(evals[-1]) < len(events) - 1
    folder = Path(events[-1]["artifact"])
    report = json.loads((folder / "eval" / "report.json").read_text())
    rows = {r["step"]: r for r in report["checkpoints"]}
    assert rows[0]["scored_during_training"] is True  # the base row of the live evaluation
    for step in live_steps:
        assert rows[step].get("scored_during_training") is True
        live = next(e for e in evals if e["step"] == step and not e["base"])
        assert rows[step]["metrics"]["style_similarity"] == pytest.approx(live["style_similarity"])
    assert not rows[6].get("scored_during_training")  # the final weights were drawn after training
    assert report["during_training"]["every"] == 2 and report["during_training"]["same_measurement"] is True
    meta = json.loads((folder / "training_meta.json").read_text())
    assert meta["eval_during_training"]["evaluated_steps"] == live_steps
    assert meta["best_step"] == report["best"]["step"]
    # every image of the reused rows is in the artifact, with the contact sheet
    for step in live_steps:
        assert all((folder / p).is_file() for p in rows[step]["images"])
    # and a reused row is the same measurement `zlt eval` makes from the collected checkpoint
    import os
    import subprocess
    import sys

    again = subprocess.run([sys.executable, "-m", "zlt", "eval", meta["job_id"], "--checkpoints",
                            str(live_steps[0]), "--json"], capture_output=True, text=True, timeout=600,
                           env=dict(os.environ))
    assert again.returncode == 0, again.stderr[-2000:]
    fresh = {r["step"]: r for r in json.loads((folder / "eval" / "report.json").read_text())["checkpoints"]}
    assert not fresh[live_steps[0]].get("scored_during_training")
    for key in ("style_similarity", "prompt_alignment", "memorisation", "diversity"):
        assert fresh[live_steps[0]]["metrics"][key] == pytest.approx(rows[live_steps[0]]["metrics"][key], abs=1e-5), key
        assert fresh[0]["metrics"][key] == pytest.approx(rows[0]["metrics"][key], abs=1e-5), key
