"""zlt.flows.job_artifacts: the job store and the artifact registry linked by id only, above both (issue 23)."""

from __future__ import annotations

import json
import os
import shutil
from contextlib import closing
from pathlib import Path

import pytest

from tests.fixtures.artifact_jobs import make_job_dir
from tests.jobs_dialects import dialect, pg_server  # noqa: F401
from tests.unit.jobs_fakes import new_job
from zlt.artifacts import collect_artifact, store
from zlt.artifacts.tables import connect
from zlt.flows.job_artifacts import collect, parent_job, reindex_artifacts, remove_artifact, startup_reindex
from zlt.jobs.store import JobStore

JOB_ID = "20260801-120000-abc120"


def _job(tmp_path: Path, home: Path) -> Path:
    folder = make_job_dir(tmp_path / "j", job_id=JOB_ID)
    with closing(JobStore(home)) as jobs:
        jobs.create(new_job(JOB_ID, job_dir=str(folder),
                            snapshot={"dataset": {"path": "/d", "listing_sha256": "abc"}}))
    return folder


def _job_row(home: Path):
    with closing(JobStore(home)) as jobs:
        return jobs.get(JOB_ID)


@pytest.mark.usefixtures("dialect")
def test_the_registry_alone_leaves_the_job_row_alone_and_collect_links_it(tmp_path, zlt_home):
    folder = _job(tmp_path, zlt_home)
    rec = collect_artifact(folder, home=zlt_home)
    assert _job_row(zlt_home)["artifact_id"] is None  # zlt.artifacts writes only its own tables
    store.delete(zlt_home, rec.id)
    shutil.rmtree(rec.path)
    rec = collect(folder, home=zlt_home)
    row = _job_row(zlt_home)
    assert (row["artifact_id"], row["artifact_path"]) == (rec.id, str(rec.path))


@pytest.mark.usefixtures("dialect")
def test_reindex_points_the_job_at_its_artifact_and_rm_clears_it(tmp_path, zlt_home):
    rec = collect_artifact(_job(tmp_path, zlt_home), home=zlt_home)
    db = connect(zlt_home)
    try:
        db.execute("DELETE FROM artifacts WHERE id = ?", (rec.id,))  # a crash between rename and index row
    finally:
        db.close()
    report = reindex_artifacts(zlt_home)
    assert [i["id"] for i in report["indexed"]] == [rec.id]
    row = _job_row(zlt_home)
    assert (row["artifact_id"], row["artifact_path"]) == (rec.id, str(rec.path))
    assert remove_artifact(zlt_home, rec.id) == rec.id
    row = _job_row(zlt_home)
    assert (row["artifact_id"], row["artifact_path"]) == (None, None)
    assert store.fetch_all(zlt_home) == [] and not rec.path.exists()


@pytest.mark.usefixtures("dialect")
def test_a_worker_start_up_reindex_links_jobs_too(tmp_path, zlt_home):
    rec = collect_artifact(_job(tmp_path, zlt_home), home=zlt_home)
    store.delete(zlt_home, rec.id)
    meta = rec.path / "training_meta.json"
    os.utime(meta, (1.0, 1.0))  # finished long ago: no collector is about to index it
    lines: list[str] = []
    startup_reindex(zlt_home, lines.append)
    assert any(rec.id in line for line in lines)
    assert _job_row(zlt_home)["artifact_id"] == rec.id


@pytest.mark.usefixtures("dialect")
def test_parent_job_reads_the_folder_and_submitted_listing_from_the_job_store(tmp_path, zlt_home):
    folder = _job(tmp_path, zlt_home)
    assert parent_job(zlt_home, JOB_ID) == (folder, "abc")
    assert parent_job(zlt_home, "20260801-120000-abc12") == (None, None)  # a prefix names nothing
    assert parent_job(zlt_home, None) == (None, None)
    assert json.loads(_job_row(zlt_home)["snapshot_json"])["dataset"]["listing_sha256"] == "abc"
