"""The bodies of `zlt submit | status | jobs | logs | cancel | workers` (declared in zlt/cli/jobs.py and
zlt/cli/workers.py). zlt.jobs loads the spec models (pydantic): this module loads on first use, never for
`zlt --help`. The worker and the job process are zlt/cli/impl/worker.py."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from zlt.cli.common import console, home_path, print_json
from zlt.db.connect import store_url
from zlt.jobs import api
from zlt.jobs.display import event_line, state_text, status_block, status_line, workers_table
from zlt.jobs.follow import follow_bytes, follow_events
from zlt.jobs.spawn import worker_running
from zlt.jobs.states import TERMINAL, JobStatus

if TYPE_CHECKING:
    from zlt.flows.gate import Admitted

TERMINAL_EXIT = {"succeeded": 0, "failed": 1, "cancelled": 1}


def _err(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def _now() -> str:
    return time.strftime("%H:%M:%S")


def _compact(st: dict) -> str:
    return json.dumps(st, ensure_ascii=False, default=str)


def submit(admitted: Admitted, *, priority: int | None, profile: str, skip_preflight: bool,
           ai_toolkit: Path | None, musubi: Path | None, vram_gb: float | None, no_worker: bool, home: Path | None,
           json_out: bool) -> None:
    """Queue a spec the gate admitted (zlt/cli/jobs.py runs the gate, which status, logs and jobs never load)."""
    for w in admitted.warnings:
        _err(f"warning: {w}")
    options = {"ai_toolkit": ai_toolkit, "musubi": musubi, "vram_gb": vram_gb}
    st = api.submit_job(home_path(home), admitted.loaded, priority=priority, profile=profile, listing=admitted.listing,
                        skip_preflight=skip_preflight, start_worker=not no_worker, options=options)
    if json_out:
        print_json(st)
        return
    print(st["job_id"])
    _err(f"queued {st['name']} ({st['backend']}, priority {st['priority']}); follow it: zlt status {st['job_id']} --watch")


def status(job_id: str, *, watch: bool, wait: bool, history: bool, poll: float, home: Path | None,
           json_out: bool) -> None:
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
    if store_url(home):
        return  # a shared store: the workers live on the GPU hosts, not behind this machine's lock

    if not worker_running(home):
        _err("note: no worker is running; start one with 'zlt worker' (zlt submit starts one by itself)")


def _queue_position(home: Path, st: dict) -> int | None:
    if st["state"] != "queued":
        return None
    with api.open_store(home) as store:
        return store.queue_position(store.get(st["job_id"]))


def jobs(*, state: str | None, limit: int, home: Path | None, json_out: bool) -> None:
    rows = api.list_jobs(home_path(home), state=state, limit=limit)
    if json_out:
        print_json(rows)
        return
    if not rows:
        _err("no jobs" + (f" in state {state}" if state else "") + "; submit one with 'zlt submit spec.yaml'")
        return
    from rich.table import Table

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


def logs(job_id: str, *, follow: bool, events: bool, home: Path | None, json_out: bool) -> None:
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


def cancel(job_id: str, *, wait: bool, home: Path | None, json_out: bool) -> None:
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


def workers(*, home: Path | None, json_out: bool) -> None:
    found = api.list_workers(home_path(home))
    if json_out:
        print_json(found)
    elif found:
        print(workers_table(found))
    else:
        _err("no live worker (start one with 'zlt worker'; 'zlt serve' keeps one running)")

