"""The worker `zlt worker` runs: zlt.jobs.worker's loop, handed the kind registry's launcher and the artifact
index's start-up repair, so the jobs layer itself never imports a flow, an artifact or a model."""

from __future__ import annotations

from collections.abc import Callable

from zlt.artifacts.reindex import startup_reindex
from zlt.flows.kinds import worker_launcher
from zlt.jobs.store import JobStore
from zlt.jobs.worker import Worker, WorkerOptions


def local_worker(store: JobStore, opts: WorkerOptions, *, log: Callable[[str], None] | None = None) -> Worker:
    home = store.home
    return Worker(store, opts, launcher=worker_launcher(home), log=log,
                  on_start=lambda say: startup_reindex(home, say))
