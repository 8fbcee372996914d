"""`zlt retry` (and the HTTP route and MCP tool): a training job's stored spec passes the gate again before it
is queued, so a dataset folder that is gone or emptied since the submit is refused now (exit 2, naming
`dataset.path`) instead of failing on the worker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zlt.core.kinds import JobKind
from zlt.flows.gate import admit
from zlt.flows.kinds import kind_of
from zlt.jobs.api import open_store, retry_job


def retry(home: Path, job_id: str, *, start_worker: bool = True) -> dict[str, Any]:
    """Queue a failed or cancelled job again (it resumes from its latest checkpoint); its status."""
    with open_store(home) as store:
        row = store.get(job_id)
    if kind_of(row) is JobKind.TRAIN and row["spec_json"]:
        # Its paths passed the caller's fence at submit time: trusted as they are; the spec and data are re-checked.
        spec = json.loads(row["spec_json"])
        admit(spec, trusted=spec, mode="submit", label=f"job {row['id']}")
    return retry_job(home, row["id"], start_worker=start_worker)
