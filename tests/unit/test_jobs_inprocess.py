"""In-process jobs (generations, evaluations): one mapping from how the body ends to the job's recorded end."""

from __future__ import annotations

import threading

import pytest

from tests.jobs_dialects import dialect, pg_server  # noqa: F401 - fixtures: each test runs on both stores
from tests.unit.jobs_fakes import new_job
from zlt.core.errors import BadInputError, EnvNotReadyError
from zlt.flows.inprocess import Cancelled, Done, InProcessRun
from zlt.jobs.store import JobStore

pytestmark = pytest.mark.usefixtures("dialect")


@pytest.fixture
def store(zlt_home):
    s = JobStore(zlt_home)
    yield s
    s.close()


def _claimed(store: JobStore, job_id: str):
    store.create(new_job(job_id, job_dir=str(store.home / job_id), gpus_needed=0, max_retries=0))
    claim = store.claim("w1", [0])
    assert claim is not None and claim.job_id == job_id
    return claim


def _raise(err: BaseException):
    def body() -> Done:
        raise err
    return body


@pytest.mark.parametrize("err, cause", [
    (BadInputError("generate.loras: no such artifact"), "bad_config"),
    (EnvNotReadyError("no CLIP model at /m"), "preflight"),
    (RuntimeError("boom"), "unknown"),
])
def test_a_failing_body_fails_the_job_with_its_cause(store, err, cause):
    claim = _claimed(store, "j1")
    ends = []
    state = InProcessRun(store, "j1", claim.token, heartbeat_s=0.05, poll_s=0.05).run(_raise(err), ends.append)
    row = store.get("j1")
    assert state == "failed" and (row["error_cause"], ends[0]["state"]) == (cause, "failed")
    assert str(err.args[0]) in row["error_message"]


def test_success_records_the_artifact(store):
    claim = _claimed(store, "j2")
    state = InProcessRun(store, "j2", claim.token, heartbeat_s=0.05, poll_s=0.05).run(
        lambda: Done(artifact_id="a1", artifact_path="/tmp/a1/eval", message="succeeded: x"))
    row = store.get("j2")
    assert state == "succeeded" and (row["artifact_id"], row["artifact_path"]) == ("a1", "/tmp/a1/eval")


def test_a_worker_shutdown_requeues_and_costs_nothing(store):
    claim = _claimed(store, "j3")
    stop = threading.Event()
    job = InProcessRun(store, "j3", claim.token, stop=stop, heartbeat_s=0.05, poll_s=0.05)

    def body() -> Done:
        stop.set()
        job.check_stop()
        raise AssertionError("check_stop must raise once the worker stops")

    assert job.run(body) == "queued"
    with pytest.raises(Cancelled):
        job.check_stop()
