"""run_training in-process (the contract the job worker and HTTP API use), with the stand-in ai-toolkit."""

from __future__ import annotations

import json
import threading

import pytest

from tests.integration.test_train_helpers import FAKE_AITOOLKIT, write_spec
from zlt.core.errors import EnvNotReadyError
from zlt.flows.training import RunOutcome, TrainRequest, run_training
from zlt.spec import load_spec


@pytest.fixture
def fast(monkeypatch):
    monkeypatch.setenv("FAKE_TRAINER_STEP_S", "0.02")


def request(tmp_path, home, **kw):
    spec = kw.pop("spec", None) or write_spec(tmp_path)
    return TrainRequest(loaded=load_spec(spec), home=home, job_id="job-1", job_dir=tmp_path / "job",
                        skip_preflight=kw.pop("skip_preflight", True), ai_toolkit=str(FAKE_AITOOLKIT), **kw)


def test_cancel_from_another_thread(tmp_path, zlt_home, fast, monkeypatch):
    monkeypatch.setenv("FAKE_TRAINER_STEP_S", "0.1")
    stop = threading.Event()
    seen = []

    def sink(d):
        seen.append(d)
        if d["type"] == "progress" and d["step"] >= 3:
            stop.set()

    out = run_training(request(tmp_path, zlt_home, stop_grace_s=10), sinks=[sink], stop=stop)
    assert isinstance(out, RunOutcome)
    assert (out.status, out.cause, out.artifact_id) == ("cancelled", "cancelled", None)
    assert seen[-1]["type"] == "finished" and seen[-1]["status"] == "cancelled"
    result = json.loads((tmp_path / "job" / "result.json").read_text())
    assert result["status"] == "cancelled" and result["attempt"] == 1
    assert out.to_dict()["job_id"] == "job-1"


def test_failed_preflight_raises_before_launch_with_a_finished_event(tmp_path, zlt_home, fast):
    seen = []
    with pytest.raises(EnvNotReadyError):
        run_training(request(tmp_path, zlt_home, skip_preflight=False, vram_gb=24), sinks=[seen.append])
    assert seen[-1]["type"] == "finished" and seen[-1]["cause"] == "preflight"
    assert not (tmp_path / "job" / "train.log").exists()
    assert (tmp_path / "job" / "preflight.json").is_file()
    assert json.loads((tmp_path / "job" / "result.json").read_text())["status"] == "failed"


def test_a_broken_sink_is_detached_not_fatal(tmp_path, zlt_home, fast):
    good = []

    def broken(d):
        raise BrokenPipeError("reader went away")

    out = run_training(request(tmp_path, zlt_home, spec=write_spec(tmp_path, steps=10)), sinks=[broken, good.append])
    assert out.status == "succeeded" and out.artifact_path and out.last_step == 10
    assert any(e["type"] == "warning" and "detached" in e["message"] for e in good)
    assert out.checkpoints[-1]["final"] and out.first_loss > out.last_loss


def test_gpus_and_unbuffered_output_reach_the_child(tmp_path, zlt_home, fast, monkeypatch):
    monkeypatch.setenv("FAKE_TRAINER_MODE", "crash")
    monkeypatch.setenv("FAKE_TRAINER_FAIL_AT", "1")
    out = run_training(request(tmp_path, zlt_home, gpus=[1, 3]))
    assert out.status == "failed"
    log = (tmp_path / "job" / "train.log").read_text()
    assert "CUDA_VISIBLE_DEVICES=1,3 PYTHONUNBUFFERED=1" in log
