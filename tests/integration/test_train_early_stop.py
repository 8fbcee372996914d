"""`eval.early_stop`: the runner scores checkpoints while the trainer runs and stops it when the rule says so.

The metrics are scripted (the rule itself is tested in tests/unit/test_eval_early_stop.py, the metrics in
test_eval_metrics.py); everything else is the real path: the trainer process, its checkpoint events, the stop
ladder, the collection and the evaluation after training."""

from __future__ import annotations

import importlib.util
import itertools
import json
from pathlib import Path

import pytest
import yaml

from tests.integration.test_train_helpers import FAKE_AITOOLKIT, make_dataset, write_spec
from zlt.flows.training import TrainRequest, run_training
from zlt.spec import load_spec

pytestmark = [
    pytest.mark.slow,
    pytest.mark.serial,  # a thread scores checkpoints while the trainer runs: timing matters
    pytest.mark.train,
    pytest.mark.skipif(importlib.util.find_spec("diffusers") is None, reason="needs the [train] extra"),
]

# base, then checkpoints: style flat from the 2nd evaluation on, alignment falling -> stop on the 2nd
SCRIPT = [(0.50, 0.30), (0.60, 0.30), (0.60, 0.28)]
LATER = (0.55, 0.25)


def scripted_scores(monkeypatch) -> list[int]:
    calls: list[int] = []
    values = itertools.chain(SCRIPT, itertools.repeat(LATER))

    def score(scorer, images, prompts, seeds, train_emb):
        calls.append(len(images))
        style, align = next(values)
        return {"style_similarity": style, "prompt_alignment": align, "memorisation": 0.5, "diversity": 0.1}

    monkeypatch.setattr("zlt.eval.evaluate.score_images", score)
    return calls


def _events(job_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (job_dir / "events.jsonl").read_text().splitlines() if line.strip()]


def test_early_stop_stops_the_built_in_trainer_and_the_job_succeeds(tmp_path: Path, zlt_home: Path, monkeypatch):
    from PIL import Image

    from tests.fixtures.eval_fixtures import tiny_clip

    scripted_scores(monkeypatch)
    make_dataset(tmp_path / "ds")
    for p in (tmp_path / "ds").glob("*.png"):
        Image.open(p).resize((64, 64)).save(p)
    max_steps = 3000
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "tiny", "model": {"base": {"name": "zlt/tiny-zimage", "source": "builtin"}},
        "dataset": {"path": "ds", "resolution": 32},
        "training": {"backend": "lightning", "max_steps": max_steps, "warmup_steps": 0, "sample": {"enable": False}},
        "output": {"save": {"every": 2, "keep": 3}},
        "eval": {"prompts": ["[trigger] a lighthouse"], "seeds": 2, "models": {"clip": str(tiny_clip(tmp_path / "clip"))},
                 "early_stop": {"enable": True, "patience": 1, "min_delta": 0.01}},
    }))
    req = TrainRequest(loaded=load_spec(spec), home=zlt_home, job_id="job-es", job_dir=tmp_path / "job",
                       skip_preflight=True, stop_grace_s=30)
    out = run_training(req)
    assert (out.status, out.cause) == ("succeeded", None), out.message
    assert out.last_step is not None and out.last_step < max_steps
    assert "stopped early" in out.message and "eval.early_stop" in out.message
    assert out.stopped_early and "plateaued" in out.stopped_early
    events = _events(tmp_path / "job")
    evals = [e for e in events if e["type"] == "evaluation"]
    trained = [e for e in evals if not e["base"]]
    assert [e["decision"] for e in trained] == ["continue", "stop"], trained
    assert trained[1]["step"] > trained[0]["step"]
    assert "plateaued" in trained[1]["reason"] and "falling" in trained[1]["reason"]
    assert not [e for e in events if e["type"] == "error"]
    assert events[-1]["type"] == "finished" and events[-1]["status"] == "succeeded"
    folder = Path(out.artifact_path)
    meta = json.loads((folder / "training_meta.json").read_text())
    assert meta["eval_during_training"]["early_stop"]["stop"] is True
    assert meta["eval_during_training"]["evaluated_steps"] == [e["step"] for e in trained]
    assert meta["training"]["final_step"] < max_steps
    report = json.loads((folder / "eval" / "report.json").read_text())
    assert report["during_training"]["early_stop"]["step"] == trained[1]["step"]
    # the best pick (highest style within the guards; ties go to the earlier step) is the first scored checkpoint
    assert report["best"]["step"] == trained[0]["step"], report["best"]
    assert meta["best_step"] == trained[0]["step"]


class _FakeScorer:
    def images(self, images):
        import numpy as np

        return np.ones((len(images), 4), dtype="float32")

    def texts(self, texts):
        import numpy as np

        return np.ones((len(texts), 4), dtype="float32")


def test_early_stop_stops_the_ai_toolkit_stand_in_too(tmp_path: Path, zlt_home: Path, monkeypatch):
    """Same runner path on an external trainer: its 'Saving at step N' lines drive the evaluation, SIGINT stops it."""
    from PIL import Image

    import zlt.flows.live_eval as live

    scripted_scores(monkeypatch)
    monkeypatch.setenv("FAKE_TRAINER_STEP_S", "0.05")
    drawn: list[str | None] = []
    real_init = live.LiveEvaluator.__init__

    def init(self, *a, **kw):
        def source(lora, prompts, count, seed):
            drawn.append(lora.name if lora else None)
            return [Image.new("RGB", (32, 32), (seed % 255, 0, 0)) for _ in range(len(prompts) * count)]

        real_init(self, *a, **kw, scorer=_FakeScorer(), image_source=source)

    monkeypatch.setattr(live.LiveEvaluator, "__init__", init)
    spec = write_spec(tmp_path, steps=400, every=5)
    data = yaml.safe_load(spec.read_text())
    data["eval"] = {"prompts": ["[trigger] a lighthouse"], "seeds": 1,
                    "early_stop": {"enable": True, "patience": 1, "min_delta": 0.01}}
    data["output"]["save"]["keep"] = 3
    spec.write_text(yaml.safe_dump(data))
    req = TrainRequest(loaded=load_spec(spec), home=zlt_home, job_id="job-es2", job_dir=tmp_path / "job",
                       skip_preflight=True, ai_toolkit=str(FAKE_AITOOLKIT), stop_grace_s=10)
    out = run_training(req)
    assert out.status == "succeeded", out.message
    assert out.last_step is not None and out.last_step < 400
    assert "stopped early" in out.message
    trained = [e for e in _events(tmp_path / "job") if e["type"] == "evaluation" and not e["base"]]
    assert [e["decision"] for e in trained] == ["continue", "stop"]
    assert drawn[:3] == [f".lora_step_{trained[0]['step']:06d}.safetensors"] * 2 + [
        f".lora_step_{trained[1]['step']:06d}.safetensors"]  # base (scale 0) and the first row use one file
    assert out.artifact_id is not None
