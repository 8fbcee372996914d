"""Async jobs: the job store (SQLite, or PostgreSQL shared by many hosts), the worker, and submit/status/cancel/retry.

Importing this package stays light (no torch, no pydantic models until a spec is submitted).
"""

from zlt.jobs.api import (
    cancel_job,
    job_events,
    job_history,
    job_log_path,
    job_status,
    list_jobs,
    list_workers,
    retry_job,
    submit_job,
    wait_job,
)
from zlt.jobs.states import JobStatus
from zlt.jobs.view import STATUS_KEYS

__all__ = [
    "STATUS_KEYS", "JobStatus", "cancel_job", "job_events", "job_history", "job_log_path", "job_status", "list_jobs",
    "list_workers", "retry_job", "submit_job", "wait_job",
]
