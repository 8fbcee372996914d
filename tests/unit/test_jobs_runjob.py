"""What a job process makes of a run: progress in the store, success, retries that resume, OOM step-down,
cancel, and a dead worker. The trainer run is a fake `run_fn` that emits real events through EventStream."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest

from tests.jobs_dialects import dialect, pg_server  # noqa: E402,F401
from zlt.core.events import Checkpoint, EventStream, Finished, Phase, Progress, Resumed, read_events
from zlt.flows.finish import lower_profile
from zlt.flows.job_process import run_claimed_job
from zlt.flows.training import TrainRequest
from zlt.jobs.api import submit_job
from zlt.jobs.lease import StopControl, watch_parent
from zlt.jobs.store import JobStore
from zlt.spec import load_spec_data

pytestmark = pytest.mark.usefixtures("dialect")


@dataclass
class FakeOutcome:
    job_id: str
    status: str
    exit_code: int | None = 0
    cause: str | None = None
    message: str | None = None
    artifact_id: str | None = None
    artifact_path: str | None = None
    checkpoints: list = field(default_factory=list)
    last_step: int | None = None
    stopped_early: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class FakeTrainer:
    """A run_fn: emits phase/progress/checkpoint events from `start` to `stop_at`, then ends as told."""

    def __init__(self, *, total=10, save_every=4, fail_at=None, cause="unknown", profile="24gb", wait_for_stop=False,
                 resumed_step="auto"):
        self.total, self.save_every, self.fail_at, self.cause = total, save_every, fail_at, cause
        self.profile, self.wait_for_stop, self.resumed_step = profile, wait_for_stop, resumed_step
        self.requests: list[TrainRequest] = []
        self.started = threading.Event()

    def __call__(self, req: TrainRequest, *, sinks=(), stop=None) -> FakeOutcome:
        self.requests.append(req)
        out = req.job_dir / "output"
        out.mkdir(parents=True, exist_ok=True)
        stream = EventStream(req.job_id, req.job_dir / "events.jsonl")
        for s in sinks:
            stream.add_sink(s)
        (req.job_dir / "result.json").write_text(json.dumps({"profile": self.profile}))
        start = 0
        if req.resume:
            ckpts = sorted(out.glob("*.safetensors"))
            start = int(ckpts[-1].stem.split("_")[-1]) if ckpts else 0
            step = start if self.resumed_step == "auto" else self.resumed_step
            if step is not None:
                stream.emit(Resumed(step=step))
        stream.emit(Phase("preflight"))
        stream.emit(Phase("loading_model"))
        self.started.set()
        if self.wait_for_stop:
            stop.wait(10)
            stream.emit(Finished(status="cancelled", cause="cancelled"))
            stream.close()
            return FakeOutcome(req.job_id, "cancelled", cause="cancelled")
        for step in range(start + 1, self.total + 1):
            stream.emit(Progress(step=step, total=self.total, loss=1.0 / step, lr=1e-4, it_s=2.0))
            if step == self.fail_at:
                stream.emit(Finished(status="failed", exit_code=1, cause=self.cause))
                stream.close()
                self.fail_at = None  # the next attempt gets through
                return FakeOutcome(req.job_id, "failed", 1, self.cause, "boom", last_step=step)
            if step % self.save_every == 0:
                p = out / f"s_{step:09d}.safetensors"
                p.write_bytes(b"x")
                stream.emit(Checkpoint(path=str(p), step=step))
        stream.emit(Finished(status="succeeded", exit_code=0, artifact="a1"))
        stream.close()
        return FakeOutcome(req.job_id, "succeeded", 0, artifact_id="a1", artifact_path="/reg/a1", last_step=self.total)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    from PIL import Image

    ds = tmp_path / "ds"
    ds.mkdir()
    Image.new("RGB", (16, 16), "red").save(ds / "a.png")
    return tmp_path / "home"


def submit(home: Path, tmp_path: Path, **sets) -> str:
    data = {"name": "unit", "model": {"base": {"name": "zlt/tiny-zimage"}},
            "dataset": {"path": str(tmp_path / "ds"), "resolution": 64},
            "training": {"max_steps": 10, "warmup_steps": 0}, "output": {"save": {"every": 4}},
            "job": {"resources": {"gpu": 1}}}  # a GPU job (the tiny model alone asks for none)
    loaded = load_spec_data(data, sets=[f"{k.replace('__', '.')}={v}" for k, v in sets.items()])
    return submit_job(home, loaded, start_worker=False)["job_id"]


def run_once(store: JobStore, trainer: FakeTrainer, control: StopControl | None = None) -> str:
    claim = store.claim("w", [0])
    assert claim is not None
    return run_claimed_job(store, claim.job_id, claim.token, claim.gpus, attempt=claim.attempt, resume=claim.resume,
                           run_fn=trainer, request_factory=TrainRequest, control=control, poll_s=0.02)


def test_success_records_progress_checkpoint_and_artifact(home: Path, tmp_path: Path):
    jid = submit(home, tmp_path)
    store = JobStore(home)
    trainer = FakeTrainer()
    assert run_once(store, trainer) == "succeeded"
    row = store.get(jid)
    assert row["artifact_id"] == "a1" and row["artifact_path"] == "/reg/a1"
    assert row["last_checkpoint_step"] == 8 and row["last_checkpoint"].endswith("s_000000008.safetensors")
    assert json.loads(row["progress_json"])["step"] == 10, "the last progress is always flushed"
    assert row["profile"] == "24gb", "the profile the runner resolved is recorded"
    req = trainer.requests[0]
    assert (req.resume, req.attempt, req.gpus, req.backend) == (False, 1, [0], "lightning")
    states = [h["to_state"] for h in store.history(jid) if h["from_state"] != h["to_state"]]
    assert states == ["queued", "preparing", "running", "succeeded"]


def test_crash_is_retried_and_resumes_from_the_last_checkpoint(home: Path, tmp_path: Path):
    jid = submit(home, tmp_path)
    store = JobStore(home)
    trainer = FakeTrainer(fail_at=6)
    assert run_once(store, trainer) == "queued"
    row = store.get(jid)
    assert row["resume"] == 1 and row["auto_retries"] == 1 and row["error_cause"] == "unknown"
    assert "resuming from step 4" in store.history(jid)[-1]["message"]
    assert run_once(store, trainer) == "succeeded"
    second = trainer.requests[1]
    assert second.resume and second.attempt == 2
    events = read_events(Path(row["job_dir"]) / "events.jsonl")
    resumed = [e for e in events if e["type"] == "resumed"]
    assert resumed and resumed[0]["step"] == 4
    steps = [e["step"] for e in events if e["type"] == "progress"]
    assert steps == [1, 2, 3, 4, 5, 6, 5, 6, 7, 8, 9, 10]
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events), "one stream across attempts"
    assert not any("warning" in h["message"] for h in store.history(jid))


def test_a_resume_at_the_wrong_step_is_flagged(home: Path, tmp_path: Path):
    jid = submit(home, tmp_path)
    store = JobStore(home)
    trainer = FakeTrainer(fail_at=6, resumed_step=0)
    run_once(store, trainer)
    run_once(store, trainer)
    notes = [h["message"] for h in store.history(jid)]
    assert any("resumed from step 0, but the last checkpoint zlt recorded is step 4" in m for m in notes)
    events = read_events(Path(store.get(jid)["job_dir"]) / "events.jsonl")
    assert any(e["type"] == "warning" and "step 4" in e["message"] for e in events)


def test_no_retries_left_means_failed_with_the_cause(home: Path, tmp_path: Path):
    jid = submit(home, tmp_path, job__retry__max_retries=0)
    store = JobStore(home)
    assert run_once(store, FakeTrainer(fail_at=3, cause="host_oom")) == "failed"
    row = store.get(jid)
    assert (row["error_cause"], row["error_message"]) == ("host_oom", "boom")


@pytest.mark.parametrize("cause", ["bad_config", "dataset", "bad_model", "bad_adapter", "import_error"])
def test_deterministic_failures_are_not_retried(home: Path, tmp_path: Path, cause: str):
    """Input errors (a bad config, dataset, model path or adapter file) fail at once, budget or not."""
    jid = submit(home, tmp_path, job__retry__max_retries=3)
    store = JobStore(home)
    assert run_once(store, FakeTrainer(fail_at=1, cause=cause)) == "failed"
    assert "not retried" in store.history(jid)[-1]["message"]
    assert store.get(jid)["auto_retries"] == 0


def test_cuda_oom_steps_down_one_profile_when_the_spec_allows(home: Path, tmp_path: Path):
    jid = submit(home, tmp_path, job__retry__on_oom="lower_profile")
    store = JobStore(home)
    trainer = FakeTrainer(fail_at=5, cause="cuda_oom", profile="24gb")
    assert run_once(store, trainer) == "queued"
    assert store.get(jid)["profile"] == lower_profile("24gb") == "16gb"
    run_once(store, trainer)
    assert trainer.requests[1].profile == "16gb"
    events = read_events(Path(store.get(jid)["job_dir"]) / "events.jsonl")
    assert any(e["type"] == "warning" and "24gb -> 16gb after CUDA OOM" in e["message"] for e in events)


def test_cuda_oom_without_lower_profile_retries_as_is(home: Path, tmp_path: Path):
    jid = submit(home, tmp_path)
    store = JobStore(home)
    trainer = FakeTrainer(fail_at=5, cause="cuda_oom", profile="24gb")
    run_once(store, trainer)
    assert store.get(jid)["profile"] == "24gb"


def test_cancel_in_the_store_stops_the_runner(home: Path, tmp_path: Path):
    jid = submit(home, tmp_path)
    store = JobStore(home)
    trainer = FakeTrainer(wait_for_stop=True)
    threading.Thread(target=lambda: (trainer.started.wait(5), JobStore(home).request_cancel(jid))).start()
    assert run_once(store, trainer) == "cancelled"
    row = store.get(jid)
    assert row["error_cause"] == "cancelled" and row["stop_reason"] == "cancel"


def test_a_dead_worker_requeues_the_job_through_its_pipe_without_using_a_retry(home: Path, tmp_path: Path):
    jid = submit(home, tmp_path, job__retry__max_retries=0)
    store = JobStore(home)
    r, w = os.pipe()
    control = StopControl()
    watch_parent(r, control)
    trainer = FakeTrainer(wait_for_stop=True)
    threading.Thread(target=lambda: (trainer.started.wait(5), os.close(w))).start()
    assert run_once(store, trainer, control) == "queued", "an infrastructure fault: max_retries 0 does not matter"
    row = store.get(jid)
    assert row["error_cause"] == "abandoned" and "worker process died" in row["error_message"]
    assert row["auto_retries"] == 0 and row["infra_retries"] == 1 and row["resume"] == 1


def test_a_worker_shutdown_requeues_without_using_a_retry(home: Path, tmp_path: Path):
    jid = submit(home, tmp_path, job__retry__max_retries=0)
    store = JobStore(home)
    r, w = os.pipe()
    control = StopControl()
    watch_parent(r, control)
    trainer = FakeTrainer(wait_for_stop=True)
    threading.Thread(target=lambda: (trainer.started.wait(5), os.write(w, b"stop\n"))).start()
    assert run_once(store, trainer, control) == "queued"
    row = store.get(jid)
    assert row["auto_retries"] == 0 and row["resume"] == 1
    os.close(w)


def test_a_runner_exception_fails_the_job_with_its_message(home: Path, tmp_path: Path):
    jid = submit(home, tmp_path, job__retry__max_retries=0)
    store = JobStore(home)

    def explode(req, *, sinks=(), stop=None):
        raise RuntimeError("disk on fire")

    claim = store.claim("w", [0])
    state = run_claimed_job(store, jid, claim.token, [0], attempt=1, resume=False, run_fn=explode,
                            request_factory=TrainRequest, poll_s=0.02)
    assert state == "failed"
    assert store.get(jid)["error_message"] == "RuntimeError: disk on fire"


def test_a_lost_lease_leaves_the_job_to_its_new_owner(home: Path, tmp_path: Path):
    from zlt.jobs.states import JobStatus

    jid = submit(home, tmp_path)
    store = JobStore(home)
    claim = store.claim("w", [0])
    # Reaped and requeued meanwhile (e.g. the machine slept): our token is stale and must change nothing.
    store.transition(jid, JobStatus.QUEUED, token=claim.token, message="reaped")
    state = run_claimed_job(store, jid, claim.token, [0], attempt=1, resume=False, run_fn=FakeTrainer(),
                            request_factory=TrainRequest, poll_s=0.02)
    assert state == "queued"
    row = store.get(jid)
    assert row["progress_json"] is None and row["artifact_id"] is None


def test_a_runner_that_cannot_renew_its_lease_stops_before_another_host_may_take_the_job():
    """Fencing by lease time: the store unreachable for longer than the lease TTL stops the trainer."""
    from zlt.db.dialect import StoreOperationalError
    from zlt.jobs.lease import LEASE_LOST, LeaseKeeper

    class Unreachable:
        lease_ttl = 0.3

        def heartbeat(self, job_id, token):
            raise StoreOperationalError("connection refused")

        def cancel_requested(self, job_id):
            raise StoreOperationalError("connection refused")

    control = StopControl()
    keeper = LeaseKeeper(Unreachable(), "j", "t", control, heartbeat_s=0.05, poll_s=0.02)
    keeper.start()
    assert control.event.wait(5) and control.reason == LEASE_LOST
    keeper.join(5)


def test_a_run_on_the_cpu_profile_shows_no_gpu_while_it_runs(home: Path, tmp_path: Path):
    """A worker on a machine without GPUs hands out plain slot 0; once the runner resolved the cpu profile (its
    `rendering` phase says so) status must not claim GPU 0, before the job ends as well as after."""
    from zlt.jobs.api import job_status

    jid = submit(home, tmp_path)
    seen: list[dict] = []

    class CpuRun(FakeTrainer):
        def __call__(self, req, *, sinks=(), stop=None):
            stream = EventStream(req.job_id)
            for s in sinks:
                stream.add_sink(s)
            stream.emit(Phase("rendering", "lightning", profile="cpu"))
            seen.append(job_status(home, jid))
            return super().__call__(req, sinks=sinks, stop=stop)

    store = JobStore(home)
    try:
        assert run_once(store, CpuRun(profile="cpu")) == "succeeded"
    finally:
        store.close()
    assert (seen[0]["state"], seen[0]["profile"], seen[0]["gpus"]) == ("preparing", "cpu", [])
    assert job_status(home, jid)["gpus"] == []
