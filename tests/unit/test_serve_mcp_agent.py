"""Issue 13 items 13-15: what an agent with only the MCP tools reads and can do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("mcp")

from tests.fixtures.artifact_jobs import make_job_dir  # noqa: E402
from tests.unit.jobs_fakes import new_job  # noqa: E402
from zlt.serve.intake import Fence  # noqa: E402
from zlt.serve.mcp_server import SubmitArgs, call, input_schema, make_tools  # noqa: E402


def tools(home: Path, fence: Fence | None = None):
    return {t.name: t for t in make_tools(home, fence or Fence(None, None, source="<mcp>"))}


def test_the_schema_shows_what_the_presets_apply_and_the_bounds_the_validator_takes(zlt_home: Path):
    full, _ = call(tools(zlt_home)["get_spec_schema"], {})
    defs = full["schema"]["$defs"]
    warm = defs["TrainingSpec"]["properties"]["warmup_steps"]
    assert warm["default"] == 100 and warm["x-preset-defaults"] == {"style": 100, "character": 0}
    res = defs["DatasetSpec"]["properties"]["resolution"]
    # the schema takes what the validator takes (the tiny model trains at 64), the per-model range is in words
    assert res["minimum"] == 16 and res["maximum"] == 2048 and res["multipleOf"] == 16
    assert "256..2048" in res["description"] and "16..2048 for the tiny test model" in res["description"]
    assert defs["ModelSection"]["properties"]  # nested models stay referenced
    assert defs["LoraSpec"]["properties"]["rank"]["x-preset-defaults"] == {"style": 16, "character": 64}
    from zlt.spec.load import load_spec_data

    tiny = load_spec_data({"model": {"base": {"name": "zlt/tiny-zimage"}}, "dataset": {"resolution": 64}})
    assert tiny.spec.dataset.resolution == 64  # what the schema's minimum now admits, the validator accepts


def test_a_short_run_keeps_the_presets_share_of_warmup_and_a_warmup_the_spec_sets_is_judged_as_given():
    from zlt.core.errors import SpecError
    from zlt.spec.load import load_spec_data

    short = load_spec_data({"dataset": {"path": "d"}, "training": {"max_steps": 40}, "output": {"save": {"every": 10}}})
    assert short.spec.training.warmup_steps == 2 and short.provenance["training.warmup_steps"] == "derived"
    assert load_spec_data({"dataset": {"path": "d"}}).spec.training.warmup_steps == 100  # the preset's own run
    with pytest.raises(SpecError) as refused:
        load_spec_data({"dataset": {"path": "d"}, "training": {"max_steps": 40, "warmup_steps": 100},
                        "output": {"save": {"every": 10}}})
    assert [(e.path, e.message) for e in refused.value.errors] == [
        ("training.warmup_steps", "100 must be less than max_steps 40")]


def test_the_spec_is_described_once_and_relative_paths_one_way(zlt_home: Path):
    from zlt.spec.models import JobSpec

    schema = input_schema(SubmitArgs, "Image folder on this machine: relative to X.")
    text = json.dumps(schema) + tools(zlt_home)["submit_lora_job"].description()
    assert text.count((JobSpec.__doc__ or "").strip().splitlines()[0]) == 0
    assert schema["properties"]["spec"]["properties"]["dataset"]["properties"]["path"]["description"] == \
        "Image folder on this machine: relative to X."
    assert "relative to the spec file" not in text


def _listing(home: Path) -> list[dict]:
    """tools/list as an MCP client receives it (the SDK's in-process client, the JSON it would read)."""
    import anyio
    from mcp import Client

    from zlt.serve.mcp_server import build_server

    async def run():
        async with Client(build_server(home, Fence(None, None, source="<mcp>"))) as client:
            return await client.list_tools()

    return json.loads(anyio.run(run).model_dump_json(by_alias=True, exclude_none=True))["tools"]


def test_the_whole_tool_list_fits_an_agents_first_read(zlt_home: Path):
    """Issue 25 item 1: the spec schema was listed three times (88.8 k characters); the budget is 30,000, with
    room left for tools still to come."""
    listing = _listing(zlt_home)
    size = len(json.dumps({"tools": listing}, ensure_ascii=False))
    print(f"tools/list: {len(listing)} tools, {size} characters")
    assert size <= 30_000, size
    by_name = {t["name"]: t for t in listing}
    assert "title" not in json.dumps(by_name["list_jobs"]["inputSchema"])  # pydantic's titles say nothing new


def test_a_minimal_tiny_spec_runs_on_a_machine_without_a_gpu(zlt_home: Path, tmp_path: Path, monkeypatch):
    """Issue 25 item 2: model.base.name alone makes the tiny model (no source, no resources.gpu: 0, no
    min_vram_gb: null, no profile, no skip_preflight); auto is the cpu profile and no GPU is asked for."""
    import zlt.preflight.gpu
    from zlt.jobs.store import JobStore

    monkeypatch.setattr("zlt.jobs.spawn.ensure_worker", lambda home: None)
    monkeypatch.setattr(zlt.preflight.gpu, "detect_gpus", lambda: [])
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "a.png").write_bytes(b"x")
    spec = {"model": {"base": {"name": "zlt/tiny-zimage"}}, "dataset": {"path": str(tmp_path / "ds")}}
    t = tools(zlt_home)
    checked, is_error = call(t["validate_spec"], {"spec": spec})
    assert not is_error, checked
    assert checked["spec"]["model"]["base"]["source"] == "builtin"
    assert checked["spec"]["job"]["resources"] == {"gpu": 0, "min_vram_gb": None}
    job, is_error = call(t["submit_lora_job"], {"spec": spec})
    assert not is_error, job
    assert job["profile"] == "cpu" and job["state"] == "queued" and job["step"] == 0 and job["total"] == 2000
    store = JobStore(zlt_home)
    try:
        row = store.get(job["job_id"])
        assert row["gpus_needed"] == 0 and row["min_vram_gb"] is None
        claim = store.claim("w", [])  # a worker on a machine with no GPU slot at all takes it
        assert claim is not None and claim.job_id == job["job_id"] and claim.gpus == []
    finally:
        store.close()
    desc = t["submit_lora_job"].description()
    assert "zlt/tiny-zimage" in desc and "cpu, 12gb, 16gb, 24gb, 32gb, 48gb, 80gb, or auto" in desc
    # the worker's preflight on this machine (no NVIDIA driver) passes the job as recorded
    from tests.unit.test_preflight_checks import ROOMY_RAM, roomy_disk
    from zlt.preflight.checks import run_preflight
    from zlt.preflight.gpu import StaticProbe
    from zlt.spec.load import load_spec_data

    report = run_preflight(load_spec_data(spec).spec, profile=job["profile"], probe=StaticProbe(unavailable="no driver"),
                           check_data=False, check_python=False, disk_usage=roomy_disk, memory=ROOMY_RAM)
    assert report.profile == "cpu" and report.ok, [c for c in report.checks if c.status == "fail"]


