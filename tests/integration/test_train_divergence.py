"""`zlt train` with the stand-in trainers printing a nan loss (issue 12.15) and a cancelled musubi run (issue 19.5):
the event stream stays strict JSON, a `diverged` warning is raised, training.stop_on_nan ends the job failed with
cause `diverged` keeping the checkpoints saved before, and a requested stop's KeyboardInterrupts are not errors."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import time

import pytest

from tests.integration.test_train_helpers import of_type, read_json, run_train, train_argv, write_spec

pytestmark = [pytest.mark.slow, pytest.mark.serial]  # cancels land mid-step: timing matters
NEEDS_ACCELERATE = pytest.mark.skipif(importlib.util.find_spec("accelerate") is None,
                                      reason="the rendered musubi train step runs `python -m accelerate.commands.launch`")


def _strict(text: str) -> list[dict]:
    def refuse(token):
        raise ValueError(f"not strict JSON: {token}")

    return [json.loads(line, parse_constant=refuse) for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("backend", ["ai-toolkit", pytest.param("musubi", marks=NEEDS_ACCELERATE)])
def test_nan_loss_stops_the_job_as_diverged(tmp_path, backend):
    spec = write_spec(tmp_path, backend=backend, steps=60, every=5)
    job = tmp_path / "job"
    env = {"FAKE_TRAINER_STEP_S": "0.03", "FAKE_TRAINER_MODE": "nan", "FAKE_TRAINER_FAIL_AT": "12"}
    proc, _ = run_train(spec, job, backend=backend, env=env)
    events = _strict(proc.stdout)
    _strict((job / "events.jsonl").read_text())
    assert proc.returncode == 1, proc.stderr
    fin = events[-1]
    assert (fin["status"], fin["cause"]) == ("failed", "diverged"), fin
    bad = [p for p in of_type(events, "progress") if p["loss_nonfinite"]]
    assert bad and all(p["loss"] is None for p in bad)
    warned = [w for w in of_type(events, "warning") if w.get("code") == "diverged"]
    assert len(warned) == 2 and "stopping the trainer" in warned[1]["message"]
    assert max(p["step"] for p in of_type(events, "progress")) < 60  # stopped, not trained to the end
    assert "last good checkpoint: step 10" in fin["message"]
    result = read_json(job / "result.json")
    assert result["cause"] == "diverged" and 12 <= result["diverged_at"] <= 13
    assert not fin["artifact"]
    series = [json.loads(line) for line in (job / "progress.jsonl").read_text().splitlines()]
    assert any(r.get("loss_nonfinite") for r in series)


def test_nan_without_stop_on_nan_only_warns(tmp_path):
    spec = write_spec(tmp_path, steps=30, every=10, training={"stop_on_nan": False})
    env = {"FAKE_TRAINER_STEP_S": "0.01", "FAKE_TRAINER_MODE": "nan", "FAKE_TRAINER_FAIL_AT": "25"}
    proc, _ = run_train(spec, tmp_path / "job", env=env)
    events = _strict(proc.stdout)
    assert proc.returncode == 0 and events[-1]["status"] == "succeeded"
    assert [w["code"] for w in of_type(events, "warning") if w.get("code")] == ["diverged"]


@NEEDS_ACCELERATE
def test_cancelling_musubi_is_not_an_error(tmp_path):
    spec = write_spec(tmp_path, backend="musubi", steps=400, every=100)
    job = tmp_path / "job"
    env = {**os.environ, "FAKE_TRAINER_STEP_S": "0.05"}
    proc = subprocess.Popen(train_argv(spec, job, backend="musubi"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if '"type":"progress"' in line and '"step":0,' not in line:
            time.sleep(0.3)
            (job / "cancel.request").touch()
            break
    rest, err = proc.communicate(timeout=90)
    events = _strict("".join(lines) + rest)
    assert (events[-1]["status"], events[-1]["cause"]) == ("cancelled", "cancelled"), err
    assert of_type(events, "error") == []
    log = (job / "train.log").read_bytes()
    assert b"KeyboardInterrupt" in log  # the trainer did print its traceback; zlt did not call it an error


@NEEDS_ACCELERATE
def test_musubi_tokenizer_missing_offline_is_a_missing_model_file(tmp_path):
    """Issue 19.1: the stand-in's text-encoder step fails as the real one did (an empty `ImportError:` after
    `Loading tokenizer from Tongyi-MAI/Z-Image`); zlt names the tokenizer and the command that fetches it."""
    spec = write_spec(tmp_path, backend="musubi", steps=12)
    env = {"FAKE_TRAINER_STEP_S": "0.01", "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty-cache"),
           "FAKE_MUSUBI_CHECK_TOKENIZER": "1"}
    proc, events = run_train(spec, tmp_path / "job", backend="musubi", env=env)
    assert proc.returncode == 1
    fin = events[-1]
    assert fin["cause"] == "model_missing" and "Tongyi-MAI/Z-Image/tokenizer" in fin["message"], fin
    assert "download Tongyi-MAI/Z-Image --include 'tokenizer/*'" in read_json(tmp_path / "job" / "result.json")["hint"]
