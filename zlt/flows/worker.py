"""The worker `zlt worker` runs: zlt.jobs.worker's loop, handed the kind registry's launcher and the artifact
index's start-up repair, so the jobs layer itself never imports a flow, an artifact or a model. A worker `zlt serve`
started watches the pipe serve tied it with."""

from __future__ import annotations

from collections.abc import Callable

from zlt.flows.job_artifacts import startup_reindex
from zlt.flows.kinds import worker_launcher
from zlt.jobs.spawn import parent_pipe
from zlt.jobs.store import JobStore
from zlt.jobs.worker import Worker, WorkerOptions


def local_worker(store: JobStore, opts: WorkerOptions, *, log: Callable[[str], None] | None = None) -> Worker:
    home = store.home
    worker = Worker(store, opts, launcher=worker_launcher(home), log=log,
                    on_start=lambda say: startup_reindex(home, say))
    fd = parent_pipe()
    if fd is not None:  # started by `zlt serve` (LocalWorker): it goes when serve goes, however serve ends
        worker.stop_with_parent(fd)
    return worker
