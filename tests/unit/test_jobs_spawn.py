"""Worker presence locks: how submit knows a worker runs, and that only one background worker exists."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from zlt.jobs.spawn import (
    ensure_worker,
    hold_worker_presence,
    run_dir,
    try_hold_auto_worker,
    worker_argv,
    worker_running,
)


def test_presence_lock_tells_whether_a_worker_runs(tmp_path: Path):
    assert not worker_running(tmp_path)
    a = hold_worker_presence(tmp_path)
    b = hold_worker_presence(tmp_path)  # several workers may run side by side
    assert worker_running(tmp_path)
    a.close()
    assert worker_running(tmp_path)
    b.close()
    assert not worker_running(tmp_path), "the lock goes with the worker: no stale pid file to trust"


def test_only_one_background_worker(tmp_path: Path):
    first = try_hold_auto_worker(tmp_path)
    assert first is not None
    assert try_hold_auto_worker(tmp_path) is None
    first.close()
    again = try_hold_auto_worker(tmp_path)
    assert again is not None
    again.close()


def test_ensure_worker_does_nothing_while_one_runs(tmp_path: Path):
    held = hold_worker_presence(tmp_path)
    try:
        assert ensure_worker(tmp_path) is None
        assert not (run_dir(tmp_path) / "worker.pid").exists()
    finally:
        held.close()


def test_ensure_worker_trusts_a_fresh_spawn_record_of_a_live_process(tmp_path: Path):
    (run_dir(tmp_path) / "worker.pid").write_text(json.dumps({"pid": os.getpid(), "spawned_at": time.time()}))
    assert ensure_worker(tmp_path) is None, "a worker spawned a moment ago is still starting"


def test_background_worker_command_names_its_home(tmp_path: Path):
    argv = worker_argv(tmp_path)
    assert argv[1:4] == ["-m", "zlt", "worker"] and argv[argv.index("--home") + 1] == str(tmp_path)
    assert "--background" in argv
