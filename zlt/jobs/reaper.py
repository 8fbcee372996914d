"""The reaper: nothing stays `running` forever.

Run by every worker loop and by `zlt status`/`zlt jobs`. An active job whose runner is gone (worker
SIGKILLed, OOM killer, machine rebooted, lease lost) is cancelled if a cancel was pending, else requeued
to resume: an infrastructure fault, which does not use `job.retry.max_retries` (zlt/jobs/faults.py).
On another host only the lease counts: a pid means nothing there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zlt.jobs.faults import requeue_after_fault
from zlt.jobs.orphans import kill_orphans, process_alive
from zlt.jobs.records import LeaseLost
from zlt.jobs.states import IllegalTransition, JobStatus

if TYPE_CHECKING:
    from zlt.db.dialect import Row
    from zlt.jobs.store import JobStore


def is_abandoned(store: JobStore, row: Row, now: float) -> str | None:
    """Why an active job has no live runner, or None. On this host a live runner process is proof of life
    (even with a stale lease, e.g. after a suspend); elsewhere only the lease counts."""
    pid = row["runner_pid"]
    if row["host"] == store.host and pid:
        alive = store.pid_alive or process_alive
        if alive(pid, row["runner_started"]):
            return None
        return f"runner process {pid} is gone"
    expires = row["lease_expires"]
    if expires is None or expires < now:
        return f"lease expired {now - (expires or now):.0f}s ago (worker {row['worker_id']} stopped heartbeating)"
    return None


def end_abandoned(store: JobStore, row: Row, why: str) -> Row:
    """A job lost its runner: cancelled if a cancel was pending, else requeued (an infrastructure fault).

    On this host, trainer processes the dead runner left behind are ended first, so the job's GPUs are
    really free when the job lets go of them.
    """
    token = row["lease_token"]
    if row["host"] == store.host:
        killed = kill_orphans(row["job_dir"])
        if killed:
            why += f"; ended leftover trainer process(es) {', '.join(map(str, killed))}"
    if row["cancel_requested"]:
        return store.transition(row["id"], JobStatus.CANCELLED, token=token, message=f"abandoned while cancelling: {why}",
                                error_cause="cancelled", error_message="cancelled (runner gone)")
    return requeue_after_fault(store, row, token, why)


def reap(store: JobStore) -> list[tuple[str, JobStatus]]:
    """End or requeue every active job whose runner is gone. Returns (job_id, new state)."""
    now = store.clock()
    with store._lock:
        rows = store.db.execute("SELECT * FROM jobs WHERE state IN ('preparing', 'running')").fetchall()
    done = []
    for row in rows:
        why = is_abandoned(store, row, now)
        if why is None:
            continue
        try:
            new = end_abandoned(store, row, why)
        except (IllegalTransition, LeaseLost):
            continue  # it moved on between our read and the write
        done.append((row["id"], JobStatus(new["state"])))
    return done
