"""`zlt worker | workers` and the internal `zlt _job-run`: the processes that run queued jobs.

Exit codes: 0 ok, 1 a job `worker --once` ran failed, 2 bad input, 3 environment not ready.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from zlt.cli.common import HomeOpt, JsonOpt, command, home_path, print_json


def _err(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def worker(
    gpus: str = typer.Option(None, "--gpus", help="GPU ids to run jobs on, e.g. 0,1 (default: all; no NVIDIA GPU: one slot)."),
    once: bool = typer.Option(False, "--once", help="Run queued jobs until none is left, then exit."),
    background: bool = typer.Option(False, "--background", hidden=True, help="Started by submit: single, exits when idle."),
    idle_exit: float = typer.Option(None, "--idle-exit", hidden=True, help="Exit after this many idle seconds."),
    poll: float = typer.Option(1.0, "--poll", hidden=True, help="Seconds between queue checks.", min=0.05),
    home: Path = HomeOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Run queued jobs: one job per GPU at a time, highest priority then oldest first."""
    from zlt.flows.worker import local_worker
    from zlt.jobs.spawn import hold_worker_presence, try_hold_auto_worker
    from zlt.jobs.store import JobStore
    from zlt.jobs.worker import WorkerOptions, check_slots, default_slots, parse_gpu_list

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


def workers(home: Path = HomeOpt, json_out: bool = JsonOpt) -> None:
    """List live workers on every host sharing this store: GPUs (name, memory) and the jobs they run."""
    from zlt.jobs.api import list_workers
    from zlt.jobs.display import workers_table

    found = list_workers(home_path(home))
    if json_out:
        print_json(found)
    elif found:
        print(workers_table(found))
    else:
        _err("no live worker (start one with 'zlt worker'; 'zlt serve' keeps one running)")


def job_run(
    job_id: str = typer.Argument(...),
    token: str = typer.Option(..., "--token"),
    attempt: int = typer.Option(1, "--attempt"),
    gpus: str = typer.Option("", "--gpus"),
    resume: bool = typer.Option(False, "--resume"),
    home: Path = HomeOpt,
) -> None:
    """Internal: run one claimed job (started by the worker, tied to it by stdin)."""
    import signal

    from zlt.flows.job_process import run_claimed_job
    from zlt.jobs.lease import SHUTDOWN, StopControl, watch_parent
    from zlt.jobs.records import parse_gpus
    from zlt.jobs.store import JobStore

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


def register(app: typer.Typer) -> None:
    app.command("worker")(command(worker))
    app.command("workers")(command(workers))
    app.command("_job-run", hidden=True)(command(job_run))
