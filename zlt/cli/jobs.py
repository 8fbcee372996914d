"""`zlt submit | status | jobs | logs | cancel | retry` (and `worker | workers`, zlt/cli/workers.py): training as an
asynchronous job.

Exit codes: 0 ok, 1 job failed (`status --wait/--watch` ending failed or cancelled, `worker --once`
when a job it ran failed), 2 bad input, 3 environment not ready.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from zlt.cli.common import (
    AiToolkitOpt,
    BackendOpt,
    HomeOpt,
    JsonOpt,
    MusubiOpt,
    ProfileOpt,
    SetOpt,
    SkipPreflightOpt,
    VramOpt,
    command,
    home_path,
    print_json,
)
from zlt.cli.workers import register as register_workers


def _jobs():
    """The commands' bodies (zlt/cli/impl/jobs.py)."""
    from zlt.cli.impl import jobs  # lazy: zlt.jobs pulls pydantic and the spec models, kept out of --help

    return jobs


INFERENCE_FLAGS = {"--generate": "generate", "--transfer": "transfer"}


def submit_inference_argv(argv: list[str]) -> list[str]:
    """`zlt submit --generate|--transfer ARTIFACT REST` is `zlt generate|transfer ARTIFACT REST --submit`: one set of
    options and checks for both spellings. Rewritten before click parses, because REST holds the other command's
    options; any other argv is returned unchanged."""
    if not argv or argv[0] != "submit":
        return argv
    rest = argv[1:]
    for i, arg in enumerate(rest):
        flag, _, value = arg.partition("=")
        if flag in INFERENCE_FLAGS:
            if value:
                artifact, tail = value, rest[:i] + rest[i + 1:]
            elif i + 1 < len(rest):
                artifact, tail = rest[i + 1], rest[:i] + rest[i + 2:]
            else:
                return argv  # click reports the missing value
            return [INFERENCE_FLAGS[flag], artifact, *tail, "--submit"]
    return argv


def submit(
    spec: Path = typer.Argument(..., help="The job spec (.yaml or .json)."),
    priority: int = typer.Option(None, "--priority", help="Queue priority -100..100, higher first (default: job.priority)."),
    set_: list[str] = SetOpt,
    backend: str = BackendOpt,
    profile: str = ProfileOpt,
    skip_preflight: bool = SkipPreflightOpt,
    ai_toolkit: Path = AiToolkitOpt,
    musubi: Path = MusubiOpt,
    vram_gb: float = VramOpt,
    no_worker: bool = typer.Option(False, "--no-worker", help="Only queue; do not start a background worker."),
    home: Path = HomeOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Validate a spec, queue it as a job and print the job id at once. `zlt submit --generate ARTIFACT ...` and
    `zlt submit --transfer ARTIFACT ...` queue a generation or style transfer instead (zlt generate/transfer's
    options, as with their --submit)."""
    from zlt.flows.gate import admit  # lazy: pulls pydantic (the spec models), kept out of `zlt --help`

    admitted = admit(spec, sets=set_ or [], backend=backend, mode="submit")
    _jobs().submit(admitted, priority=priority, profile=profile, skip_preflight=skip_preflight, ai_toolkit=ai_toolkit,
                   musubi=musubi, vram_gb=vram_gb, no_worker=no_worker, home=home, json_out=json_out)


def status(
    job_id: str = typer.Argument(..., help="Job id (or a unique prefix)."),
    watch: bool = typer.Option(False, "--watch", "-w", help="Follow the job until it ends (one line per change)."),
    wait: bool = typer.Option(False, "--wait", help="Wait silently until the job ends, then print its status."),
    history: bool = typer.Option(False, "--history", help="Also list every state change."),
    poll: float = typer.Option(1.0, "--poll", help="Seconds between checks with --watch/--wait.", min=0.05),
    home: Path = HomeOpt,
    json_out: bool = JsonOpt,
) -> None:
    """State, phase, progress, loss, ETA, checkpoint, artifact or error of a job.

    Exit 0 when the command worked, whatever the job's state; with --watch/--wait the exit code is
    the job's result: 0 succeeded, 1 failed or cancelled.
    """
    _jobs().status(job_id, watch=watch, wait=wait, history=history, poll=poll, home=home, json_out=json_out)


def jobs(
    state: str = typer.Option(None, "--state", help="Only jobs in this state (queued, preparing, running, ...)."),
    limit: int = typer.Option(50, "--limit", help="At most this many, newest first."),
    home: Path = HomeOpt,
    json_out: bool = JsonOpt,
) -> None:
    """List jobs, newest first."""
    _jobs().jobs(state=state, limit=limit, home=home, json_out=json_out)


def logs(
    job_id: str = typer.Argument(..., help="Job id (or a unique prefix)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing until the job ends."),
    events: bool = typer.Option(False, "--events", help="The typed event stream instead of the raw trainer log."),
    home: Path = HomeOpt,
    json_out: bool = JsonOpt,
) -> None:
    """The raw trainer log (train.log) or, with --events, the event stream (NDJSON with --json)."""
    _jobs().logs(job_id, follow=follow, events=events, home=home, json_out=json_out)


def cancel(
    job_id: str = typer.Argument(..., help="Job id (or a unique prefix)."),
    wait: bool = typer.Option(False, "--wait", help="Wait until the job has actually stopped."),
    home: Path = HomeOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Cancel a job: a queued one leaves the queue; a running one stops gracefully (a save in progress finishes)."""
    _jobs().cancel(job_id, wait=wait, home=home, json_out=json_out)


def retry(
    job_id: str = typer.Argument(..., help="Job id (or a unique prefix) of a failed or cancelled job."),
    no_worker: bool = typer.Option(False, "--no-worker", help="Only queue; do not start a background worker."),
    home: Path = HomeOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Run a failed or cancelled job again, resuming from its latest checkpoint."""
    from zlt.flows.retry import retry as retry_job  # lazy: the gate pulls pydantic, the job kinds numpy

    st = retry_job(home_path(home), job_id, start_worker=not no_worker)
    if json_out:
        print_json(st)
    else:
        print(st["job_id"])
        sys.stderr.write(f"requeued {st['name']} (attempt {st['attempts'] + 1}); "
                         f"follow it: zlt status {st['job_id']} --watch\n")
        sys.stderr.flush()


def register(app: typer.Typer) -> None:
    app.command("submit")(command(submit))
    app.command("status")(command(status))
    app.command("jobs")(command(jobs))
    app.command("logs")(command(logs))
    app.command("cancel")(command(cancel))
    app.command("retry")(command(retry))
    register_workers(app)
