"""Job states and the one table of transitions the store allows.

    queued -> preparing -> running -> succeeded
       |          |           |----> failed ----> queued (retry)
       |          |           |----> cancelled -> queued (retry)
       |          |           '----> queued (automatic retry, reaper requeue, worker shutdown)
       |          '-> failed | cancelled | queued | succeeded
       '-> cancelled (cancel while queued)

`preparing` is a claimed job doing preflight, dataset preparation and rendering; `running` starts when
the trainer reports its first model/training phase. `succeeded` is final: a new run is a new job.
"""

from __future__ import annotations

from enum import Enum

from zlt.core.errors import BadInputError


class JobStatus(str, Enum):
    QUEUED = "queued"
    PREPARING = "preparing"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.PREPARING, JobStatus.CANCELLED}),
    JobStatus.PREPARING: frozenset(
        {JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.QUEUED}
    ),
    JobStatus.RUNNING: frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.QUEUED}),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset({JobStatus.QUEUED}),
    JobStatus.CANCELLED: frozenset({JobStatus.QUEUED}),
}

ACTIVE = frozenset({JobStatus.PREPARING, JobStatus.RUNNING})
TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
STATE_NAMES: tuple[str, ...] = tuple(s.value for s in JobStatus)


class IllegalTransition(BadInputError):
    """A change of state the table does not allow (e.g. retrying a succeeded job)."""

    kind = "illegal_transition"

    def __init__(self, job_id: str, from_state: JobStatus, to_state: JobStatus, hint: str = "") -> None:
        super().__init__(f"job {job_id} is {from_state.value}; it cannot become {to_state.value}", hint)
        self.job_id = job_id
        self.from_state = from_state
        self.to_state = to_state


def can_transition(from_state: JobStatus | str, to_state: JobStatus | str) -> bool:
    return JobStatus(to_state) in ALLOWED[JobStatus(from_state)]


def parse_state(value: str, flag: str = "--state") -> JobStatus:
    """A state name from a user, with the choices in the error."""
    try:
        return JobStatus(value.strip().lower())
    except ValueError:
        raise BadInputError(f"{flag} {value!r}: no such job state", hint=f"use one of: {', '.join(STATE_NAMES)}") from None
