"""`zlt retry` passes the gate again: a training job whose dataset folder is gone is refused before it is queued."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.jobs_dialects import dialect, pg_server  # noqa: E402,F401
from tests.unit.test_jobs_runjob import FakeTrainer, run_once, submit
from zlt.core.errors import SpecError
from zlt.flows.retry import retry
from zlt.jobs.store import JobStore

pytestmark = pytest.mark.usefixtures("dialect")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    from PIL import Image

    ds = tmp_path / "ds"
    ds.mkdir()
    Image.new("RGB", (16, 16), "red").save(ds / "a.png")
    return tmp_path / "home"


def test_retry_of_a_job_whose_dataset_is_gone_is_refused_naming_the_field(home: Path, tmp_path: Path):
    jid = submit(home, tmp_path)
    store = JobStore(home)
    assert run_once(store, FakeTrainer(fail_at=3, cause="cuda_oom")) in ("failed", "queued")
    if store.get(jid)["state"] == "queued":  # an automatic retry: fail it for good
        run_once(store, FakeTrainer(fail_at=3, cause="bad_config"))
    assert store.get(jid)["state"] == "failed"
    shutil.rmtree(tmp_path / "ds")
    with pytest.raises(SpecError) as e:
        retry(home, jid, start_worker=False)
    assert [f.path for f in e.value.errors] == ["dataset.path"]
    assert store.get(jid)["state"] == "failed", "nothing was queued"


def test_retry_of_a_job_with_its_dataset_queues_it(home: Path, tmp_path: Path):
    jid = submit(home, tmp_path)
    store = JobStore(home)
    run_once(store, FakeTrainer(fail_at=3, cause="bad_config"))
    assert store.get(jid)["state"] == "failed"
    assert retry(home, jid[:12], start_worker=False)["state"] == "queued"
