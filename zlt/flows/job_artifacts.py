"""Where a job and the artifact it left meet. The job store and the artifact registry refer to each other by id
only (`jobs.artifact_id`, `artifacts.job_id`) and neither imports the other, so what touches both is done here,
above them:

- a job's pointer to its artifact: written by the job itself when its end is recorded (zlt.flows.finish.record_end,
  for a training collected in its run), and here for an artifact collected or re-indexed afterwards;
- a deleted artifact: the registry drops its row and folder, then every job that pointed at it points at nothing;
- what the registry needs of a job (its folder, the dataset listing it was submitted with) is read from the job
  store here and handed down.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

from zlt.artifacts import store as index
from zlt.artifacts.collect import ArtifactRecord, collect_artifact
from zlt.artifacts.lineage import JobDirs
from zlt.artifacts.registry import remove_artifact as remove_from_registry
from zlt.artifacts.reindex import reindex
from zlt.artifacts.reindex import startup_reindex as registry_startup_reindex
from zlt.jobs.store import JobStore


def job_dirs(jobs: JobStore) -> JobDirs:
    """A job's folder as the store records it (None for a job the store does not hold)."""
    def lookup(job_id: str) -> Path | None:
        row = jobs.find(job_id)
        return Path(row["job_dir"]) if row is not None else None
    return lookup


def parent_job(home: Path, job_id: str | None) -> tuple[Path | None, str | None]:
    """The folder of an artifact's job and the dataset listing sha it was submitted with (what `zlt retrain`
    resumes from); (None, None) when the store does not hold the job."""
    if not job_id:
        return None, None
    with closing(JobStore(Path(home))) as jobs:
        row = jobs.find(job_id)
    if row is None:
        return None, None
    try:
        listing = (json.loads(row["snapshot_json"] or "{}").get("dataset") or {}).get("listing_sha256")
    except (ValueError, AttributeError):
        listing = None
    return Path(row["job_dir"]), listing


def collect(job_dir: Path, *, home: Path, attempts: int = 1) -> ArtifactRecord:
    """`zlt artifacts collect JOB_DIR`: collect a finished job's artifact after its run, and point the job at it
    when the store holds the job."""
    home = Path(home)
    with closing(JobStore(home)) as jobs:
        rec = collect_artifact(job_dir, home=home, attempts=attempts, job_dirs=job_dirs(jobs))
        jobs.record_artifact(rec.job_id, rec.id, str(rec.path))
    return rec


def reindex_artifacts(home: Path, registries: list[Path] | None = None, *, min_age_s: float = 0.0) -> dict[str, Any]:
    """`zlt artifacts reindex` (and a worker's start-up): index the registry's unindexed folders, then point each
    one's job at it, as collection would have."""
    home = Path(home)
    with closing(JobStore(home)) as jobs:
        report = reindex(home, registries, min_age_s=min_age_s, job_dirs=job_dirs(jobs))
        for entry in report["indexed"]:
            row = index.resolve_exact(home, entry["id"])
            if row.get("job_id"):
                jobs.record_artifact(row["job_id"], row["id"], row["path"])
    return report


def startup_reindex(home: Path, log: Callable[[str], None]) -> None:
    """What a worker does when it starts (zlt.artifacts.reindex.startup_reindex), jobs linked."""
    registry_startup_reindex(home, log, index=reindex_artifacts)


def remove_artifact(home: Path, artifact_id: str, *, force: bool = False) -> str:
    """`zlt artifacts rm`: delete the artifact's folder and index row (zlt.artifacts.registry.remove_artifact says
    what is refused), then clear the pointer of every job that named it. Returns the removed id."""
    home = Path(home)
    removed = remove_from_registry(home, artifact_id, force=force)
    with closing(JobStore(home)) as jobs:
        jobs.forget_artifact(removed)
    return removed
