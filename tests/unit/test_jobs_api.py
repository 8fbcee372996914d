"""The library API the CLI, HTTP and MCP call: submit validation and snapshots, status keys, list, retry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.jobs_dialects import dialect, pg_server  # noqa: E402,F401
from zlt.core.errors import BadInputError, NotFoundError, SpecError
from zlt.jobs import (
    STATUS_KEYS,
    cancel_job,
    job_events,
    job_log_path,
    job_status,
    list_jobs,
    retry_job,
    submit_job,
)
from zlt.jobs.api import job_history
from zlt.jobs.states import IllegalTransition, JobStatus
from zlt.jobs.store import JobStore
from zlt.spec import load_spec_data

pytestmark = pytest.mark.usefixtures("dialect")

CONTRACT_KEYS = {
    "job_id", "name", "state", "phase", "step", "total", "percent", "loss", "lr", "it_s", "eta_s", "attempts",
    "max_retries", "priority", "backend", "profile", "created_at", "started_at", "ended_at", "last_checkpoint",
    "artifact_id", "artifact_path", "error_cause", "error_message", "job_dir",
}


@pytest.fixture
def ds(tmp_path: Path) -> Path:
    from PIL import Image

    d = tmp_path / "ds"
    d.mkdir()
    for i in range(3):
        Image.new("RGB", (16, 16), (i * 60, 0, 0)).save(d / f"{i}.png")
        (d / f"{i}.txt").write_text("a square")
    return d


def spec(ds: Path, **extra):
    data = {"name": "apitest", "model": {"base": {"name": "zlt/tiny-zimage"}},
            "dataset": {"path": str(ds), "resolution": 64}, "training": {"max_steps": 10, "warmup_steps": 0},
            "output": {"save": {"every": 5}}, **extra}
    return load_spec_data(data)


def test_submit_snapshots_spec_and_dataset_and_queues(tmp_path: Path, ds: Path):
    home = tmp_path / "home"
    st = submit_job(home, spec(ds), priority=7, start_worker=False, options={"vram_gb": 24})
    assert set(st) == CONTRACT_KEYS | {"gpus", "host", "infra_retries", "waiting", "kind", "unit"} and list(st) == list(STATUS_KEYS)
    assert st["waiting"] == "waiting: no live worker (start one with 'zlt worker', or 'zlt serve' keeps one running)"
    # the tiny model asks for no GPU: auto is the cpu profile from the start
    assert (st["state"], st["priority"], st["backend"], st["profile"], st["attempts"]) == ("queued", 7, "lightning", "cpu", 0)
    assert st["max_retries"] == 1 and st["created_at"].endswith("Z")
    assert (st["kind"], st["unit"]) == ("train", "steps")
    jdir = Path(st["job_dir"])
    assert jdir.parent == home / "jobs"
    listing = json.loads((jdir / "submitted" / "dataset.json").read_text())
    assert listing["images"] == 3 and listing["files"] == 6 and len(listing["listing_sha256"]) == 64
    assert "apitest" in (jdir / "submitted" / "spec.yaml").read_text()
    row = JobStore(home).get(st["job_id"])
    assert json.loads(row["spec_json"])["name"] == "apitest"
    assert json.loads(row["options_json"]) == {"vram_gb": 24.0}


@pytest.mark.parametrize(
    "kwargs,match",
    [
        # --backend is the gate's (tests/unit/test_flows_gate.py): submit_job takes a spec that passed it
        ({"profile": "7gb"}, "--profile"),
        ({"priority": 1000}, "--priority"),
        ({"options": {"colour": "red"}}, "options"),
        ({"options": {"vram_gb": "lots"}}, "options.vram_gb"),
    ],
)
def test_bad_submits_queue_nothing(tmp_path: Path, ds: Path, kwargs, match):
    home = tmp_path / "home"
    with pytest.raises(BadInputError, match=match) as exc:
        submit_job(home, spec(ds), start_worker=False, **kwargs)
    assert exc.value.exit_code == 2
    if isinstance(exc.value, SpecError):
        assert exc.value.errors[0].path == "training.backend"
    assert list_jobs(home) == []
    assert not (home / "jobs").exists() or not any((home / "jobs").iterdir())


@pytest.mark.parametrize("layout", ["missing", "file", "no_images"])
def test_unusable_dataset_is_refused_at_submit(tmp_path: Path, layout: str):
    target = tmp_path / "data"
    if layout == "file":
        target.write_text("x")
    elif layout == "no_images":
        target.mkdir()
        (target / "notes.txt").write_text("x")
    with pytest.raises(BadInputError, match="dataset.path"):
        submit_job(tmp_path / "home", spec(target), start_worker=False)
    assert list_jobs(tmp_path / "home") == []


def test_bad_spec_raises_before_the_store_is_touched(tmp_path: Path, ds: Path):
    with pytest.raises(SpecError):
        spec(ds, training={"max_steps": 0})


def test_status_list_cancel_retry(tmp_path: Path, ds: Path):
    home = tmp_path / "home"
    a = submit_job(home, spec(ds), start_worker=False)["job_id"]
    b = submit_job(home, spec(ds), start_worker=False)["job_id"]
    assert [j["job_id"] for j in list_jobs(home)] == [b, a]
    assert [j["job_id"] for j in list_jobs(home, limit=1)] == [b]
    assert cancel_job(home, a)["state"] == "cancelled"
    assert [j["job_id"] for j in list_jobs(home, state="cancelled")] == [a]
    with pytest.raises(BadInputError):
        list_jobs(home, state="finished")
    st = retry_job(home, a, start_worker=False)
    assert st["state"] == "queued" and st["error_cause"] == "cancelled"
    with pytest.raises(IllegalTransition, match="cannot become queued"):
        retry_job(home, a, start_worker=False)
    assert [h["to_state"] for h in job_history(home, a)] == ["queued", "cancelled", "queued"]
    with pytest.raises(NotFoundError):
        job_status(home, "20990101-000000-ffffff")


def test_retry_of_a_succeeded_job_says_to_submit_again(tmp_path: Path, ds: Path):
    home = tmp_path / "home"
    jid = submit_job(home, spec(ds), start_worker=False)["job_id"]
    store = JobStore(home)
    c = store.claim("w", [0])
    store.transition(jid, JobStatus.SUCCEEDED, token=c.token)
    with pytest.raises(IllegalTransition) as exc:
        retry_job(home, jid, start_worker=False)
    assert "submit the spec again" in exc.value.hint


def test_status_reports_progress_percent_and_eta(tmp_path: Path, ds: Path):
    home = tmp_path / "home"
    jid = submit_job(home, spec(ds, job={"resources": {"gpu": 1}}), start_worker=False)["job_id"]
    store = JobStore(home, pid_alive=lambda p, s: True)
    c = store.claim("w", [0])
    store.set_runner(jid, c.token, 1, None)
    store.transition(jid, JobStatus.RUNNING, token=c.token)
    import time

    store.update_progress(jid, c.token, phase="training",
                          progress={"step": 250, "total": 1000, "loss": 0.25, "lr": 1e-4, "it_s": 2.5, "ts": time.time()})
    st = job_status(home, jid)
    assert (st["state"], st["phase"], st["step"], st["total"], st["percent"]) == ("running", "training", 250, 1000, 25.0)
    assert st["loss"] == 0.25 and st["it_s"] == 2.5 and 290 <= st["eta_s"] <= 300
    assert st["gpus"] == [0] and st["started_at"] is not None


def test_events_and_log_path(tmp_path: Path, ds: Path):
    from zlt.core.events import EventStream, Phase, Progress

    home = tmp_path / "home"
    st = submit_job(home, spec(ds), start_worker=False)
    stream = EventStream(st["job_id"], Path(st["job_dir"]) / "events.jsonl")
    stream.emit(Phase("training"))
    stream.emit(Progress(step=1, total=10))
    stream.close()
    assert [e["type"] for e in job_events(home, st["job_id"])] == ["phase", "progress"]
    assert [e["seq"] for e in job_events(home, st["job_id"], after_seq=1)] == [2]
    assert job_log_path(home, st["job_id"]) == Path(st["job_dir"]) / "train.log"


def test_a_shared_store_starts_no_worker_on_the_submitting_machine(tmp_path: Path, ds: Path):
    import os

    if not os.environ["ZLT_STORE"].startswith("postgresql"):  # set by the dialect fixture
        pytest.skip("on the embedded store, submit starts a background worker (tests/integration)")
    from zlt.jobs.spawn import worker_running

    home = tmp_path / "home"
    st = submit_job(home, spec(ds), start_worker=True)
    assert not worker_running(home) and not (home / "run" / "worker.pid").exists()
    assert st["waiting"].startswith("waiting: no live worker")
