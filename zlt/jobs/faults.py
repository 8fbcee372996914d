"""What a failure costs a job.

- An **infrastructure fault** (a worker killed, a host rebooted, a lease lost, a job process that died)
  is not the job's fault: it is requeued to resume from its last checkpoint without touching the spec's
  `job.retry.max_retries` budget. These requeues are counted apart (`infra_retries`) with a generous
  cap, `INFRA_RETRY_CAP`, and an exponential backoff (`not_before`), so a host that keeps dying cannot
  spin a job forever.
- A **trainer failure** (exit code, CUDA OOM, host OOM, divergence) uses the budget.
- An **input error** (bad config, bad model path or adapter file, bad dataset) is never retried
  automatically: the same input fails the same way (`zlt retry` still runs it again on request).

Which cause is which lives in zlt.core.causes (the one `Cause` vocabulary); this module only prices the
infrastructure fault.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from zlt.core.causes import Cause
from zlt.jobs.states import JobStatus

if TYPE_CHECKING:
    from zlt.db.dialect import Row
    from zlt.jobs.store import JobStore

INFRA_RETRY_CAP = 50
INFRA_BACKOFF_MAX_S = 300.0


def backoff_s(n: int) -> float:
    """Seconds before the n-th infrastructure requeue may run (1-based): base, 2x, 4x ... capped."""
    base = float(os.environ.get("ZLT_INFRA_BACKOFF_S", "2"))
    return min(INFRA_BACKOFF_MAX_S, base * 2 ** max(0, n - 1))


def requeue_after_fault(store: JobStore, row: Row, token: str | None, why: str, **fields: Any) -> Row:
    """An infrastructure fault: requeue to resume (no retry used), or fail once the fault cap is reached."""
    n = (row["infra_retries"] or 0) + 1
    if n > INFRA_RETRY_CAP:
        return store.transition(row["id"], JobStatus.FAILED, token=token, message=f"abandoned: {why}; "
                                f"{INFRA_RETRY_CAP} infrastructure faults, giving up",
                                error_cause=Cause.ABANDONED.value, error_message=f"abandoned: {why}", **fields)
    wait = backoff_s(n)
    return store.transition(
        row["id"], JobStatus.QUEUED, token=token, resume=1, infra_retries=n, not_before=store.clock() + wait,
        error_cause=Cause.ABANDONED.value, error_message=f"abandoned: {why}",
        message=f"abandoned: {why}; requeued after an infrastructure fault ({n}/{INFRA_RETRY_CAP}, "
                f"no retry used; eligible in {wait:g}s)", **fields,
    )
