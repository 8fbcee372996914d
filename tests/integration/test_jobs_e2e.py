"""Async jobs end to end: real CLI, real worker and job processes, the real runner, and the stand-in
ai-toolkit trainer (tests/fixtures/fake_aitoolkit) printing upstream log lines and writing real
safetensors checkpoints."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import psutil
import pytest

from tests.conftest import REPO, run_zlt

pytestmark = pytest.mark.slow

FAKE_AITOOLKIT = REPO / "tests" / "fixtures" / "fake_aitoolkit"


def write_spec(tmp_path: Path, *, steps: int = 20, every: int = 5, retries: int = 1, name: str = "e2e") -> Path:
    from PIL import Image

    ds = tmp_path / "ds"
    if not ds.exists():
        ds.mkdir()
        for i in range(2):
            Image.new("RGB", (256, 256), (i * 90, 40, 200)).save(ds / f"{i}.png")
            (ds / f"{i}.txt").write_text("a blue square")
    p = tmp_path / f"{name}.yaml"
    p.write_text(
        f"name: {name}\ndataset: {{path: ds, resolution: 256}}\n"
        f"training: {{backend: ai-toolkit, max_steps: {steps}, warmup_steps: 1}}\n"
        f"output: {{save: {{every: {every}}}}}\njob: {{retry: {{max_retries: {retries}}}}}\n"
    )
    return p


def submit(spec: Path, *extra: str) -> str:
    r = run_zlt("submit", str(spec), "--ai-toolkit", str(FAKE_AITOOLKIT), "--profile", "24gb", "--skip-preflight",
                *extra)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def status(jid: str) -> dict:
    r = run_zlt("status", jid, "--json", "--history")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def wait_for(pred, timeout: float = 60.0, poll: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(poll)
    raise AssertionError("timed out waiting")


def trainer_pids(job_dir: str) -> list[int]:
    needle = os.path.join(job_dir, "")
    out = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        if p.info["status"] != psutil.STATUS_ZOMBIE and any(needle in c for c in (p.info["cmdline"] or [])):
            out.append(p.info["pid"])
    return out


@pytest.fixture
def workers(zlt_home: Path):
    """Start `zlt worker` processes (each in its own session); every one still alive is stopped afterwards,
    and so is a background worker a submit started."""
    started: list[subprocess.Popen] = []

    def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-m", "zlt", "worker", "--poll", "0.2", *args],
                             env={**os.environ, **(env or {})}, start_new_session=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started.append(p)
        return p

    yield start
    pidfile = zlt_home / "run" / "worker.pid"
    pids = [p.pid for p in started if p.poll() is None]
    if pidfile.exists():
        bg = json.loads(pidfile.read_text())["pid"]
        if psutil.pid_exists(bg) and "worker" in " ".join(psutil.Process(bg).cmdline()):
            pids.append(bg)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for p in started:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()


def test_submit_starts_a_worker_and_the_job_succeeds_with_checkpoints(tmp_path: Path, workers):
    spec = write_spec(tmp_path)
    jid = submit(spec)  # no --no-worker: submit starts the background worker itself
    r = run_zlt("status", jid, "--wait", "--json", "--poll", "0.3", timeout=180)
    st = json.loads(r.stdout)
    assert r.returncode == 0 and st["state"] == "succeeded", st
    assert (st["step"], st["total"], st["percent"], st["attempts"]) == (20, 20, 100.0, 1)
    assert st["artifact_id"] and Path(st["artifact_path"]).is_dir()
    assert st["last_checkpoint"].endswith(".safetensors") and Path(st["last_checkpoint"]).exists()
    ckpts = json.loads((Path(st["job_dir"]) / "checkpoints.json").read_text())["checkpoints"]
    assert [c["step"] for c in ckpts if not c["final"]] == [5, 10, 15]
    hist = status(jid)["history"]
    assert [h["to_state"] for h in hist if h["from_state"] != h["to_state"]] == [
        "queued", "preparing", "running", "succeeded"]
    log = run_zlt("logs", jid)
    assert "Saved checkpoint to" in log.stdout
    evs = [json.loads(line) for line in run_zlt("logs", jid, "--events", "--json").stdout.splitlines()]
    assert evs[-1]["type"] == "finished" and evs[-1]["status"] == "succeeded"
    assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1))


def test_a_crash_is_retried_and_resumes_from_the_last_checkpoint(tmp_path: Path, workers):
    # The stand-in trainer crashes at step 12 on its first run only: the interpreter it is started with is
    # a test shim that sets FAKE_TRAINER_MODE=crash the first time and success after.
    marker = tmp_path / "crashed-once"
    shim = tmp_path / "python-shim"
    shim.write_text(
        f"#!{sys.executable}\nimport os, sys\nm = {str(marker)!r}\n"
        "first = not os.path.exists(m)\nopen(m, 'a').close()\n"
        "os.environ['FAKE_TRAINER_MODE'] = 'crash' if first else 'success'\n"
        f"os.execv({sys.executable!r}, [{sys.executable!r}] + sys.argv[1:])\n"
    )
    shim.chmod(0o755)
    jid = submit(write_spec(tmp_path, steps=20, every=5, retries=1), "--no-worker")
    w = workers("--once", "--gpus", "0", env={"ZLT_AI_TOOLKIT_PYTHON": str(shim), "FAKE_TRAINER_FAIL_AT": "12"})
    out, err = w.communicate(timeout=240)
    assert w.returncode == 0, err
    st = status(jid)
    assert st["state"] == "succeeded" and st["attempts"] == 2, st
    notes = [h["message"] for h in st["history"]]
    assert any("retry 1/1 after" in m and "resuming from step 10" in m for m in notes), notes
    assert any("trainer resumed from step 10" in m for m in notes), notes
    assert not any(m.startswith("warning") for m in notes), notes
    evs = [json.loads(line) for line in run_zlt("logs", jid, "--events", "--json").stdout.splitlines()]
    resumed = [e for e in evs if e["type"] == "resumed"]
    assert len(resumed) == 1 and resumed[0]["step"] == 10
    after = [e["step"] for e in evs if e["type"] == "progress" and e["seq"] > resumed[0]["seq"]]
    assert after and min(after) >= 10 and after[-1] == 20, after  # continues at 10, never from 0
    assert (Path(st["job_dir"]) / "train.log.1").exists(), "the first attempt's log is kept"


def test_sigkill_of_the_worker_ends_the_job_and_leaves_no_trainer(tmp_path: Path, workers):
    jid = submit(write_spec(tmp_path, steps=200, every=5, retries=1), "--no-worker")
    w = workers("--gpus", "0", env={"FAKE_TRAINER_STEP_S": "0.1"})
    st = wait_for(lambda: (s := status(jid))["state"] == "running" and (s["step"] or 0) >= 6 and s, timeout=120)
    assert trainer_pids(st["job_dir"])
    os.kill(w.pid, signal.SIGKILL)
    st = wait_for(lambda: (s := status(jid))["state"] in ("queued", "failed") and s, timeout=150)
    assert st["state"] == "queued", "max_retries 1: requeued to resume"
    assert any("abandoned" in h["message"] for h in st["history"])
    wait_for(lambda: not trainer_pids(st["job_dir"]), timeout=30)
    # A new worker resumes it from its last checkpoint.
    w2 = workers("--once", "--gpus", "0", env={"FAKE_TRAINER_STEP_S": "0.001"})
    out = w2.communicate(timeout=180)
    st = status(jid)
    assert st["state"] == "succeeded" and st["attempts"] == 2, (out, st["history"])
    assert any("trainer resumed from step" in h["message"] for h in st["history"])


def test_killing_worker_and_job_process_lets_the_reaper_clean_up(tmp_path: Path, workers):
    jid = submit(write_spec(tmp_path, steps=400, every=50, retries=0), "--no-worker")
    w = workers("--gpus", "0", env={"FAKE_TRAINER_STEP_S": "0.1"})
    st = wait_for(lambda: (s := status(jid))["state"] == "running" and (s["step"] or 0) >= 2 and s, timeout=120)
    orphans = trainer_pids(st["job_dir"])
    assert orphans
    os.killpg(w.pid, signal.SIGKILL)  # worker and job process die; the trainer (own session) survives
    w.wait(10)
    # An infrastructure fault: requeued to resume though max_retries is 0 (the status also starts a worker).
    st = wait_for(lambda: (s := status(jid))["infra_retries"] >= 1 and s, timeout=60)
    assert st["error_cause"] == "abandoned" or st["state"] != "queued"
    assert any("runner process" in h["message"] and "no retry used" in h["message"] for h in st["history"])
    assert orphans[0] not in trainer_pids(st["job_dir"]), "the reaper ended the orphaned trainer before freeing its GPU"


def test_cancel_a_running_job_stops_its_trainer(tmp_path: Path, workers):
    jid = submit(write_spec(tmp_path, steps=400, every=50), "--no-worker")
    workers("--gpus", "0", env={"FAKE_TRAINER_STEP_S": "0.05"})
    st = wait_for(lambda: (s := status(jid))["state"] == "running" and (s["step"] or 0) >= 2 and s, timeout=120)
    r = run_zlt("cancel", jid, "--json")
    assert r.returncode == 0
    r = run_zlt("status", jid, "--wait", "--json", "--poll", "0.2", timeout=120)
    assert r.returncode == 1, "--wait ends with the job's result: cancelled is not success"
    st = json.loads(r.stdout)
    assert st["state"] == "cancelled" and st["error_cause"] == "cancelled" and st["step"] < 400
    assert not trainer_pids(st["job_dir"])
    assert run_zlt("retry", jid, "--no-worker").returncode == 0


def test_fifty_concurrent_submits_all_finish_never_two_on_one_gpu(tmp_path: Path, workers):
    spec = write_spec(tmp_path, steps=3, every=3, retries=0)
    argv = [sys.executable, "-m", "zlt", "submit", str(spec), "--ai-toolkit", str(FAKE_AITOOLKIT), "--profile",
            "24gb", "--skip-preflight", "--no-worker"]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(50)]
    ids = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        ids.append(out.strip())
    assert len(set(ids)) == 50
    w = workers("--gpus", "0,1", "--once", env={"FAKE_TRAINER_STEP_S": "0.001"})
    w.communicate(timeout=580)
    rows = json.loads(run_zlt("jobs", "--json", "--limit", "200").stdout)
    assert sorted(r["job_id"] for r in rows) == sorted(ids)
    assert {r["state"] for r in rows} == {"succeeded"}
    spans: dict[int, list[tuple[datetime, datetime, str]]] = {}
    for r in rows:
        (gpu,) = r["gpus"]
        spans.setdefault(gpu, []).append((iso(r["started_at"]), iso(r["ended_at"]), r["job_id"]))
    assert set(spans) == {0, 1}, "both GPU slots were used"
    for gpu, items in spans.items():
        items.sort()
        for (_s1, e1, j1), (s2, _e2, j2) in itertools.pairwise(items):
            assert e1 <= s2, f"GPU {gpu}: {j1} ended {e1} after {j2} started {s2}"


def iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_two_workers_on_the_same_gpu_take_turns(tmp_path: Path, workers):
    spec = write_spec(tmp_path, steps=3, every=3, retries=0)
    ids = [submit(spec, "--no-worker") for _ in range(4)]
    ws = [workers("--gpus", "0", "--once", env={"FAKE_TRAINER_STEP_S": "0.05"}) for _ in range(2)]
    for w in ws:
        w.communicate(timeout=300)
    rows = [status(j) for j in ids]
    assert {r["state"] for r in rows} == {"succeeded"}
    spans = sorted((iso(r["started_at"]), iso(r["ended_at"]), r["job_id"]) for r in rows)
    for (_s1, e1, j1), (s2, _e2, j2) in itertools.pairwise(spans):
        assert e1 <= s2, f"{j1} and {j2} overlapped on GPU 0"
