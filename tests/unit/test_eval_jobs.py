"""Evaluation as an async job: queued with everything checked at submit, run by the real worker loop, and the
HTTP routes and MCP tools that expose it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="needs the [train] extra (torch)")
pytest.importorskip("diffusers", reason="needs the [train] extra (diffusers)")
pytest.importorskip("fastapi")


from tests.fixtures.eval_fixtures import evaluable_artifact, tiny_clip  # noqa: E402
from zlt.core.errors import BadInputError, EnvNotReadyError  # noqa: E402
from zlt.eval.request import EvalRequest  # noqa: E402
from zlt.flows.evaluation import submit_evaluation  # noqa: E402
from zlt.flows.kinds import worker_launcher  # noqa: E402
from zlt.jobs import job_status, list_jobs  # noqa: E402
from zlt.jobs.store import JobStore  # noqa: E402
from zlt.jobs.worker import Worker, WorkerOptions  # noqa: E402

pytestmark = pytest.mark.train


@pytest.fixture
def art(tmp_path: Path, zlt_home: Path) -> str:
    return evaluable_artifact(tmp_path / "jobs", zlt_home)


@pytest.fixture
def clip(tmp_path: Path) -> str:
    return str(tiny_clip(tmp_path / "clip"))


def test_the_worker_runs_a_queued_evaluation_and_records_the_best_step(art, clip, zlt_home):
    req = EvalRequest(prompts=["a lighthouse"], seeds=1, checkpoints="last", clip=clip)
    st = submit_evaluation(zlt_home, art, req, start_worker=False)
    assert st["state"] == "queued" and st["kind"] == "evaluate" and st["backend"] == "eval"

    def no_training(claim):
        raise AssertionError(f"{claim.job_id} is not an evaluation job")

    from zlt.infer.pipeline import PipelineCache

    loads: list[str] = []

    def loader(base, plan):
        from zlt.trainer.tiny import build_tiny_pipeline

        loads.append(base["name"])
        return build_tiny_pipeline()

    launcher = worker_launcher(zlt_home, fallback=no_training)
    launcher.cache = PipelineCache(loader=loader)  # the worker's shared cache
    store = JobStore(zlt_home)
    try:
        Worker(store, WorkerOptions(gpus=[0], once=True, poll_s=0.05), launcher=launcher).run()
    finally:
        store.close()
    assert loads == ["zlt/tiny-zimage"] and launcher.cache.size == 1  # the evaluation used the shared cache
    done = job_status(zlt_home, st["job_id"])
    assert done["state"] == "succeeded", done
    assert done["artifact_id"] == art and done["artifact_path"].endswith("/eval")
    assert (done["step"], done["total"]) == (2, 2)
    assert (done["kind"], done["unit"]) == ("evaluate", "checkpoints")  # the status says what step/total count
    store = JobStore(zlt_home)
    try:
        prog = json.loads(store.get(st["job_id"])["progress_json"])
    finally:
        store.close()
    assert prog["unit"] == "checkpoints" and prog["eta_s"] == 0.0  # rows are checkpoints (the base included)
    report = json.loads((Path(done["artifact_path"]) / "report.json").read_text())
    assert [r["step"] for r in report["checkpoints"]] == [0, 1000] and report["best"]["step"] == 1000
    assert report["job_id"] == st["job_id"]  # get_artifact's best names the evaluation it came from


def test_refusals_happen_at_submit_and_queue_nothing(art, clip, zlt_home):
    with pytest.raises(BadInputError, match="step 300"):
        submit_evaluation(zlt_home, art, EvalRequest(checkpoints="300", clip=clip), start_worker=False)
    with pytest.raises(EnvNotReadyError, match="HF_HUB_OFFLINE"):
        submit_evaluation(zlt_home, art, EvalRequest(), start_worker=False)  # default CLIP, not cached
    assert list_jobs(zlt_home) == []


def test_http_evaluate_is_202_and_the_report_is_404_until_there_is_one(art, clip, zlt_home, monkeypatch, tmp_path):
    from tests.serve_client import AUTH, serve_client

    monkeypatch.setattr("zlt.jobs.spawn.ensure_worker", lambda home: None)
    with serve_client(zlt_home, [tmp_path], model_roots=[tmp_path]) as c:  # the CLIP lies in a model root
        r = c.get(f"/v1/artifacts/{art}/eval", headers=AUTH)
        assert r.status_code == 404 and "evaluate" in r.json()["hint"]
        r = c.post(f"/v1/artifacts/{art}/evaluate", headers=AUTH, json={"seeds": 0})
        assert r.status_code == 422 and "evaluate.seeds" in json.dumps(r.json())
        r = c.post(f"/v1/artifacts/{art}/evaluate", headers=AUTH, json={"checkpoints": "250", "clip": clip})
        assert r.status_code == 202, r.json()
        body = r.json()
        assert body["kind"] == "evaluate" and body["report_url"].endswith(f"/v1/artifacts/{art}/eval")
        assert r.headers["location"].endswith(f"/v1/jobs/{body['job_id']}")
        r = c.post(f"/v1/artifacts/{art}/evaluate", headers=AUTH)  # no body: the spec's defaults (default CLIP)
        assert r.status_code == 503 and "hf download" in r.json()["hint"]


def test_mcp_lists_evaluate_and_get_eval_report(art, clip, zlt_home, monkeypatch):
    from zlt.serve.intake import Fence

    monkeypatch.setattr("zlt.jobs.spawn.ensure_worker", lambda home: None)
    from zlt.serve.mcp_server import call, make_tools

    tools = {t.name: t for t in make_tools(zlt_home, Fence(None, None))}
    assert {"evaluate", "get_eval_report"} <= set(tools)
    out, is_error = call(tools["get_eval_report"], {"artifact_id": art})
    assert is_error and out["error"] == "not_found"
    out, is_error = call(tools["evaluate"], {"artifact_id": art, "clip": clip, "checkpoints": "last"})
    assert not is_error and out["kind"] == "evaluate" and out["state"] == "queued"


def test_a_relative_clip_folder_is_queued_as_an_absolute_path(art, clip, zlt_home, monkeypatch):
    from zlt.jobs.api import open_store

    monkeypatch.chdir(Path(clip).parent)
    st = submit_evaluation(zlt_home, art, EvalRequest(clip=Path(clip).name), start_worker=False)
    assert st["evaluates"] == art
    with open_store(zlt_home) as store:
        snap = json.loads(store.get(st["job_id"])["snapshot_json"])
    assert snap["request"]["clip"] == str(Path(clip).resolve())


def test_an_evaluation_jobs_eta_comes_from_the_rows_scored_so_far():
    import time

    from zlt.flows.evaluation import eval_progress

    started: list[float] = []
    first = eval_progress(0, 5, started)
    assert first["eta_s"] is None and first["unit"] == "checkpoints" and started  # nothing scored yet
    started[0] = time.time() - 10.0  # two rows took 10 s
    p = eval_progress(2, 5, started)
    assert (p["step"], p["total"]) == (2, 5) and p["eta_s"] == pytest.approx(15.0, abs=0.5)
