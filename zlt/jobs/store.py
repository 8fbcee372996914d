"""The job store: every change of a job is one transaction, checked against the transition table.

The same code runs on SQLite and on PostgreSQL (zlt/jobs/db.py, zlt/jobs/dialect.py).

Runs are guarded by a lease: a claim hands the runner a `lease_token`; heartbeats, progress writes and
the final transition only apply while the token still matches, so a runner that lost its job (reaped
while the machine slept) can never overwrite what happened after. `clock` is injectable for tests.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zlt.core.errors import NotFoundError, ZltError
from zlt.jobs.db import Database, Row, connect
from zlt.jobs.placement import slots_for
from zlt.jobs.presence import WorkerPresence
from zlt.jobs.states import ACTIVE, TERMINAL, IllegalTransition, JobStatus, can_transition

DEFAULT_LEASE_TTL_S = 30.0
REFUSAL_TTL_S = 300.0  # a host that refused a job (files not visible) tries it again after this long
CLAIM_SCAN = 1000  # queued jobs one claim looks at, in claim order
# The host a lease names. ZLT_HOST_ID overrides the host name (two containers sharing one, or tests that
# play several hosts on one machine); it must differ between machines that share a store.
HOST = os.environ.get("ZLT_HOST_ID") or socket.gethostname()

# Columns a transition may set besides state (never built from user input, but kept explicit anyway).
_SETTABLE = frozenset({
    "phase", "progress_json", "last_checkpoint", "last_checkpoint_step", "artifact_id", "artifact_path",
    "error_cause", "error_message", "profile", "resume", "auto_retries", "cancel_requested", "stop_reason",
    "gpus", "attempts", "infra_retries", "not_before", "refused_hosts",
})


class LeaseLost(ZltError):
    """The runner's lease token no longer matches: the job was reaped or re-claimed meanwhile."""

    kind = "lease_lost"


@dataclass
class NewJob:
    """What `submit` hands the store; the spec and options are already validated and serialised."""

    job_id: str
    name: str
    priority: int
    backend: str
    profile: str
    spec_json: str
    job_dir: str
    gpus_needed: int
    max_retries: int
    options: dict[str, Any] = field(default_factory=dict)
    snapshot: dict[str, Any] = field(default_factory=dict)
    min_vram_gb: float | None = None


@dataclass
class Claim:
    """A job a worker took: run it on `gpus` and prove ownership with `token`."""

    job_id: str
    token: str
    gpus: list[int]
    attempt: int
    resume: bool


@dataclass
class Beat:
    """What a heartbeat learned: whether the lease is still ours and whether a cancel was asked for."""

    alive: bool
    cancel_requested: bool


def parse_gpus(text: str | None) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()] if text else []


