"""Start a detached background worker when none is running.

Every worker holds a shared lock on `<home>/run/workers.lock` for its lifetime, so "is a worker
running?" is one non-blocking exclusive-lock attempt, and the kernel drops the lock when a worker dies
(no stale pid files to trust). The background worker also holds `auto-worker.lock` exclusively, so at
most one of them runs per ZLT_HOME. `spawn.lock` serialises concurrent submits, and `worker.pid` covers
the second between spawning a worker and that worker taking its lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

from zlt.core.fsutil import atomic_write_json
from zlt.jobs.orphans import process_alive

START_GRACE_S = 30.0
LOG_ROTATE_BYTES = 10 * 1024 * 1024
# Set by LocalWorker on the worker it starts, whose stdin is then a pipe from its parent: a line `stop`, or the
# pipe's end (the parent died, however), stops the worker (`parent_pipe`, `Worker.stop_with_parent`).
STOP_WITH_PARENT_ENV = "ZLT_WORKER_STOP_WITH_PARENT"


def run_dir(home: Path) -> Path:
    d = Path(home) / "run"
    d.mkdir(parents=True, exist_ok=True)
    return d


def worker_log_path(home: Path) -> Path:
    return Path(home) / "logs" / "worker.log"


def _open_lock(path: Path) -> IO[bytes]:
    return open(path, "a+b")


def hold_worker_presence(home: Path) -> IO[bytes]:
    """Taken by every worker at start and held until it exits (the returned file must stay open)."""
    fh = _open_lock(run_dir(home) / "workers.lock")
    fcntl.flock(fh, fcntl.LOCK_SH)
    return fh


def try_hold_auto_worker(home: Path) -> IO[bytes] | None:
    """The background worker's exclusive lock, or None when another background worker has it."""
    fh = _open_lock(run_dir(home) / "auto-worker.lock")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    return fh


def worker_running(home: Path) -> bool:
    lock = run_dir(home) / "workers.lock"
    with _open_lock(lock) as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
    return False


def _recently_spawned(home: Path) -> bool:
    try:
        info = json.loads((run_dir(home) / "worker.pid").read_text(encoding="utf-8"))
        pid, spawned = int(info["pid"]), float(info["spawned_at"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return time.time() - spawned < START_GRACE_S and process_alive(pid, None)


def worker_argv(home: Path) -> list[str]:
    return [sys.executable, "-m", "zlt", "worker", "--home", str(home), "--background"]


def parent_pipe() -> int | None:
    """The descriptor of the pipe from the process that started this worker (stdin), when it asked to be watched;
    None otherwise. The variable is removed, so that no process this worker starts inherits it."""
    return 0 if os.environ.pop(STOP_WITH_PARENT_ENV, None) == "stdin" else None


def ensure_worker(home: Path) -> int | None:
    """Start a background worker unless one is running or starting. Returns the new worker's pid, or None."""
    home = Path(home)
    with _open_lock(run_dir(home) / "spawn.lock") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if worker_running(home) or _recently_spawned(home):
            return None
        log = worker_log_path(home)
        log.parent.mkdir(parents=True, exist_ok=True)
        if log.exists() and log.stat().st_size > LOG_ROTATE_BYTES:
            os.replace(log, log.with_name(log.name + ".1"))
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                worker_argv(home), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True, cwd=str(home),
            )
        atomic_write_json(run_dir(home) / "worker.pid", {"pid": proc.pid, "spawned_at": time.time()})
        # A long-lived caller (zlt serve) reaps the worker when it exits; a CLI process exits first anyway.
        threading.Thread(target=proc.wait, name="reap-worker", daemon=True).start()
        return proc.pid


class LocalWorker:
    """Keeps a worker running beside a long-lived process (`zlt serve`): started at once, started again
    when it dies, stopped gracefully (its jobs requeued) on `stop()`. Where another worker already runs
    for this ZLT_HOME, none is started; the check repeats every `check_s`. The worker's stdin is a pipe from
    us: should this process die without `stop()` (SIGKILL, a crash), the pipe closes and the worker stops."""

    def __init__(self, home: Path, *, check_s: float = 5.0, extra_args: tuple[str, ...] = ()) -> None:
        self.home = Path(home)
        self.check_s = check_s
        self.extra_args = extra_args
        self.proc: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="local-worker", daemon=True)

    def start(self) -> LocalWorker:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            if (self.proc is None or self.proc.poll() is not None) and not worker_running(self.home):
                self._spawn()
            self._stop.wait(self.check_s)

    def _spawn(self) -> None:
        log = worker_log_path(self.home)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "zlt", "worker", "--home", str(self.home), *self.extra_args],
                stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                close_fds=True, cwd=str(self.home), env={**os.environ, STOP_WITH_PARENT_ENV: "stdin"},
            )

    def stop(self, timeout: float = 60.0) -> None:
        self._stop.set()
        self._thread.join(timeout=self.check_s + 1)
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()  # SIGTERM: stop claiming, stop trainers gracefully, requeue their jobs
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()