def test_validate_spec_refuses_a_dataset_that_does_not_exist(zlt_home: Path, tmp_path: Path):
    result, is_error = call(tools(zlt_home)["validate_spec"], {"spec": {"dataset": {"path": str(tmp_path / "nope")}}})
    assert is_error and [e["path"] for e in result["errors"]] == ["dataset.path"]
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "a.png").write_bytes(b"x")  # the gate checks the folder holds images, as submit does
    result, is_error = call(tools(zlt_home)["validate_spec"], {"spec": {"dataset": {"path": str(tmp_path / "ds")}}})
    assert not is_error, result


def test_hints_name_tools_and_arguments_not_cli_commands(zlt_home: Path):
    from zlt.serve.mcp_hints import mcp_hint

    result, is_error = call(tools(zlt_home)["get_job_status"], {"job_id": "nosuch"})
    assert is_error and "zlt " not in result["hint"] and "list_jobs" in result["hint"]
    assert mcp_hint("nearest working: --set dataset.resolution=768, or a GPU with 16 GiB (--profile 16gb)") == \
        "nearest working: set dataset.resolution to 768 in the spec, or a GPU with 16 GiB (profile argument '16gb')"
    assert mcp_hint("see what happened: zlt logs 2026-abc --events") == "see what happened: the get_job_events tool"