class JobStore(WorkerPresence):
    def __init__(
        self, home: Path, *, clock: Callable[[], float] = time.time, lease_ttl: float = DEFAULT_LEASE_TTL_S,
        host: str = HOST, pid_alive: Callable[[int, float | None], bool] | None = None,
    ) -> None:
        self.home = Path(home)
        self.clock = clock
        self.lease_ttl = lease_ttl
        self.host = host
        self.pid_alive = pid_alive  # None: zlt.jobs.reaper.process_alive (tests inject a fake)
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

    def create(self, new: NewJob) -> Row:
        now = self.clock()
        with self.tx() as db:
            db.execute(
                "INSERT INTO jobs (id, name, state, priority, created_at, updated_at, backend, profile, spec_json, "
                "options_json, job_dir, gpus_needed, max_retries, snapshot_json, min_vram_gb) "
                "VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (new.job_id, new.name, new.priority, now, now, new.backend, new.profile, new.spec_json,
                 json.dumps(new.options), new.job_dir, new.gpus_needed, new.max_retries, json.dumps(new.snapshot),
                 new.min_vram_gb),
            )
            self._history(db, new.job_id, None, JobStatus.QUEUED.value, f"submitted (priority {new.priority})")
        return self.get(new.job_id)

    def transition(
        self, job_id: str, to_state: JobStatus, *, message: str = "", token: str | None = None,
        expect: frozenset[JobStatus] | None = None, **fields: Any,
    ) -> Row:
        """Move a job to `to_state` in one transaction, or raise IllegalTransition / LeaseLost."""
        bad = set(fields) - _SETTABLE
        if bad:
            raise ValueError(f"transition cannot set {sorted(bad)}")
        with self.tx() as db:
            now = self.clock()  # read under the write lock, so times order like the transitions themselves
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
            sets = dict(fields)
            sets["state"] = to_state.value
            sets["updated_at"] = now
            if to_state in TERMINAL:
                sets.update(ended_at=now, lease_expires=None, lease_token=None)
            elif to_state == JobStatus.QUEUED:
                # A queued job belongs to no one; started/ended describe the attempt that will come.
                sets.update(started_at=None, ended_at=None, lease_expires=None, lease_token=None, worker_id=None,
                            runner_pid=None, runner_started=None, cancel_requested=0)
            cols = ", ".join(f"{k} = ?" for k in sets)
            db.execute(f"UPDATE jobs SET {cols} WHERE id = ?", (*sets.values(), job_id))
            self._history(db, job_id, current.value, to_state.value, message)
        return self.get(job_id)

    def claim(self, worker_id: str, slots: list[int], *, cpu_slots: int = 1,
              vram_gb: dict[int, float] | None = None) -> Claim | None:
        """Take the next job this worker can run: highest priority, then oldest.

        GPUs held by any preparing/running job on this host are busy (GPU ids are per host). A job that
        asks for more GPUs, or bigger ones (`vram_gb`: memory per slot, from NVML), than this worker has
        is left for another worker; one backing off after an infrastructure fault, or that this host
        could not see the files of, is skipped. The head job that fits this worker but not its free GPUs
        right now makes the worker wait, so big jobs are not starved. On PostgreSQL the job row is taken
        with SKIP LOCKED (claims of other hosts pass by), and claims of one host are serialised.
        """
        with self.tx() as db:
            db.lock_host(self.host)
            now = self.clock()  # under the lock: a start never predates the end that freed its GPU
            busy: set[int] = set()
            cpu_running = 0
            for r in db.execute("SELECT gpus, gpus_needed, worker_id FROM jobs "
                                "WHERE state IN ('preparing', 'running') AND host = ?", (self.host,)).fetchall():
                busy.update(parse_gpus(r["gpus"]))
                if r["gpus_needed"] == 0 and r["worker_id"] == worker_id:
                    cpu_running += 1
            chosen = None
            for r in db.execute(
                "SELECT id, gpus_needed, min_vram_gb, attempts, resume, last_checkpoint_step, not_before, "
                "refused_hosts, updated_at FROM jobs WHERE state = 'queued' ORDER BY priority DESC, created_at, id LIMIT ?",
                (CLAIM_SCAN,),
            ).fetchall():
                if (r["not_before"] or 0) > now:
                    continue
                if self.host in (r["refused_hosts"] or "").split("\n") and r["updated_at"] > now - REFUSAL_TTL_S:
                    continue  # this host could not see the job's files a moment ago; it looks again later
                need = r["gpus_needed"]
                if need == 0:
                    if cpu_running < cpu_slots and self._lock_row(db, r["id"]):
                        chosen, gpus = r, []
                        break
                    continue
                able = slots_for(slots, vram_gb, r["min_vram_gb"])
                if need > len(able):
                    continue  # can never run on this worker; another worker may take it
                free = [s for s in able if s not in busy]
                if need > len(free):
                    return None
                if self._lock_row(db, r["id"]):
                    chosen, gpus = r, free[:need]
                    break
            if chosen is None:
                return None
            token = secrets.token_hex(8)
            attempt = chosen["attempts"] + 1
            db.execute(
                "UPDATE jobs SET state = 'preparing', updated_at = ?, started_at = ?, ended_at = NULL, gpus = ?, "
                "worker_id = ?, host = ?, lease_token = ?, lease_expires = ?, attempts = ?, runner_pid = NULL, "
                "runner_started = NULL, error_cause = NULL, error_message = NULL, stop_reason = NULL, "
                "not_before = NULL WHERE id = ? AND state = 'queued'",
                (now, now, ",".join(map(str, gpus)), worker_id, self.host, token, now + self.lease_ttl, attempt,
                 chosen["id"]),
            )
            resume = bool(chosen["resume"])
            where = f"gpu {','.join(map(str, gpus))}" if gpus else "cpu"
            note = f", resuming from step {chosen['last_checkpoint_step']}" if resume and chosen["last_checkpoint_step"] else ""
            self._history(db, chosen["id"], "queued", "preparing", f"attempt {attempt} on {where} by {worker_id}{note}")
        return Claim(job_id=chosen["id"], token=token, gpus=gpus, attempt=attempt, resume=resume)

    def claim_here(self, job_id: str, worker_id: str, gpus: list[int], new: NewJob | None = None) -> Claim:
        """Claim one given job for a runner in this process (`zlt train`), in one transaction: no worker can take it.

        With `new`, the job is created already claimed; else a queued, failed or cancelled job is claimed to
        resume (IllegalTransition for any other state).
        """
        with self.tx() as db:
            now = self.clock()
            if new is not None:
                db.execute(
                    "INSERT INTO jobs (id, name, state, priority, created_at, updated_at, backend, profile, spec_json, "
                    "options_json, job_dir, gpus_needed, max_retries, snapshot_json) "
                    "VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (new.job_id, new.name, new.priority, now, now, new.backend, new.profile, new.spec_json,
                     json.dumps(new.options), new.job_dir, new.gpus_needed, new.max_retries, json.dumps(new.snapshot)),
                )
                self._history(db, job_id, None, JobStatus.QUEUED.value, "started by zlt train")
            row = db.execute("SELECT state, attempts FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"no job {job_id!r} in {self.home}", hint="list jobs with 'zlt jobs'")
            current = JobStatus(row["state"])
            if current in (JobStatus.FAILED, JobStatus.CANCELLED):
                self._history(db, job_id, current.value, JobStatus.QUEUED.value, "resumed by zlt train --resume")
            elif current != JobStatus.QUEUED:
                raise IllegalTransition(job_id, current, JobStatus.PREPARING,
                                        hint="only a failed or cancelled job can be resumed")
            token = secrets.token_hex(8)
            attempt = row["attempts"] + 1
            db.execute(
                "UPDATE jobs SET state = 'preparing', updated_at = ?, started_at = ?, ended_at = NULL, gpus = ?, "
                "worker_id = ?, host = ?, lease_token = ?, lease_expires = ?, attempts = ?, runner_pid = NULL, "
                "runner_started = NULL, error_cause = NULL, error_message = NULL, stop_reason = NULL, "
                "cancel_requested = 0, resume = ? WHERE id = ?",
                (now, now, ",".join(map(str, gpus)), worker_id, self.host, token, now + self.lease_ttl, attempt,
                 int(new is None), job_id),
            )
            self._history(db, job_id, JobStatus.QUEUED.value, JobStatus.PREPARING.value,
                          f"attempt {attempt} in the foreground ({worker_id})")
        return Claim(job_id=job_id, token=token, gpus=gpus, attempt=attempt, resume=new is None)

    @staticmethod
    def _lock_row(db: Database, job_id: str) -> bool:
        """PostgreSQL: lock the queued row unless another claim holds it (then try the next job)."""
        if not db.pg:
            return True
        return db.execute(f"SELECT id FROM jobs WHERE id = ? AND state = 'queued'{db.skip_locked}",
                          (job_id,)).fetchone() is not None

    def note(self, job_id: str, message: str) -> None:
        """A line in the job's history that is not a change of state (resume checks, dataset drift)."""
        with self.tx() as db:
            row = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is not None:
                self._history(db, job_id, row["state"], row["state"], message)

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
        from zlt.jobs.reaper import reap

        return reap(self)

    def refuse(self, job_id: str, token: str, why: str) -> Row:
        """This host cannot run the claimed job (its dataset or model is not visible here): back to the queue
        for another host, without counting an attempt or a retry. Returns the job."""
        with self.tx() as db:
            row = db.execute(f"SELECT state, lease_token, attempts, refused_hosts FROM jobs WHERE id = ?{db.for_update}",
                             (job_id,)).fetchone()
            if row is None or row["lease_token"] != token:
                raise LeaseLost(f"job {job_id}: lease lost")
            hosts = [h for h in (row["refused_hosts"] or "").split("\n") if h]
            if self.host not in hosts:
                hosts.append(self.host)
            db.execute(
                "UPDATE jobs SET state = 'queued', updated_at = ?, started_at = NULL, lease_token = NULL, "
                "lease_expires = NULL, worker_id = NULL, runner_pid = NULL, runner_started = NULL, gpus = NULL, "
                "attempts = ?, refused_hosts = ?, error_cause = 'not_visible', error_message = ? WHERE id = ?",
                (self.clock(), max(0, row["attempts"] - 1), "\n".join(hosts), why, job_id),
            )
            self._history(db, job_id, row["state"], JobStatus.QUEUED.value, f"refused by {self.host}: {why}")
        return self.get(job_id)
