"""`zlt serve` keeps a local worker running: started at once, started again when it dies, stopped on exit;
and a job requeued meanwhile is picked up without anyone submitting again."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.unit.jobs_fakes import new_job
from zlt.jobs.spawn import LocalWorker, worker_running
from zlt.jobs.store import JobStore


def wait_for(pred, timeout: float = 60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = pred()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_local_worker_is_kept_running_and_claims_requeued_jobs(tmp_path: Path):
    home = tmp_path / "home"
    store = JobStore(home)
    local = LocalWorker(home, check_s=0.2).start()
    try:
        first = wait_for(lambda: store.live_workers())
        pid = first[0]["pid"]
        assert local.proc is not None and local.proc.pid == pid
        os.kill(pid, signal.SIGKILL)  # the worker dies; the supervisor starts another
        again = wait_for(lambda: [w for w in store.live_workers() if w["pid"] != pid and local.proc.poll() is None])
        assert again[0]["pid"] == local.proc.pid
        # A job requeued (here: a CPU job whose dataset path this host cannot see is refused, so it stays queued
        # and visible) is looked at by the running worker without any submit.
        store.create(new_job("j", gpus_needed=0, spec_json='{"dataset": {"path": "/nonexistent/ds"}}'))
        row = wait_for(lambda: (r := store.get("j"))["error_cause"] == "not_visible" and r)
        assert "not visible on host" in row["error_message"]
    finally:
        local.stop(timeout=30)
    assert local.proc.poll() is not None
    wait_for(lambda: not worker_running(home), timeout=10)
    store.close()
