"""Holding a claimed job: the lease kept alive, a cancel flag in the store turned into a stop, and the worker's
`stop` (or its death) read from the job process's stdin.

Every runner of a claimed job uses these, whatever its kind: the job process of a training and the thread of an
in-process job (generation, evaluation) stop for the same reasons, named below.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable

from zlt.jobs.store import JobStore

# Why the job was asked to stop, if it was: the user's cancel, the worker shutting down (requeue),
# the worker gone (abandoned), or the lease taken away (someone else owns the job now).
CANCEL, SHUTDOWN, WORKER_LOST, LEASE_LOST = "cancel", "shutdown", "worker_lost", "lease_lost"


class StopControl:
    """One stop event for the runner plus the first reason anyone gave for it."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason: str | None = None
        self._lock = threading.Lock()

    def stop(self, reason: str) -> None:
        with self._lock:
            if self.reason is None:
                self.reason = reason
        self.event.set()


class LeaseKeeper(threading.Thread):
    """Renews the lease every `heartbeat_s` and polls the cancel flag every `poll_s`."""

    def __init__(self, store: JobStore, job_id: str, token: str, control: StopControl, *,
                 heartbeat_s: float = 5.0, poll_s: float = 1.0) -> None:
        super().__init__(name=f"lease-{job_id}", daemon=True)
        self.store, self.job_id, self.token, self.control = store, job_id, token, control
        self.heartbeat_s, self.poll_s = heartbeat_s, poll_s
        self.done = threading.Event()

    def run(self) -> None:
        last_beat = last_renewed = time.monotonic()
        while not self.done.wait(self.poll_s):
            try:
                if time.monotonic() - last_beat >= self.heartbeat_s:
                    last_beat = time.monotonic()
                    beat = self.store.heartbeat(self.job_id, self.token)
                    if not beat.alive:
                        self.control.stop(LEASE_LOST)
                        return
                    last_renewed = last_beat
                    cancel = beat.cancel_requested
                else:
                    cancel = self.store.cancel_requested(self.job_id)
            except sqlite3.OperationalError:
                # Store busy or unreachable: try again next tick. Once the lease may have expired, another
                # host may run the job: stop our trainer rather than ever run two (fencing by lease time).
                if time.monotonic() - last_renewed > self.store.lease_ttl:
                    self.control.stop(LEASE_LOST)
                    return
                continue
            if cancel:
                self.control.stop(CANCEL)


def watch_pipe(fd: int, on_end: Callable[[bytes], None], *, name: str = "parent-watch") -> threading.Thread:
    """Read `fd` until a line or end of file, then call `on_end` with what was read (b"" at end of file: the
    process holding the other end is gone). A pipe from a parent is how a child learns of the parent's death
    however it died, SIGKILL included: the kernel closes the write end.

    Reads the raw descriptor: a daemon thread blocked in a buffered stdin read would hold its lock
    and abort the interpreter at exit.
    """

    def run() -> None:
        data = b""
        try:
            while not data.endswith(b"\n"):
                chunk = os.read(fd, 64)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        on_end(data)

    t = threading.Thread(target=run, name=name, daemon=True)
    t.start()
    return t


def watch_parent(fd: int, control: StopControl) -> threading.Thread:
    """The worker writes `stop` to ask for a shutdown; end of file means the worker is gone."""
    return watch_pipe(fd, lambda data: control.stop(SHUTDOWN if data.strip() == b"stop" else WORKER_LOST))


def process_create_time() -> float | None:
    """This process's start time, for the reaper to tell a reused pid from ours (None: it trusts the pid alone)."""
    try:
        import psutil  # lazy: only a runner needs it

        return psutil.Process().create_time()
    except Exception:  # noqa: BLE001 - the reaper then trusts the pid alone
        return None
