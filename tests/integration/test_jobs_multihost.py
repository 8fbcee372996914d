"""Three workers playing three hosts (distinct ZLT_HOST_ID) on one store, 30 tiny jobs, random SIGKILLs of
workers and of trainers: every job succeeds, no job ever has two live trainers, worker kills use no job's
`max_retries`, nothing stays running or queued. Runs on PostgreSQL (the shared store) and on SQLite.

The trainer is the stand-in ai-toolkit (tests/fixtures/fake_aitoolkit); the worker, job process and
runner are the real ones, as `zlt worker` subprocesses.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from tests.conftest import REPO
from tests.jobs_dialects import dialect, pg_server  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("dialect")]

FAKE_AITOOLKIT = REPO / "tests" / "fixtures" / "fake_aitoolkit"
JOBS, HOSTS = 30, ("host-a", "host-b", "host-c")


def write_spec(tmp_path: Path) -> Path:
    from PIL import Image

    ds = tmp_path / "ds"
    ds.mkdir()
    for i in range(2):
        Image.new("RGB", (64, 64), (i * 90, 40, 200)).save(ds / f"{i}.png")
    p = tmp_path / "spec.yaml"
    p.write_text("name: chaos\ndataset: {path: ds, resolution: 256}\n"
                 "training: {backend: ai-toolkit, max_steps: 12, warmup_steps: 1}\n"
                 "output: {save: {every: 4}}\njob: {retry: {max_retries: 20}}\n")
    return p


def trainers(jobs_root: Path) -> dict[str, list[int]]:
    """Live stand-in trainer processes by job id (their argv names the job folder)."""
    root = os.path.join(str(jobs_root), "")
    out: dict[str, list[int]] = {}
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        cmd = p.info["cmdline"] or []
        if p.info["status"] == psutil.STATUS_ZOMBIE or not any("run.py" in c for c in cmd):
            continue
        hit = next((c for c in cmd if root in c), None)
        if hit:
            out.setdefault(hit.split(root, 1)[1].split("/", 1)[0], []).append(p.info["pid"])
    return out


def test_thirty_jobs_three_hosts_random_kills(tmp_path: Path, zlt_home: Path):
    from zlt.jobs.api import list_jobs, submit_job
    from zlt.spec import load_spec

    loaded = load_spec(write_spec(tmp_path), [])
    ids = [submit_job(zlt_home, loaded, profile="24gb", skip_preflight=True, start_worker=False,
                      options={"ai_toolkit": str(FAKE_AITOOLKIT), "stop_grace_s": 10})["job_id"] for _ in range(JOBS)]
    # The job processes run without matplotlib (as without the [plot] extra): drawing 30 loss plots would
    # cost more CPU than everything this test is about.
    shadow = tmp_path / "no_plot" / "matplotlib"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('matplotlib is hidden in this test')\n")
    pythonpath = os.pathsep.join(p for p in (str(shadow.parent), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "FAKE_TRAINER_STEP_S": "0.2", "ZLT_INFRA_BACKOFF_S": "0.2", "PYTHONPATH": pythonpath}
    procs: dict[str, subprocess.Popen] = {}

    def start(host: str) -> None:
        procs[host] = subprocess.Popen(
            [sys.executable, "-m", "zlt", "worker", "--gpus", "0,1", "--poll", "0.2"],
            env={**env, "ZLT_HOST_ID": host}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    most = Counter[str]()
    watching = threading.Event()
    watching.set()

    def watch() -> None:  # never two live trainers for one job
        while watching.is_set():
            for jid, pids in trainers(zlt_home / "jobs").items():
                most[jid] = max(most[jid], len(pids))
            time.sleep(0.1)

    rng = random.Random(18)
    trainer_kills = Counter[str]()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    for h in HOSTS:
        start(h)
    try:
        worker_kills = 0
        plan = ["worker", "trainer"] * 4
        rng.shuffle(plan)
        for action in plan:
            time.sleep(rng.uniform(1.0, 2.5))
            if action == "trainer":
                until = time.monotonic() + 10
                while time.monotonic() < until and not (running := trainers(zlt_home / "jobs")):
                    time.sleep(0.05)
                if running:
                    jid = rng.choice(sorted(running))
                    for pid in running[jid]:
                        try:
                            os.kill(pid, signal.SIGKILL)
                            trainer_kills[jid] += 1
                        except ProcessLookupError:
                            pass
            else:
                host = rng.choice(HOSTS)
                procs[host].kill()  # SIGKILL the worker only; its job processes notice the closed pipe
                procs[host].wait()
                worker_kills += 1
                start(host)
        finished = lambda: all(s["state"] in ("succeeded", "failed", "cancelled") for s in list_jobs(zlt_home, limit=100))  # noqa: E731
        end = time.monotonic() + 240
        while time.monotonic() < end and not finished():
            time.sleep(1)
    finally:
        watching.clear()
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
    watcher.join(5)

    statuses = {s["job_id"]: s for s in list_jobs(zlt_home, limit=100)}
    assert sorted(statuses) == sorted(ids)
    states = Counter(s["state"] for s in statuses.values())
    assert states == {"succeeded": JOBS}, f"every job succeeds; got {dict(states)}"
    assert worker_kills >= 1 and sum(trainer_kills.values()) >= 1, "the chaos really happened"
    assert max(most.values()) == 1, f"two live trainers for one job: {dict(most)}"
    used = {jid: st for jid, st in statuses.items() if st["infra_retries"]}
    assert used, "worker kills were counted as infrastructure faults"
    from zlt.jobs.store import JobStore

    store = JobStore(zlt_home)
    try:
        for jid in ids:
            row = store.get(jid)
            # A killed trainer is a trainer failure (it uses the budget); a killed worker never does.
            assert row["auto_retries"] <= trainer_kills[jid], (
                f"{jid}: {row['auto_retries']} retries used, {trainer_kills[jid]} trainer kills: "
                + "; ".join(h["message"] or "" for h in store.history(jid)) + f"; last error: {row['error_message']}")
        assert not trainers(zlt_home / "jobs"), "no trainer left behind"
    finally:
        store.close()