def test_events_retry_and_artifact_details_are_tools(zlt_home: Path, tmp_path: Path, monkeypatch):
    import zlt.jobs.spawn
    from zlt.artifacts import collect_artifact

    started: list[Path] = []
    monkeypatch.setattr(zlt.jobs.spawn, "ensure_worker", started.append)  # no background worker in a unit test
    monkeypatch.setattr("zlt.jobs.api.ensure_worker", started.append, raising=False)  # its own name for it
    from zlt.jobs.states import JobStatus
    from zlt.jobs.store import JobStore

    job = make_job_dir(tmp_path)
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "a.png").write_bytes(b"x")  # a retry passes the gate again: its dataset must still be there
    store = JobStore(zlt_home)
    store.create(new_job("20260801-120000-abc123", job_dir=str(job), gpus_needed=0,
                         spec_json=json.dumps({"dataset": {"path": str(tmp_path / "ds")}})))
    claim = store.claim("w", [])
    store.transition(claim.job_id, JobStatus.FAILED, token=claim.token, error_cause="unknown")
    store.close()
    t = tools(zlt_home)
    page, is_error = call(t["get_job_events"], {"job_id": "20260801", "after_seq": 0, "limit": 5})
    assert not is_error and [e["seq"] for e in page["events"]] == [1, 2, 3, 4, 5] and page["more"]
    page, _ = call(t["get_job_events"], {"job_id": "20260801", "after_seq": page["last_seq"]})
    assert page["events"][0]["seq"] == 6 and not page["more"]
    result, is_error = call(t["retry_job"], {"job_id": "20260801"})
    assert not is_error and result["state"] == "queued" and started == [zlt_home]
    rec = collect_artifact(job, home=zlt_home)
    art, is_error = call(t["get_artifact"], {"artifact_id": rec.id})
    assert not is_error
    dump = json.dumps(art)
    assert "lora.safetensors" in dump and "sha256" in dump


