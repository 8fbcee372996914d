"""The bodies of `zlt worker` and the internal `zlt _job-run` (declared in zlt/cli/workers.py): the processes that
run queued jobs. They load the job kinds and the training flow (pydantic, numpy): this module loads on first use,
never for `zlt --help` or `zlt status`."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import typer

from zlt.cli.common import home_path, print_json
from zlt.flows.job_process import run_claimed_job
from zlt.flows.worker import local_worker
from zlt.jobs.lease import SHUTDOWN, StopControl, watch_parent
from zlt.jobs.records import parse_gpus
from zlt.jobs.spawn import hold_worker_presence, try_hold_auto_worker
from zlt.jobs.store import JobStore
from zlt.jobs.worker import WorkerOptions, check_slots, default_slots, parse_gpu_list


def worker(*, gpus: str | None, once: bool, background: bool, idle_exit: float | None, poll: float,
           home: Path | None, json_out: bool) -> None:
    h = home_path(home)
    slots = parse_gpu_list(gpus) if gpus else default_slots()
    if gpus:
        check_slots(slots)
    auto_lock = None
    if background:
        auto_lock = try_hold_auto_worker(h)
        if auto_lock is None:
            return  # another background worker already serves this home
        if idle_exit is None:
            idle_exit = 300.0
    presence = hold_worker_presence(h)
    store = JobStore(h)

    def log(msg: str) -> None:
        out = sys.stdout if background else sys.stderr
        out.write(msg + "\n")
        out.flush()

    w = local_worker(store, WorkerOptions(gpus=slots, once=once, poll_s=poll, idle_exit_s=idle_exit), log=log)
    w.install_signal_handlers()
    try:
        summary = w.run()
    finally:
        store.close()
        presence.close()
        if auto_lock is not None:
            auto_lock.close()
    if json_out:
        print_json(summary.to_dict())
    elif once:
        for jid, state in summary.jobs.items():
            print(f"{jid}\t{state}")
    if once and summary.failed:
        raise typer.Exit(1)


def job_run(job_id: str, *, token: str, attempt: int, gpus: str, resume: bool, home: Path | None) -> None:
    control = StopControl()
    # Ctrl+C in the worker's terminal reaches us too; the worker decides, and tells us over stdin.
    # A no-op handler, not SIG_IGN: an ignored SIGINT would be inherited by the trainer, and the
    # runner's graceful stop (SIGINT first) would no longer reach it.
    signal.signal(signal.SIGINT, lambda *_: None)
    signal.signal(signal.SIGTERM, lambda *_: control.stop(SHUTDOWN))
    watch_parent(sys.stdin.fileno(), control)
    store = JobStore(home_path(home))
    try:
        state = run_claimed_job(store, job_id, token, parse_gpus(gpus), attempt=attempt, resume=resume, control=control)
    finally:
        store.close()
    print(f"{job_id} -> {state}", flush=True)
