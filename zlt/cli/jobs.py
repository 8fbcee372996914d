"""`zlt submit | status | jobs | logs | cancel | retry` (and `worker | workers`, zlt/cli/workers.py): training as an
asynchronous job.

Exit codes: 0 ok, 1 job failed (`status --wait/--watch` ending failed or cancelled, `worker --once`
when a job it ran failed), 2 bad input, 3 environment not ready.
"""

from __future__ import annotations

import sys
import time
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

TERMINAL_EXIT = {"succeeded": 0, "failed": 1, "cancelled": 1}


def _err(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def _now() -> str:
    return time.strftime("%H:%M:%S")


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
    from zlt.jobs.api import submit_job

    admitted = admit(spec, sets=set_ or [], backend=backend, mode="submit")
    for w in admitted.warnings:
        _err(f"warning: {w}")
    options = {"ai_toolkit": ai_toolkit, "musubi": musubi, "vram_gb": vram_gb}
    st = submit_job(home_path(home), admitted.loaded, priority=priority, profile=profile, listing=admitted.listing,
                    skip_preflight=skip_preflight, start_worker=not no_worker, options=options)
    if json_out:
        print_json(st)
        return
    print(st["job_id"])
    _err(f"queued {st['name']} ({st['backend']}, priority {st['priority']}); follow it: zlt status {st['job_id']} --watch")


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
    from zlt.jobs import api
    from zlt.jobs.display import status_block, status_line

    h = home_path(home)
    if watch or wait:
        _warn_if_no_worker(h, api.job_status(h, job_id))

        def show(st: dict) -> None:
            if not watch:
                return
            if json_out:
                sys.stdout.write(_compact(st) + "\n")  # NDJSON: one status object per change
                sys.stdout.flush()
            else:
                print(status_line(st, _now()), flush=True)

        st = api.wait_job(h, job_id, poll_s=poll, on_change=show)
        if wait and json_out:
            print_json(st)
        elif wait:
            print(status_block(st))
        raise typer.Exit(TERMINAL_EXIT.get(st["state"], 0))
    st = api.job_status(h, job_id)
    if json_out:
        out = dict(st)
        if history:
            out["history"] = api.job_history(h, st["job_id"])
        print_json(out)
        return
    pos = _queue_position(h, st)
    print(status_block(st, queue_position=pos, history=api.job_history(h, st["job_id"]) if history else None))
    _warn_if_no_worker(h, st)


def _warn_if_no_worker(home: Path, st: dict) -> None:
    # The status's `waiting` line says it from the store, for workers on every host; this local lock
    # check only adds something when the status has no such line.
    if st["state"] != "queued" or st.get("waiting"):
        return
    from zlt.db.connect import store_url
    from zlt.jobs.spawn import worker_running

    if store_url(home):
        return  # a shared store: the workers live on the GPU hosts, not behind this machine's lock

    if not worker_running(home):
        _err("note: no worker is running; start one with 'zlt worker' (zlt submit starts one by itself)")


def _compact(st: dict) -> str:
    import json

    return json.dumps(st, ensure_ascii=False, default=str)


def _queue_position(home: Path, st: dict) -> int | None:
    if st["state"] != "queued":
        return None
    from zlt.jobs.api import open_store

    with open_store(home) as store:
        return store.queue_position(store.get(st["job_id"]))


def jobs(
    state: str = typer.Option(None, "--state", help="Only jobs in this state (queued, preparing, running, ...)."),
    limit: int = typer.Option(50, "--limit", help="At most this many, newest first."),
    home: Path = HomeOpt,
    json_out: bool = JsonOpt,
) -> None:
    """List jobs, newest first."""
    from zlt.jobs.api import list_jobs

    rows = list_jobs(home_path(home), state=state, limit=limit)
    if json_out:
        print_json(rows)
        return
    if not rows:
        _err("no jobs" + (f" in state {state}" if state else "") + "; submit one with 'zlt submit spec.yaml'")
        return
    from rich.table import Table

    from zlt.cli.common import console
    from zlt.jobs.display import state_text

    table = Table(box=None, header_style="bold")
    for col in ("JOB", "NAME", "STATE", "STEP", "LOSS", "BACKEND", "PRIO", "TRIES", "CREATED (UTC)"):
        table.add_column(col, no_wrap=True, overflow="ellipsis")
    for st in rows:
        step = ""
        if st["step"] is not None:
            step = f"{st['step']}/{st['total'] or '?'}" + (f" {st['percent']:.0f}%" if st["percent"] is not None else "")
        loss = f"{st['loss']:.4g}" if isinstance(st["loss"], (int, float)) else ""
        created = (st["created_at"] or "")[5:19].replace("T", " ")
        table.add_row(st["job_id"], st["name"], state_text(st), step, loss, st["backend"], str(st["priority"]),
                      str(st["attempts"]), created)
    # Piped output is not wrapped to 80 columns: one job per line stays greppable.
    out = console() if sys.stdout.isatty() else _wide_console()
    out.print(table)


def _wide_console():
    from rich.console import Console

    return Console(width=200, no_color=True)


def logs(
    job_id: str = typer.Argument(..., help="Job id (or a unique prefix)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing until the job ends."),
    events: bool = typer.Option(False, "--events", help="The typed event stream instead of the raw trainer log."),
    home: Path = HomeOpt,
    json_out: bool = JsonOpt,
) -> None:
    """The raw trainer log (train.log) or, with --events, the event stream (NDJSON with --json)."""
    from zlt.jobs import api
    from zlt.jobs.display import event_line
    from zlt.jobs.follow import follow_bytes, follow_events
    from zlt.jobs.states import TERMINAL, JobStatus

    h = home_path(home)
    st = api.job_status(h, job_id)
    jid = st["job_id"]
    jdir = Path(st["job_dir"])

    def ended() -> bool:
        return JobStatus(api.job_status(h, jid)["state"]) in TERMINAL

    done = ended if follow else (lambda: True)
    if events:
        for ev in follow_events(jdir / "events.jsonl", done):
            sys.stdout.write((_compact(ev) if json_out else event_line(ev)) + "\n")
            sys.stdout.flush()
        return
    path = jdir / "train.log"
    if json_out and not follow:
        text = path.read_bytes().decode("utf-8", "replace") if path.exists() else ""
        print_json({"job_id": jid, "path": str(path), "text": text})
        return
    if not path.exists() and not follow:
        if JobStatus(st["state"]) in TERMINAL:
            why = f": {st['error_message']}" if st.get("error_message") else ""
            _err(f"no trainer log for {jid}: the job {st['state']} before the trainer started{why}\n"
                 f"see what happened: zlt logs {jid} --events")
        else:
            _err(f"no trainer log yet for {jid} (state {st['state']}); it appears when the trainer starts")
        return
    for chunk in follow_bytes(path, done):
        if json_out:
            sys.stdout.write(_compact({"job_id": jid, "text": chunk.decode("utf-8", "replace")}) + "\n")
        else:
            sys.stdout.buffer.write(chunk)
        sys.stdout.flush()


def cancel(
    job_id: str = typer.Argument(..., help="Job id (or a unique prefix)."),
    wait: bool = typer.Option(False, "--wait", help="Wait until the job has actually stopped."),
    home: Path = HomeOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Cancel a job: a queued one leaves the queue; a running one stops gracefully (a save in progress finishes)."""
    from zlt.jobs import api
    from zlt.jobs.display import status_line

    h = home_path(home)
    st = api.cancel_job(h, job_id)
    if wait and st["state"] not in TERMINAL_EXIT:
        st = api.wait_job(h, st["job_id"], poll_s=0.5)
    if json_out:
        print_json(st)
    else:
        print(status_line(st, _now()))
        if st["state"] not in TERMINAL_EXIT:
            _err("cancel requested; the trainer is stopping (zlt status --watch follows it)")


def retry(
    job_id: str = typer.Argument(..., help="Job id (or a unique prefix) of a failed or cancelled job."),
    no_worker: bool = typer.Option(False, "--no-worker", help="Only queue; do not start a background worker."),
    home: Path = HomeOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Run a failed or cancelled job again, resuming from its latest checkpoint."""
    from zlt.flows.retry import retry as retry_job  # lazy: the gate pulls pydantic

    st = retry_job(home_path(home), job_id, start_worker=not no_worker)
    if json_out:
        print_json(st)
    else:
        print(st["job_id"])
        _err(f"requeued {st['name']} (attempt {st['attempts'] + 1}); follow it: zlt status {st['job_id']} --watch")


def register(app: typer.Typer) -> None:
    app.command("submit")(command(submit))
    app.command("status")(command(status))
    app.command("jobs")(command(jobs))
    app.command("logs")(command(logs))
    app.command("cancel")(command(cancel))
    app.command("retry")(command(retry))
    register_workers(app)
