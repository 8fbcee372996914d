"""The job store: every change of a job is one transaction, checked against the transition table.

The same code runs on SQLite and on PostgreSQL (zlt/jobs/db.py, zlt/db/dialect.py).

Runs are guarded by a lease: a claim hands the runner a `lease_token`; heartbeats, progress writes and
the final transition only apply while the token still matches, so a runner that lost its job (reaped
while the machine slept) can never overwrite what happened after. `clock` is injectable for tests.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from zlt.core.causes import Cause
from zlt.core.errors import NotFoundError
from zlt.core.kinds import JobKind
from zlt.db.dialect import Database, Row
from zlt.jobs.claims import Claims
from zlt.jobs.db import connect
from zlt.jobs.presence import WorkerPresence
from zlt.jobs.reaper import reap
from zlt.jobs.records import Beat, LeaseLost, NewJob
from zlt.jobs.states import ACTIVE, TERMINAL, IllegalTransition, JobStatus, can_transition

__all__ = ["HOST", "JobStore", "LeaseLost", "NewJob"]

DEFAULT_LEASE_TTL_S = 30.0
# The host a lease names. ZLT_HOST_ID overrides the host name (two containers sharing one, or tests that
# play several hosts on one machine); it must differ between machines that share a store.
HOST = os.environ.get("ZLT_HOST_ID") or socket.gethostname()

# Columns a caller's transition may set besides state (never built from user input, but kept explicit anyway).
_SETTABLE = frozenset({
    "phase", "progress_json", "last_checkpoint", "last_checkpoint_step", "artifact_id", "artifact_path",
    "error_cause", "error_message", "profile", "resume", "auto_retries", "cancel_requested", "stop_reason",
    "gpus", "attempts", "infra_retries", "not_before", "refused_hosts",
})


class JobStore(Claims, WorkerPresence):
    def __init__(
        self, home: Path, *, clock: Callable[[], float] = time.time, lease_ttl: float = DEFAULT_LEASE_TTL_S,
        host: str = HOST, pid_alive: Callable[[int, float | None], bool] | None = None,
    ) -> None:
        self.home = Path(home)
        self.clock = clock
        self.lease_ttl = lease_ttl
        self.host = host
        self.pid_alive = pid_alive  # None: zlt.jobs.orphans.process_alive (tests inject a fake)
        self._lock = threading.RLock()
        self.db = connect(self.home)

    def close(self) -> None:
        with self._lock:
            self.db.close()

    @contextmanager
    def tx(self) -> Iterator[Database]:
        """One write transaction; BEGIN IMMEDIATE takes the write lock up front so reads inside are current."""
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.rollback_quietly()
                raise
            self.db.execute("COMMIT")

    def _history(self, db: Database, job_id: str, from_state: str | None, to_state: str, message: str) -> None:
        db.execute(
            "INSERT INTO job_events (job_id, ts, from_state, to_state, message) VALUES (?, ?, ?, ?, ?)",
            (job_id, self.clock(), from_state, to_state, message),
        )

    # ---- reads -------------------------------------------------------------------------------------------

    def get(self, job_id: str) -> Row:
        """A job by id, or by a unique prefix of its id."""
        with self._lock:
            row = self.db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None and job_id:
                rows = self._by_prefix(job_id)
                row = rows[0] if len(rows) == 1 else None
                if len(rows) > 1:
                    raise NotFoundError(f"job {job_id!r} is ambiguous", hint="give more characters of the job id")
        if row is None:
            raise NotFoundError(f"no job {job_id!r} in {self.home}", hint="list jobs with 'zlt jobs'")
        return row

    def find(self, job_id: str) -> Row | None:
        """A job by its exact id, or None (no prefix match: a removed job's id must not name another)."""
        with self._lock:
            return self.db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()

    def _by_prefix(self, prefix: str) -> list[Row]:
        if self.db.pg:  # LIKE, not a range: a server's collation need not sort like the bytes of the ids
            pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            return self.db.execute("SELECT * FROM jobs WHERE id LIKE ? LIMIT 2", (pattern,)).fetchall()
        # A range scan on the primary key: ids starting with the prefix.
        return self.db.execute(
            "SELECT * FROM jobs WHERE id >= ? AND id < ? LIMIT 2", (prefix, prefix + "\U0010ffff")
        ).fetchall()

    def rows(self, state: JobStatus | None = None, limit: int = 50) -> list[Row]:
        with self._lock:
            if state is None:
                return self.db.execute(
                    "SELECT * FROM jobs ORDER BY created_at DESC, id DESC LIMIT ?", (limit,)
                ).fetchall()
            return self.db.execute(
                "SELECT * FROM jobs WHERE state = ? ORDER BY created_at DESC, id DESC LIMIT ?", (state.value, limit)
            ).fetchall()

    def history(self, job_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self.db.execute(
                "SELECT ts, from_state, to_state, message FROM job_events WHERE job_id = ? ORDER BY id", (job_id,)
            ).fetchall()
        return [dict(r) for r in rows]

    def backing_off(self, grace_s: float = 60.0) -> int:
        """Queued jobs waiting out a backoff after an infrastructure fault, or out of it for less than
        `grace_s` and not claimed yet (a claim clears `not_before`)."""
        with self._lock:
            (n,) = self.db.execute("SELECT COUNT(*) FROM jobs WHERE state = 'queued' AND not_before > ?",
                                   (self.clock() - grace_s,)).fetchone()
        return int(n)

    def queue_position(self, row: Row) -> int:
        """1-based place of a queued job in the claim order."""
        with self._lock:
            (ahead,) = self.db.execute(
                "SELECT COUNT(*) FROM jobs WHERE state = 'queued' AND (priority > ? OR (priority = ? AND "
                "(created_at < ? OR (created_at = ? AND id < ?))))",
                (row["priority"], row["priority"], row["created_at"], row["created_at"], row["id"]),
            ).fetchone()
        return int(ahead) + 1

    # ---- writes ------------------------------------------------------------------------------------------

    def create(self, new: NewJob, *, kind: JobKind | str | None = None) -> Row:
        """Queue a new job; `kind` (else `new.kind`, train by default) says what a worker does with it."""
        if kind is not None:
            new.kind = JobKind(kind)
        with self.tx() as db:
            self._insert(db, new, self.clock(), f"submitted (priority {new.priority})")
        return self.get(new.job_id)

    def _insert(self, db: Database, new: NewJob, now: float, message: str) -> None:
        """The one INSERT of a job: queued, with its history's first line."""
        db.execute(
            "INSERT INTO jobs (id, name, state, priority, created_at, updated_at, kind, backend, profile, spec_json, "
            "request_json, options_json, job_dir, gpus_needed, max_retries, snapshot_json, min_vram_gb) "
            "VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (new.job_id, new.name, new.priority, now, now, JobKind(new.kind).value, new.backend, new.profile,
             new.spec_json, None if new.request is None else json.dumps(new.request), json.dumps(new.options),
             new.job_dir, new.gpus_needed, new.max_retries, json.dumps(new.snapshot), new.min_vram_gb),
        )
        self._history(db, new.job_id, None, JobStatus.QUEUED.value, message)

    def transition(
        self, job_id: str, to_state: JobStatus, *, message: str = "", token: str | None = None,
        expect: frozenset[JobStatus] | None = None, **fields: Any,
    ) -> Row:
        """Move a job to `to_state` in one transaction, or raise IllegalTransition / LeaseLost."""
        bad = set(fields) - _SETTABLE
        if bad:
            raise ValueError(f"transition cannot set {sorted(bad)}")
        with self.tx() as db:
            # read under the write lock, so times order like the transitions themselves
            self._move(db, job_id, to_state, now=self.clock(), message=message, token=token, expect=expect, **fields)
        return self.get(job_id)

    def _move(
        self, db: Database, job_id: str, to_state: JobStatus, *, now: float, message: str,
        token: str | None = None, expect: frozenset[JobStatus] | None = None, **fields: Any,
    ) -> None:
        """The one checked change of state, inside the caller's transaction: the lease, `expect` and the
        transition table (zlt/jobs/states.py) are checked, the row updated and the history written. `fields`
        win over what the new state resets."""
        row = db.execute(f"SELECT state, lease_token FROM jobs WHERE id = ?{db.for_update}", (job_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no job {job_id!r} in {self.home}", hint="list jobs with 'zlt jobs'")
        current = JobStatus(row["state"])
        if token is not None and row["lease_token"] != token:
            raise LeaseLost(f"job {job_id}: lease lost (now {current.value})")
        if expect is not None and current not in expect:
            raise IllegalTransition(job_id, current, to_state)
        if not can_transition(current, to_state):
            raise IllegalTransition(job_id, current, to_state)
        sets: dict[str, Any] = {"state": to_state.value, "updated_at": now}
        if to_state in TERMINAL:
            sets.update(ended_at=now, lease_expires=None, lease_token=None)
        elif to_state == JobStatus.QUEUED:
            # A queued job belongs to no one; started/ended describe the attempt that will come.
            sets.update(started_at=None, ended_at=None, lease_expires=None, lease_token=None, worker_id=None,
                        runner_pid=None, runner_started=None, cancel_requested=0)
        sets.update(fields)
        cols = ", ".join(f"{k} = ?" for k in sets)
        db.execute(f"UPDATE jobs SET {cols} WHERE id = ?", (*sets.values(), job_id))
        self._history(db, job_id, current.value, to_state.value, message)

    def note(self, job_id: str, message: str) -> None:
        """A line in the job's history that is not a change of state (resume checks, dataset drift)."""
        with self.tx() as db:
            row = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is not None:
                self._history(db, job_id, row["state"], row["state"], message)

    # ---- the artifact a job left: the registry names jobs by id only, the flows layer links the two ---------

    def record_artifact(self, job_id: str, artifact_id: str, artifact_path: str) -> bool:
        """Point a job at an artifact collected from it outside its run (`zlt artifacts collect`, `reindex`).
        Not a change of state: no history line. False when the job is not in the store (an exact id only)."""
        with self.tx() as db:
            cur = db.execute("UPDATE jobs SET artifact_id = ?, artifact_path = ? WHERE id = ?",
                             (artifact_id, artifact_path, job_id))
        return cur.rowcount == 1

    def forget_artifact(self, artifact_id: str) -> int:
        """A deleted artifact: every job that pointed at it points at nothing. Returns how many did."""
        with self.tx() as db:
            cur = db.execute("UPDATE jobs SET artifact_id = NULL, artifact_path = NULL WHERE artifact_id = ?",
                             (artifact_id,))
        return cur.rowcount

    def set_runner(self, job_id: str, token: str, pid: int, started: float | None) -> bool:
        """The process that runs the job records itself, so the reaper can tell when it is gone."""
        with self.tx() as db:
            cur = db.execute(
                "UPDATE jobs SET runner_pid = ?, runner_started = ?, lease_expires = ? WHERE id = ? AND lease_token = ?",
                (pid, started, self.clock() + self.lease_ttl, job_id, token),
            )
        return cur.rowcount == 1

    def heartbeat(self, job_id: str, token: str) -> Beat:
        with self.tx() as db:
            cur = db.execute(
                "UPDATE jobs SET lease_expires = ? WHERE id = ? AND lease_token = ?",
                (self.clock() + self.lease_ttl, job_id, token),
            )
            row = db.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return Beat(alive=cur.rowcount == 1, cancel_requested=bool(row and row["cancel_requested"]))

    def cancel_requested(self, job_id: str) -> bool:
        with self._lock:
            row = self.db.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return bool(row and row["cancel_requested"])

    def update_progress(
        self, job_id: str, token: str, *, phase: str | None = None, progress: dict[str, Any] | None = None,
        checkpoint: tuple[str, int | None] | None = None, profile: str | None = None,
    ) -> bool:
        sets: dict[str, Any] = {"updated_at": self.clock()}
        if phase is not None:
            sets["phase"] = phase
        if profile is not None:
            sets["profile"] = profile  # resolved by the runner: status shows the real one (and no GPU for cpu)
        if progress is not None:
            sets["progress_json"] = json.dumps(progress)
        if checkpoint is not None:
            sets["last_checkpoint"] = checkpoint[0]
            if checkpoint[1] is not None:
                sets["last_checkpoint_step"] = checkpoint[1]
        cols = ", ".join(f"{k} = ?" for k in sets)
        with self.tx() as db:
            cur = db.execute(f"UPDATE jobs SET {cols} WHERE id = ? AND lease_token = ?", (*sets.values(), job_id, token))
        return cur.rowcount == 1

    def request_cancel(self, job_id: str) -> Row:
        """Queued: cancelled now. Preparing/running: flag it; the runner stops gracefully."""
        row = self.get(job_id)
        state = JobStatus(row["state"])
        if state == JobStatus.QUEUED:
            try:
                return self.transition(row["id"], JobStatus.CANCELLED, message="cancelled while queued",
                                       expect=frozenset({JobStatus.QUEUED}), error_cause="cancelled",
                                       error_message="cancelled while queued")
            except IllegalTransition:
                return self.request_cancel(job_id)  # claimed meanwhile: flag it instead
        if state in ACTIVE:
            with self.tx() as db:
                cur = db.execute(
                    "UPDATE jobs SET cancel_requested = 1, updated_at = ? WHERE id = ? AND state IN ('preparing', 'running')",
                    (self.clock(), row["id"]),
                )
                if cur.rowcount:
                    self._history(db, row["id"], state.value, state.value, "cancel requested")
            return self.get(job_id)
        if state == JobStatus.CANCELLED:
            return row
        raise IllegalTransition(row["id"], state, JobStatus.CANCELLED, hint="the job has already finished")

    # ---- reaping (zlt/jobs/reaper.py) -------------------------------------------------------------------

    def reap(self) -> list[tuple[str, JobStatus]]:
        """End or requeue every active job whose runner is gone. Returns (job_id, new state)."""
        return reap(self)

    def refuse(self, job_id: str, token: str, why: str) -> Row:
        """This host cannot run the claimed job (its dataset or model is not visible here): back to the queue
        for another host, without counting an attempt or a retry. Returns the job."""
        with self.tx() as db:
            row = db.execute(f"SELECT lease_token, attempts, refused_hosts, cancel_requested FROM jobs "
                             f"WHERE id = ?{db.for_update}", (job_id,)).fetchone()
            if row is None or row["lease_token"] != token:
                raise LeaseLost(f"job {job_id}: lease lost")
            hosts = [h for h in (row["refused_hosts"] or "").split("\n") if h]
            if self.host not in hosts:
                hosts.append(self.host)
            # A refusal is not an end: the job keeps a pending cancel and no end time.
            self._move(db, job_id, JobStatus.QUEUED, now=self.clock(), token=token,
                       message=f"refused by {self.host}: {why}", gpus=None, attempts=max(0, row["attempts"] - 1),
                       refused_hosts="\n".join(hosts), error_cause=Cause.NOT_VISIBLE.value, error_message=why,
                       cancel_requested=row["cancel_requested"])
        return self.get(job_id)
