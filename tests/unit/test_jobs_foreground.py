"""`zlt train` runs as a recorded job (issue 13 items 3 and 16): no worker can take it, a cancel reaches it,
and its status says what really ran."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.jobs_dialects import dialect, pg_server  # noqa: F401 - fixtures: each test runs on both stores
from tests.unit.jobs_fakes import new_job
from zlt.core.errors import EnvNotReadyError
from zlt.flows.foreground import ForegroundRun, run_foreground
from zlt.flows.training import RunOutcome
from zlt.jobs import job_status
from zlt.jobs.states import IllegalTransition
from zlt.jobs.store import JobStore
from zlt.spec import load_spec_data

pytestmark = pytest.mark.usefixtures("dialect")


def loaded(tmp_path: Path):
    (tmp_path / "ds").mkdir(exist_ok=True)
    return load_spec_data({"dataset": {"path": str(tmp_path / "ds")}, "model": {"base": {"name": "zlt/tiny-zimage",
                           "source": "builtin"}}}, source="t")


def outcome(job_id: str, status: str = "succeeded", **kw) -> RunOutcome:
    return RunOutcome(job_id=job_id, status=status, exit_code=0, cause=kw.pop("cause", None), message="",
                      artifact_id=kw.pop("artifact_id", None), artifact_path=None, **kw)


def test_the_job_is_claimed_as_it_is_created_so_no_worker_takes_it(zlt_home: Path, tmp_path: Path):
    seen = {}

    def fake_run(req, *, sinks, stop, force):
        store = JobStore(zlt_home)
        seen["state"] = store.get(req.job_id)["state"]
        seen["claim"] = store.claim("some-worker", [0, 1])
        store.close()
        for s in sinks:
            s({"type": "phase", "phase": "training"})
            s({"type": "progress", "step": 3, "total": 3, "loss": 0.5})
        return outcome(req.job_id, artifact_id="a1")

    run = ForegroundRun(loaded=loaded(tmp_path), home=zlt_home, job_id="j1", job_dir=tmp_path / "j1")
    out = run_foreground(run, stop=threading.Event(), run_training=fake_run)
    assert out.status == "succeeded"
    assert seen == {"state": "preparing", "claim": None}
    status = job_status(zlt_home, "j1")
    assert status["state"] == "succeeded" and status["step"] == 3 and status["artifact_id"] == "a1"


def test_zlt_cancel_reaches_the_foreground_run(zlt_home: Path, tmp_path: Path):
    def fake_run(req, *, sinks, stop, force):
        store = JobStore(zlt_home)
        store.request_cancel(req.job_id)
        store.close()
        assert stop.wait(10), "the cancel flag never reached the runner"
        return outcome(req.job_id, status="cancelled")

    run = ForegroundRun(loaded=loaded(tmp_path), home=zlt_home, job_id="j2", job_dir=tmp_path / "j2")
    run_foreground(run, stop=threading.Event(), run_training=fake_run)
    assert job_status(zlt_home, "j2")["state"] == "cancelled"


def test_an_error_before_training_is_recorded_and_raised_for_the_exit_code(zlt_home: Path, tmp_path: Path):
    def fake_run(req, *, sinks, stop, force):
        raise EnvNotReadyError("no GPU", hint="use the tiny model")

    run = ForegroundRun(loaded=loaded(tmp_path), home=zlt_home, job_id="j3", job_dir=tmp_path / "j3")
    with pytest.raises(EnvNotReadyError):
        run_foreground(run, stop=threading.Event(), run_training=fake_run)
    status = job_status(zlt_home, "j3")
    assert status["state"] == "failed" and status["error_cause"] == "preflight"


def test_only_a_failed_or_cancelled_job_can_be_resumed_in_the_foreground(zlt_home: Path):
    store = JobStore(zlt_home)
    store.create(new_job("q"))
    claim = store.claim_here("q", "fg", [])
    with pytest.raises(IllegalTransition):
        store.claim_here("q", "fg", [])
    assert claim.attempt == 1
    store.close()


def test_a_cpu_run_shows_no_gpu_and_no_stale_phase(zlt_home: Path):
    from zlt.jobs.states import JobStatus

    store = JobStore(zlt_home)
    store.create(new_job("c"))
    claim = store.claim("w", [0])  # a worker without GPUs hands out plain slot 0
    store.update_progress("c", claim.token, phase="collecting")
    store.transition("c", JobStatus.SUCCEEDED, token=claim.token, profile="cpu")
    store.close()
    status = job_status(zlt_home, "c")
    assert status["gpus"] == [] and status["phase"] is None


def test_resume_after_a_killed_run_reaps_it_first_and_continues_the_same_job(zlt_home: Path, tmp_path: Path):
    import psutil

    dead = 4_000_000
    while psutil.pid_exists(dead):
        dead += 1
    store = JobStore(zlt_home)
    store.create(new_job("k", job_dir=str(tmp_path / "k"), max_retries=0))
    claim = store.claim_here("k", "fg", [])
    store.set_runner("k", claim.token, dead, None)  # the first `zlt train` was SIGKILLed: its row says running
    store.close()
    seen = {}

    def fake_run(req, *, sinks, stop, force):
        seen["resume"] = req.resume
        return outcome(req.job_id)

    run = ForegroundRun(loaded=loaded(tmp_path), home=zlt_home, job_id="k", job_dir=tmp_path / "k", resume=True)
    run_foreground(run, stop=threading.Event(), run_training=fake_run)
    status = job_status(zlt_home, "k")
    assert seen == {"resume": True} and status["state"] == "succeeded" and status["attempts"] == 2
