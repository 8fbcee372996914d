"""`zlt train` end to end with the stand-in musubi-tuner checkout (tests/fixtures/fake_musubi): three steps
of one job (cache latents, cache text-encoder outputs, train via `accelerate launch`), failures, and a
resume whose step counter restarts at 0 upstream."""

from __future__ import annotations

import importlib.util

import pytest

from tests.integration.test_train_helpers import of_type, read_json, run_train, write_spec

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("accelerate") is None,
                       reason="the rendered musubi train step runs `python -m accelerate.commands.launch`"),
]
FAST = {"FAKE_TRAINER_STEP_S": "0.02"}


def test_three_steps_one_job(tmp_path):
    spec = write_spec(tmp_path, backend="musubi", steps=12)
    job = tmp_path / "job"
    proc, events = run_train(spec, job, backend="musubi", env=FAST)
    assert proc.returncode == 0, proc.stderr
    phases = [(e["phase"], e["message"]) for e in of_type(events, "phase")]
    starts = [p for p, m in phases if m.endswith(".py")]
    assert starts == ["caching_latents", "caching_text", "loading_model"]
    progress = of_type(events, "progress")
    assert progress and all(p["total"] == 12 for p in progress) and progress[-1]["step"] == 12
    assert progress[-1]["loss"] is not None
    assert [c["step"] for c in of_type(events, "checkpoint")] == [5, 10, 12]
    ck = read_json(job / "checkpoints.json")
    assert ck["backend"] == "musubi" and ck["checkpoints"][-1]["final"] and ck["checkpoints"][-1]["step"] == 12
    assert ck["states"][0]["path"].endswith("wc-step00000010-state")
    argv = read_json(job / "render" / "argv.json")
    assert len(argv) == 4 and argv[0][1:3] == ["-m", "zlt.backends.musubi.adapter"]
    # the turbo adapter reached musubi in its own lora_unet_* keys (the stand-in refuses any other format)
    from zlt.lora.safetensors_io import read_header

    keys = read_header(job / "render" / "turbo_adapter_musubi.safetensors").tensors
    assert "lora_unet_layers_0_attention_to_q.lora_down.weight" in keys and "lora_unet_layers_1_feed_forward_w1.alpha" in keys
    assert events[-1]["status"] == "succeeded" and events[-1]["artifact"]


def test_missing_weights_stop_the_job_before_training(tmp_path):
    spec = write_spec(tmp_path, backend="musubi", steps=12)
    proc, events = run_train(spec, tmp_path / "job", backend="musubi",
                             env={**FAST, "FAKE_MUSUBI_CHECK_WEIGHTS": "1"})
    assert proc.returncode == 1
    assert events[-1]["cause"] == "model_missing"
    assert not [e for e in of_type(events, "phase") if e["message"].startswith("train:")]


def test_crash_then_resume_offsets_the_restarted_counter(tmp_path):
    spec = write_spec(tmp_path, backend="musubi", steps=12)
    job = tmp_path / "job"
    proc, events = run_train(spec, job, backend="musubi",
                             env={**FAST, "FAKE_TRAINER_MODE": "crash", "FAKE_TRAINER_FAIL_AT": "11"})
    assert proc.returncode == 1 and events[-1]["cause"] == "unknown"
    assert "same device" in events[-1]["message"]
    proc, events = run_train(spec, job, "--resume", backend="musubi", env=FAST)
    assert proc.returncode == 0, proc.stderr
    assert of_type(events, "resumed")[0]["step"] == 10
    steps = [p["step"] for p in of_type(events, "progress")]
    assert steps[0] >= 10 and steps[-1] == 12
    assert all(p["total"] == 12 for p in of_type(events, "progress"))
    argv = read_json(job / "render" / "argv.json")[-1]
    assert argv[argv.index("--max_train_steps") + 1] == "2"
    # the LR schedule keeps the whole run's length, so step 11 after the retry has step 11's LR
    assert "num_training_steps=12" in argv[argv.index("--lr_scheduler_args") + 1:]
    assert argv[argv.index("--resume") + 1].endswith("wc-step00000010-state")
    final = read_json(job / "checkpoints.json")["checkpoints"][-1]
    assert final["final"] and final["step"] == 12 and "resume_from_00000010" in final["path"]
