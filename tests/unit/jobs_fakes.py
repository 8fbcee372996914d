"""Shared fakes for the job-store tests: an injectable clock and a minimal NewJob."""

from __future__ import annotations

from zlt.jobs.store import NewJob


class FakeClock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def new_job(job_id: str, **kw) -> NewJob:
    base = dict(job_id=job_id, name="s", priority=0, backend="lightning", profile="auto", spec_json="{}",
                job_dir=f"/tmp/{job_id}", gpus_needed=1, max_retries=1)
    base.update(kw)
    return NewJob(**base)
