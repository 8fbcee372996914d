"""`zlt worker | workers` and the internal `zlt _job-run`: the processes that run queued jobs.

Exit codes: 0 ok, 1 a job `worker --once` ran failed, 2 bad input, 3 environment not ready.
"""

from __future__ import annotations

from pathlib import Path

import typer

from zlt.cli.common import HomeOpt, JsonOpt, command


def _worker():
    """The worker's and the job process's bodies (zlt/cli/impl/worker.py)."""
    from zlt.cli.impl import worker  # lazy: the job kinds and the training flow pull pydantic and numpy

    return worker


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
    _worker().worker(gpus=gpus, once=once, background=background, idle_exit=idle_exit, poll=poll, home=home,
                     json_out=json_out)


def workers(home: Path = HomeOpt, json_out: bool = JsonOpt) -> None:
    """List live workers on every host sharing this store: GPUs (name, memory) and the jobs they run."""
    from zlt.cli.impl import jobs  # lazy: zlt.jobs pulls pydantic and the spec models, kept out of --help

    jobs.workers(home=home, json_out=json_out)


def job_run(
    job_id: str = typer.Argument(...),
    token: str = typer.Option(..., "--token"),
    attempt: int = typer.Option(1, "--attempt"),
    gpus: str = typer.Option("", "--gpus"),
    resume: bool = typer.Option(False, "--resume"),
    home: Path = HomeOpt,
) -> None:
    """Internal: run one claimed job (started by the worker, tied to it by stdin)."""
    _worker().job_run(job_id, token=token, attempt=attempt, gpus=gpus, resume=resume, home=home)


def register(app: typer.Typer) -> None:
    app.command("worker")(command(worker))
    app.command("workers")(command(workers))
    app.command("_job-run", hidden=True)(command(job_run))
