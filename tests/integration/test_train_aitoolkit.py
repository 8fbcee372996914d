"""`zlt train` end to end with the stand-in ai-toolkit checkout (tests/fixtures/fake_aitoolkit), through
the real CLI, runner and supervisor: success, crash, OOM abort, SIGKILL, timeout, cancel during a save."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import psutil
import pytest

from tests.integration.test_train_helpers import (
    FAKE_AITOOLKIT,
    ndjson,
    of_type,
    read_json,
    run_train,
    train_argv,
    write_spec,
)

FAST = {"FAKE_TRAINER_STEP_S": "0.02"}


def test_success_events_files_and_artifact(tmp_path):
    spec = write_spec(tmp_path)
    job = tmp_path / "job"
    proc, events = run_train(spec, job, env=FAST)
    assert proc.returncode == 0, proc.stderr
    job_ids = {e["job_id"] for e in events}
    assert len(job_ids) == 1
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert all(isinstance(e["ts"], float) for e in events)
    phases = [e["phase"] for e in of_type(events, "phase")]
    for p in ("preflight", "preparing_dataset", "rendering", "loading_model", "quantizing", "caching_latents",
              "training", "saving", "collecting"):
        assert p in phases
    progress = of_type(events, "progress")
    assert progress[-1]["step"] == 20 and progress[-1]["total"] == 20 and progress[-1]["loss"] > 0
    assert all(p["total"] == 20 for p in progress)  # the caching bar never shows up as training progress
    ckpts = of_type(events, "checkpoint")
    assert [c["step"] for c in ckpts] == [5, 10, 15, 20]
    fin = events[-1]
    assert fin["type"] == "finished" and fin["status"] == "succeeded" and fin["exit_code"] == 0
    assert fin["artifact"] and os.path.isdir(fin["artifact"])

    for name in ("spec.yaml", "render/ai_toolkit.yaml", "render/argv.json", "train.log", "events.jsonl",
                 "checkpoints.json", "dataset.json", "result.json"):
        assert (job / name).is_file(), name
    assert ndjson((job / "events.jsonl").read_text()) == events
    raw = (job / "train.log").read_bytes()
    assert b"\rwc:" in raw and b"Saved checkpoint to" in raw  # verbatim, \r redraws included
    ck = read_json(job / "checkpoints.json")
    assert ck["backend"] == "ai-toolkit"
    steps = [(c["step"], c["final"]) for c in ck["checkpoints"]]
    assert steps[-1] == (20, True) and len(steps) == 3  # keep 2 step saves + the final
    result = read_json(job / "result.json")
    assert result["status"] == "succeeded" and result["profile"] == "24gb" and result["artifact_id"]
    argv = read_json(job / "render" / "argv.json")
    # run.py reads the seed from $SEED only
    assert argv[0][:2] == ["env", "SEED=42"]
    assert argv[0][3:5] == ["run.py", str(job / "render" / "ai_toolkit.yaml")] and "-l" in argv[0]


def test_crash_exit_1_with_traceback(tmp_path):
    proc, events = run_train(write_spec(tmp_path), tmp_path / "job", env={**FAST, "FAKE_TRAINER_MODE": "crash"})
    assert proc.returncode == 1
    fin = events[-1]
    assert (fin["status"], fin["cause"], fin["exit_code"]) == ("failed", "unknown", 1)
    assert "shape mismatch" in fin["message"]
    tb = [e for e in of_type(events, "error") if e["traceback"]]
    assert tb and tb[-1]["traceback"][0] == "Traceback (most recent call last):"
    result = read_json(tmp_path / "job" / "result.json")
    assert result["log_tail"] and len(result["log_tail"]) <= 40


def test_oom_abort_is_cuda_oom_with_levers(tmp_path):
    proc, events = run_train(write_spec(tmp_path), tmp_path / "job", env={**FAST, "FAKE_TRAINER_MODE": "oom_abort"})
    assert proc.returncode == 1
    ooms = of_type(events, "oom")
    assert [o["fatal"] for o in ooms] == [False, False, False, True]
    fin = events[-1]
    assert fin["cause"] == "cuda_oom"
    assert "--profile 16gb" in read_json(tmp_path / "job" / "result.json")["hint"]


def test_sigkill_is_host_oom(tmp_path):
    proc, events = run_train(write_spec(tmp_path), tmp_path / "job", env={**FAST, "FAKE_TRAINER_MODE": "sigkill"})
    assert proc.returncode == 1
    assert (events[-1]["status"], events[-1]["cause"], events[-1]["exit_code"]) == ("failed", "host_oom", -9)


@pytest.mark.parametrize("mode, cause", [("import_error", "import_error"), ("download_error", "model_download"),
                                         ("bad_config", "bad_config")])
def test_environment_failures_are_classified(tmp_path, mode, cause):
    proc, events = run_train(write_spec(tmp_path), tmp_path / "job", env={**FAST, "FAKE_TRAINER_MODE": mode})
    assert proc.returncode == 1 and events[-1]["cause"] == cause


def test_hang_past_timeout_is_stopped(tmp_path):
    spec = write_spec(tmp_path, job={"timeout_hours": 0.0006})  # ~2.2 s
    env = {**FAST, "FAKE_TRAINER_MODE": "hang", "FAKE_TRAINER_FAIL_AT": "3"}
    t0 = time.monotonic()
    proc, events = run_train(spec, tmp_path / "job", env=env)
    assert proc.returncode == 1 and time.monotonic() - t0 < 30
    fin = events[-1]
    assert (fin["status"], fin["cause"]) == ("timeout", "timeout")
    # ai-toolkit answers SIGINT with "Job stopped" and exit 0: zlt still knows it was its own stop.
    assert fin["exit_code"] == 0
    assert b"Job stopped" in (tmp_path / "job" / "train.log").read_bytes()


@pytest.mark.slow
def test_ctrl_c_during_a_save_waits_for_it_and_leaves_no_process(tmp_path):
    spec = write_spec(tmp_path, steps=40, every=10)
    env = {**os.environ, "FAKE_TRAINER_STEP_S": "0.05", "FAKE_TRAINER_SAVE_S": "1.5", "FAKE_TRAINER_SPAWN": "1"}
    job = tmp_path / "job"
    proc = subprocess.Popen(train_argv(spec, job), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    seen: set[int] = set()
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        for child in psutil.Process(proc.pid).children(recursive=True):
            seen.add(child.pid)
        if '"phase":"saving"' in line:
            time.sleep(0.3)  # well inside the 1.5 s write
            for child in psutil.Process(proc.pid).children(recursive=True):
                seen.add(child.pid)
            proc.send_signal(signal.SIGINT)
            break
    rest, err = proc.communicate(timeout=60)
    events = ndjson("".join(lines) + rest)
    assert proc.returncode == 1, err
    assert (events[-1]["status"], events[-1]["cause"]) == ("cancelled", "cancelled")
    ck = read_json(job / "checkpoints.json")
    assert [c["step"] for c in ck["checkpoints"]] == [10] and ck["checkpoints"][0]["valid"]
    assert "invalid" not in ck
    assert len(seen) >= 2  # the trainer and its worker
    for pid in seen:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_resume_continues_from_the_latest_checkpoint_and_rotates_the_log(tmp_path):
    spec = write_spec(tmp_path)
    job = tmp_path / "job"
    proc, _ = run_train(spec, job, env={**FAST, "FAKE_TRAINER_MODE": "crash", "FAKE_TRAINER_FAIL_AT": "12"})
    assert proc.returncode == 1
    first_id = read_json(job / "result.json")["job_id"]
    proc, events = run_train(spec, job, "--resume", env=FAST)
    assert proc.returncode == 0, proc.stderr
    resumed = of_type(events, "resumed")
    assert resumed and resumed[0]["step"] == 10 and resumed[0]["path"].endswith("wc_000000010.safetensors")
    assert of_type(events, "progress")[0]["step"] >= 10
    assert events[-1]["job_id"] == first_id and events[-1]["status"] == "succeeded"
    assert (job / "train.log.1").is_file() and (job / "train.log").is_file()
    seqs = [e["seq"] for e in ndjson((job / "events.jsonl").read_text())]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # one stream across both attempts


def test_rerun_without_resume_moves_old_output_aside(tmp_path):
    spec = write_spec(tmp_path, steps=10)
    job = tmp_path / "job"
    assert run_train(spec, job, env=FAST)[0].returncode == 0
    proc, events = run_train(spec, job, env=FAST)
    assert proc.returncode in (0, 1)  # the artifact name may be taken; training itself ran again
    assert (job / "output.1" / "wc" / "wc.safetensors").is_file()
    assert any("moved to" in w["message"] for w in of_type(events, "warning"))
    assert not of_type(events, "resumed")


def test_bad_spec_is_exit_2_as_one_json_line(tmp_path):
    spec = write_spec(tmp_path, training={"max_steps": 0})
    proc, events = run_train(spec, tmp_path / "job")
    assert proc.returncode == 2
    assert len(events) == 1 and events[0]["ok"] is False and events[0]["error"] == "invalid_spec"


def test_missing_checkout_is_exit_3(tmp_path):
    spec = write_spec(tmp_path)
    proc, events = run_train(spec, tmp_path / "job", "--ai-toolkit", str(tmp_path / "nowhere"))
    assert proc.returncode == 3
    assert events[-1]["ok"] is False and events[-1]["error"] == "env_not_ready"
    fin = of_type(events, "finished")
    assert fin and (fin[0]["status"], fin[0]["cause"]) == ("failed", "preflight")
    assert FAKE_AITOOLKIT.is_dir()


def test_people_get_a_bar_and_a_summary(tmp_path):
    from tests.integration.test_train_helpers import REPO

    spec = write_spec(tmp_path, steps=10)
    argv = [a for a in train_argv(spec, tmp_path / "job") if a != "--json"]
    proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **FAST}, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "10/10" in out and "loss" in out
    assert "artifact:" in out and "loss: first" in out


def test_resume_needs_a_workdir(tmp_path, zlt):
    proc = zlt("train", str(write_spec(tmp_path)), "--resume")
    assert proc.returncode == 2 and "--workdir" in proc.stderr
