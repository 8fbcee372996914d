"""Generation jobs in the real worker loop: two jobs on one base model load it once; cancel; bad requests queue nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="needs the [train] extra (torch)")
pytest.importorskip("diffusers", reason="needs the [train] extra (diffusers)")

from PIL import Image  # noqa: E402

from tests.fixtures.infer_fixtures import tiny_artifact  # noqa: E402
from zlt.core.errors import BadInputError, NotFoundError, SpecError  # noqa: E402
from zlt.flows.generation import job_kind, submit_generation  # noqa: E402
from zlt.flows.kinds import worker_launcher  # noqa: E402
from zlt.infer.params import parse_request  # noqa: E402
from zlt.infer.pipeline import PipelineCache  # noqa: E402
from zlt.jobs import job_status, list_jobs  # noqa: E402
from zlt.jobs.store import JobStore  # noqa: E402
from zlt.jobs.worker import Worker, WorkerOptions  # noqa: E402

pytestmark = pytest.mark.train


def _counting_cache() -> tuple[PipelineCache, list[str]]:
    loads: list[str] = []

    def loader(base, plan):
        from zlt.trainer.tiny import build_tiny_pipeline

        loads.append(base["name"])
        return build_tiny_pipeline()

    return PipelineCache(loader=loader), loads


def _run_worker(home: Path, cache: PipelineCache) -> None:
    def no_training(claim):
        raise AssertionError(f"{claim.job_id} is not a generation job")

    store = JobStore(home)
    try:
        launcher = worker_launcher(home, fallback=no_training, cache=cache)
        Worker(store, WorkerOptions(gpus=[0], once=True, poll_s=0.05), launcher=launcher).run()
    finally:
        store.close()


def test_worker_reuses_the_loaded_pipeline_across_two_jobs(tmp_path, zlt_home):
    a = tiny_artifact(tmp_path / "a", zlt_home, job_id="20260801-120000-aaaaaa")
    b = tiny_artifact(tmp_path / "b", zlt_home, job_id="20260801-120000-bbbbbb", seed_offset=1)
    src = tmp_path / "in.png"
    Image.new("RGB", (80, 48), "blue").save(src)
    j1 = submit_generation(zlt_home, "generate", parse_request("generate", {
        "loras": [{"artifact": a}], "prompts": ["a", "b"], "width": 64, "height": 64, "steps": 2}), start_worker=False)
    j2 = submit_generation(zlt_home, "transfer", parse_request("transfer", {
        "loras": [{"artifact": b, "scale": 0.9}], "images": [str(src)], "strength": 0.5, "steps": 2}),
        start_worker=False)
    assert j1["state"] == "queued" and j1["kind"] == "generate" and j1["backend"] == "infer"
    j3 = submit_generation(zlt_home, "generate", parse_request("generate", {
        "loras": [{"artifact": "latest"}], "prompts": ["x"]}), start_worker=False)
    from zlt.jobs.api import open_store

    with open_store(zlt_home) as store:  # the reference is frozen at submit: 'latest' is b now, and stays b
        assert json.loads(store.get(j3["job_id"])["snapshot_json"])["request"]["loras"][0]["artifact"] == b
    from zlt.jobs import cancel_job

    cancel_job(zlt_home, j3["job_id"])
    src.unlink()  # the job copied its input at submit
    cache, loads = _counting_cache()
    _run_worker(zlt_home, cache)
    s1, s2 = job_status(zlt_home, j1["job_id"]), job_status(zlt_home, j2["job_id"])
    assert (s1["state"], s2["state"]) == ("succeeded", "succeeded"), (s1, s2)
    assert loads == ["zlt/tiny-zimage"] and cache.stats.loads == 1 and cache.stats.lora_loads == 2
    out1 = Path(s1["artifact_path"])
    assert s1["artifact_id"] == a and out1 == zlt_home / "artifacts" / "lora" / a / "generations" / j1["job_id"]
    assert (out1 / "contact_sheet.png").is_file() and (s1["step"], s1["total"]) == (2, 2)
    from zlt.jobs import job_events

    evs = job_events(zlt_home, j1["job_id"])
    assert [e["type"] for e in evs] == ["phase", "progress", "progress", "sample", "sample", "finished"]
    assert evs[-1]["status"] == "succeeded" and evs[-1]["artifact"] == str(out1)
    log = (Path(s1["job_dir"]) / "train.log").read_text()
    assert "image 2/2" in log and f"succeeded -> {out1}" in log
    outputs = json.loads((Path(s2["artifact_path"]) / "outputs.json").read_text())
    assert outputs["kind"] == "transfer" and outputs["images"][0]["width"] == 80


def test_bad_requests_queue_nothing(tmp_path, zlt_home):
    a = tiny_artifact(tmp_path / "a", zlt_home)
    with pytest.raises(NotFoundError, match=r"^generate\.loras: "):
        submit_generation(zlt_home, "generate", parse_request("generate", {"loras": [{"artifact": "zz"}],
                                                                           "prompts": ["x"]}), start_worker=False)
    with pytest.raises(NotFoundError, match=r"^generate\.checkpoint: "):
        submit_generation(zlt_home, "generate", parse_request("generate", {
            "loras": [{"artifact": a, "checkpoint": 7}], "prompts": ["x"]}), start_worker=False)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"GIF89a nope")
    with pytest.raises(BadInputError, match=r"^transfer\.images: "):
        submit_generation(zlt_home, "transfer", parse_request("transfer", {"loras": [{"artifact": a}],
                                                                           "images": [str(bad)]}), start_worker=False)
    with pytest.raises(SpecError) as e:
        parse_request("generate", {"loras": [{"artifact": a}], "prompts": ["x"], "steps": 0, "width": 100})
    assert sorted(x.path for x in e.value.errors) == ["generate.steps", "generate.width"]
    assert list_jobs(zlt_home) == []
    assert not (zlt_home / "jobs").exists() or not any((zlt_home / "jobs").iterdir())


def test_job_kind_reads_the_snapshot():
    assert job_kind('{"kind": "transfer"}') == "transfer"
    assert job_kind('{"dataset": {}}') is None and job_kind(None) is None and job_kind("not json") is None


def test_cancel_before_the_run_cancels(tmp_path, zlt_home):
    from zlt.jobs import cancel_job

    a = tiny_artifact(tmp_path / "a", zlt_home)
    j = submit_generation(zlt_home, "generate", parse_request("generate", {
        "loras": [{"artifact": a}], "prompts": ["x"], "width": 64, "height": 64, "steps": 2}), start_worker=False)
    assert cancel_job(zlt_home, j["job_id"])["state"] == "cancelled"
    cache, loads = _counting_cache()
    _run_worker(zlt_home, cache)
    assert loads == []


def test_a_job_whose_artifact_vanished_fails_with_the_field_named(tmp_path, zlt_home):
    import shutil

    from zlt.jobs import job_events

    a = tiny_artifact(tmp_path / "a", zlt_home)
    j = submit_generation(zlt_home, "generate", parse_request("generate", {
        "loras": [{"artifact": a}], "prompts": ["x"], "width": 64, "height": 64, "steps": 2}), start_worker=False)
    shutil.rmtree(zlt_home / "artifacts" / "lora" / a)
    cache, loads = _counting_cache()
    _run_worker(zlt_home, cache)
    st = job_status(zlt_home, j["job_id"])
    assert (st["state"], st["error_cause"]) == ("failed", "bad_config") and loads == []
    assert st["error_message"].startswith("generate.loras: ") and "folder" in st["error_message"]
    assert job_events(zlt_home, j["job_id"])[-1]["type"] == "finished"
