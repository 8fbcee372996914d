"""Jobs that a worker runs in one of its own threads (generations, evaluations), not as a trainer subprocess.

One place maps how such a job ends to the store's transitions, so every in-process kind records a cancel, a
worker shutdown, a lost lease, a user mistake and a crash the same way as the others.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from zlt.core.causes import cause_of


class Cancelled(Exception):
    """Raised by a job's body (through `InProcessRun.check_stop`) when the user cancelled or the worker stops."""


@dataclass(frozen=True)
class Done:
    """What a job's body hands back when it succeeded."""

    artifact_id: str | None
    artifact_path: str
    message: str


def process_create_time() -> float | None:
    try:
        import psutil

        return psutil.Process().create_time()
    except Exception:  # noqa: BLE001 - the reaper then trusts the pid alone
        return None


def failure_cause(err: Exception) -> str:
    return cause_of(err).value


class InProcessRun:
    """A claimed job run in this process: runner registration, lease heartbeat, stop checks, the end recorded."""

    def __init__(self, store: Any, job_id: str, token: str, *, stop: threading.Event | None = None,
                 heartbeat_s: float = 5.0, poll_s: float = 1.0) -> None:
        from zlt.jobs.runjob import LeaseKeeper, StopControl

        self.store, self.job_id, self.token, self.stop = store, job_id, token, stop
        self.control = StopControl()
        self.row = store.get(job_id)
        store.set_runner(job_id, token, os.getpid(), process_create_time())
        self.keeper = LeaseKeeper(store, job_id, token, self.control, heartbeat_s=heartbeat_s, poll_s=poll_s)

    def check_stop(self) -> None:
        if self.control.event.is_set() or (self.stop is not None and self.stop.is_set()):
            raise Cancelled

    def run(self, body: Callable[[], Done], on_end: Callable[[dict[str, Any]], None] | None = None) -> str:
        """Run `body` to its end and record it; returns the job's final state. `on_end` sees the final row."""
        from zlt.core.errors import ZltError
        from zlt.jobs.runjob import CANCEL
        from zlt.jobs.states import JobStatus
        from zlt.jobs.store import LeaseLost

        store, job_id, token = self.store, self.job_id, self.token
        self.keeper.start()
        try:
            try:
                done = body()
                store.transition(job_id, JobStatus.SUCCEEDED, token=token, artifact_id=done.artifact_id,
                                 artifact_path=done.artifact_path, message=done.message)
            except Cancelled:
                if self.control.reason == CANCEL:
                    store.transition(job_id, JobStatus.CANCELLED, token=token, error_cause="cancelled",
                                     error_message="cancelled", message="cancelled by user")
                else:
                    store.transition(job_id, JobStatus.QUEUED, token=token, message="worker shut down; requeued")
            except LeaseLost:
                pass  # another worker owns the job now; its state is theirs to record
            except ZltError as e:
                cause = failure_cause(e)
                store.transition(job_id, JobStatus.FAILED, token=token, error_cause=cause,
                                 error_message=e.message + (f" (hint: {e.hint})" if e.hint else ""),
                                 message=f"failed: {cause}")
            except Exception as e:  # the job must end recorded, whatever the body raised
                store.transition(job_id, JobStatus.FAILED, token=token, error_cause="unknown",
                                 error_message=f"{type(e).__name__}: {e}", message="failed: unknown")
        finally:
            self.keeper.done.set()
        end = store.get(job_id)
        if on_end is not None:
            on_end(end)
        return str(end["state"])


def queue_inprocess_job(home: Any, *, kind: str, name: str, backend: str, request: dict[str, Any],
                        snapshot: dict[str, Any], on_cpu: bool, priority: int, start_worker: bool,
                        prepare: Callable[[Any], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Queue a checked in-process job: its folder and its row, or neither. `prepare(job_dir)` may copy inputs into
    the new folder and returns the request to freeze; `snapshot` gets `kind` and `request`. Returns the status."""
    import json
    import shutil
    from pathlib import Path

    from zlt.core.paths import job_dir, new_job_id
    from zlt.jobs.api import open_store
    from zlt.jobs.store import NewJob
    from zlt.jobs.view import status_dict

    home = Path(home)
    with open_store(home) as store:
        jid = new_job_id()
        jdir = job_dir(home, jid)
        jdir.mkdir(parents=True, exist_ok=False)
        try:
            if prepare is not None:
                request = prepare(jdir)
            row = store.create(NewJob(
                job_id=jid, name=name[:120], priority=priority, backend=backend, profile="auto",
                spec_json=json.dumps(request), job_dir=str(jdir), gpus_needed=0 if on_cpu else 1, max_retries=0,
                snapshot={**snapshot, "kind": kind, "request": request},
            ))
        except BaseException:
            shutil.rmtree(jdir, ignore_errors=True)
            raise
        status = status_dict(row)
    if start_worker:
        from zlt.jobs.spawn import ensure_worker

        ensure_worker(home)
    return status


def snapshot_kind(snapshot_json: str | None) -> str | None:
    """The `kind` a queued job's snapshot names (generate, transfer, evaluate), or None (a training job)."""
    import json

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


# (the job's own store connection, its claim, its stop event, the worker's pipeline cache)
Runner = Callable[[Any, Any, threading.Event, Any], Any]


def inprocess_launcher(home: Any, fallback: Callable[[Any], Any], runners: dict[str, Runner], *, cache: Any = None,
                       store_factory: Callable[[Any], Any] | None = None) -> Callable[[Any], Any]:
    """A worker launcher: a job whose kind has a runner runs in a thread of the worker, on the pipeline cache the
    launcher keeps (`launch.cache`, which a caller may replace); any other job (a training) goes to `fallback`,
    after the cache is emptied when the job claims a GPU: the trainer needs the memory a cached pipeline holds.
    The job's kind is read from its snapshot once per claim."""
    from pathlib import Path

    from zlt.infer.pipeline import PipelineCache
    from zlt.jobs.store import JobStore

    open_store = store_factory or JobStore

    def launch(claim: Any) -> Any:
        store = open_store(Path(home))
        try:
            kind = snapshot_kind(store.get(claim.job_id)["snapshot_json"])
        finally:
            store.close()
        run = runners.get(kind) if kind is not None else None
        if run is None:
            if claim.gpus:
                launch.cache.clear()  # type: ignore[attr-defined]
            return fallback(claim)

        def target(stop: threading.Event) -> None:
            own = open_store(Path(home))  # its own connection: the worker's is used by the worker's loop
            try:
                run(own, claim, stop, launch.cache)  # type: ignore[attr-defined]
            finally:
                own.close()

        return ThreadJob(target, name=f"zlt-{kind}")

    launch.cache = cache if cache is not None else PipelineCache()  # type: ignore[attr-defined]
    return launch
