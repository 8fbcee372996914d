"""Claims: a worker (or `zlt train` in the foreground) takes a queued job and gets a lease on it.

Mixed into JobStore; every change of state goes through the store's one checked transition (`_move`), so a
claim obeys the same table (zlt/jobs/states.py) as everything else.
"""

from __future__ import annotations

import secrets
from typing import Any

from zlt.core.errors import NotFoundError
from zlt.db.dialect import Database
from zlt.jobs.placement import slots_for
from zlt.jobs.records import Claim, NewJob, parse_gpus
from zlt.jobs.states import IllegalTransition, JobStatus

REFUSAL_TTL_S = 300.0  # a host that refused a job (files not visible) tries it again after this long
CLAIM_SCAN = 1000  # queued jobs one claim looks at, in claim order
_QUEUED = frozenset({JobStatus.QUEUED})


class Claims:
    """Needs from its host class: tx(), clock, host, lease_ttl, home, _insert(), _move(), _history()."""

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
            resume = bool(chosen["resume"])
            # a worker without an NVIDIA GPU (vram_gb known and empty) runs its slots on the CPU: say so
            on_gpu = gpus and (vram_gb is None or any(g in vram_gb for g in gpus))
            where = f"gpu {','.join(map(str, gpus))}" if on_gpu else "cpu"
            note = f", resuming from step {chosen['last_checkpoint_step']}" if resume and chosen["last_checkpoint_step"] else ""
            attempt = chosen["attempts"] + 1
            token = self._start(db, chosen["id"], worker_id, gpus, attempt, now,
                                f"attempt {attempt} on {where} by {worker_id}{note}", not_before=None)
        return Claim(job_id=chosen["id"], token=token, gpus=gpus, attempt=attempt, resume=resume)

    def claim_here(self, job_id: str, worker_id: str, gpus: list[int], new: NewJob | None = None) -> Claim:
        """Claim one given job for a runner in this process (`zlt train`), in one transaction: no worker can take it.

        With `new`, the job is created already claimed; else a queued, failed or cancelled job is claimed to
        resume (IllegalTransition for any other state).
        """
        with self.tx() as db:
            now = self.clock()
            if new is not None:
                self._insert(db, new, now, "started by zlt train")
            row = db.execute(f"SELECT state, attempts FROM jobs WHERE id = ?{db.for_update}", (job_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"no job {job_id!r} in {self.home}", hint="list jobs with 'zlt jobs'")
            current = JobStatus(row["state"])
            if current in (JobStatus.FAILED, JobStatus.CANCELLED):
                self._move(db, job_id, JobStatus.QUEUED, now=now, message="resumed by zlt train --resume")
            elif current != JobStatus.QUEUED:
                raise IllegalTransition(job_id, current, JobStatus.PREPARING,
                                        hint="only a failed or cancelled job can be resumed")
            attempt = row["attempts"] + 1
            token = self._start(db, job_id, worker_id, gpus, attempt, now,
                                f"attempt {attempt} in the foreground ({worker_id})",
                                cancel_requested=0, resume=int(new is None))
        return Claim(job_id=job_id, token=token, gpus=gpus, attempt=attempt, resume=new is None)

    def _start(self, db: Database, job_id: str, worker_id: str, gpus: list[int], attempt: int, now: float,
               message: str, **fields: Any) -> str:
        """queued -> preparing for `worker_id` on `gpus`, with a fresh lease; returns its token."""
        token = secrets.token_hex(8)
        self._move(db, job_id, JobStatus.PREPARING, now=now, message=message, expect=_QUEUED,
                   started_at=now, ended_at=None, gpus=",".join(map(str, gpus)), worker_id=worker_id,
                   host=self.host, lease_token=token, lease_expires=now + self.lease_ttl, attempts=attempt,
                   runner_pid=None, runner_started=None, error_cause=None, error_message=None, stop_reason=None,
                   **fields)
        return token

    @staticmethod
    def _lock_row(db: Database, job_id: str) -> bool:
        """PostgreSQL: lock the queued row unless another claim holds it (then try the next job)."""
        if not db.pg:
            return True
        return db.execute(f"SELECT id FROM jobs WHERE id = ? AND state = 'queued'{db.skip_locked}",
                          (job_id,)).fetchone() is not None