def test_http_publishes_the_same_schema(zlt_home: Path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from zlt.serve.app import create_app

    token = "t" * 32
    with TestClient(create_app(zlt_home, [], token, webhook_secret=None)) as c:
        auth = {"Authorization": f"Bearer {token}"}
        schema = c.get("/v1/schema", headers=auth).json()
        doc = c.get("/openapi.json", headers=auth).json()
    assert schema["$defs"]["TrainingSpec"]["properties"]["warmup_steps"]["default"] == 100
    res = doc["components"]["schemas"]["DatasetSpec"]["properties"]["resolution"]
    assert res["minimum"] == 16 and res == schema["$defs"]["DatasetSpec"]["properties"]["resolution"]


def test_hostile_arguments_are_a_tool_error(zlt_home: Path):
    nested: dict = {"dataset": {"path": "."}}
    for _ in range(60):
        nested = {"x": nested}
    result, is_error = call(tools(zlt_home)["validate_spec"], {"spec": nested})
    assert is_error and "nested deeper" in result["message"]
    result, is_error = call(tools(zlt_home)["validate_spec"], {"spec": {"training": {"seed": 10**30}}})
    assert is_error and "64 bits" in result["message"]


def _finish_training(home: Path, root: Path, job_id: str, spec: dict) -> str:
    """The worker's part of a training job, doubled: a finished job folder (checkpoints 10/20/30, final 40)
    collected as the job's artifact, and the job moved to succeeded."""
    from tests.fixtures.eval_fixtures import training_images
    from zlt.artifacts import collect_artifact
    from zlt.jobs.states import JobStatus
    from zlt.jobs.store import JobStore

    jd = make_job_dir(root, fmt="diffusers", job_id=job_id, steps=(10, 20, 30), final_step=40,
                      spec={**spec, "training": {"backend": "lightning", "max_steps": 40, "sample": {"steps": 1}}})
    training_images(jd / "prepared")
    events = (jd / "events.jsonl").read_text(encoding="utf-8").replace(  # the built-in trainer's phase line
        '"message": ""', '"message": "steps 1..40 on cpu (32-true); effective batch 4"', 1)
    (jd / "events.jsonl").write_text(events, encoding="utf-8")
    rec = collect_artifact(jd, home=home)
    store = JobStore(home)
    try:
        claim = store.claim("w", [])
        assert claim is not None and claim.job_id == job_id and claim.gpus == []
        store.transition(job_id, JobStatus.RUNNING, token=claim.token)
        store.transition(job_id, JobStatus.SUCCEEDED, token=claim.token, artifact_id=rec.id, artifact_path=str(jd))
    finally:
        store.close()
    return rec.id


def _finish_evaluation(home: Path, job_id: str, best: int) -> None:
    """The worker's part of an evaluation job: the real job runner with the scoring doubled (an evaluation
    published as zlt.eval.evaluate publishes one, picking `best` at scale 1.0)."""
    from zlt.artifacts.resolve import resolve
    from zlt.eval.record import publish_eval, staging_dir
    from zlt.flows.evaluation import run_evaluation_job
    from zlt.jobs.store import JobStore

    def fake_evaluate(home, art_id, opts, **_kw):
        folder = resolve(home, art_id).path
        staging = staging_dir(folder)
        rows = [{"step": s, "label": "base" if s == 0 else f"step {s}", "base": s == 0,
                 "metrics": {"style_similarity": 0.5 + s / 100}} for s in (0, 10, 20, 30, 40)]
        pick = {"step": best, "label": f"step {best}", "reason": "highest style similarity", "passed": True,
                "rule": "highest style similarity", "file": f"checkpoints/step_{best:06d}.safetensors"}
        report = {"artifact_id": art_id, "eval_dir": str(folder / "eval"), "settings": {"scale": opts.scale},
                  "checkpoints": rows, "best": pick, "evaluated_at": "2026-12-06T21:00:00+00:00"}
        (staging / "report.json").write_text(json.dumps(report), encoding="utf-8")
        publish_eval(home, art_id, folder, staging, {
            "report": "eval/report.json", "evaluated_at": report["evaluated_at"], "clip_model": opts.clip,
            "best_step": best, "best_file": pick["file"], "passed": True, "reason": pick["reason"],
            "table": [{"step": r["step"], "label": r["label"], **r["metrics"]} for r in rows]})
        return report

    store = JobStore(home)
    try:
        claim = store.claim("w", [])
        assert claim is not None and claim.job_id == job_id
        assert run_evaluation_job(store, job_id, claim.token, evaluate=fake_evaluate) == "succeeded"
    finally:
        store.close()


def test_a_scripted_agent_trains_evaluates_picks_best_and_restyles_by_the_tool_list_alone(
        zlt_home: Path, tmp_path: Path, monkeypatch):
    """Issue 25: train -> evaluate -> best -> style transfer in <= 20 calls, every argument taken from what
    tools/list says (the tiny model's name and a short run from submit_lora_job's description, 'best' from the
    generation tools' schema); only the workers' runs are doubled."""
    import re

    from PIL import Image

    monkeypatch.setattr("zlt.jobs.spawn.ensure_worker", lambda home: None)
    monkeypatch.setattr("zlt.eval.request.require_clip", lambda clip: None)  # no CLIP weights in a unit test
    (tmp_path / "ds").mkdir()
    for i in range(3):
        Image.new("RGB", (96, 72), (40 * i, 90, 120)).save(tmp_path / "ds" / f"{i}.png")
    Image.new("RGB", (96, 72), (200, 90, 20)).save(tmp_path / "photo.png")
    listing = {t["name"]: t for t in _listing(zlt_home)}
    served = tools(zlt_home)
    calls: list[str] = []

    def use(name: str, args: dict) -> dict:
        assert name in listing, f"{name} is not in tools/list"
        calls.append(name)
        result, is_error = call(served[name], args)
        assert not is_error, (name, result)
        return result

    desc = listing["submit_lora_job"]["description"]
    tiny = re.search(r"(zlt/[\w-]+), the tiny test model", desc)[1]
    short = re.search(r"e\.g\. ([^)]*)\)", desc)[1]  # 'dataset.resolution 64, training.max_steps 40, ...'
    spec: dict = {"model": {"base": {"name": tiny}}, "dataset": {"path": str(tmp_path / "ds")}}
    for path, value in re.findall(r"([a-z_]+(?:\.[a-z_]+)+) (\d+)", short):
        *parents, leaf = path.split(".")
        node = spec
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = int(value)
    job = use("submit_lora_job", {"spec": spec})
    assert job["profile"] == "cpu" and job["total"] == 40
    _finish_training(zlt_home, tmp_path / "jobs", job["job_id"], spec)
    done = use("get_job_status", {"job_id": job["job_id"]})
    assert done["state"] == "succeeded"
    art = done["artifact_id"]

    before = use("get_artifact", {"artifact_id": art})
    assert before["best"] is None and "evaluate" in before["best_note"] and before["checkpoint_steps"] == [10, 20, 30]
    ran = before["training_meta"]["training"]  # what the spec asked for and what ran (the CPU: 32-true)
    assert (ran["precision_requested"], ran["precision_used"]) == ("fp16", "32-true"), ran
    assert "evaluate" in listing["get_artifact"]["description"]
    ev = use("evaluate", {"artifact_id": art})
    _finish_evaluation(zlt_home, ev["job_id"], best=20)
    assert use("get_job_status", {"job_id": ev["job_id"]})["state"] == "succeeded"
    shown = use("get_artifact", {"artifact_id": art})["best"]
    assert shown["step"] == 20 and shown["scale"] == 1.0 and shown["report"] == "eval/report.json"
    assert shown["metric"] == "style_similarity" and shown["value"] == 0.7

    checkpoint = listing["style_transfer"]["inputSchema"]["$defs"]["LoraUse"]["properties"]["checkpoint"]
    assert "'best'" in checkpoint["description"] and "'best'" in listing["style_transfer"]["description"]
    out = use("style_transfer", {"loras": [{"artifact": art, "checkpoint": "best"}],
                                 "images": [str(tmp_path / "photo.png")]})
    assert "generate or style_transfer" in json.dumps(listing["get_generation"]["inputSchema"])
    got = use("get_generation", {"job_id": out["job_id"]})
    assert got["job"]["state"] == "queued"
    assert len(calls) <= 20, calls

    from zlt.infer.params import parse_request
    from zlt.infer.resolve import resolve_loras
    from zlt.jobs.store import JobStore

    store = JobStore(zlt_home)
    try:
        request = json.loads(store.get(out["job_id"])["request_json"])
    finally:
        store.close()
    (picked,) = resolve_loras(parse_request("transfer", request).loras, zlt_home, prefix="transfer")
    assert picked.checkpoint == 20  # the queued job draws with the checkpoint the evaluation picked


def test_best_before_an_evaluation_says_what_to_run(zlt_home: Path, tmp_path: Path, monkeypatch):
    from tests.fixtures.infer_fixtures import tiny_artifact

    monkeypatch.setattr("zlt.jobs.spawn.ensure_worker", lambda home: None)
    art = tiny_artifact(tmp_path / "jobs", zlt_home)
    result, is_error = call(tools(zlt_home)["generate"], {"loras": [{"artifact": art, "checkpoint": "best"}],
                                                          "prompts": ["a cat"], "width": 64, "height": 64})
    assert is_error and "not been evaluated" in result["message"]
    assert "the evaluate tool" in result["hint"] and "zlt " not in result["hint"]
    result, is_error = call(tools(zlt_home)["generate"], {"loras": [{"artifact": art, "checkpoint": "bst"}],
                                                          "prompts": ["a cat"]})
    assert is_error and any("'bst' is not a step number (0 or more) or 'best'" in d for d in result["detail"]), result
