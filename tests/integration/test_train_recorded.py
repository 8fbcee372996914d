"""Issue 13 item 3: a foreground `zlt train` is a job like any other — status, logs, jobs, events and retry
all know it (stand-in ai-toolkit trainer, fast)."""

from __future__ import annotations

import json

from tests.integration.test_train_helpers import read_json, run_train, write_spec

FAST = {"FAKE_TRAINER_STEP_S": "0.02"}


def test_a_foreground_run_is_recorded_and_every_job_command_knows_it(tmp_path, zlt):
    spec = write_spec(tmp_path, steps=10)
    job = tmp_path / "job"
    proc, events = run_train(spec, job, env=FAST)
    assert proc.returncode == 0, proc.stderr
    job_id = events[-1]["job_id"]
    st = zlt("status", job_id, "--json")
    assert st.returncode == 0, st.stderr
    status = json.loads(st.stdout)
    assert status["state"] == "succeeded" and status["step"] == 10 and status["total"] == 10
    assert status["artifact_id"] == read_json(job / "result.json")["artifact_id"] and status["job_dir"] == str(job)
    assert status["phase"] is None  # nothing is going on any more (issue 13 item 16)
    listed = json.loads(zlt("jobs", "--json").stdout)
    assert [j["job_id"] for j in listed] == [job_id]
    logs = zlt("logs", job_id)
    assert logs.returncode == 0 and "Saved checkpoint to" in logs.stdout


def test_a_failed_foreground_run_can_be_resumed_as_the_same_job(tmp_path, zlt, zlt_home):
    spec = write_spec(tmp_path, steps=20)
    job = tmp_path / "job"
    proc, events = run_train(spec, job, env={**FAST, "FAKE_TRAINER_MODE": "crash", "FAKE_TRAINER_FAIL_AT": "12"})
    assert proc.returncode == 1
    job_id = events[-1]["job_id"]
    status = json.loads(zlt("status", job_id, "--json").stdout)
    assert status["state"] == "failed" and status["last_checkpoint"]
    from zlt.jobs import job_history

    assert any("foreground" in (h["message"] or "") for h in job_history(zlt_home, job_id))
    # --resume continues the same recorded job, as `zlt retry` would.
    proc, events = run_train(spec, job, "--resume", env=FAST)
    assert proc.returncode == 0, proc.stderr
    status = json.loads(zlt("status", job_id, "--json").stdout)
    assert status["state"] == "succeeded" and status["attempts"] == 2
