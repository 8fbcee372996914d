"""Jobs that a worker runs in one of its own threads (generations, evaluations), not as a trainer subprocess.

How such a job ends is handed to `zlt.flows.finish.record_end`, the same function a training's job process calls,
so every kind records a cancel, a worker shutdown, a lost lease, a user mistake and a crash the same way.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zlt.core.kinds import JobKind
from zlt.core.paths import job_dir, new_job_id
from zlt.flows.finish import failed, record_end
from zlt.jobs import spawn
from zlt.jobs.api import open_store
from zlt.jobs.lease import LEASE_LOST, SHUTDOWN, LeaseKeeper, StopControl, process_create_time
from zlt.jobs.records import NewJob
from zlt.jobs.store import JobStore, LeaseLost
from zlt.jobs.view import status_dict


class Cancelled(Exception):
    """Raised by a job's body (through `InProcessRun.check_stop`) when the user cancelled or the worker stops."""


@dataclass(frozen=True)
class Done:
    """What a job's body hands back when it succeeded."""

    artifact_id: str | None
    artifact_path: str
    message: str


class InProcessRun:
    """A claimed job run in this process: runner registration, lease heartbeat, stop checks, the end recorded."""

    def __init__(self, store: JobStore, job_id: str, token: str, *, stop: threading.Event | None = None,
                 heartbeat_s: float = 5.0, poll_s: float = 1.0) -> None:
        self.store, self.job_id, self.token, self.stop = store, job_id, token, stop
        self.control = StopControl()
        self.row = store.get(job_id)
        store.set_runner(job_id, token, os.getpid(), process_create_time())
        self.keeper = LeaseKeeper(store, job_id, token, self.control, heartbeat_s=heartbeat_s, poll_s=poll_s)

    def check_stop(self) -> None:
        if self.stop is not None and self.stop.is_set():
            self.control.stop(SHUTDOWN)  # the worker's stop: requeue (a cancel seen first keeps its reason)
        if self.control.event.is_set():
            raise Cancelled

    def run(self, body: Callable[[], Done], on_end: Callable[[dict[str, Any]], None] | None = None) -> str:
        """Run `body` to its end and record it; returns the job's final state. `on_end` sees the final row."""
        self.keeper.start()
        try:
            outcome: dict[str, Any] | None
            try:
                done = body()
                outcome = {"status": "succeeded", "artifact_id": done.artifact_id,
                           "artifact_path": done.artifact_path, "summary": done.message}
            except Cancelled:
                outcome = {"status": "cancelled"}
            except LeaseLost:
                outcome = None  # another worker owns the job now; its state is theirs to record
            except Exception as e:  # the job must end recorded, whatever the body raised
                outcome = failed(e)
            if outcome is not None and self.control.reason != LEASE_LOST:
                try:
                    record_end(self.store, self.job_id, self.token, outcome, self.control.reason)
                except LeaseLost:
                    pass
        finally:
            self.keeper.done.set()
        end = self.store.get(self.job_id)
        if on_end is not None:
            on_end(end)
        return str(end["state"])


def queue_inprocess_job(home: Any, *, job_kind: JobKind, kind: str, name: str, backend: str,
                        request: dict[str, Any], snapshot: dict[str, Any], on_cpu: bool, priority: int,
                        start_worker: bool, prepare: Callable[[Path], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Queue a checked in-process job: its folder and its row, or neither. `prepare(job_dir)` may copy inputs into
    the new folder and returns the request to freeze; `snapshot` gets `kind` (the request's own: generate, transfer,
    evaluate) and `request`. Returns the status."""
    home = Path(home)
    with open_store(home) as store:
        jid = new_job_id()
        jdir = job_dir(home, jid)
        jdir.mkdir(parents=True, exist_ok=False)
        try:
            if prepare is not None:
                request = prepare(jdir)
            row = store.create(NewJob(
                job_id=jid, name=name[:120], priority=priority, backend=None, profile="auto",
                spec_json=None, request=request, job_dir=str(jdir), gpus_needed=0 if on_cpu else 1, max_retries=0,
                snapshot={**snapshot, "kind": kind, "request": request}, kind=job_kind,
            ))
        except BaseException:
            shutil.rmtree(jdir, ignore_errors=True)
            raise
        status = status_dict(row)
    if start_worker:
        spawn.ensure_worker(home)  # through the module: tests replace it
    return status


def snapshot_kind(snapshot_json: str | None) -> str | None:
    """The `kind` a queued in-process job's snapshot names (generate, transfer, evaluate), or None."""
    try:
        kind = json.loads(snapshot_json or "{}").get("kind")
    except (json.JSONDecodeError, AttributeError):
        return None
    return kind if isinstance(kind, str) else None


class ThreadJob:
    """An in-process job running in a thread of the worker process (the worker's `RunningJob`)."""

    def __init__(self, target: Callable[[threading.Event], Any], name: str = "zlt-inprocess") -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=target, args=(self.stop,), name=name, daemon=True)
        self.thread.start()

    @property
    def pid(self) -> int | None:
        return os.getpid()

    def poll(self) -> int | None:
        return None if self.thread.is_alive() else 0

    def shutdown(self) -> None:
        self.stop.set()
