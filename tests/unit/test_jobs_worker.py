"""The worker loop with jobs run in threads (the CLI runs them as processes; see tests/integration)."""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.jobs_dialects import dialect, pg_server  # noqa: E402,F401
from tests.unit.test_jobs_runjob import FakeTrainer, submit
from zlt.core.errors import BadInputError
from zlt.flows.job_process import run_claimed_job
from zlt.flows.training import TrainRequest
from zlt.jobs.lease import SHUTDOWN, StopControl
from zlt.jobs.records import Claim
from zlt.jobs.states import JobStatus
from zlt.jobs.store import JobStore
from zlt.jobs.worker import Worker, WorkerOptions, parse_gpu_list

pytestmark = pytest.mark.usefixtures("dialect")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    from PIL import Image

    (tmp_path / "ds").mkdir()
    Image.new("RGB", (16, 16), "red").save(tmp_path / "ds" / "a.png")
    return tmp_path / "home"


class SlowTrainer(FakeTrainer):
    def __call__(self, req, *, sinks=(), stop=None):
        time.sleep(0.05)
        return super().__call__(req, sinks=sinks, stop=stop)


@dataclass
class ThreadJob:
    thread: threading.Thread
    control: StopControl
    pid: int | None = None

    def poll(self):
        return None if self.thread.is_alive() else 0

    def shutdown(self):
        self.control.stop(SHUTDOWN)


def thread_launcher(home: Path, trainer_factory):
    def launch(claim: Claim) -> ThreadJob:
        control = StopControl()

        def body():
            store = JobStore(home)
            try:
                run_claimed_job(store, claim.job_id, claim.token, claim.gpus, attempt=claim.attempt,
                                resume=claim.resume, run_fn=trainer_factory(), request_factory=TrainRequest,
                                control=control, poll_s=0.02)
            finally:
                store.close()

        t = threading.Thread(target=body)
        t.start()
        return ThreadJob(t, control)

    return launch


def intervals(store: JobStore) -> list[tuple[int, float, float, str]]:
    out = []
    for r in store.rows(limit=1000):
        for g in (r["gpus"] or "").split(","):
            if g:
                out.append((int(g), r["started_at"], r["ended_at"], r["id"]))
    return out


def assert_no_gpu_overlap(store: JobStore) -> None:
    by_gpu: dict[int, list[tuple[float, float, str]]] = {}
    for g, s, e, jid in intervals(store):
        by_gpu.setdefault(g, []).append((s, e, jid))
    for g, spans in by_gpu.items():
        spans.sort()
        for (s1, e1, j1), (s2, e2, j2) in itertools.pairwise(spans):
            assert e1 <= s2, f"GPU {g}: {j1} [{s1}, {e1}] overlaps {j2} [{s2}, {e2}]"


def test_once_runs_every_queued_job_one_per_gpu(home: Path, tmp_path: Path):
    ids = [submit(home, tmp_path) for _ in range(6)]
    store = JobStore(home)
    w = Worker(store, WorkerOptions(gpus=[0, 1], once=True, poll_s=0.02), launcher=thread_launcher(home, SlowTrainer))
    summary = w.run()
    assert sorted(summary.jobs) == sorted(ids)
    assert set(summary.jobs.values()) == {"succeeded"}
    assert {g for g, *_ in intervals(store)} == {0, 1}, "both GPUs were used"
    assert_no_gpu_overlap(store)
    assert store.live_workers() == [], "the worker unregistered"


def test_two_workers_sharing_gpus_never_share_one(home: Path, tmp_path: Path):
    for _ in range(8):
        submit(home, tmp_path)
    workers = [
        Worker(JobStore(home), WorkerOptions(gpus=gpus, once=True, poll_s=0.01),
               launcher=thread_launcher(home, SlowTrainer))
        for gpus in ([0, 1], [1, 0], [0])
    ]
    threads = [threading.Thread(target=w.run) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    store = JobStore(home)
    assert {r["state"] for r in store.rows(limit=100)} == {"succeeded"}
    assert_no_gpu_overlap(store)


def test_stopping_the_worker_requeues_its_running_jobs(home: Path, tmp_path: Path):
    jid = submit(home, tmp_path, job__retry__max_retries=0)
    store = JobStore(home)
    trainer = FakeTrainer(wait_for_stop=True)
    w = Worker(store, WorkerOptions(gpus=[0], poll_s=0.02), launcher=thread_launcher(home, lambda: trainer))
    t = threading.Thread(target=w.run)
    t.start()
    assert trainer.started.wait(10)
    w.request_stop()
    t.join(10)
    assert not t.is_alive()
    row = store.get(jid)
    assert row["state"] == "queued" and row["resume"] == 1 and row["auto_retries"] == 0
    assert "worker shut down" in store.history(jid)[-1]["message"]


def test_a_job_process_that_dies_without_finishing_is_requeued_at_once(home: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch):
    """An infrastructure fault: requeued (max_retries 0 notwithstanding) after a short backoff, which a
    `--once` worker waits out, then run again."""
    monkeypatch.setenv("ZLT_INFRA_BACKOFF_S", "0.05")
    jid = submit(home, tmp_path, job__retry__max_retries=0)
    store = JobStore(home, pid_alive=lambda pid, started: True)

    @dataclass
    class Ended:
        code: int
        pid: int | None = None

        def poll(self):
            return self.code

        def shutdown(self):
            pass

    def launch(claim: Claim) -> Ended:
        if claim.attempt == 1:
            return Ended(-9)  # killed before it could record anything
        store.transition(claim.job_id, JobStatus.SUCCEEDED, token=claim.token, message="done")
        return Ended(0)

    w = Worker(store, WorkerOptions(gpus=[0], once=True, poll_s=0.01), launcher=launch)
    summary = w.run()
    assert summary.jobs[jid] == "succeeded"
    row = store.get(jid)
    assert row["infra_retries"] == 1 and row["auto_retries"] == 0 and row["attempts"] == 2
    assert any("exited with code -9" in h["message"] and "no retry used" in h["message"] for h in store.history(jid))


def test_idle_background_worker_exits(home: Path):
    store = JobStore(home)
    w = Worker(store, WorkerOptions(gpus=[0], poll_s=0.01, idle_exit_s=0.05), launcher=lambda c: None)
    t0 = time.monotonic()
    w.run()
    assert time.monotonic() - t0 < 5


def test_parse_gpu_list():
    assert parse_gpu_list("0, 1,3") == [0, 1, 3]
    for bad in ("a", "0,0", "-1", ""):
        with pytest.raises(BadInputError):
            parse_gpu_list(bad)


def test_worker_claims_nothing_for_jobs_it_cannot_fit(home: Path, tmp_path: Path):
    jid = submit(home, tmp_path, job__resources__gpu=2)
    store = JobStore(home)
    w = Worker(store, WorkerOptions(gpus=[0], once=True, poll_s=0.01), launcher=thread_launcher(home, FakeTrainer))
    assert w.run().jobs == {}
    assert store.get(jid)["state"] == JobStatus.QUEUED.value
