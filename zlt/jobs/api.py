"""The async job API the CLI, the HTTP API and the MCP server all call. Library functions return data."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zlt.jobs.spawn as spawn  # called through the module: tests replace spawn.ensure_worker
from zlt.core.errors import BadInputError
from zlt.core.events import read_events
from zlt.core.fsutil import atomic_write_json, atomic_write_text
from zlt.core.paths import job_dir, new_job_id
from zlt.dataset.listing import dataset_listing
from zlt.jobs.placement import why_waiting
from zlt.jobs.states import TERMINAL, IllegalTransition, JobStatus, parse_state
from zlt.jobs.store import JobStore, NewJob
from zlt.jobs.view import iso, status_dict
from zlt.preflight.select import planned_profile
from zlt.profiles import get_profile
from zlt.spec import dump_spec_yaml

if TYPE_CHECKING:
    from zlt.spec import LoadedSpec

OPTION_KEYS = {
    "ai_toolkit": "path of the ai-toolkit checkout",
    "musubi": "path of the musubi-tuner checkout",
    "vram_gb": "GPU memory to plan for, GB",
    "stop_grace_s": "seconds a stopping trainer gets to finish a save",
}


@contextmanager
def open_store(home: Path) -> Iterator[JobStore]:
    store = JobStore(Path(home))
    try:
        yield store
    finally:
        store.close()


def _check_options(options: dict[str, Any] | None) -> dict[str, Any]:
    options = {k: v for k, v in (options or {}).items() if v is not None}
    unknown = sorted(set(options) - set(OPTION_KEYS))
    if unknown:
        raise BadInputError(f"options: unknown key(s) {', '.join(unknown)}", hint=f"allowed: {', '.join(OPTION_KEYS)}")
    for key in ("vram_gb", "stop_grace_s"):
        if key in options:
            try:
                options[key] = float(options[key])
            except (TypeError, ValueError):
                raise BadInputError(f"options.{key}: {options[key]!r} is not a number") from None
            if options[key] < 0:
                raise BadInputError(f"options.{key}: must not be negative")
    for key in ("ai_toolkit", "musubi"):
        if key in options:
            options[key] = str(Path(str(options[key])).expanduser().resolve())
    return options


def _check_profile(profile: str) -> str:
    if profile != "auto":
        get_profile(profile)
    return profile


def check_priority(priority: int, field: str) -> None:
    """The queue priority bound every kind of job shares."""
    if not -100 <= priority <= 100:
        raise BadInputError(f"{field}: {priority} is out of range", hint="use -100..100 (higher runs first)")


def submit_job(
    home: Path, loaded: LoadedSpec, *, priority: int | None = None, profile: str = "auto",
    skip_preflight: bool = False, start_worker: bool = True, options: dict | None = None,
    prepare_dir: Callable[[Path, LoadedSpec], None] | None = None, listing: dict[str, Any] | None = None,
) -> dict:
    """Snapshot a spec that passed the gate (zlt/flows/gate.py: `--backend` applied, paths fenced) and its dataset
    listing (the gate's, else taken here) into a new job, queue it, and return its status.

    Nothing is queued when anything is wrong (BadInputError, exit 2). Starts a background worker
    unless one is running (or `start_worker=False`).
    """

    home = Path(home)
    spec = loaded.spec
    profile = _check_profile(planned_profile(spec, profile or "auto"))  # the tiny model's auto: cpu
    opts = _check_options(options)
    if skip_preflight:
        opts["skip_preflight"] = True
    if priority is None:
        priority = spec.job.priority
    check_priority(priority, "--priority")
    listing = listing if listing is not None else dataset_listing(Path(spec.dataset.path))
    spec_json = spec.model_dump_json()

    with open_store(home) as store:
        for _ in range(5):
            jid = new_job_id()
            jdir = job_dir(home, jid)
            try:
                jdir.mkdir(parents=True, exist_ok=False)
            except FileExistsError:
                continue
            atomic_write_text(jdir / "submitted" / "spec.yaml", dump_spec_yaml(spec))
            atomic_write_json(jdir / "submitted" / "dataset.json", listing)
            if prepare_dir is not None:  # files the job needs before any worker can claim it (zlt retrain)
                prepare_dir(jdir, loaded)
            new = NewJob(
                job_id=jid, name=spec.name, priority=priority, backend=spec.training.backend, profile=profile,
                spec_json=spec_json, job_dir=str(jdir), gpus_needed=spec.job.resources.gpu,
                max_retries=spec.job.retry.max_retries, options=opts,
                snapshot={"dataset": listing, "source": loaded.source, "warnings": loaded.warnings},
                min_vram_gb=spec.job.resources.min_vram_gb,
            )
            try:
                row = store.create(new)
            except sqlite3.IntegrityError:  # both dialects raise this class (zlt/db/dialect.py)
                continue  # id taken by a concurrent submit in the same second: draw another
            break
        else:
            raise BadInputError("could not allocate a job id", hint="try again")
        # On a shared (PostgreSQL) store the GPU hosts run the workers: none is started on the submitting machine.
        start_worker = start_worker and not store.db.pg
        result = status_dict(row) if start_worker else _status(store, row)  # a worker is about to start
    if start_worker:
        spawn.ensure_worker(home)
    return result


def _reap(store: JobStore) -> None:
    """Run the reaper; on the embedded store, make sure a worker will pick up what it requeued (on a shared
    PostgreSQL store the GPU hosts' workers do, not whichever machine asked for a status)."""
    requeued = [j for j, state in store.reap() if state == JobStatus.QUEUED]
    if requeued and not store.db.pg:
        spawn.ensure_worker(store.home)


def _status(store: JobStore, row: Any, workers: list[dict] | None = None, now: float | None = None) -> dict:
    """The status object, with why a queued job waits when no live worker can take it."""
    waiting = None
    if row["state"] == JobStatus.QUEUED.value:
        waiting = why_waiting(row, store.live_workers() if workers is None else workers, now)
    return status_dict(row, now, waiting)


def job_status(home: Path, job_id: str) -> dict:
    """The job's status object (exactly what `zlt status --json` prints). NotFoundError if unknown."""
    with open_store(home) as store:
        _reap(store)
        return _status(store, store.get(job_id))


def list_jobs(home: Path, *, state: str | None = None, limit: int = 50) -> list[dict]:
    """Newest first; `state` filters by one state name."""
    wanted = parse_state(state) if state else None
    if limit < 1:
        raise BadInputError(f"--limit {limit}: must be at least 1")
    with open_store(home) as store:
        _reap(store)
        now = time.time()
        rows = store.rows(wanted, limit)
        workers = store.live_workers() if any(r["state"] == JobStatus.QUEUED.value for r in rows) else []
        return [_status(store, r, workers, now) for r in rows]


def cancel_job(home: Path, job_id: str) -> dict:
    """Queued: cancelled at once. Preparing/running: the runner stops gracefully; the state follows."""
    with open_store(home) as store:
        _reap(store)
        return _status(store, store.request_cancel(job_id))


def retry_job(home: Path, job_id: str, *, start_worker: bool = True) -> dict:
    """Queue a failed or cancelled job again; it resumes from its latest checkpoint."""
    with open_store(home) as store:
        _reap(store)
        row = store.get(job_id)
        state = JobStatus(row["state"])
        if state not in (JobStatus.FAILED, JobStatus.CANCELLED):
            hint = {
                JobStatus.SUCCEEDED: "it already succeeded; submit the spec again for a new run",
            }.get(state, "only failed or cancelled jobs can be retried")
            raise IllegalTransition(row["id"], state, JobStatus.QUEUED, hint=hint)
        step = row["last_checkpoint_step"]
        frm = f"resuming from step {step}" if step else "no checkpoint yet: starting over"
        row = store.transition(row["id"], JobStatus.QUEUED, expect=frozenset({state}), resume=1, auto_retries=0,
                               infra_retries=0, not_before=None, refused_hosts="", message=f"retry requested ({frm})")
        # On a shared (PostgreSQL) store the GPU hosts run the workers: none is started on the submitting machine.
        start_worker = start_worker and not store.db.pg
        result = status_dict(row) if start_worker else _status(store, row)  # a worker is about to start
    if start_worker:
        spawn.ensure_worker(home)
    return result


def list_workers(home: Path) -> list[dict]:
    """Live workers (heartbeat within the lease time), on every host: GPUs and the jobs they run now."""
    with open_store(home) as store:
        workers = store.live_workers()
        active = store.db.execute(
            "SELECT id, name, state, gpus, worker_id FROM jobs WHERE state IN ('preparing', 'running')"
        ).fetchall()
    out = []
    for w in workers:
        slots = [int(x) for x in str(w["gpus"]).split(",") if x.strip()]
        info = {int(g["index"]): g for g in w["gpu_info"]}
        out.append({
            "worker_id": w["id"], "host": w["host"], "pid": w["pid"],
            "gpus": [{"index": s, "name": info.get(s, {}).get("name"), "vram_gb": info.get(s, {}).get("vram_gb")}
                     for s in slots],
            "started_at": iso(w["started_at"]), "heartbeat_at": iso(w["heartbeat_at"]),
            "jobs": [{"job_id": j["id"], "name": j["name"], "state": j["state"],
                      "gpus": [int(x) for x in (j["gpus"] or "").split(",") if x]}
                     for j in active if j["worker_id"] == w["id"]],
        })
    return out


def job_events(home: Path, job_id: str, after_seq: int = 0) -> list[dict]:
    """The job's event stream (events.jsonl) after `after_seq`."""

    with open_store(home) as store:
        row = store.get(job_id)
    return read_events(Path(row["job_dir"]) / "events.jsonl", after_seq)


def job_log_path(home: Path, job_id: str) -> Path:
    """The raw trainer log of the job (may not exist before the trainer starts)."""
    with open_store(home) as store:
        row = store.get(job_id)
    return Path(row["job_dir"]) / "train.log"


def job_history(home: Path, job_id: str) -> list[dict]:
    """Every state change (and note) of the job, oldest first."""
    with open_store(home) as store:
        row = store.get(job_id)
        return [{**h, "ts": iso(h["ts"])} for h in store.history(row["id"])]


def wait_job(
    home: Path, job_id: str, *, timeout_s: float | None = None, poll_s: float = 1.0,
    on_change: Callable[[dict], None] | None = None,
) -> dict:
    """Poll until the job reaches succeeded/failed/cancelled (or the timeout); returns the last status."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    last: dict | None = None
    with open_store(home) as store:
        while True:
            _reap(store)
            status = _status(store, store.get(job_id))
            # The ETA ticks down every poll; only report when something else moved.
            if on_change is not None and (last is None or _without_eta(status) != _without_eta(last)):
                on_change(status)
            last = status
            if JobStatus(status["state"]) in TERMINAL:
                return status
            if deadline is not None and time.monotonic() >= deadline:
                return status
            time.sleep(poll_s)


def _without_eta(status: dict) -> dict:
    return {k: v for k, v in status.items() if k != "eta_s"}
