"""Job kinds as data: what a worker does with a job of each kind (zlt.core.kinds.JobKind).

A kind whose `runner` is set runs in a thread of the worker process, on the pipeline cache the worker's launcher
keeps (a generation, an evaluation); a kind without one runs in a process of its own (`zlt _job-run`, whose body is
zlt.flows.job_process.run_claimed_job: a training). Adding a kind is one entry here, a `JobKind` member, and the
code that queues it (`JobStore.create(kind=...)`).

The worker (zlt.jobs.worker) knows none of this: its caller hands it `worker_launcher(home)`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zlt.core.kinds import JobKind
from zlt.flows.captioning import run_caption
from zlt.flows.evaluation import run_evaluation
from zlt.flows.generation import run_generation
from zlt.flows.inprocess import ThreadJob
from zlt.infer.pipeline import PipelineCache
from zlt.jobs.db import Row
from zlt.jobs.records import Claim
from zlt.jobs.store import JobStore
from zlt.jobs.worker import Launcher, RunningJob, subprocess_launcher

# (the job's own store connection, its claim, its stop event, the worker's pipeline cache) -> the final state
Runner = Callable[[JobStore, Claim, threading.Event, PipelineCache], str]


@dataclass(frozen=True)
class KindEntry:
    kind: JobKind
    runner: Runner | None  # None: the job runs in its own process (zlt _job-run)
    what: str  # one line for docs and errors

    @property
    def in_thread(self) -> bool:
        return self.runner is not None


KINDS: Mapping[JobKind, KindEntry] = {
    JobKind.TRAIN: KindEntry(JobKind.TRAIN, None, "a training run, in its own process (zlt.flows.job_process)"),
    JobKind.GENERATE: KindEntry(JobKind.GENERATE, run_generation,
                                "a generation or style transfer, in a thread of the worker (zlt.flows.generation)"),
    JobKind.EVALUATE: KindEntry(JobKind.EVALUATE, run_evaluation,
                                "an evaluation of an artifact, in a thread of the worker (zlt.flows.evaluation)"),
    JobKind.CAPTION: KindEntry(JobKind.CAPTION, run_caption,
                               "captioning a dataset folder, in a thread of the worker (zlt.flows.captioning)"),
}


def kind_of(row: Row) -> JobKind:
    """The kind of a job row: its `kind` column (filled for older rows by the jobs table's migration)."""
    return JobKind(row["kind"] or JobKind.TRAIN.value)


def entry_for(kind: JobKind | str, kinds: Mapping[JobKind, KindEntry] = KINDS) -> KindEntry:
    return kinds[JobKind(kind)]


def worker_launcher(home: Path, *, fallback: Launcher | None = None, cache: PipelineCache | None = None,
                    store_factory: Callable[[Path], Any] | None = None,
                    kinds: Mapping[JobKind, KindEntry] = KINDS) -> Launcher:
    """The launcher a worker is handed: a job whose kind has a runner runs in a thread of the worker, on the pipeline
    cache the launcher keeps (`launch.cache`, which a caller may replace); any other job (a training) goes to
    `fallback` (default: its own `zlt _job-run` process), after the cache is emptied when the job claims a GPU: the
    trainer needs the memory a cached pipeline holds. The job's kind is read from its row once per claim."""
    home = Path(home)
    process = fallback or subprocess_launcher(home, home / "logs" / "jobs.log")
    open_store = store_factory or JobStore

    def launch(claim: Claim) -> RunningJob:
        store = open_store(home)
        try:
            kind = kind_of(store.get(claim.job_id))
        finally:
            store.close()
        run = kinds[kind].runner
        if run is None:
            if claim.gpus:
                launch.cache.clear()  # type: ignore[attr-defined]
            return process(claim)

        def target(stop: threading.Event) -> None:
            own = open_store(home)  # its own connection: the worker's is used by the worker's loop
            try:
                run(own, claim, stop, launch.cache)  # type: ignore[attr-defined]
            finally:
                own.close()

        return ThreadJob(target, name=f"zlt-{kind.value}")

    launch.cache = cache if cache is not None else PipelineCache()  # type: ignore[attr-defined]
    return launch
